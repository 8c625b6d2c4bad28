"""Constructive witnesses: two functions of a class, one feature visualization, two answers.

Every function here maps grid points ``x [P,d]`` to values ``[P]`` and every
witness is a :class:`fvjax.theory.core.Witness` whose two functions share the
argmax and argmin grid point and the extreme values exactly (up to float
rounding), with the query on opposite sides of the midpoint. Unless stated,
``d = 2`` on ``[0,1]^2``; the constructions hold for any grid that contains
the named points (both 65 x 65 and 101 x 101 do).

The two reliable classes have no witness: a constant function is its feature
visualization, and an affine function of one variable is fixed by the two
points ``(x-, m)`` and ``(x+, M)`` (:func:`affine_1d_from_fv`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fvjax.theory import core


def _pair(points: jax.Array, fn, query) -> core.Witness:
  """A witness from ``fn(points, sign) -> [P]`` with sign +1 (yes) and -1 (no)."""
  return core.Witness(points, fn(points, 1.0), fn(points, -1.0), jnp.asarray(query, jnp.float32))


def bump(x: jax.Array, center, radius: float) -> jax.Array:
  """``[P]`` smooth (C-infinity) bump ``exp(1 - 1 / (1 - |x - c|^2 / r^2))``: 1 at ``c``, 0 outside the ball."""
  s = jnp.sum((x - jnp.asarray(center)) ** 2, -1) / radius**2
  inside = s < 1
  return jnp.where(inside, jnp.exp(1.0 - 1.0 / jnp.where(inside, 1.0 - s, 1.0)), 0.0)


def tent(x: jax.Array, center, radius: float) -> jax.Array:
  """``[P]`` piecewise affine pyramid ``relu(1 - |x - c|_1 / r)``: 1 at ``c``, 0 outside the L1 ball."""
  return jax.nn.relu(1.0 - jnp.sum(jnp.abs(x - jnp.asarray(center)), -1) / radius)


def general(points: jax.Array, height: float = 0.3, radius: float = 0.2) -> core.Witness:
  """General black-box functions: a wave plus or minus a smooth bump at the query.

  ``f0 = 1/2 + 1/2 sin(2 pi x1) sin(pi x2)`` has its maximum 1 at (0.25, 0.5),
  its minimum 0 at (0.75, 0.5), and ``f0 = 1/2`` (the midpoint) at the query
  (0.5, 0.25). Adding or subtracting a bump of height 0.3 and radius 0.2 there
  (whose support is 0.35 away from both extremes and stays inside ``(0, 1)``)
  moves the query to 0.8 or 0.2 without touching the feature visualization.
  Any query away from the extremes works the same way.
  """
  q = (0.5, 0.25)

  def fn(x, sign):
    f0 = 0.5 + 0.5 * jnp.sin(2 * jnp.pi * x[:, 0]) * jnp.sin(jnp.pi * x[:, 1])
    return f0 + sign * height * bump(x, q, radius)

  return _pair(points, fn, q)


def piecewise_affine(points: jax.Array, height: float = 0.3, radius: float = 0.2) -> core.Witness:
  """Piecewise affine functions: ``(x1 + x2)/2`` plus or minus a ReLU tent at the query.

  The ramp has its maximum 1 at (1, 1) and minimum 0 at (0, 0); the tent of
  height 0.3 and L1 radius 0.2 at the query (0.75, 0.5) (where the ramp is
  0.625, so nearest-extreme decoding says yes) changes slope faster than the
  ramp, so the extremes stay put and ``f(q)`` becomes 0.925 or 0.325.
  """
  q = (0.75, 0.5)
  return _pair(points, lambda x, sign: 0.5 * (x[:, 0] + x[:, 1]) + sign * height * tent(x, q, radius), q)


def monotonic(points: jax.Array) -> core.Witness:
  """Monotonic (non-decreasing in each coordinate): ``0.8 max(x1, x2)`` vs ``0.8 min(x1, x2)``, plus ``0.1 (x1 + x2)``.

  The added ramp breaks the tie of ``max`` along the top and right edges, so
  both have their unique maximum 1 at (1, 1) and minimum 0 at (0, 0); at the
  query (1, 0) they are 0.9 and 0.1. (Not affine: a different witness from
  :func:`affine_2d`, which is monotonic too.)
  """
  def fn(x, sign):
    hi, lo = jnp.max(x, -1), jnp.min(x, -1)
    return 0.8 * jnp.where(sign > 0, hi, lo) + 0.1 * (x[:, 0] + x[:, 1])

  return _pair(points, fn, (1.0, 0.0))


def affine_2d(points: jax.Array) -> core.Witness:
  """Affine in 2-D (the paper's example): ``0.9 x1 + 0.1 x2`` vs ``0.1 x1 + 0.9 x2`` at (1, 0).

  Both are 1 at the unique argmax (1, 1) and 0 at the unique argmin (0, 0); at
  (1, 0) they are 0.9 and 0.1 against a midpoint of 0.5.
  """
  def fn(x, sign):
    a = jnp.where(sign > 0, 0.9, 0.1)
    return a * x[:, 0] + (1 - a) * x[:, 1]

  return _pair(points, fn, (1.0, 0.0))


def convex(points: jax.Array, center: float = 0.3) -> core.Witness:
  """Convex (the paper's example): ``f_a = a (x1 - 0.3)^2 + (1 - a)(x2 - 0.3)^2``, a = 0.9 vs 0.1, at (1, 0).

  Checked on the grid: the maximum of a convex function is at a corner; the
  corner values are 0.49 at (1, 1) for every ``a`` and at most
  ``0.49 a + 0.09 (1 - a) = 0.45`` elsewhere, so both have the unique argmax
  (1, 1) with value 0.49. The minimum is at the grid point nearest to
  (0.3, 0.3) in each coordinate, the same for both (on a 65-point grid
  (19/64, 19/64), since 0.3 is not a grid value), with the same value
  ``a t^2 + (1 - a) t^2 = t^2``. At (1, 0): 0.45 and 0.13 against a midpoint
  of about 0.245. No fix of the paper's example was needed.
  """
  def fn(x, sign):
    a = jnp.where(sign > 0, 0.9, 0.1)
    return a * (x[:, 0] - center) ** 2 + (1 - a) * (x[:, 1] - center) ** 2

  return _pair(points, fn, (1.0, 0.0))


def forced_radius(value_range, lipschitz) -> jax.Array:
  """``R / (2L)``: within this distance of the argmax (argmin) every L-Lipschitz function is >= (<=) the midpoint.

  Because ``f(x) >= M - L |x - x+| > M - R/2 = mid`` when ``|x - x+| < R/(2L)``.
  """
  return jnp.asarray(value_range) / (2.0 * jnp.asarray(lipschitz))


def lipschitz(points: jax.Array, lipschitz_constant: float, query, x_plus, x_minus,
              f_max: float = 1.0, f_min: float = 0.0) -> core.Witness:
  """L-Lipschitz (Euclidean) functions with a given feature visualization, answering yes and no at ``query``.

  ``f1(y) = min(M - e |y - x+|, m + L |y - x-|)`` and
  ``f2(y) = max(m + e |y - x-|, M - L |y - x+|)`` with a small slope
  ``e = min(L, R / diam) / 4``. Both are L-Lipschitz (a min/max of L- and
  e-Lipschitz functions), both have the unique maximum M at ``x+`` and the
  unique minimum m at ``x-`` (this needs ``L |x+ - x-| >= R``: otherwise no
  L-Lipschitz function has this feature visualization), and, since
  ``e * diam < R / 2``, ``f1(q) > mid`` iff ``|q - x-| > R/(2L)`` and
  ``f2(q) < mid`` iff ``|q - x+| > R/(2L)``. So the pair is a witness exactly
  when the query is farther than :func:`forced_radius` from both extremes,
  and nowhere else can any witness exist.

  Raises:
    ValueError: if no L-Lipschitz function has this feature visualization.
  """
  x_plus, x_minus = jnp.asarray(x_plus, jnp.float32), jnp.asarray(x_minus, jnp.float32)
  r = f_max - f_min
  if lipschitz_constant * float(jnp.linalg.norm(x_plus - x_minus)) < r * (1 - 1e-6):
    raise ValueError(f"No {lipschitz_constant}-Lipschitz function rises by {r} over the distance "
                     f"{float(jnp.linalg.norm(x_plus - x_minus)):.3g} between its argmin and argmax; "
                     f"use L >= {r / float(jnp.linalg.norm(x_plus - x_minus)):.3g}.")
  diam = float(jnp.sqrt(points.shape[-1]))
  e = min(lipschitz_constant, r / diam) / 4
  d_plus = jnp.linalg.norm(points - x_plus, axis=-1)
  d_minus = jnp.linalg.norm(points - x_minus, axis=-1)
  f1 = jnp.minimum(f_max - e * d_plus, f_min + lipschitz_constant * d_minus)
  f2 = jnp.maximum(f_min + e * d_minus, f_max - lipschitz_constant * d_plus)
  return core.Witness(points, f1, f2, jnp.asarray(query, jnp.float32))


def lipschitz_witness_region(points: jax.Array, fv: core.FeatureVis, lipschitz_constant: float) -> jax.Array:
  """``[P]`` bool: the queries whose answer an L-Lipschitz function's feature visualization leaves open.

  With ``r = R/(2L)``: ``|x - x+| < r`` forces ``f(x) > mid`` (strong) and
  ``|x - x-| <= r`` forces ``f(x) <= mid`` (not strong); everywhere else both
  answers occur. On the sphere ``|x - x+| = r`` only ``f(x) >= mid`` is forced,
  so ``f(x) = mid`` (not strong) and ``f(x) > mid`` both occur there; the
  strict witness of :func:`lipschitz` needs ``|x - x+| > r``.
  """
  rad = forced_radius(fv.max - fv.min, lipschitz_constant)
  return ((jnp.linalg.norm(points - fv.argmax, axis=-1) >= rad)
          & (jnp.linalg.norm(points - fv.argmin, axis=-1) > rad))


def max_slope(points: jax.Array, values: jax.Array) -> jax.Array:
  """Largest ``|f(a) - f(b)| / |a - b|`` over all pairs of distinct points (``[P,P]`` memory: small grids)."""
  dv = jnp.abs(values[:, None] - values[None, :])
  dx = jnp.linalg.norm(points[:, None] - points[None, :], axis=-1)
  return jnp.max(jnp.where(dx > 0, dv / jnp.where(dx > 0, dx, 1.0), 0.0))


def affine_1d_from_fv(fv: core.FeatureVis) -> tuple[jax.Array, jax.Array]:
  """The slope and intercept ``(a, b)`` of the only affine ``f = a x + b`` on [0,1] with this 1-D feature visualization.

  Two points determine a line: ``a = (M - m) / (x+ - x-)``, ``b = M - a x+``
  (``a = 0, b = M`` for a constant). Hence ``f(x) > mid`` iff ``x`` is closer to
  ``x+`` than to ``x-``: :func:`fvjax.theory.core.nearest_extreme` never errs.
  """
  dx = (fv.argmax - fv.argmin)[..., 0]
  a = jnp.where(dx != 0, (fv.max - fv.min) / jnp.where(dx != 0, dx, 1.0), 0.0)
  return a, fv.max - a * fv.argmax[..., 0]
