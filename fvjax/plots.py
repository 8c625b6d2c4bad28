"""Figures and image grids."""

from __future__ import annotations

import math
import os
from typing import Sequence

import matplotlib.pyplot as plt  # the backend is the caller's: inline in notebooks, Agg in launch/
import numpy as np

from fvjax import io


def grid(images: np.ndarray, cols: int | None = None, pad: int = 2, value: float = 1.0) -> np.ndarray:
  """Tiles ``[N,H,W,3]`` images into one ``[rows*(H+pad)-pad, cols*(W+pad)-pad, 3]`` image."""
  images = np.asarray(images, np.float32)
  n, h, w, c = images.shape
  cols = cols or math.ceil(math.sqrt(n))
  rows = math.ceil(n / cols)
  out = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad, c), value, np.float32)
  for i, im in enumerate(images):
    r, q = divmod(i, cols)
    out[r * (h + pad):r * (h + pad) + h, q * (w + pad):q * (w + pad) + w] = im
  return out


def labelled_grid(images: np.ndarray, titles: Sequence[str], cols: int | None = None,
                  cell_inches: float = 1.6) -> plt.Figure:
  """A matplotlib figure of images with a title under each."""
  n = len(images)
  cols = cols or math.ceil(math.sqrt(n))
  rows = math.ceil(n / cols)
  fig, axes = plt.subplots(rows, cols, figsize=(cols * cell_inches, rows * (cell_inches + 0.25)), squeeze=False)
  for ax in axes.ravel():
    ax.axis("off")
  for ax, im, title in zip(axes.ravel(), images, titles):
    ax.imshow(np.clip(im, 0, 1))
    ax.set_title(title, fontsize=7)
  fig.tight_layout()
  return fig


def save_figure(fig: plt.Figure, path: str | os.PathLike, dpi: int = 110) -> None:
  """Saves a figure atomically and closes it."""
  with io.atomic_path(path) as tmp:
    fig.savefig(tmp, dpi=dpi, format=os.path.splitext(os.fspath(path))[1].lstrip(".") or "png",
                bbox_inches="tight")
  plt.close(fig)


def path_similarity(metrics: dict) -> plt.Figure:
  """The sanity check's figure: layer depth vs S_fv, S_same, S_diff (with 95% bands) and the normalized path
  similarity (``metrics`` of :func:`fvjax.experiments.sanity_check.run`)."""
  layers = metrics["layers"]
  x = np.arange(len(layers))
  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.2))
  styles = (("s_same", "natural, same class", "tab:green"), ("s_fv", "visualization vs natural (same class)", "tab:red"),
            ("s_diff", "natural, other class", "tab:blue"))
  for name, label, colour in styles:
    y = np.array([metrics["per_layer"][l][name] for l in layers])
    ci = np.array([metrics["per_layer"][l][f"{name}_ci"] for l in layers])
    ax1.plot(x, y, "-o", ms=3, color=colour, label=label)
    ax1.fill_between(x, ci[:, 0], ci[:, 1], color=colour, alpha=0.2)
  ax1.set_ylabel(f"{metrics['measure']} similarity")
  ax1.legend(fontsize=8)
  y = np.array([metrics["per_layer"][l]["normalized"] for l in layers])
  ci = np.array([metrics["per_layer"][l]["normalized_ci"] for l in layers])
  ax2.plot(x, y, "-o", ms=3, color="black")
  ax2.fill_between(x, ci[:, 0], ci[:, 1], color="gray", alpha=0.3)
  ax2.axhline(1.0, color="tab:green", ls="--", lw=1, label="like same-class natural images")
  ax2.axhline(0.0, color="tab:blue", ls="--", lw=1, label="like other-class natural images")
  ax2.set_ylabel("normalized path similarity")
  ax2.legend(fontsize=8)
  for ax in (ax1, ax2):
    ax.set_xticks(x)
    ax.set_xticklabels(layers, rotation=70, fontsize=7)
    ax.set_xlabel("layer (depth)")
  fig.suptitle(f"{metrics['model']}: {metrics['num_classes']} classes, {metrics['steps']} steps")
  fig.tight_layout()
  return fig


def path_similarity_by_method(runs: dict[str, dict]) -> plt.Figure:
  """The normalized path similarity by layer depth, one line (with its 95% band) per method.

  Args:
    runs: method name -> the ``metrics`` of :func:`fvjax.experiments.sanity_check.run` (same model and layers).
  """
  fig, ax = plt.subplots(figsize=(8, 4.2))
  first = next(iter(runs.values()))
  layers = first["layers"]
  x = np.arange(len(layers))
  for method, metrics in runs.items():
    y = np.array([metrics["per_layer"][l]["normalized"] for l in layers])
    ci = np.array([metrics["per_layer"][l]["normalized_ci"] for l in layers])
    line, = ax.plot(x, y, "-o", ms=3, label=method)
    ax.fill_between(x, ci[:, 0], ci[:, 1], color=line.get_color(), alpha=0.15)
  ax.axhline(1.0, color="gray", ls="--", lw=1)
  ax.axhline(0.0, color="gray", ls=":", lw=1)
  ax.set_xticks(x)
  ax.set_xticklabels(layers, rotation=70, fontsize=7)
  ax.set_xlabel("layer (depth)")
  ax.set_ylabel("normalized path similarity\n(1: like same-class photos, 0: like other-class photos)")
  ax.legend(fontsize=8)
  ax.set_title(f"{first['model']}: {first['num_classes']} classes, {first['steps']} steps, by method")
  fig.tight_layout()
  return fig
