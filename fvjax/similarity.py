"""Layerwise path similarity between natural images and feature visualizations.

The paper's sanity check (section 3): if a class unit's visualization FV_c
"explains" the unit, the network should process it along the same path as
natural images of class c, i.e. at every layer its activations should be as
similar to theirs as two natural images of class c are to each other. Per
layer and class:

  S_fv   = mean over x in N_c            of s(a(FV_c), a(x))
  S_same = mean over x != y both in N_c  of s(a(x), a(y))
  S_diff = mean over x in N_c, y in N_c' of s(a(x), a(y)),  c' != c
  normalized = (S_fv - S_diff) / (S_same - S_diff)

so 0 reads "like an image of another class" and 1 "like a natural image of
the same class". ``s`` is Spearman's rank correlation by default (Pearson and
cosine also available), computed on device: average ranks (ties, e.g. the
zeros after a ReLU, get their mean rank, as in ``scipy.stats.spearmanr``) and
one matrix product for all pairs.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

MEASURES = ("spearman", "pearson", "cosine")
REDUCTIONS = ("flatten", "channel_mean")


def rank(x: jax.Array) -> jax.Array:
  """Average ranks (0-based) along the last axis; ties share their mean rank."""
  s = jnp.sort(x, axis=-1)
  search = jax.vmap(lambda a, v, side: jnp.searchsorted(a, v, side=side), in_axes=(0, 0, None))
  flat_s, flat_x = s.reshape(-1, s.shape[-1]), x.reshape(-1, x.shape[-1])
  lo = search(flat_s, flat_x, "left")
  hi = search(flat_s, flat_x, "right")
  return ((lo + hi - 1) / 2.0).reshape(x.shape).astype(jnp.float32)


def _unit_rows(x: jax.Array, center: bool) -> jax.Array:
  x = x.astype(jnp.float32)
  if center:
    x = x - x.mean(axis=-1, keepdims=True)
  norm = jnp.linalg.norm(x, axis=-1, keepdims=True)
  return x / jnp.where(norm > 0, norm, 1.0)


def prepare(x: jax.Array, measure: str = "spearman") -> jax.Array:
  """Rows ``[N,D]`` turned into unit vectors whose dot products are ``measure``."""
  if measure not in MEASURES:
    raise ValueError(f"Unknown similarity {measure!r}; accepted: {', '.join(MEASURES)}.")
  if measure == "spearman":
    x = rank(x)
  return _unit_rows(x, center=measure != "cosine")


@functools.partial(jax.jit, static_argnames="measure")
def similarity_matrix(a: jax.Array, b: jax.Array, measure: str = "spearman") -> jax.Array:
  """``[N,M]`` similarity of every row of ``a [N,D]`` with every row of ``b [M,D]``."""
  return prepare(a, measure) @ prepare(b, measure).T


def features(act: jax.Array, reduction: str = "flatten") -> jax.Array:
  """An activation ``[B,h,w,c]`` or ``[B,c]`` as feature rows ``[B,D]``."""
  if reduction not in REDUCTIONS:
    raise ValueError(f"Unknown reduction {reduction!r}; accepted: {', '.join(REDUCTIONS)}.")
  if act.ndim == 4 and reduction == "channel_mean":
    act = act.mean(axis=(1, 2))
  return act.reshape(act.shape[0], -1)


class ClassSimilarity(NamedTuple):
  """Per-class ``[C]`` mean similarities S_fv, S_same and S_diff at one layer (NaN for a class with
  too few images)."""

  fv: np.ndarray
  same: np.ndarray
  diff: np.ndarray


def class_scores(own: np.ndarray, fv: np.ndarray, other: np.ndarray) -> tuple[float, float, float]:
  """S_fv, S_same, S_diff of one class from rows already through :func:`prepare`.

  Streamed: one class and its comparison images in memory at a time.

  Args:
    own: ``[n,D]`` the class's natural images.
    fv: ``[D]`` its visualization.
    other: ``[m,D]`` natural images of other classes.
  """
  n = len(own)
  gram = own @ own.T
  s_same = float((gram.sum() - np.trace(gram)) / (n * (n - 1))) if n > 1 else float("nan")
  return float((own @ fv).mean()), s_same, float((own @ other.T).mean())


def normalized(s_fv, s_same, s_diff):
  """(S_fv - S_diff) / (S_same - S_diff): 0 = other class, 1 = same class."""
  return (s_fv - s_diff) / (s_same - s_diff)


normalised = normalized  # the old spelling, kept for one release


def summarise(per_class: ClassSimilarity, num_bootstrap: int = 1000, seed: int = 0,
              level: float = 0.95) -> dict[str, float]:
  """Means over classes and bootstrap confidence intervals (resampling classes).

  The normalized similarity is the ratio of the class means (stabler than the
  mean of per-class ratios when S_same - S_diff is small for some class).

  Returns:
    ``{"s_fv", "s_same", "s_diff", "normalized"}`` and ``<name>_ci`` = [lo, hi].
  """
  keep = ~(np.isnan(per_class.fv) | np.isnan(per_class.same) | np.isnan(per_class.diff))
  fv, same, diff = per_class.fv[keep], per_class.same[keep], per_class.diff[keep]
  if not len(fv):
    raise ValueError("No class has both two natural images and an image of another class; "
                     "accepted: at least two images per class and two classes.")
  stats = lambda f, s, d: np.stack([f.mean(-1), s.mean(-1), d.mean(-1),
                                    normalized(f.mean(-1), s.mean(-1), d.mean(-1))])
  point = stats(fv, same, diff)
  idx = np.random.default_rng(seed).integers(0, len(fv), size=(num_bootstrap, len(fv)))
  boot = stats(fv[idx], same[idx], diff[idx])  # [4, num_bootstrap]
  alpha = (1 - level) / 2
  lo, hi = np.nanquantile(boot, alpha, axis=1), np.nanquantile(boot, 1 - alpha, axis=1)
  out = {"num_classes": int(len(fv))}
  for i, name in enumerate(("s_fv", "s_same", "s_diff", "normalized")):
    out[name] = float(point[i])
    out[f"{name}_ci"] = [float(lo[i]), float(hi[i])]
  return out


def image_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Pearson correlation of each image in ``a [B,H,W,3]`` with ``b`` (``[B,h,w,3]`` or one ``[h,w,3]``),
  after resizing ``b`` to ``a``'s size; ``[B]``."""
  a = np.asarray(a, np.float32)
  b = np.asarray(b, np.float32)
  b = np.broadcast_to(b, (len(a), *b.shape[-3:])) if b.ndim == 3 else b
  if b.shape[1:3] != a.shape[1:3]:
    b = np.asarray(jax.image.resize(b, (len(b), *a.shape[1:3], 3), "linear"))
  x = a.reshape(len(a), -1) - a.reshape(len(a), -1).mean(1, keepdims=True)
  y = b.reshape(len(b), -1) - b.reshape(len(b), -1).mean(1, keepdims=True)
  denom = np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1)
  return np.sum(x * y, axis=1) / np.where(denom > 0, denom, 1.0)
