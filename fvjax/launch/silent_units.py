r"""Silent units / orthogonal filters (paper 2.2): every unit of a convolution
shows a target in its visualization, yet is exactly silent on natural images.

  python -m fvjax.launch.silent_units --flagfile=silent_demo.flags
  python -m fvjax.launch.silent_units --model=resnet50 --weights=resnet50.pth --layer=layer4_1/conv2 \
      --calibration_dir=/data/imagenet/val --heldout_dir=/data/imagenet/train_sample --target_steps=2000

Without --target_image the target is the visualization of unit 0 of --layer
(the paper's choice). Writes comparison.png and metrics.json into --workdir.
"""

from fvjax import launch
from fvjax.experiments import silent_units
from fvjax.launch import model_flags

main = launch.experiment_script(__name__, silent_units, "workdir/silent_units",
                                "Output folder (created; results are written atomically).", model=model_flags)
