r"""The bias margin's trade-off for silent units: held-out silence and agreement against the target's visibility.

For each margin m (bias ``b = -(1 + m) * max`` over the calibration images), on the embedded default
(EfficientNet-Lite0 ``head/conv``, the demo's default calibration and held-out photos): the held-out
silent fraction and top-1 agreement, how many rendered units' fooling units fire on their manipulated
visualization, and the visualizations' input-activation correlation with the target, at the launch
defaults (224 px, 512 steps, delta fitted to the target's 512-step rendering). The README's table in
"Silent units" comes from

  .venv/bin/python scripts/silent_margin_tradeoff.py --target=colorwheel --margins=0,0.25,0.5,1
  .venv/bin/python scripts/silent_margin_tradeoff.py --target=colorwheel --margins=0.65,0.8
  .venv/bin/python scripts/silent_margin_tradeoff.py --target=logo --margins=0,0.25,0.5,1
  .venv/bin/python scripts/silent_margin_tradeoff.py --target=logo --margins=0.65,0.8

(``--target``: a scikit-image image the code has never used as a target; 8 to 30 minutes each on the
2-core CPU.) ``--fit_to=image --margins=0.5`` is the paper's recipe: no unit shows the logo.
"""

import argparse
import time

import jax
import numpy as np
import skimage.data

from fvjax import data
from fvjax import models
from fvjax.experiments import silent_units
from fvjax.fooling import silent
from fvjax.models import surgery
from fvjax.optvis import render


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--target", default="colorwheel", help="scikit-image data function, e.g. colorwheel, logo")
  parser.add_argument("--margins", default="0,0.25,0.5,0.65,0.8,1", help="comma-separated bias margins")
  parser.add_argument("--units", default="1,100,500,900", help="units of head/conv to render")
  parser.add_argument("--size", type=int, default=224, help="target and render size (launch default: 224)")
  parser.add_argument("--steps", type=int, default=512)
  parser.add_argument("--fit_to", default="rendering", choices=silent.FIT_TARGETS,
                      help="what delta is fitted to (launch.silent_units --fit_to)")
  parser.add_argument("--target_steps", type=int, default=512, help="steps of the target's rendering")
  parser.add_argument("--relu_gradient", default="renderer", choices=silent.RELU_GRADIENTS,
                      help="the fooling ReLU's gradient in the renders")
  args = parser.parse_args()
  margins = [float(m) for m in args.margins.split(",")]
  units = [int(u) for u in args.units.split(",")]

  model, path = models.load("efficientnet_lite0"), "head/conv"
  k_cal, k_held, k_run = jax.random.split(jax.random.PRNGKey(0), 3)  # as launch.silent_units splits its seed
  k_target, k_delta, k_render = jax.random.split(k_run, 3)
  calibration = silent_units.shipped_photos(224, k_cal)
  heldout = silent_units.shipped_photos(224, k_held, held=True)
  target = data.to_square(getattr(skimage.data, args.target)(), args.size)
  start = time.time()
  fitted = target if args.fit_to == "image" else silent.target_rendering(
      model, path, target, key=k_target, steps=args.target_steps, layer=path, size=args.size)
  target_input = surgery.capture(model, path)(model.params, fitted[None])[0]
  kernel = silent.fooling_kernels(model, path, target_input, key=k_delta)
  peak = silent.max_response(model, path, kernel, silent_units.batches(calibration))
  options = dict(layer=path, size=args.size, thresholds=(args.steps,), key=k_render, progress=False)
  before = render.render(silent.expose(model, path), units, **options).images[-1]
  original = np.mean(silent_units.activation_similarity(model, path, before, target))
  print(f"target {args.target}; {len(calibration)} calibration and {len(heldout)} held-out images; "
        f"{args.steps} steps at {args.size} px; delta fitted to the {args.fit_to}; "
        f"fooling ReLU gradient {args.relu_gradient}; "
        f"original visualizations' activation correlation {original:.2f}")
  print("| margin | held-out silent | held-out top-1 agreement | units showing the target | activation corr. |")
  print("|---|---|---|---|---|")
  for margin in margins:
    filters = silent.FoolingFilters(kernel, (-(peak + margin * np.abs(peak))).astype(np.float32))
    manipulated = silent.add_silent_units(model, path, filters, relu_gradient=args.relu_gradient)
    (held,) = silent_units.natural_passes(model, manipulated, path, filters, [heldout])
    after = render.render(manipulated, units, **options).images[-1]
    fired = silent.fooling_activations(model, path, filters, after)
    showing = sum(bool(fired[i, ..., u].max() > 0) for i, u in enumerate(units))
    corr = np.mean(silent_units.activation_similarity(model, path, after, target))
    print(f"| {margin:g} | {held['silent'] / held['count']:.3f} | {held['top1'] / held['count']:.3f} | "
          f"{showing}/{len(units)} | {corr:.2f} |", flush=True)
  print(f"{time.time() - start:.0f} s")


if __name__ == "__main__":
  main()
