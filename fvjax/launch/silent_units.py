r"""Silent units / orthogonal filters (paper 2.2): every unit of a convolution
shows a target in its visualization, yet is exactly silent on natural images.

  python -m fvjax.launch.silent_units --flagfile=silent_demo.flags
  python -m fvjax.launch.silent_units --model=resnet50 --weights=resnet50.pth --layer=layer4_1/conv2 \
      --calibration_dir=/data/imagenet/val --heldout_dir=/data/imagenet/train_sample --target_steps=2000

Without --target_image the target is the visualization of unit 0 of --layer
(the paper's choice). Writes comparison.png and metrics.json into --workdir.
"""

import math

from absl import flags

from fvjax import launch
from fvjax.launch import model_flags
import jax

from fvjax import data
from fvjax.experiments import silent_units
from fvjax.fooling import silent

_LAYER = flags.DEFINE_string("layer", None, "Convolution to manipulate (surgery path); default "
                             + ", ".join(f"{k}: {v}" for k, v in silent.DEFAULT_LAYERS.items()) + ".")
_TARGET_IMAGE = flags.DEFINE_string("target_image", None, "Target image file (default: visualization of unit 0).")
_TARGET_STEPS = flags.DEFINE_integer("target_steps", 512, "Steps for the default target (paper: 2000).",
                                     lower_bound=1)
_CALIBRATION_DIR = flags.DEFINE_string("calibration_dir", None, "Image folder the fooling units must be silent on "
                                       "(default: 14 shipped photos with augmented crops and "
                                       "blurred copies).")
launch.check_image_folder(_CALIBRATION_DIR)
_HELDOUT_DIR = flags.DEFINE_string("heldout_dir", None, "Image folder of held-out natural images "
                                   "(default: the other 4 shipped photos with crops).")
launch.check_image_folder(_HELDOUT_DIR)
_HELDOUT_PER_CLASS = flags.DEFINE_integer("heldout_per_class", None, "Images per class subfolder of --heldout_dir "
                                          "(default: all; the calibration folder is always used whole).",
                                          lower_bound=1)
_CROPS = flags.DEFINE_integer("crops", silent_units.DEFAULT_CROPS, "Augmented crops (random scale 0.5-1, flips, "
                              "colour jitter) per shipped calibration photo (ours: 14 photos and their crops stand "
                              "in for the paper's 50,000 images).", lower_bound=1)
_BLUR = flags.DEFINE_float("calibration_blur", silent_units.DEFAULT_BLUR, "A Gaussian-blurred copy of every "
                           "calibration crop, sigma uniform in [0.5, this] px (0: none; ours: raises the calibration "
                           "maximum where blurry photos reach further).")
flags.register_validator("calibration_blur", lambda v: math.isfinite(v) and (v == 0 or v >= silent_units.MIN_BLUR),
                         message=f"Invalid --calibration_blur; accepted: 0 (no blurred copies) or a sigma >= "
                         f"{silent_units.MIN_BLUR} px.")
_HELDOUT_CROPS = flags.DEFINE_integer("heldout_crops", None, "Augmented crops per held-out shipped photo (default: "
                                      "--crops).", lower_bound=1)
_BIAS_MARGIN = flags.DEFINE_float("bias_margin", silent.DEFAULT_MARGIN, "Safety margin of the fooling units' bias: "
                                  "b = -(max + margin * |max|) over the calibration images, so a unit fires only "
                                  "above (1 + margin) times the calibration maximum (paper: 0; our default measured "
                                  "against the visualizations' similarity to the target, README).")
flags.register_validator("bias_margin", lambda v: math.isfinite(v) and v >= 0,
                         message="Invalid --bias_margin; accepted: a finite number >= 0 (0 is the paper's bias).")
_RELU_GRADIENT = flags.DEFINE_enum("relu_gradient", "renderer", list(silent.RELU_GRADIENTS),
                                   "Gradient of the fooling ReLU in the renders: renderer = the render loop's rule, "
                                   "as for every ReLU of the model (Lucid's redirected gradient in the first 16 "
                                   "steps, so a silent unit can still be found); plain = 0 while the unit is silent.")
_UNITS = flags.DEFINE_list("units", ["1", "100", "500", "900"], "Units of --layer to visualize.")
launch.check_units(_UNITS)
_STEPS = flags.DEFINE_integer("steps", 512, "Render steps for the unit visualizations.", lower_bound=1)
_SIZE = flags.DEFINE_integer("size", None, "Visualization size (default: the model's input size).", lower_bound=1,
                             upper_bound=launch.MAX_SIZE)
_RESCALE = flags.DEFINE_enum("rescale", "energy", list(silent.RESCALE_RULES),
                             "How delta and the fooling filter are rescaled against w: energy = the paper's notebook "
                             "(x * sum(w^2) / sum(x^2)), norm = to w's norm.")
_SEED = flags.DEFINE_integer("seed", 0, "PRNG seed: the same seed gives the same images and results.")
_WORKDIR = flags.DEFINE_string("workdir", "workdir/silent_units", "Output folder (created; results are written atomically).")


def natural_images(directory, size, key, crops, held):
  """A folder's images (streamed from disk), or the demo's shipped photos with crops (and blurred copies)."""
  if directory:
    return silent_units.folder_images(directory, size, _HELDOUT_PER_CLASS.value if held else None)
  return silent_units.shipped_photos(size, key, crops, held, blur=0.0 if held else _BLUR.value)


def main(argv):
  del argv
  model = model_flags.load()
  layer = _LAYER.value or silent.DEFAULT_LAYERS.get(model.name)
  if layer is None:
    raise ValueError(f"Give --layer for {model.name}: the path of a convolution, e.g. block3/project_conv.")
  key = jax.random.PRNGKey(_SEED.value)
  size = model.input_size[0]
  k_cal, k_held, k_run = jax.random.split(key, 3)
  target = data.load_image(_TARGET_IMAGE.value, _SIZE.value or size) if _TARGET_IMAGE.value else None
  metrics = silent_units.run(
      model, layer, _WORKDIR.value, key=k_run,
      calibration=natural_images(_CALIBRATION_DIR.value, size, k_cal, _CROPS.value, held=False),
      heldout=natural_images(_HELDOUT_DIR.value, size, k_held, _HELDOUT_CROPS.value or _CROPS.value, held=True),
      units=launch.parse_units(_UNITS.value), target_image=target, target_steps=_TARGET_STEPS.value,
      thresholds=(_STEPS.value,), size=_SIZE.value, rescale=_RESCALE.value,
      bias_margin=_BIAS_MARGIN.value, relu_gradient=_RELU_GRADIENT.value)
  for name in ("calibration_silent_fraction", "heldout_silent_fraction", "heldout_peak_over_threshold",
               "calibration_logits_bit_identical",
               "natural_max_abs_logit_diff", "natural_top1_agreement", "target_similarity_manipulated",
               "target_similarity_original", "target_activation_similarity_manipulated",
               "target_activation_similarity_original", "fooling_active_fraction"):
    print(f"{name:>42}: {metrics[name]}")
  print(f"naturally silent units of {layer}: {len(metrics['naturally_silent_units'])}; wrote {_WORKDIR.value}")


if __name__ == "__main__":
  launch.run(main)
