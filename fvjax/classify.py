"""Top-k classification of images by a model record (a first sanity check)."""

from __future__ import annotations

from typing import Sequence

import jax
import numpy as np

from fvjax import data
from fvjax import models
from fvjax import parallel


def top_k(record: models.ModelRecord, images: np.ndarray, k: int = 5, batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
  """Top-k class indices and softmax probabilities.

  Args:
    record: the model.
    images: ``[N,H,W,3]`` in ``[0,1]``.
    k: how many classes.
    batch_size: images per forward pass.

  Returns:
    ``(indices [N,k], probabilities [N,k])``.
  """
  images = models.check_images(record, images)
  logits = parallel.map_batches(jax.jit(lambda p, x: record.apply(p, x)[0]), record.params, images, batch_size)
  if not np.isfinite(logits).all():
    raise ValueError(f"{record.name} gives non-finite logits (NaN or inf): its weights ({record.weights or 'given'}) "
                     "are broken; accepted: a weight file with finite values.")
  probs = np.asarray(jax.nn.softmax(logits, axis=-1))
  idx = np.argsort(-logits, axis=-1)[:, :k]
  return idx, np.take_along_axis(probs, idx, axis=-1)


def report(record: models.ModelRecord, image_paths: Sequence[str] | None = None, top: int = 5) -> str:
  """A printable table of the top labels of the sample photos or of files."""
  size = record.input_size[0]
  if image_paths:
    images, names = np.stack([data.load_image(p, size) for p in image_paths]), tuple(image_paths)
  else:
    images, names = data.sample_photos(size)
  idx, probs = top_k(record, images, k=top)
  label = (lambda i: record.labels[i]) if record.labels else str
  lines = [f"{record.name}: top-{top} of {len(names)} images"]
  for name, row, prow in zip(names, idx, probs):
    lines.append(f"{name:>22}: " + ", ".join(f"{i} {label(i)} ({p:.2f})" for i, p in zip(row, prow)))
  return "\n".join(lines)
