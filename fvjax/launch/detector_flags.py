"""Detector flags shared by fvjax.launch.train_detector and fvjax.launch.fooling_circuit; the training they drive."""

from absl import flags
import jax

from fvjax import launch
from fvjax import data
from fvjax.experiments import train_detector
from fvjax.fooling import detector as det
from fvjax.fooling import training

UNITS = flags.DEFINE_list("units", [], "Logits whose visualizations train the detector "
                          "(default: --num_units drawn at random).")
launch.check_units(UNITS, required=False)
NUM_UNITS = flags.DEFINE_integer("num_units", 48, "Random training units when --units is empty.", lower_bound=1)
HELDOUT_UNITS = flags.DEFINE_list("heldout_units", [], "Logits held out for evaluation "
                                  "(default: --num_heldout_units others drawn at random).")
launch.check_units(HELDOUT_UNITS, required=False)
NUM_HELDOUT_UNITS = flags.DEFINE_integer("num_heldout_units", 8, "Random held-out units when --heldout_units is "
                                         "empty.", lower_bound=1)
THRESHOLDS = flags.DEFINE_list("thresholds", list(map(str, train_detector.PAPER_THRESHOLDS)),
                               "Render step counts whose snapshots are training visualizations (0: the initial images).")
launch.check_counts(THRESHOLDS)
RENDER_SIZE = flags.DEFINE_integer("render_size", None, "Visualization size (default: the model's input size).",
                                   lower_bound=1, upper_bound=launch.MAX_SIZE)
RENDER_BATCH = flags.DEFINE_integer("render_batch", 16, "Units rendered together in one batch when building the "
                                    "visualization pool.", lower_bound=1)
NATURAL_DIR = flags.DEFINE_string("natural_dir", None, "Image folder of natural images (default: the shipped photos).")
launch.check_image_folder(NATURAL_DIR)
HELDOUT_PHOTOS = flags.DEFINE_integer("heldout_photos", 4, "Shipped photos held out at random (no --natural_dir).",
                                      lower_bound=1, upper_bound=len(data.SAMPLE_PHOTOS) - 1)
HELDOUT_PHOTO_NAMES = flags.DEFINE_list("heldout_photo_names", [], "Shipped photos to hold out by name instead "
                                        f"(of {', '.join(data.SAMPLE_PHOTOS)}).")
DETECTOR_SIZE = flags.DEFINE_integer("detector_size", det.PAPER_SIZE, "Detector input side (paper: 224; its four "
                                     "stride-2 convolutions need 16).", lower_bound=16, upper_bound=launch.MAX_SIZE)
STEPS = flags.DEFINE_integer("detector_steps", 1000, "Detector training steps (optimizer updates; checkpointed, "
                             "resumable).", lower_bound=1)
BATCH = flags.DEFINE_integer("detector_batch", 32, "Images per step (half natural).", lower_bound=2)
flags.register_validator(BATCH, lambda b: b % 2 == 0, "--detector_batch is odd; accepted: an even number of images "
                         "(half natural, half visualizations).")
OPTIMIZER = flags.DEFINE_enum("detector_optimizer", "sgd", list(training.OPTIMIZERS),
                              "Paper: SGD (unverified); momentum 0.9 is our choice.")
LR = flags.DEFINE_float("detector_learning_rate", training.PAPER_LEARNING_RATE,
                        "Detector learning rate (paper: 0.01, unverified).")
NATURAL_WEIGHT = flags.DEFINE_float("natural_weight", training.NATURAL_WEIGHT,
                                    "Loss weight of natural images (false alarms change the model's output).",
                                    lower_bound=0)
INITIAL_SIZES = flags.DEFINE_list("initial_sizes", None, "Sizes at which the renderer's step-0 images join the "
                                  "visualizations (default: the render size and the model's input size).")
launch.check_counts(INITIAL_SIZES, lower=1, example="96,224")
JPEG_FRACTION = flags.DEFINE_float("jpeg_fraction", 0.3, "Natural training images given a JPEG round trip.",
                                   lower_bound=0, upper_bound=1)
HARD_ROUNDS = flags.DEFINE_integer("hard_negative_rounds", 0, "Rounds of hard-negative mining: the circuit's own "
                                   "visualizations the detector calls natural join its training set.", lower_bound=0)
HARD_UNITS = flags.DEFINE_integer("hard_negative_units", 16, "Training logits rendered per hard-negative round.",
                                  lower_bound=1)
HARD_TARGETS = flags.DEFINE_list("hard_negative_targets", list(train_detector.DEFAULT_HARD_NEGATIVE_TARGETS),
                                 "Targets of the hard-negative circuits: 'permutation' and shipped photo names.")
HARD_THRESHOLDS = flags.DEFINE_list("hard_negative_thresholds", None, "Render step counts of the hard-negative "
                                     "renders (default: 0, 1, 2, 4, ... up to the largest --thresholds).")
launch.check_counts(HARD_THRESHOLDS)
HARD_STEPS = flags.DEFINE_integer("hard_negative_steps", 500, "Detector training steps per hard-negative round.",
                                  lower_bound=1)
SEED = flags.DEFINE_integer("seed", 0, "PRNG seed: the same seed gives the same images and results.")


def train(model, workdir):
  """Trains (or resumes) a detector for ``model`` with these flags; returns its metrics."""
  units, heldout = train_detector.choose_units(
      model.num_classes, launch.parse_units(UNITS.value), NUM_UNITS.value, launch.parse_units(HELDOUT_UNITS.value),
      NUM_HELDOUT_UNITS.value, SEED.value)
  return train_detector.run(
      model, workdir, key=jax.random.PRNGKey(SEED.value), train_units=units, heldout_units=heldout,
      thresholds=[int(t) for t in THRESHOLDS.value], size=RENDER_SIZE.value, render_batch=RENDER_BATCH.value,
      natural_dir=NATURAL_DIR.value, num_heldout_photos=HELDOUT_PHOTOS.value,
      heldout_photos=HELDOUT_PHOTO_NAMES.value or None, config=det.DetectorConfig(size=DETECTOR_SIZE.value),
      steps=STEPS.value, batch_size=BATCH.value, optimizer=OPTIMIZER.value, learning_rate=LR.value,
      natural_weight=NATURAL_WEIGHT.value,
      initial_sizes=None if INITIAL_SIZES.value is None else [int(s) for s in INITIAL_SIZES.value],
      jpeg_fraction=JPEG_FRACTION.value, hard_negative_rounds=HARD_ROUNDS.value, hard_negative_units=HARD_UNITS.value,
      hard_negative_targets=HARD_TARGETS.value, hard_negative_steps=HARD_STEPS.value,
      hard_negative_thresholds=None if HARD_THRESHOLDS.value is None else [int(t) for t in HARD_THRESHOLDS.value])


def summary(metrics: dict) -> str:
  """The trained detector's held-out accuracy in one line (and what each hard-negative round found)."""
  rounds = "; ".join(f"round {r['round']}: {r['called_natural']} of {r['rendered']} circuit snapshots called natural"
                     for r in metrics["hard_negative_rounds"])
  return (f"held-out accuracy: natural {metrics['accuracy_natural']:.3f} ({metrics['num_heldout_natural']} images), "
          f"visualizations {metrics['accuracy_visualization']:.3f} ({metrics['num_heldout_visualizations']} images), "
          f"step-0 images {metrics['accuracy_initial_images']:.3f}" + (f"; {rounds}" if rounds else ""))
