"""ReLU and ReLU6 with the gradient rules of Lucid and lucent.

The forward value is always the ordinary ReLU; only the backward pass
changes, chosen at trace time by a context (like
``flax.linen.intercept_methods``), so models call :func:`relu` and never
know:

- ``with redirected_relu(flag):`` Lucid's redirected gradient (``render_vis``
  uses it for the first 16 steps): where an image's ordinary ReLU gradient is
  zero everywhere in a layer (all pre-activations dead), it passes the
  gradient that would raise the pre-activation instead, so the optimisation
  does not stall on a grey image. ``flag`` may be a traced boolean (the render
  loop switches it off after the warm-up inside one compiled step).
- ``with leaky_relu_gradient(0.1):`` lucent's ``RedirectedReLU``
  (``modelzoo/inceptionv1/helper_layers.py``), on at every step of lucent's
  InceptionV1, the paper's model: where the input is negative the gradient is
  multiplied by 0.1 instead of 0.

A model's own rule (InceptionV1's lucent rule) is set inside its ``apply`` and
so takes precedence over the render loop's warm-up.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any

import jax
import jax.numpy as jnp

LUCENT_NEGATIVE_SLOPE = 0.1  # lucent's RedirectedReLU: gradient * 0.1 where x < 0

_RULE = contextvars.ContextVar("fvjax_relu_gradient", default=None)  # None | ("lucid", flag) | ("leaky", slope)


@contextlib.contextmanager
def redirected_relu(enabled: Any = True):
  """Within this context, :func:`relu` and :func:`relu6` trace Lucid's redirected gradient.

  Args:
    enabled: a bool, or a traced boolean scalar (redirect where it is true).
  """
  token = _RULE.set(None if enabled is False else ("lucid", enabled))
  try:
    yield
  finally:
    _RULE.reset(token)


@contextlib.contextmanager
def leaky_relu_gradient(slope: float = LUCENT_NEGATIVE_SLOPE):
  """Within this context, ReLU gradients are multiplied by ``slope`` (not 0) where the input is negative."""
  token = _RULE.set(("leaky", float(slope)))
  try:
    yield
  finally:
    _RULE.reset(token)


def relu(x: jax.Array) -> jax.Array:
  """ReLU; its gradient follows the rule of the enclosing context (ordinary by default)."""
  rule = _RULE.get()
  return jax.nn.relu(x) if rule is None else _clip_with_rule(x, 0.0, None, rule)


def relu6(x: jax.Array) -> jax.Array:
  """ReLU6; its gradient follows the rule of the enclosing context like :func:`relu`."""
  rule = _RULE.get()
  return jax.nn.relu6(x) if rule is None else _clip_with_rule(x, 0.0, 6.0, rule)


def _clip_with_rule(x, lo, hi, rule):
  kind, arg = rule

  @jax.custom_vjp
  def f(x, flag):
    del flag
    return jnp.clip(x, lo, hi)

  def fwd(x, flag):
    return f(x, flag), (x, flag)

  def bwd(res, g):
    # g is the cotangent of a loss being *minimised* (render minimises -objective).
    x, flag = res
    outside = (x < lo) if hi is None else (x < lo) | (x > hi)
    if kind == "leaky":
      return jnp.where(outside, arg * g, g), jnp.zeros_like(flag)
    # Ordinary gradient exactly as jax.nn.relu / relu6 (zero at the kinks).
    inside = (x > lo) if hi is None else (x > lo) & (x < hi)
    plain = jnp.where(inside, g, 0.0)
    # Redirected: pass g unless it would push an already-clipped input further out.
    blocked = (x < lo) & (g > 0)
    if hi is not None:
      blocked |= (x > hi) & (g < 0)
    redirected = jnp.where(blocked, 0.0, g)
    flat = plain.reshape(plain.shape[0], -1) if plain.ndim > 1 else plain.reshape(1, -1)
    alive = jnp.linalg.norm(flat, axis=1) > 0
    alive = alive.reshape((-1,) + (1,) * (plain.ndim - 1)) if plain.ndim > 1 else alive[0]
    return jnp.where(flag > 0, jnp.where(alive, plain, redirected), plain), jnp.zeros_like(flag)

  f.defvjp(fwd, bwd)
  flag = jnp.float32(1.0) if kind == "leaky" else jnp.asarray(arg, jnp.float32)
  return f(x, flag)
