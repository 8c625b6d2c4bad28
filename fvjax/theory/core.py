"""The decoding task of paper section 4, on a grid over ``[0,1]^d``.

A function is represented by its values on the grid points: ``values [P]`` over
``points [P,d]`` from :func:`grid` (``P = n**d``). Its feature visualization is
what the paper lets a decoder see: the argmax ``x+``, the argmin ``x-`` and the
two extreme values ``M = f(x+)`` and ``m = f(x-)``. The question asked about a
query point ``x``: is ``x`` a *strong activator*, ``f(x) > (M + m) / 2``?

A witness against a class is two functions of the class with the same feature
visualization (same argmax and argmin grid points, extreme values equal within
a tolerance) that answer the question at the query oppositely. A decoder is a
function of the feature visualization and the query only, so it gives the same
answer for both functions of a witness and is wrong on one of them: its
worst-case error over the class is at least 1/2.

Ties on the grid: ``argmax``/``argmin`` take the first grid point (row-major),
so every construction in :mod:`fvjax.theory.witnesses` has a unique extreme.
A constant function has ``x+ = x-`` (the first point) and ``f(x) = mid``
everywhere, so no point is a strong activator.
"""

from __future__ import annotations

import functools
from typing import Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class FeatureVis(NamedTuple):
  """What a decoder sees of a function: argmax/argmin ``[d]`` and the extremes."""
  argmax: jax.Array
  argmin: jax.Array
  max: jax.Array
  min: jax.Array


class Witness(NamedTuple):
  """Two functions on the same grid that a decoder cannot tell apart.

  Attributes:
    points: ``[P,d]`` grid points.
    f1: ``[P]`` values of the function for which the query is a strong activator.
    f2: ``[P]`` values of the function for which it is not.
    query: ``[d]`` the query point (a grid point).
  """
  points: jax.Array
  f1: jax.Array
  f2: jax.Array
  query: jax.Array


def grid(n: int, d: int) -> jax.Array:
  """``[n**d, d]`` points of the regular grid with ``n`` points per axis on ``[0,1]^d``.

  Row-major: in 2-D point ``i * n + j`` is ``(x1, x2) = (i, j) / (n - 1)``, so
  ``values.reshape(n, n)[i, j]`` is ``f`` at that point.
  """
  if n < 2 or d < 1:
    raise ValueError(f"A grid needs n >= 2 points per axis and d >= 1 dimensions, got n={n}, d={d}.")
  axis = jnp.linspace(0.0, 1.0, n)
  mesh = jnp.meshgrid(*([axis] * d), indexing="ij")
  return jnp.stack([m.ravel() for m in mesh], axis=-1)


def feature_visualization(points: jax.Array, values: jax.Array) -> FeatureVis:
  """The feature visualization of ``values [..., P]`` over ``points [P,d]`` (batched over leading axes)."""
  imax, imin = jnp.argmax(values, axis=-1), jnp.argmin(values, axis=-1)
  return FeatureVis(points[imax], points[imin], jnp.max(values, axis=-1), jnp.min(values, axis=-1))


def midpoint(fv: FeatureVis) -> jax.Array:
  """The threshold ``(M + m) / 2`` above which a point is a strong activator."""
  return 0.5 * (fv.max + fv.min)


def nearest_index(points: jax.Array, x: jax.Array) -> jax.Array:
  """Index of the grid point nearest to ``x [d]``."""
  return jnp.argmin(jnp.sum((points - x) ** 2, axis=-1))


def strong_activator(points: jax.Array, values: jax.Array, query_index: jax.Array, rtol: float = 1e-5) -> jax.Array:
  """The truth ``f(x) > mid``: ``[..., Q]`` for ``values [..., P]`` at grid indices ``query_index [..., Q]``.

  A value within ``rtol * (M - m)`` above the midpoint counts as the midpoint
  itself (not strong): float rounding must not decide, e.g., ``f(0.5)`` of an
  affine function on [0, 1], which equals the midpoint exactly.
  """
  fv = feature_visualization(points, values)
  mid = midpoint(fv) + rtol * (fv.max - fv.min)
  return jnp.take_along_axis(values, query_index, axis=-1) > mid[..., None]


# Decoders: (FeatureVis, query [..., d]) -> bool [...]; the FV fields broadcast
# against the query's leading axes.
def nearest_extreme(fv: FeatureVis, x: jax.Array) -> jax.Array:
  """Strong iff ``x`` is strictly closer (Euclidean) to the argmax than to the argmin.

  Equivalently: the projection of ``x`` on the segment from ``x-`` to ``x+`` lies
  past its middle, i.e. linear interpolation between the two extremes is above
  the midpoint. Exact for affine functions in 1-D.
  """
  return jnp.sum((x - fv.argmax) ** 2, -1) < jnp.sum((x - fv.argmin) ** 2, -1)


