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
