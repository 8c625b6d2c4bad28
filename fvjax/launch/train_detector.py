r"""Train the natural-vs-visualization detector of the fooling circuit (paper 2.1).

  python -m fvjax.launch.train_detector --flagfile=detector_demo.flags
  python -m fvjax.launch.train_detector --model=inception_v1 --weights=inception5h.pth \
      --natural_dir=/data/imagenet/train --units=100-999 --heldout_units=0-99 \
      --detector_size=224 --thresholds=4,8,16,32,64,128,256,512 --detector_steps=20000

Renders class-logit visualizations of --units (training) and --heldout_units,
trains the paper's small CNN against natural images, and writes into
--workdir: detector/ (orbax weights + detector.json), the rendered chunks, and
metrics.json (held-out accuracy on natural images and on visualizations of
held-out units). Rerun the same command to resume a killed run.
"""

from fvjax import launch
from fvjax.experiments import train_detector
from fvjax.launch import detector_flags
from fvjax.launch import model_flags

main = launch.experiment_script(__name__, train_detector, "workdir/train_detector",
                                "Output folder (resumes if it exists).", model=model_flags,
                                holders=detector_flags.CONFIG)
