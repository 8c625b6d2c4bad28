"""Feature visualizations of a list of units, with how they compare to natural images.

Writes into ``workdir``: ``unit_<u>.png`` per unit, ``grid.png`` and
``metrics.json`` holding, per unit, the objective value at each threshold and
the largest value of the same unit over the natural images.
"""

from __future__ import annotations

import os
import time
from typing import Sequence

import jax
import numpy as np

from fvjax import data
from fvjax import io
from fvjax import plots
from fvjax.models.record import ModelRecord, check_images
from fvjax.optvis import render as render_lib


def run(model: ModelRecord, layer: str, units: Sequence[int], workdir: str, *, key: jax.Array,
        thresholds: Sequence[int] = (render_lib.LUCID_STEPS,), natural_images: np.ndarray | None = None,
        progress: bool = True, **render_options) -> dict:
  """Renders ``units`` of ``layer`` as one batch and writes PNGs, a grid and metrics.

  Args:
    model: the model record.
    layer: layer name.
    units: unit (channel) indices, one image each.
    workdir: output folder (created).
    key: PRNG key.
    thresholds: step counts at which values are recorded; the last one's
      images are written.
    natural_images: ``[N,H,W,3]`` in ``[0,1]``; default the embedded photos.
    progress: progress bar.
    **render_options: passed to :func:`fvjax.optvis.render.render`.

  Returns:
    The metrics dict written to ``metrics.json``.
  """
  model.check_layer(layer)
  units = [int(u) for u in units]
  os.makedirs(workdir, exist_ok=True)
  start = time.time()
  result = render_lib.render(model, units, layer=layer, key=key, thresholds=thresholds,
                             progress=progress, **render_options)
  seconds = time.time() - start
  if natural_images is None:
    natural_images, _ = data.sample_photos(model.input_size[0])
  natural = render_lib.unit_values(model, layer, check_images(model, natural_images))[:, units]
  final = result.images[-1]
  for u, image in zip(units, final):
    io.write_png(os.path.join(workdir, f"unit_{u}.png"), image)
  titles = [f"{layer}:{u}" + (f"\n{model.labels[u]}" if layer == "logits" and model.labels else "") for u in units]
  plots.save_figure(plots.labelled_grid(final, titles), os.path.join(workdir, "grid.png"))
  metrics = {
      "model": model.name,
      "weights": model.weights,
      "layer": layer,
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
