"""ReLU and ReLU6 with Lucid's optional "redirected" gradient.

Lucid optimises the first 16 steps with a redirected ReLU gradient: where an
image's ordinary ReLU gradient is zero everywhere (all pre-activations dead),
it passes the gradient that would raise the pre-activation instead, so the
optimisation does not stall on a grey image. The switch is a trace-time
context (like ``flax.linen.intercept_methods``): code traced inside
``with redirected_relu(True):`` uses the redirected backward pass; the
forward value is always the ordinary ReLU.
"""

from __future__ import annotations

import contextlib
import contextvars

import jax
import jax.numpy as jnp

_REDIRECT = contextvars.ContextVar("fvjax_redirected_relu", default=False)


@contextlib.contextmanager
def redirected_relu(enabled: bool = True):
  """Within this context, :func:`relu` and :func:`relu6` trace the redirected gradient."""
  token = _REDIRECT.set(bool(enabled))
  try:
    yield
  finally:
    _REDIRECT.reset(token)


def relu(x: jax.Array) -> jax.Array:
  """ReLU; its gradient is Lucid's redirected one inside ``with redirected_relu():``."""
  return _redirected_clip(x, 0.0, None) if _REDIRECT.get() else jax.nn.relu(x)


def relu6(x: jax.Array) -> jax.Array:
  """ReLU6; redirected like :func:`relu` when redirection is on."""
  return _redirected_clip(x, 0.0, 6.0) if _REDIRECT.get() else jax.nn.relu6(x)


def _redirected_clip(x, lo, hi):
  @jax.custom_vjp
  def f(x):
    return jnp.clip(x, lo, hi)

  def fwd(x):
    return f(x), x

  def bwd(x, g):
    # g is the cotangent of a loss being *minimised* (render minimises -objective).
    inside = (x >= lo) if hi is None else (x >= lo) & (x <= hi)
    plain = jnp.where(inside, g, 0.0)
    # Redirected: pass g unless it would push an already-clipped input further out.
    blocked = (x < lo) & (g > 0)
    if hi is not None:
      blocked |= (x > hi) & (g < 0)
    redirected = jnp.where(blocked, 0.0, g)
    flat = plain.reshape(plain.shape[0], -1) if plain.ndim > 1 else plain.reshape(1, -1)
    alive = jnp.linalg.norm(flat, axis=1) > 0
    alive = alive.reshape((-1,) + (1,) * (plain.ndim - 1)) if plain.ndim > 1 else alive[0]
    return (jnp.where(alive, plain, redirected),)

  f.defvjp(fwd, bwd)
  return f(x)
