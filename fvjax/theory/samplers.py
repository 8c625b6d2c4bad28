"""Random functions of each class, evaluated on grid points, for decoder error rates.

Each sampler is ``(key, points [P,d], num) -> values [num, P]``. The
distributions are choices (the paper samples nothing): broad enough that the
extremes land in many places, simple enough that membership in the class is
evident from the formula. The network classes are sampled in
:mod:`fvjax.theory.networks`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


@functools.partial(jax.jit, static_argnames="num")
def constant(key: jax.Array, points: jax.Array, num: int) -> jax.Array:
  """``f = c`` with ``c ~ U(-1, 1)``."""
  return jnp.broadcast_to(jax.random.uniform(key, (num, 1), minval=-1, maxval=1), (num, points.shape[0]))


@functools.partial(jax.jit, static_argnames="num")
def affine(key: jax.Array, points: jax.Array, num: int) -> jax.Array:
  """``f = w . x + b`` with ``w ~ N(0, I)``, ``b ~ N(0, 1)``."""
  kw, kb = jax.random.split(key)
  w = jax.random.normal(kw, (num, points.shape[1]))
  return w @ points.T + jax.random.normal(kb, (num, 1))


@functools.partial(jax.jit, static_argnames=("num", "terms"))
def monotonic(key: jax.Array, points: jax.Array, num: int, terms: int = 6) -> jax.Array:
  """Non-decreasing in every coordinate: ``sum_k a_k sigmoid(s_k (v_k . x - c_k))``, ``a, v >= 0``."""
  ka, kv, ks, kc = jax.random.split(key, 4)
  d = points.shape[1]
  a = jax.random.exponential(ka, (num, terms))
  v = jax.random.uniform(kv, (num, terms, d))
  s = jax.random.uniform(ks, (num, terms), minval=1.0, maxval=20.0)
  c = jax.random.uniform(kc, (num, terms)) * v.sum(-1)
  z = jnp.einsum("ntd,pd->ntp", v, points) - c[..., None]
  return jnp.einsum("nt,ntp->np", a, jax.nn.sigmoid(s[..., None] * z))


@functools.partial(jax.jit, static_argnames=("num", "pieces"))
def convex(key: jax.Array, points: jax.Array, num: int, pieces: int = 4) -> jax.Array:
  """``x^T B B^T x / 2 + b . x + max_k (w_k . x + c_k)``: a PSD quadratic plus a max of affine functions."""
  kb, kl, kw, kc = jax.random.split(key, 4)
  d = points.shape[1]
  bmat = jax.random.normal(kb, (num, d, d))
  quad = 0.5 * jnp.sum(jnp.einsum("nde,pd->npe", bmat, points) ** 2, -1)
  lin = jax.random.normal(kl, (num, d)) @ points.T
  w, c = jax.random.normal(kw, (num, pieces, d)), jax.random.normal(kc, (num, pieces, 1))
  return quad + lin + jnp.max(jnp.einsum("nkd,pd->nkp", w, points) + c, axis=1)


@functools.partial(jax.jit, static_argnames=("num", "groups", "pieces"))
def piecewise_affine(key: jax.Array, points: jax.Array, num: int, groups: int = 4, pieces: int = 3) -> jax.Array:
  """``max_i min_j (w_ij . x + b_ij)``: every continuous piecewise affine function has this form."""
  kw, kb = jax.random.split(key)
  w = jax.random.normal(kw, (num, groups, pieces, points.shape[1]))
  b = jax.random.normal(kb, (num, groups, pieces, 1))
  return jnp.max(jnp.min(jnp.einsum("nijd,pd->nijp", w, points) + b, axis=2), axis=1)


@functools.partial(jax.jit, static_argnames=("num", "terms"))
def general(key: jax.Array, points: jax.Array, num: int, terms: int = 16, max_scale: float = 20.0) -> jax.Array:
  """Random waves ``sum_k a_k cos(w_k . x + phi_k)``, ``w ~ N(0, s^2 I)``, ``s ~ U(2, max_scale)`` per function."""
  ka, kw, kp, ks = jax.random.split(key, 4)
  scale = jax.random.uniform(ks, (num, 1, 1), minval=2.0, maxval=max_scale)
  w = scale * jax.random.normal(kw, (num, terms, points.shape[1]))
  phi = jax.random.uniform(kp, (num, terms, 1), maxval=2 * jnp.pi)
  a = jax.random.normal(ka, (num, terms))
  return jnp.einsum("nt,ntp->np", a, jnp.cos(jnp.einsum("ntd,pd->ntp", w, points) + phi))


def lipschitz_1d(key: jax.Array, points: jax.Array, num: int, lipschitz_constant: float,
                 knots: int = 16) -> jax.Array:
  """L-Lipschitz functions on the 1-D grid ``points [P,1]`` with minimum 0 and maximum 1 (range R = 1).

  Fixing the range matters: rescaling turns any Lipschitz function into a
  1-Lipschitz one with the same answers, so only ``L / R`` is meaningful.
  Draws grid points ``x-``, ``x+`` at least ``1/L`` apart (closer, no such
  function exists) and a random piecewise linear ``g`` (``knots`` pieces of
  slope ``L u``, ``u ~ U(-1, 1)``, ``g(0) ~ U(0, 1)``), and returns
  ``clip(g, l, u)`` between the envelopes ``l = max(0, 1 - L|x - x+|)`` and
  ``u = min(1, L|x - x-|)``. Every such function is L-Lipschitz with
  ``f(x+) = 1``, ``f(x-) = 0`` and values in [0, 1], and every one of them is
  obtained (take ``g = f``). At ``L = 1`` only ``x`` and ``1 - x`` remain.
  """
  if points.shape[1] != 1:
    raise ValueError(f"lipschitz_1d samples functions of one variable; got points of dimension {points.shape[1]}.")
  steps = points.shape[0] - 1
  kg, kl, kf, ks, k0 = jax.random.split(key, 5)
  min_gap = int(-(-steps // lipschitz_constant)) if lipschitz_constant >= 1 else steps + 1
  if min_gap > steps:
    raise ValueError(f"No {lipschitz_constant}-Lipschitz function on [0,1] has range 1; use L >= 1.")
  gap = jax.random.randint(kg, (num,), min_gap, steps + 1)
  lo = jnp.floor(jax.random.uniform(kl, (num,)) * (steps - gap + 1)).astype(jnp.int32)
  flip = jax.random.bernoulli(kf, 0.5, (num,))
  i_plus, i_minus = jnp.where(flip, lo, lo + gap), jnp.where(flip, lo + gap, lo)
  x = points[:, 0]
  x_plus, x_minus = x[i_plus][:, None], x[i_minus][:, None]
  slopes = lipschitz_constant * jax.random.uniform(ks, (num, knots), minval=-1, maxval=1)
  ramps = jnp.clip(x[:, None] - jnp.arange(knots) / knots, 0.0, 1.0 / knots)  # [P, knots]
  g = slopes @ ramps.T + jax.random.uniform(k0, (num, 1))
  lower = jnp.maximum(0.0, 1.0 - lipschitz_constant * jnp.abs(x - x_plus))
  upper = jnp.minimum(1.0, lipschitz_constant * jnp.abs(x - x_minus))
  return jnp.clip(g, lower, upper)
