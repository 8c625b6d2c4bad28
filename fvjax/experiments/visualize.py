"""Feature visualizations of a list of units, with how they compare to natural images.

Writes into ``workdir``: ``unit_<u>.png`` per unit, ``grid.png`` and
``metrics.json`` holding, per unit, the objective value at each threshold and
the largest value of the same unit over the natural images.
"""

from __future__ import annotations

import dataclasses
import os
import time

import jax
import numpy as np

from fvjax import data
from fvjax import io
from fvjax import plots
from fvjax.experiments import config as config_lib
from fvjax.models.record import ModelRecord, check_images
from fvjax.optvis import methods
from fvjax.optvis import render as render_lib

option = config_lib.option


@dataclasses.dataclass(frozen=True)
class Config(config_lib.MethodConfig):
  """Settings of :func:`run` (Lucid's defaults); the flags of ``fvjax.launch.visualize``.

  ``--method=accentuation`` starts each unit from the natural image on which the unit is largest; MACO's
  spectrum is that of the natural images (default: the shipped photos).
  """

  layer: str = option("logits", "Layer whose units to visualize.")
  units: tuple[int, ...] = option((281, 967), "Unit indices (or a range a-b).", units="required")
  steps: int = option(render_lib.LUCID_STEPS, "Optimisation steps (Lucid: 512).", lower=1)
  thresholds: tuple[int, ...] = option((), "Extra step counts to record (default: only --steps).")
  size: int | None = config_lib.size(None, "Image side in pixels (default: the model's input size).")
  seed: int = config_lib.seed()
  redirected_relu_steps: int = option(render_lib.LUCID_REDIRECTED_RELU_STEPS, "Steps with Lucid's redirected ReLU "
                                      "(Lucid's default: 16; 0 turns it off).", lower=0)

  def __post_init__(self):
    config_lib.validate(self)
    if self.thresholds and max(self.thresholds) > self.steps:
      raise ValueError(f"--thresholds must not exceed --steps={self.steps} (the run stops there); got "
                       f"{max(self.thresholds)}.")

  @property
  def all_thresholds(self) -> list[int]:
    """The recorded step counts: ``thresholds`` and ``steps``, sorted."""
    return sorted({*self.thresholds, self.steps})


def run(model: ModelRecord, config: Config, workdir: str, *, natural_images: np.ndarray | None = None,
        progress: bool = True, **render_options) -> dict:
  """Renders the units of ``config.layer`` as one batch and writes PNGs, a grid and metrics.

  Args:
    model: the model record.
    config: the settings.
    workdir: output folder (created).
    natural_images: ``[N,H,W,3]`` in ``[0,1]``; default the embedded photos (also MACO's spectrum and
      accentuation's seeds).
    progress: progress bar.
    **render_options: passed to :func:`fvjax.optvis.render.render`.

  Returns:
    The metrics dict written to ``metrics.json``.
  """
  layer = config.layer
  model.check_layer(layer)
  units = list(config.units)
  os.makedirs(workdir, exist_ok=True)
  if natural_images is None:
    natural_images, _ = data.sample_photos(model.input_size[0])
  natural = render_lib.unit_values(model, layer, check_images(model, natural_images))[:, units]
  seeds = natural_images[natural.argmax(0)] if methods.needs_seeds(config.method) else None
  method_options = config.render_options(model, config.size, spectrum_images=natural_images, seeds=seeds)
  start = time.time()
  result = render_lib.render(model, units, layer=layer, key=jax.random.PRNGKey(config.seed),
                             thresholds=config.all_thresholds, size=config.size,
                             redirected_relu_steps=config.redirected_relu_steps, progress=progress,
                             **method_options, **render_options)
  seconds = time.time() - start
  final = result.images[-1]
  for u, image in zip(units, final):
    io.write_png(os.path.join(workdir, f"unit_{u}.png"), image)
  titles = [f"{layer}:{u}" + (f"\n{model.labels[u]}" if layer == "logits" and model.labels else "") for u in units]
  plots.save_figure(plots.labelled_grid(final, titles), os.path.join(workdir, "grid.png"))
  metrics = {
      "model": model.name,
      "weights": model.weights,
      "layer": layer,
      "method": config.method,
      "thresholds": list(result.thresholds),
      "render_seconds": seconds,
      "num_natural_images": int(len(natural_images)),
      "units": {
          str(u): {
              "value_at_threshold": {str(t): float(result.values[i, j]) for i, t in enumerate(result.thresholds)},
              "natural_max": float(natural[:, j].max()),
              "natural_argmax": int(natural[:, j].argmax()),
          } for j, u in enumerate(units)
      },
  }
  io.write_json(os.path.join(workdir, "metrics.json"), metrics)
  return metrics


def summary(metrics: dict) -> str:
  """Each unit's objective value at the last threshold against its largest value on the natural images."""
  last = str(metrics["thresholds"][-1])
  return "\n".join(f"{metrics['layer']}:{u}  fv={m['value_at_threshold'][last]:.3f}  natural max={m['natural_max']:.3f}"
                   for u, m in metrics["units"].items())
