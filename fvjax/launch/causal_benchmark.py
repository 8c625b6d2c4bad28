r"""The causal-understanding benchmark (Zimmermann et al., NeurIPS 2021) with a
machine observer instead of human participants.

  python -m fvjax.launch.causal_benchmark --flagfile=causal_demo.flags
  python -m fvjax.launch.causal_benchmark --flagfile=causal_imagenet.flags \
      --weights=/ckpt/inception5h.pth --natural_dir=/data/imagenet/val
  python -m fvjax.launch.causal_benchmark --model=inception_v1 --weights=/ckpt/inception5h.pth \
      --layer=mixed4a_pre_relu --units=257,486 --natural_dir=/data/imagenet/val --workdir=/tmp/causal

Conditions (--conditions): synthetic, natural, mixed (5 natural + 4 synthetic),
blurred (natural references blurred except the patch that drives the unit)
and none, built with the 2021 study's recipe: natural references from rank
bins below the queries, synthetic ones with the study's milder transforms
(--transforms=study; --transforms=lucid for Lucid's standard set).

Writes into --workdir: trials/unit_<u>_q<i>.png (query, the two occlusions,
the references), references/unit_<u>_synthetic.png and
references/unit_<u>_q<i>_<condition>.png, unit_<u>.json,
metrics.json (accuracy and calibrated score per condition with 95% CIs over
units, numbers of units and trials, the model's weights, the reference recipe
used, occlusions per second) and accuracy.png.
With layer:unit items in --units, each layer runs into --workdir/<layer> and
--workdir/metrics.json pools all units. Rerun the same command to resume a
killed run.
"""

import os

from absl import flags

from fvjax import launch
from fvjax.launch import model_flags
import jax

from fvjax import models
from fvjax.causal import benchmark
from fvjax.causal import observer as observer_lib
from fvjax.causal import occlusion
from fvjax.causal import references
from fvjax.causal import trials

_LAYER = flags.DEFINE_string("layer", "block9", "Layer of the units; a unit's activation is the spatial mean of its "
                             "channel there (the 2021 study: InceptionV1's pre-ReLU layers, e.g. mixed4a_pre_relu).")
_UNITS = flags.DEFINE_list("units", ["0-5"], "Unit indices or ranges a-b of --layer, or layer:unit items (units of "
                           "several layers, e.g. mixed3a:64,mixed4a:192; each layer runs into --workdir/<layer> and "
                           "metrics.json pools them).")
_OBSERVER = flags.DEFINE_string(
    "observer_model", None, "Observer's feature model (default: efficientnet_lite0, the embedded ImageNet "
    "model; a model other than the studied one unless Lite0 itself is studied).")
_OBSERVER_WEIGHTS = flags.DEFINE_string("observer_weights", None, "Weight file for the observer model.")
_OBSERVER_MODE = flags.DEFINE_enum("observer_mode", "image", list(observer_lib.MODES),
                                   "image: the choice more similar to the references; patch: the choice whose "
                                   "occluder hides the patch less similar to them (both are recorded).")
_OBSERVER_LAYER = flags.DEFINE_string("observer_layer", None, "Observer's feature layer (default: penultimate).")
_FRACTION = flags.DEFINE_float("occluder_fraction", occlusion.PAPER_FRACTION,
                               "Occluder side / image side (paper: 0.4).")
_STRIDE = flags.DEFINE_integer("stride", occlusion.PAPER_STRIDE, "Occluder stride in px (paper: 2).", lower_bound=1)
_SIZE = flags.DEFINE_integer("size", None, "Query image side in px (default: the model's input size; paper: 224).",
                             lower_bound=2, upper_bound=launch.MAX_SIZE)
_TOP_K = flags.DEFINE_integer("top_k", 20, "Queries per unit: its top-k activating natural images (paper: 20).",
                              lower_bound=1)
_CONDITIONS = flags.DEFINE_list("conditions", list(references.CONDITIONS),
                                f"Reference conditions, any of: {', '.join(references.CONDITIONS)}.")
_NUM_REFS = flags.DEFINE_integer("num_references", references.NUM_REFERENCES, "References per condition (paper: 9; "
                                 "mixed: 5 natural + 4 synthetic of 9).", lower_bound=1)
_BIN_WIDTH = flags.DEFINE_integer("bin_width", None, "Ranks per bin of the natural references (default: --top_k, "
                                  "as in the study: 20 queries, bins of 20 ranks below them; shrinks to fit a "
                                  "small natural set).", lower_bound=1)
_TRANSFORMS = flags.DEFINE_string("transforms", references.DEFAULT_PRESET,
                                  "Transforms of the synthetic references: study (the 2021 study's jitter 16, scale "
                                  "0.95-1.05, rotate +-5, jitter 8 on a canvas 2x16 px larger, cropped) or lucid "
                                  "(Lucid's standard_transforms).")
_BLUR_STRIDE = flags.DEFINE_integer("blur_stride", None, "Stride of the blurred references' sharp-patch search "
                                    "(default: --stride, as in the study).", lower_bound=1)
_STEPS = flags.DEFINE_integer("steps", references.PAPER_STEPS, "Steps per synthetic reference (paper: 2560).",
                              lower_bound=1)
_RENDER_SIZE = flags.DEFINE_integer("render_size", None, "Synthetic reference side (default: the model's input size).",
                                    lower_bound=1, upper_bound=launch.MAX_SIZE)
