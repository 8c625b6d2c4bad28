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

import os

from absl import flags
import jax

from fvjax import launch
from fvjax.launch import detector_flags
from fvjax.launch import model_flags
from fvjax.experiments import fooling_circuit
from fvjax.fooling import circuit
from fvjax.fooling import detector as det

_DETECTOR = flags.DEFINE_string("detector", None, "Detector directory from fvjax.launch.train_detector "
                                "(default: train one into --workdir/detector_training).")
_TARGET_IMAGE = flags.DEFINE_string("target_image", None, "Image file every manipulated unit should show.")
_TARGET_PHOTO = flags.DEFINE_string("target_photo", None, "A shipped photo as the target (e.g. astronaut).")
_OFFSET = flags.DEFINE_integer("offset", None, "Permutation target: unit i shows unit (i + offset) mod n (paper: 100).")
_TARGET_SCALE = flags.DEFINE_string("target_scale", circuit.AUTO, "Image target: D's scale s in D = s<pre(x),t>/(h*w); "
                                    "'auto' (0.9 of the largest that keeps natural logits exact) or a number "
                                    "(the paper's notebook: 1).")
_SHOW = flags.DEFINE_list("show_units", ["1", "94", "281", "417", "530", "967"], "Logits to visualize in the "
                          "comparison figure (original vs manipulated).")
launch.check_units(_SHOW)
_MANIPULATE = flags.DEFINE_list("manipulate_units", [], "Logits given the circuit (default: all).")
launch.check_units(_MANIPULATE, required=False)
_STEPS = flags.DEFINE_list("steps", list(map(str, fooling_circuit.PAPER_THRESHOLDS)), "Render step counts at which the "
                           "trajectory figure and metrics are recorded.")
launch.check_counts(_STEPS)
_SIZE = flags.DEFINE_integer("size", None, "Visualization size (default: the model's input size).", lower_bound=1,
                             upper_bound=launch.MAX_SIZE)
_K = flags.DEFINE_float("k", circuit.PAPER_K, "Gate strength k of A = ReLU(F'-kE) + ReLU(D'+kE-k) (paper: 250).")
_NATURAL_CROPS = flags.DEFINE_integer("natural_crops", 16, "Augmented crops per held-out photo for the natural "
                                      "metrics (0: the photos alone).", lower_bound=0)
_WORKDIR = flags.DEFINE_string("workdir", "workdir/fooling_circuit", "Output folder (a detector trained here resumes).")


def main(argv):
  del argv
  model = model_flags.load()
  target = fooling_circuit.target_from(model, _TARGET_IMAGE.value, _TARGET_PHOTO.value, _OFFSET.value,
                                       _TARGET_SCALE.value, _SIZE.value)
  detector_dir = _DETECTOR.value or detector_flags.train(model, os.path.join(_WORKDIR.value,
                                                                            "detector_training"))["detector"]
  key = jax.random.PRNGKey(detector_flags.SEED.value)
  natural, names = fooling_circuit.heldout_natural(detector_dir, model.input_size[0], _NATURAL_CROPS.value, key)
  metrics = fooling_circuit.run(
      model, det.load(detector_dir), target, _WORKDIR.value, key=key, units=launch.parse_units(_SHOW.value),
      natural_images=natural, natural_labels=fooling_circuit.labels_of_files(model, names),
      manipulate=launch.parse_units(_MANIPULATE.value) or None, thresholds=[int(s) for s in _STEPS.value],
      size=_SIZE.value, k=_K.value)
  print(f"{fooling_circuit.summary(metrics, names)}\nwrote {_WORKDIR.value}")


if __name__ == "__main__":
  launch.run(main)
