r"""The fooling circuit (paper 2.1): visualizations that show any target while
natural behaviour stays the same.

  python -m fvjax.launch.fooling_circuit --flagfile=fooling_demo.flags
  python -m fvjax.launch.fooling_circuit --model=efficientnet_lite0 --target_image=cat.png --show_units=1,94,417
  python -m fvjax.launch.fooling_circuit --offset=100 --show_units=0,1,2 --detector=workdir/train_detector/detector

--show_units are the logits drawn in the comparison figure, --manipulate_units those given the circuit
(default: all); --units and --heldout_units are the detector's training and held-out logits.
Without --detector, one is trained first (the detector flags of fvjax.launch.train_detector, into
--workdir/detector_training; resumable). Writes comparison.png, trajectory.png and metrics.json into --workdir.
"""

from fvjax import launch
from fvjax.experiments import fooling_circuit
from fvjax.launch import detector_flags
from fvjax.launch import model_flags

# The detector's training config: the flags shared with fvjax.launch.train_detector.
main = launch.experiment_script(__name__, fooling_circuit, "workdir/fooling_circuit",
                                "Output folder (a detector trained here resumes).", model=model_flags,
                                extra=lambda: {"training": detector_flags.config()})
