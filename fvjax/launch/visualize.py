r"""Feature visualizations of units of one layer, rendered as one batch.

  python -m fvjax.launch.visualize --model=efficientnet_lite0 --layer=logits \
      --units=281,967 --steps=512 --workdir=/tmp/fv

Writes unit_<u>.png, grid.png and metrics.json (objective value per threshold,
largest value over the embedded natural images) into --workdir.
"""

from absl import flags

from fvjax import launch
from fvjax.launch import model_flags
import jax

from fvjax.experiments import visualize
from fvjax.optvis import render

_LAYER = flags.DEFINE_string("layer", "logits", "Layer whose units to visualize.")
_UNITS = flags.DEFINE_list("units", ["281", "967"], "Unit indices (or a range a-b).")
launch.check_units(_UNITS)
_STEPS = flags.DEFINE_integer("steps", 512, "Optimisation steps (Lucid: 512).", lower_bound=1)
_THRESHOLDS = flags.DEFINE_list("thresholds", [], "Extra step counts to record (default: only --steps).")
launch.check_counts(_THRESHOLDS)  # step counts >= 0 (0: the initial images)
_SIZE = flags.DEFINE_integer("size", None, "Image side in pixels (default: the model's input size).",
                             lower_bound=1, upper_bound=launch.MAX_SIZE)
_SEED = flags.DEFINE_integer("seed", 0, "PRNG seed: the same seed gives the same images and results.")
_REDIRECT = flags.DEFINE_integer("redirected_relu_steps", render.LUCID_REDIRECTED_RELU_STEPS,
                                 "Steps with Lucid's redirected ReLU (Lucid's default: 16; 0 turns it off).",
                                 lower_bound=0)
_WORKDIR = flags.DEFINE_string("workdir", "workdir/visualize", "Output folder (created; results are written atomically).")


def main(argv):
  del argv
  thresholds = sorted({*map(int, _THRESHOLDS.value), _STEPS.value})
  if thresholds[-1] > _STEPS.value:
    raise ValueError(f"--thresholds must not exceed --steps={_STEPS.value} (the run stops there); got {thresholds[-1]}.")
  model = model_flags.load()
  metrics = visualize.run(model, _LAYER.value, launch.parse_units(_UNITS.value), _WORKDIR.value,
                          key=jax.random.PRNGKey(_SEED.value), thresholds=thresholds, size=_SIZE.value,
                          redirected_relu_steps=_REDIRECT.value)
  for u, m in metrics["units"].items():
    print(f"{_LAYER.value}:{u}  fv={m['value_at_threshold'][str(_STEPS.value)]:.3f}  natural max={m['natural_max']:.3f}")
  print(f"wrote {_WORKDIR.value}")


if __name__ == "__main__":
  launch.run(main)
