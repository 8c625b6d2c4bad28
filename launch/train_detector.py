r"""Train the natural-vs-visualization detector of the fooling circuit (paper 2.1).

  python -m launch.train_detector --flagfile=launch/flags/fooling_demo.flags
  python -m launch.train_detector --model=inception_v1 --weights=inception5h.pth \
      --natural_dir=/data/imagenet/train --units=100-999 --heldout_units=0-99 \
      --detector_size=224 --thresholds=4,8,16,32,64,128,256,512 --detector_steps=20000

Renders class-logit visualizations of --units (training) and --heldout_units,
trains the paper's small CNN against natural images, and writes into
--workdir: detector/ (orbax weights + detector.json), the rendered chunks, and
metrics.json (held-out accuracy on natural images and on visualizations of
held-out units). Rerun the same command to resume a killed run.
"""

from absl import flags

import launch
from launch import model_flags
import jax

from fvjax import data
from fvjax.experiments import train_detector
from fvjax.fooling import detector as det
from fvjax.fooling import training

_UNITS = flags.DEFINE_list("units", [], "Logits whose visualizations train the detector "
                           "(default: --num_units drawn at random).")
launch.check_units(_UNITS, required=False)
_NUM_UNITS = flags.DEFINE_integer("num_units", 48, "Random training units when --units is empty.",
                                  lower_bound=1)
_HELDOUT_UNITS = flags.DEFINE_list("heldout_units", [], "Logits held out for evaluation "
                                   "(default: --num_heldout_units others drawn at random).")
launch.check_units(_HELDOUT_UNITS, required=False)
_NUM_HELDOUT_UNITS = flags.DEFINE_integer("num_heldout_units", 8, "Random held-out units when --heldout_units is "
                                          "empty.", lower_bound=1)
_THRESHOLDS = flags.DEFINE_list("thresholds", list(map(str, train_detector.PAPER_THRESHOLDS)),
                                "Render step counts whose snapshots are training visualizations.")
launch.check_counts(_THRESHOLDS)  # step counts >= 0 (0: the initial images)
_RENDER_SIZE = flags.DEFINE_integer("render_size", None, "Visualization size (default: the model's input size).",
                                    lower_bound=1, upper_bound=launch.MAX_SIZE)
_RENDER_BATCH = flags.DEFINE_integer("render_batch", 16, "Units rendered together in one batch when building the "
                                     "visualization pool.", lower_bound=1)
_NATURAL_DIR = flags.DEFINE_string("natural_dir", None, "Image folder of natural images (default: the shipped photos).")
launch.check_image_folder(_NATURAL_DIR)
_HELDOUT_PHOTOS = flags.DEFINE_integer("heldout_photos", 4, "Shipped photos held out at random (no --natural_dir).",
                                       lower_bound=1, upper_bound=len(data.SAMPLE_PHOTOS) - 1)
_DETECTOR_SIZE = flags.DEFINE_integer("detector_size", det.PAPER_SIZE, "Detector input side (paper: 224; its four "
                                      "stride-2 convolutions need 16).", lower_bound=16, upper_bound=launch.MAX_SIZE)
_STEPS = flags.DEFINE_integer("detector_steps", 1000, "Detector training steps (optimizer updates; checkpointed, "
                              "resumable).", lower_bound=1)
_BATCH = flags.DEFINE_integer("detector_batch", 32, "Images per step (half natural).", lower_bound=2)
flags.register_validator(_BATCH, lambda b: b % 2 == 0, "--detector_batch is odd; accepted: an even number of images "
                         "(half natural, half visualizations).")
_OPTIMIZER = flags.DEFINE_enum("detector_optimizer", "sgd", list(training.OPTIMIZERS),
                               "Paper: SGD (unverified); momentum 0.9 is our choice.")
_LR = flags.DEFINE_float("detector_learning_rate", training.PAPER_LEARNING_RATE,
                         "Detector learning rate (paper: 0.01, unverified).")
_NATURAL_WEIGHT = flags.DEFINE_float("natural_weight", training.NATURAL_WEIGHT,
                                     "Loss weight of natural images (false alarms change the model's output).",
                                     lower_bound=0)
_SEED = flags.DEFINE_integer("seed", 0, "PRNG seed: the same seed gives the same images and results.")
_WORKDIR = flags.DEFINE_string("workdir", "workdir/train_detector", "Output folder (resumes if it exists).")


def train(model, workdir):
  """Trains (or resumes) a detector for ``model`` with this module's flags; returns its metrics."""
  units, heldout = train_detector.choose_units(
      model.num_classes, launch.parse_units(_UNITS.value), _NUM_UNITS.value, launch.parse_units(_HELDOUT_UNITS.value),
      _NUM_HELDOUT_UNITS.value, _SEED.value)
  return train_detector.run(
      model, workdir, key=jax.random.PRNGKey(_SEED.value), train_units=units, heldout_units=heldout,
      thresholds=[int(t) for t in _THRESHOLDS.value], size=_RENDER_SIZE.value, render_batch=_RENDER_BATCH.value,
      natural_dir=_NATURAL_DIR.value, num_heldout_photos=_HELDOUT_PHOTOS.value,
      config=det.DetectorConfig(size=_DETECTOR_SIZE.value), steps=_STEPS.value, batch_size=_BATCH.value,
      tx=training.optimizer(_OPTIMIZER.value, _LR.value), natural_weight=_NATURAL_WEIGHT.value)


def main(argv):
  del argv
  metrics = train(model_flags.load(), _WORKDIR.value)
  print(f"held-out accuracy: natural {metrics['accuracy_natural']:.3f} "
        f"({metrics['num_heldout_natural']} images), visualizations {metrics['accuracy_visualization']:.3f} "
        f"({metrics['num_heldout_visualizations']} images); wrote {_WORKDIR.value}")


if __name__ == "__main__":
  launch.run(main)