_DIVERSITY = flags.DEFINE_float("diversity", references.PAPER_DIVERSITY, "Diversity weight (paper: 1e2).")
_RENDER_UNITS = flags.DEFINE_integer("render_units", 16, "Units whose synthetic references render in one batch.",
                                     lower_bound=1)
_TEMPERATURE = flags.DEFINE_float("temperature", None, "Observer's fixed temperature (default: fitted per unit "
                                  "on the other units, never on the reported trials).")
_NATURAL_DIR = flags.DEFINE_string("natural_dir", None, "Image folder root/<class>/<image> of natural images "
                                   "(default: the embedded photos plus --crops_per_photo crops each).")
launch.check_image_folder(_NATURAL_DIR)
_PER_CLASS = flags.DEFINE_integer("per_class", None, "Image folder: at most this many images per class.",
                                  lower_bound=1)
_CROPS = flags.DEFINE_integer("crops_per_photo", 8, "Embedded photos: random crops per photo.", lower_bound=0)
_CHUNK = flags.DEFINE_integer("chunk", 128, "Occluded images per forward pass (bounds memory).", lower_bound=1)
_SEED = flags.DEFINE_integer("seed", 0, "PRNG seed: the same seed gives the same images and results.")
_WORKDIR = flags.DEFINE_string("workdir", "workdir/causal", "Output folder (resumes if it exists).")


def layer_units(items, default_layer):
  """``["mixed3a:64", "mixed4a:192-193", "5"]`` -> ``{"mixed3a": [64], "mixed4a": [192, 193], default_layer: [5]}``."""
  by_layer = {}
  for item in items:
    layer, _, unit = str(item).rpartition(":")
    by_layer.setdefault(layer or default_layer, []).extend(launch.parse_units([unit]))
  return by_layer


launch.check_units(_UNITS, parse=lambda items: sum(layer_units(items, "").values(), []))


def main(argv):
  del argv
  conditions = references.check_conditions(_CONDITIONS.value)
  references.check_preset(_TRANSFORMS.value)
  if "mixed" in conditions:
    references.mixed_split(_NUM_REFS.value)
  model = model_flags.load()
  occlusion.grid(_SIZE.value or model.input_size[0], _FRACTION.value, _STRIDE.value)  # bad input fails fast
  if _BLUR_STRIDE.value is not None:
    occlusion.grid(_SIZE.value or model.input_size[0], _FRACTION.value, _BLUR_STRIDE.value)
  name = _OBSERVER.value or observer_lib.default_observer(model.name)
  observer = model if name == model.name and _OBSERVER_WEIGHTS.value == model_flags.WEIGHTS.value else models.load(
      name, **({} if _OBSERVER_WEIGHTS.value is None else {"weights": _OBSERVER_WEIGHTS.value}))
  key = jax.random.PRNGKey(_SEED.value)
  size = _SIZE.value or model.input_size[0]
  natural = (trials.folder_set(_NATURAL_DIR.value, size, _PER_CLASS.value) if _NATURAL_DIR.value
             else trials.embedded_set(jax.random.fold_in(key, 1), size, _CROPS.value))
  options = dict(key=key, natural=natural, observer=observer, observer_layer=_OBSERVER_LAYER.value,
                 conditions=conditions, fraction=_FRACTION.value, stride=_STRIDE.value, top_k=_TOP_K.value,
                 num_references=_NUM_REFS.value, bin_width=_BIN_WIDTH.value, steps=_STEPS.value,
                 render_size=_RENDER_SIZE.value, diversity=_DIVERSITY.value, transforms=_TRANSFORMS.value,
                 blur_stride=_BLUR_STRIDE.value, render_units=_RENDER_UNITS.value, temperature=_TEMPERATURE.value,
                 observer_mode=_OBSERVER_MODE.value, chunk=_CHUNK.value)
  by_layer = layer_units(_UNITS.value, _LAYER.value)
  if len(by_layer) == 1:
    (layer, units), = by_layer.items()
    metrics = benchmark.run(model, layer, units, _WORKDIR.value, **options)
  else:
    runs = [benchmark.run(model, layer, units, os.path.join(_WORKDIR.value, layer), **options)
            for layer, units in by_layer.items()]
    metrics = benchmark.combine(runs, _WORKDIR.value)
  print(f"{metrics['num_units']} units, {metrics['num_trials']} trials; weights {metrics['weights']}; observer "
        f"{metrics['observer']['model']} ({metrics['observer']['layer']}); "
        f"{metrics['occluder']['positions']} occlusions per query")
  print(f"{'condition':>10} {'accuracy':>9} {'95% CI':>15} {'calibrated':>11} {'95% CI':>15}")
  fmt = lambda ci: "n/a" if ci[0] is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"
  modes = {metrics["observer"]["mode"]: metrics["conditions"], **metrics["other_observer_modes"]}
  for mode, conds in modes.items():
    print(f"observer mode {mode}{' (reported)' if mode == metrics['observer']['mode'] else ''}:")
    for c, m in conds.items():
      print(f"{c:>10} {m['accuracy']:>9.3f} {fmt(m['accuracy_ci95']):>15} {m['calibrated']:>11.3f} "
            f"{fmt(m['calibrated_ci95']):>15}")
  if metrics["occlusions_per_s"]:
    print(f"sweep: {metrics['occlusions_per_s']:.1f} occlusions/s on {metrics['devices']}")
  print(f"wrote {_WORKDIR.value}")


if __name__ == "__main__":
  launch.run(main)
