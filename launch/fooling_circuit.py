r"""The fooling circuit (paper 2.1): visualizations that show any target while
natural behaviour stays the same.

  python -m launch.fooling_circuit --flagfile=launch/flags/fooling_demo.flags
  python -m launch.fooling_circuit --model=efficientnet_lite0 --target_image=cat.png --units=1,94,417
  python -m launch.fooling_circuit --offset=100 --units=0,1,2 --detector=workdir/train_detector/detector

Without --detector, one is trained first (flags of launch.train_detector, into
--workdir/detector_training; resumable). Writes comparison.png,
trajectory.png and metrics.json into --workdir.
"""

import os

from absl import flags

import launch
from launch import model_flags
import jax

from fvjax import data
from fvjax.experiments import fooling_circuit
from fvjax.fooling import circuit
from fvjax.fooling import detector as det
from launch import train_detector

_DETECTOR = flags.DEFINE_string("detector", None, "Detector directory from launch.train_detector "
                                "(default: train one into --workdir/detector_training).")
_TARGET_IMAGE = flags.DEFINE_string("target_image", None, "Image file every manipulated unit should show.")
_TARGET_PHOTO = flags.DEFINE_string("target_photo", None, "A shipped photo as the target (e.g. astronaut).")
_OFFSET = flags.DEFINE_integer("offset", None, "Permutation target: unit i shows unit (i + offset) mod n (paper: 100).")
_SHOW = flags.DEFINE_list("show_units", ["1", "94", "281", "417", "530", "967"], "Logits to visualize in the "
                          "comparison figure (original vs manipulated).")
launch.check_units(_SHOW)
_MANIPULATE = flags.DEFINE_list("manipulate_units", [], "Logits given the circuit (default: all).")
launch.check_units(_MANIPULATE, required=False)
_STEPS = flags.DEFINE_list("steps", list(map(str, fooling_circuit.PAPER_THRESHOLDS)), "Render step counts at which the "
                           "trajectory figure and metrics are recorded.")
launch.check_counts(_STEPS)  # step counts >= 0 (0: the initial images)
_SIZE = flags.DEFINE_integer("size", None, "Visualization size (default: the model's input size).", lower_bound=1,
                             upper_bound=launch.MAX_SIZE)
_K = flags.DEFINE_float("k", circuit.PAPER_K, "Gate strength k of A = ReLU(F'-kE) + ReLU(D'+kE-k) (paper: 250).")
_NATURAL_CROPS = flags.DEFINE_integer("natural_crops", 16, "Augmented crops per held-out photo for the natural "
                                      "metrics.", lower_bound=1)
# --workdir is launch.train_detector's flag (the detector trains into --workdir/detector_training); this script's
# own default keeps a fooling run apart from a detector run.
flags.FLAGS.set_default("workdir", "workdir/fooling_circuit")


def main(argv):
  del argv
  chosen = [_TARGET_IMAGE.value is not None, _TARGET_PHOTO.value is not None, _OFFSET.value is not None]
  if sum(chosen) != 1:
    raise ValueError("Give exactly one target: --target_image=PATH, --target_photo=NAME or --offset=N.")
  model = model_flags.load()
  workdir = train_detector._WORKDIR.value  # pylint: disable=protected-access
  size = _SIZE.value or model.input_size[0]
  if _OFFSET.value is not None:
    target = circuit.permutation(_OFFSET.value)
  elif _TARGET_IMAGE.value:
    target = circuit.image_target(data.load_image(_TARGET_IMAGE.value, size))
  else:
    target = circuit.image_target(data.sample_photos(size, [_TARGET_PHOTO.value])[0][0])
  detector_dir = _DETECTOR.value
  if detector_dir is None:
    train_metrics = train_detector.train(model, os.path.join(workdir, "detector_training"))
    detector_dir = train_metrics["detector"]
  detector = det.load(detector_dir)
  key = jax.random.PRNGKey(train_detector._SEED.value)  # pylint: disable=protected-access
  natural, names = fooling_circuit.heldout_natural(detector_dir, model.input_size[0], _NATURAL_CROPS.value, key)
  metrics = fooling_circuit.run(
      model, detector, target, workdir, key=key, units=launch.parse_units(_SHOW.value), natural_images=natural,
      manipulate=launch.parse_units(_MANIPULATE.value) or None, thresholds=[int(s) for s in _STEPS.value],
      size=_SIZE.value, k=_K.value)
  print(f"natural images ({len(natural)}, from {', '.join(map(os.path.basename, names[:6]))}"
        f"{'...' if len(names) > 6 else ''}): top-1 agreement {metrics['natural_top1_agreement']:.3f}, "
        f"max |logit diff| {metrics['natural_max_abs_logit_diff']:.2e}")
  m = metrics["margin"]
  if not m["ok"]:
    print(f"warning: the circuit's precondition fails on natural images: max F+shift {m['max_f_shifted']:.1f}, "
          f"max D+shift {m['max_d_shifted']:.1f}, k {m['k']:g}; natural logits change (raise --k).")
  print(f"detector accuracy: natural {metrics['detector_accuracy_natural']:.3f}, "
        f"visualizations {metrics['detector_accuracy_visualization']:.3f}")
  print(f"target similarity: manipulated {metrics['target_similarity_manipulated']:.3f}, "
        f"original {metrics['target_similarity_original']:.3f}; wrote {workdir}")


if __name__ == "__main__":
  launch.run(main)