def nearest_extreme_linf(fv: FeatureVis, x: jax.Array) -> jax.Array:
  """Like :func:`nearest_extreme` in the max-norm (ties: not strong)."""
  return jnp.max(jnp.abs(x - fv.argmax), -1) < jnp.max(jnp.abs(x - fv.argmin), -1)


def always_strong(fv: FeatureVis, x: jax.Array) -> jax.Array:
  """Says yes whenever the function is not constant."""
  return jnp.broadcast_to(fv.max > fv.min, x.shape[:-1])


def never_strong(fv: FeatureVis, x: jax.Array) -> jax.Array:
  """Always says no; exact for constant functions, where ``f(x) = mid``."""
  del fv
  return jnp.zeros(x.shape[:-1], bool)


DECODERS: Mapping[str, Callable[[FeatureVis, jax.Array], jax.Array]] = {
    "nearest_extreme": nearest_extreme,
    "nearest_extreme_linf": nearest_extreme_linf,
    "always_strong": always_strong,
    "never_strong": never_strong,
}


@functools.partial(jax.jit, static_argnames="num_queries")
def _decoder_errors(key: jax.Array, points: jax.Array, values: jax.Array, num_queries: int) -> jax.Array:
  s, p = values.shape
  idx = jax.random.randint(key, (s, num_queries), 0, p)
  truth = strong_activator(points, values, idx)
  fv = feature_visualization(points, values)
  fv_q = FeatureVis(fv.argmax[:, None], fv.argmin[:, None], fv.max[:, None], fv.min[:, None])
  return jnp.stack([jnp.mean(dec(fv_q, points[idx]) != truth) for dec in DECODERS.values()])


def decoder_errors(key: jax.Array, points: jax.Array, values: jax.Array, num_queries: int = 32) -> dict[str, float]:
  """Error rate of every decoder in :data:`DECODERS` over sampled functions.

  Args:
    key: PRNG key for the queries.
    points: ``[P,d]`` grid points.
    values: ``[S,P]`` values of ``S`` sampled functions of one class.
    num_queries: grid points drawn uniformly per function.

  Returns:
    ``{decoder name: fraction of the S * num_queries (function, query) pairs it gets wrong}``.
  """
  return dict(zip(DECODERS, map(float, _decoder_errors(key, points, values, num_queries))))


def best_decoder(errors: Mapping[str, float]) -> tuple[str, float]:
  """The decoder with the smallest error rate (first one on ties; ``"any"`` if all tie) and that rate."""
  name = min(errors, key=lambda k: (errors[k], list(errors).index(k)))
  return ("any" if len(set(errors.values())) == 1 else name), errors[name]


def check_witness(w: Witness, value_tol: float = 1e-6, position_tol: float = 0.0, margin: float = 0.0) -> dict:
  """Checks a witness numerically.

  Args:
    w: the witness.
    value_tol: largest accepted ``|M1 - M2|`` and ``|m1 - m2|``.
    position_tol: largest accepted distance between the two argmaxes (and
      between the two argmins); 0 asks for the same grid point.
    margin: how far past the midpoint each answer must be.

  Returns:
    A dict of the measured quantities (plain floats) and ``valid``: the two
    feature visualizations agree within tolerance and ``f1(q) > mid1 + margin``,
    ``f2(q) < mid2 - margin``.
  """
  fv1, fv2 = feature_visualization(w.points, w.f1), feature_visualization(w.points, w.f2)
  q = nearest_index(w.points, w.query)
  out = {
      "argmax_distance": float(jnp.linalg.norm(fv1.argmax - fv2.argmax)),
      "argmin_distance": float(jnp.linalg.norm(fv1.argmin - fv2.argmin)),
      "max_difference": float(jnp.abs(fv1.max - fv2.max)),
      "min_difference": float(jnp.abs(fv1.min - fv2.min)),
      "f1_query": float(w.f1[q]), "f2_query": float(w.f2[q]),
      "mid1": float(midpoint(fv1)), "mid2": float(midpoint(fv2)),
      "argmax": np.asarray(fv1.argmax).tolist(), "argmin": np.asarray(fv1.argmin).tolist(),
      "query": np.asarray(w.points[q]).tolist(),
  }
  out["valid"] = bool(out["argmax_distance"] <= position_tol and out["argmin_distance"] <= position_tol
                      and out["max_difference"] <= value_tol and out["min_difference"] <= value_tol
                      and out["f1_query"] > out["mid1"] + margin and out["f2_query"] < out["mid2"] - margin)
  return out


def pair_errors(w: Witness) -> dict[str, float]:
  """Error of every decoder on the two functions of a witness at its query.

  Each decoder sees each function's own feature visualization; when the two
  are identical it answers both alike and so errs on exactly one (1/2).
  """
  q = nearest_index(w.points, w.query)
  errors = {}
  for name, decode in DECODERS.items():
    wrong = 0
    for f in (w.f1, w.f2):
      fv = feature_visualization(w.points, f)
      wrong += int(decode(fv, w.points[q]) != (f[q] > midpoint(fv)))
    errors[name] = wrong / 2
  return errors
