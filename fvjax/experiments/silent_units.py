"""Paper section 2.2 end to end: silent fooling units, before/after visualizations.

Writes into ``workdir``: ``comparison.png`` (a spread of units: original
visualization, manipulated visualization; the target) and ``metrics.json``:

- ``calibration_silent_fraction`` / ``heldout_silent_fraction``: fraction of
  calibration / held-out natural images on which every fooling unit is exactly 0;
- ``calibration_logits_bit_identical``: the manipulated model's logits on the
  calibration images equal the original's bit for bit;
- ``natural_max_abs_logit_diff`` and ``natural_top1_agreement`` on held-out images;
- ``target_similarity_manipulated`` / ``_original``: mean Pearson correlation of
  the visualizations with the target image (pixels, target resized);
- ``target_activation_similarity_manipulated`` / ``_original``: mean Pearson
  correlation of the convolution's input activation (spatial mean) of each
  visualization with that of the target: what the fooling filters read, and
  the fairer measure at a deep layer, where two images that excite the same
  features need not share pixels;
- ``naturally_silent_units``: units of the convolution that are exactly 0 on
  every natural image before any manipulation.
"""

from __future__ import annotations

import os
import time
from typing import Sequence

import jax
import numpy as np

from fvjax import io
from fvjax import plots
from fvjax.experiments.fooling_circuit import logits_of
from fvjax.fooling import circuit
from fvjax.fooling import silent
from fvjax.models import surgery
from fvjax.models.record import ModelRecord
from fvjax.optvis import render as render_lib


def _batches(images: np.ndarray, size: int = 16):
  return [images[i:i + size] for i in range(0, len(images), size)]


def _silent_fraction(model, path, filters, images):
  acts = np.concatenate([silent.fooling_activations(model, path, filters, b) for b in _batches(images)])
  return float(np.mean(acts.reshape(len(images), -1).max(axis=1) == 0))


def _activation_similarity(model, path, images, target):
  fn = surgery.capture(model, path)
  rows = np.concatenate([np.asarray(fn(model.params, b)[0]).mean(axis=(1, 2)) for b in _batches(images)])
  ref = np.asarray(fn(model.params, target[None])[0]).mean(axis=(1, 2))
  rows, ref = rows - rows.mean(1, keepdims=True), ref - ref.mean(1, keepdims=True)
  return (rows @ ref[0]) / (np.linalg.norm(rows, axis=1) * np.linalg.norm(ref) + 1e-12)


def run(model: ModelRecord, path: str, workdir: str, *, key: jax.Array, calibration: np.ndarray,
        heldout: np.ndarray, units: Sequence[int], target_image: np.ndarray | None = None, target_steps: int = 512,
        thresholds: Sequence[int] = (render_lib.LUCID_STEPS,), size: int | None = None, progress: bool = True,
        **render_options) -> dict:
  """Adds silent fooling units to the convolution ``path`` and measures what changed.

  Args:
    model: the original record (Linen).
    path: a convolution (surgery path), e.g. ``"head/conv"``.
    workdir: output folder.
    key: PRNG key.
    calibration: ``[N,H,W,3]`` natural images the fooling units must be silent on.
    heldout: ``[M,H,W,3]`` natural images not used for calibration.
    units: output channels of ``path`` to visualize before and after.
    target_image: ``[H,W,3]`` in ``[0,1]``; default the visualization of unit 0
      of ``path`` (the paper's choice) rendered for ``target_steps`` steps.
    target_steps: steps for that default target (paper: 2000).
    thresholds: render step counts for the unit visualizations.
    size: render size (default the model's input size).
    progress: progress bars.
    **render_options: passed to :func:`fvjax.optvis.render.render`.

  Returns:
    The metrics written to ``metrics.json``.
  """
  start = time.time()
  k_target, k_delta, k_render = jax.random.split(key, 3)
  original = silent.expose(model, path)
  opts = dict(layer=path, size=size, progress=progress, **render_options)
  if target_image is None:
    target_image = render_lib.render(original, [0], key=k_target, thresholds=(target_steps,), **opts).images[-1, 0]
  filters = silent.fooling_filters(model, path, target_image, _batches(calibration), key=k_delta)
  manipulated = silent.add_silent_units(model, path, filters)

  units = [int(u) for u in units]
  before = render_lib.render(original, units, key=k_render, thresholds=thresholds, **opts)
  after = render_lib.render(manipulated, units, key=k_render, thresholds=thresholds, **opts)
  f_cal, a_cal = logits_of(model, calibration), logits_of(manipulated, calibration)
  f_held, a_held = logits_of(model, heldout), logits_of(manipulated, heldout)
  natural = np.concatenate([calibration, heldout])
  metrics = {
      "model": model.name,
      "layer": path,
      "num_units": int(filters.kernel.shape[-1]),
      "num_calibration_images": int(len(calibration)),
      "num_heldout_images": int(len(heldout)),
      "calibration_silent_fraction": _silent_fraction(model, path, filters, calibration),
      "heldout_silent_fraction": _silent_fraction(model, path, filters, heldout),
      "calibration_logits_bit_identical": bool(np.array_equal(f_cal, a_cal)),
      "natural_max_abs_logit_diff": float(np.abs(a_held - f_held).max()),
      "natural_top1_agreement": float(np.mean(a_held.argmax(-1) == f_held.argmax(-1))),
      "visualized_units": units,
      "thresholds": list(after.thresholds),
      "target_similarity_manipulated": float(np.mean(circuit.pearson(after.images[-1], target_image))),
      "target_similarity_original": float(np.mean(circuit.pearson(before.images[-1], target_image))),
      "target_activation_similarity_manipulated": float(np.mean(
          _activation_similarity(model, path, after.images[-1], target_image))),
      "target_activation_similarity_original": float(np.mean(
          _activation_similarity(model, path, before.images[-1], target_image))),
      "naturally_silent_units": silent.silent_units(model, path, _batches(natural)).tolist(),
      "seconds": 0.0,
  }
  cells = [im for i in range(len(units)) for im in (before.images[-1, i], after.images[-1, i])] + [target_image]
  titles = [t for u in units for t in (f"{path}:{u} original", f"{path}:{u} manipulated")] + ["target"]
  plots.save_figure(plots.labelled_grid(np.stack(cells), titles, cols=2), os.path.join(workdir, "comparison.png"))
  metrics["seconds"] = time.time() - start
  io.write_json(os.path.join(workdir, "metrics.json"), metrics)
  return metrics
