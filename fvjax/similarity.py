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
from typing import Mapping, NamedTuple, Sequence

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
  """Per-class ``[C]`` similarity sums and counts for one layer (additive, so
  classes can be streamed and merged)."""

  fv: np.ndarray
  same: np.ndarray
  diff: np.ndarray


def class_similarities(fv: jax.Array, natural: jax.Array, labels: np.ndarray, other: jax.Array | None = None,
                       other_labels: np.ndarray | None = None, measure: str = "spearman") -> ClassSimilarity:
  """S_fv, S_same and S_diff of each class at one layer.

  Args:
    fv: ``[C,D]`` features of each class's visualization.
    natural: ``[N,D]`` features of natural images.
    labels: ``[N]`` class index (0..C-1) of each natural image.
    other: ``[M,D]`` features of the images that S_diff compares against
      (default: ``natural`` itself).
    other_labels: ``[M]`` their classes (default ``labels``); pairs of the
      same class are excluded from S_diff.
    measure: ``"spearman"``, ``"pearson"`` or ``"cosine"``.

  Returns:
    Per-class means ``[C]``; a class with too few images gets NaN.
  """
  labels = np.asarray(labels)
  other, other_labels = (natural, labels) if other is None else (other, np.asarray(other_labels))
  num_classes = fv.shape[0]
  sim_fv = np.asarray(similarity_matrix(natural, fv, measure))  # [N,C]
  sim_nat = np.asarray(similarity_matrix(natural, other, measure))  # [N,M]
  onehot = labels[:, None] == np.arange(num_classes)[None]  # [N,C]
  count = onehot.sum(0)
  s_fv = np.where(count > 0, (sim_fv * onehot).sum(0) / np.maximum(count, 1), np.nan)
  same_pair = labels[:, None] == other_labels[None, :]
  if other is natural:
    same_pair &= ~np.eye(len(labels), dtype=bool)  # x != y
  diff_pair = labels[:, None] != other_labels[None, :]
  row_same = np.where(same_pair, sim_nat, 0).sum(1)
  row_diff = np.where(diff_pair, sim_nat, 0).sum(1)
  n_same = onehot.T.astype(np.float64) @ same_pair.sum(1)
  n_diff = onehot.T.astype(np.float64) @ diff_pair.sum(1)
  s_same = np.where(n_same > 0, onehot.T @ row_same / np.maximum(n_same, 1), np.nan)
  s_diff = np.where(n_diff > 0, onehot.T @ row_diff / np.maximum(n_diff, 1), np.nan)
  return ClassSimilarity(s_fv, s_same, s_diff)


def class_scores(own: np.ndarray, fv: np.ndarray, other: np.ndarray) -> tuple[float, float, float]:
  """S_fv, S_same, S_diff of one class from rows already through :func:`prepare`.

  The streamed form of :func:`class_similarities` (one class and its
  comparison images in memory at a time).

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


def layerwise(fv_acts: Mapping[str, jax.Array], natural_acts: Mapping[str, jax.Array], labels: np.ndarray,
              layers: Sequence[str], measure: str = "spearman", reduction: str = "flatten",
              num_bootstrap: int = 1000, seed: int = 0) -> dict[str, dict[str, float]]:
  """The path similarity at every layer (all activations in memory).

  Args:
    fv_acts: layer -> ``[C,...]`` activations of the class visualizations.
    natural_acts: layer -> ``[N,...]`` activations of natural images.
    labels: ``[N]`` class of each natural image.
    layers: which layers, in depth order.
    measure: similarity measure.
    reduction: ``"flatten"`` or ``"channel_mean"``.
    num_bootstrap: bootstrap resamples for the confidence intervals.
    seed: bootstrap seed.

  Returns:
    layer -> :func:`summarise` output.
  """
  out = {}
  for layer in layers:
    per_class = class_similarities(features(jnp.asarray(fv_acts[layer]), reduction),
                                   features(jnp.asarray(natural_acts[layer]), reduction), labels, measure=measure)
    out[layer] = summarise(per_class, num_bootstrap=num_bootstrap, seed=seed)
  return out
