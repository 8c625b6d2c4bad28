"""The neural-network classes: ReLU MLPs set by hand and trained by ERM with optax.

Parameters are a plain list of ``{"w": [m, n], "b": [n]}`` layers; ReLU after
every layer but the last, whose single output is the function value. Inputs are
grid points ``[P,d]``, outputs values ``[P]``, as everywhere in
:mod:`fvjax.theory`.
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import optax

from fvjax.theory import core
from fvjax.theory import samplers

Params = list[dict[str, jax.Array]]
SIZES = (2, 32, 32, 1)


def mlp_init(key: jax.Array, sizes: Sequence[int] = SIZES, bias_scale: float = 0.1) -> Params:
  """He-normal weights, ``N(0, bias_scale^2)`` biases."""
  keys = jax.random.split(key, 2 * (len(sizes) - 1))
  return [{"w": jax.random.normal(keys[2 * i], (m, n)) * jnp.sqrt(2.0 / m),
           "b": bias_scale * jax.random.normal(keys[2 * i + 1], (n,))}
          for i, (m, n) in enumerate(zip(sizes[:-1], sizes[1:]))]


def mlp_apply(params: Params, x: jax.Array) -> jax.Array:
  """``[P]`` outputs of the MLP at ``x [P,d]``."""
  for layer in params[:-1]:
    x = jax.nn.relu(x @ layer["w"] + layer["b"])
  return (x @ params[-1]["w"] + params[-1]["b"])[:, 0]


def tent_network(query, sign: float, height: float = 0.3, radius: float = 0.2) -> Params:
  """A 2-6-3-1 ReLU network, weights set by hand: ``(x1 + x2)/2 + sign * height * tent(x - query)``.

  Layer 1 computes ``x1, x2`` (``relu(x) = x`` on ``[0,1]^2``) and
  ``relu(+-(x_i - q_i))``, whose sums are ``|x_i - q_i|``; layer 2 passes
  ``x1, x2`` on and forms ``relu(1 - (|x1 - q1| + |x2 - q2|) / radius)``;
  the read-out adds ramp and tent. The two signs differ only in one read-out
  weight, yet agree on argmax (1, 1), argmin (0, 0) and the extreme values
  whenever the tent stays inside ``(0, 1)``.
  """
  q1, q2 = query
  w1 = jnp.array([[1, 0, 1, -1, 0, 0], [0, 1, 0, 0, 1, -1]], jnp.float32)
  b1 = jnp.array([0, 0, -q1, q1, -q2, q2], jnp.float32)
  w2 = jnp.array([[1, 0, 0], [0, 1, 0]] + [[0, 0, -1 / radius]] * 4, jnp.float32)
  b2 = jnp.array([0, 0, 1], jnp.float32)
  w3 = jnp.array([[0.5], [0.5], [sign * height]], jnp.float32)
  return [{"w": w1, "b": b1}, {"w": w2, "b": b2}, {"w": w3, "b": jnp.zeros(1)}]


def hand_built_witness(points: jax.Array, query=(0.25, 0.5)) -> core.Witness:
  """Neural networks: two hand-set :func:`tent_network` s with one feature visualization.

  At the default query (0.25, 0.5) the ramp is 0.375, the query is nearer the
  argmin, and nearest-extreme decoding says "no"; the networks give 0.675
  (yes) and 0.075 (no). Any query whose tent stays inside the square works.
  """
  return core.Witness(points, mlp_apply(tent_network(query, 1.0), points),
                      mlp_apply(tent_network(query, -1.0), points), jnp.asarray(query, jnp.float32))


@functools.partial(jax.jit, static_argnames=("steps",))
def train(params: Params, x: jax.Array, y: jax.Array, steps: int = 500,
          learning_rate: float = 1e-2) -> tuple[Params, jax.Array]:
  """Full-batch Adam on the mean squared error (empirical risk) of ``y [N]`` at ``x [N,d]``.

  Returns:
    The trained parameters and the loss ``[steps]`` along the way.
  """
  opt = optax.adam(optax.cosine_decay_schedule(learning_rate, steps))
  loss_fn = lambda p: jnp.mean((mlp_apply(p, x) - y) ** 2)

  def step(carry, _):
    p, s = carry
    loss, grads = jax.value_and_grad(loss_fn)(p)
    updates, s = opt.update(grads, s, p)
    return (optax.apply_updates(p, updates), s), loss

  (params, _), losses = jax.lax.scan(step, (params, opt.init(params)), None, length=steps)
  return params, losses


def train_many(key: jax.Array, x: jax.Array, y: jax.Array, steps: int = 500, sizes: Sequence[int] = SIZES,
               learning_rate: float = 1e-2) -> tuple[Params, jax.Array]:
  """Trains one freshly initialised MLP per target row ``y [K,N]`` (vmapped); stacked params, losses ``[K,steps]``."""
  params = jax.vmap(lambda k: mlp_init(k, sizes))(jax.random.split(key, y.shape[0]))
  return jax.vmap(lambda p, t: train(p, x, t, steps, learning_rate))(params, y)


def erm_targets(x: jax.Array, sign: float) -> jax.Array:
  """``[P]`` labels ``u/2 + sign * 0.4 v (1 - |u - 1|)``, ``u = x1 + x2``, ``v = x1 - x2``.

  Like the affine pair ``0.9 x1 + 0.1 x2`` / ``0.1 x1 + 0.9 x2`` (0.9 and 0.1 at
  (1, 0), unique maximum 1 at (1, 1) and minimum 0 at (0, 0)), but with the
  difference fading towards both extremes, so that both labellings rise with
  slope 1/2 in every direction there: the extremes are sharp enough for a
  trained network to reproduce them on the grid. (For ``u >= 1``,
  ``f <= u/2 + 0.4 (2 - u)^2 <= 1``; for ``u <= 1``, ``f <= u/2 + 0.4 u^2 <= 0.9``;
  symmetrically ``f >= 0`` with equality only at (0, 0).)
  """
  u, v = x[:, 0] + x[:, 1], x[:, 0] - x[:, 1]
  return 0.5 * u + sign * 0.4 * v * (1.0 - jnp.abs(u - 1.0))


# Trained networks reproduce their labels to about 1e-2, not exactly: accepted
# extreme-value gap, argmax/argmin distance (3 steps of a 65-point grid) and
# distance of the answers from the midpoint.
ERM_TOLERANCE = {"value_tol": 0.02, "position_tol": 0.05, "margin": 0.05}


def erm_witness(key: jax.Array, points: jax.Array, num_train: int = 1024, steps: int = 3000,
                sizes: Sequence[int] = (2, 64, 64, 1), max_attempts: int = 4) -> tuple[core.Witness, dict]:
  """Networks trained by ERM: two MLPs fit to two datasets that differ away from the extremes.

  Both datasets share ``num_train`` uniform inputs on ``[0,1]^2`` plus the four
  corners; their labels are :func:`erm_targets` with sign +1 and -1. Each ReLU
  network is trained from its own initialisation with Adam on the mean
  squared error. Training is repeated with fresh initialisations (up to
  ``max_attempts`` times) until the pair passes
  :func:`fvjax.theory.core.check_witness` with :data:`ERM_TOLERANCE`. Measured
  on 65 x 65 points for seeds 0-5: the first attempt passed every time, 5 of 6
  pairs with the very same argmax and argmin grid points (one argmin 2 grid
  steps apart), extreme values within 0.013, answers 0.89-0.90 vs 0.10-0.12.

  Returns:
    The witness of the last two trained networks on ``points`` and
    ``{"final_loss": [2], "attempts": int}``.
  """
  kx, key = jax.random.split(key)
  corners = jnp.array([[0, 0], [0, 1], [1, 0], [1, 1]], jnp.float32)
  x = jnp.concatenate([jax.random.uniform(kx, (num_train, 2)), corners])
  labels = jnp.stack([erm_targets(x, 1.0), erm_targets(x, -1.0)])
  query = jnp.array([1.0, 0.0])
  for attempt in range(1, max_attempts + 1):
    key, kt = jax.random.split(key)
    params, losses = train_many(kt, x, labels, steps, sizes)
    values = jax.vmap(mlp_apply, in_axes=(0, None))(params, points)
    w = core.Witness(points, values[0], values[1], query)
    if core.check_witness(w, **ERM_TOLERANCE)["valid"]:
      break
  return w, {"final_loss": losses[:, -1], "attempts": attempt}


@functools.partial(jax.jit, static_argnames=("num", "sizes"))
def sample_random(key: jax.Array, points: jax.Array, num: int, sizes: Sequence[int] = SIZES) -> jax.Array:
  """``[num, P]``: randomly initialised MLPs (He-normal), the general neural-network class."""
  params = jax.vmap(lambda k: mlp_init(k, sizes))(jax.random.split(key, num))
  return jax.vmap(mlp_apply, in_axes=(0, None))(params, points)


@functools.partial(jax.jit, static_argnames=("num", "num_train", "steps"))
def sample_trained(key: jax.Array, points: jax.Array, num: int, num_train: int = 256, steps: int = 300) -> jax.Array:
  """``[num, P]``: MLPs trained by ERM on random datasets (uniform inputs, random-wave labels)."""
  kx, ky, kt = jax.random.split(key, 3)
  x = jax.random.uniform(kx, (num_train, points.shape[1]))
  y = samplers.general(ky, x, num, max_scale=6.0)
  params, _ = train_many(kt, x, y, steps)
  return jax.vmap(mlp_apply, in_axes=(0, None))(params, points)
