"""Composable objectives over a model's named activations (Lucid's vocabulary).

An :class:`Objective` wraps ``fn(acts, images) -> values [B]``: one value per
image of the batch, to be *maximised*. ``acts`` is the model's activation dict
(with ``"logits"``), ``images`` the ``[B,H,W,3]`` input in ``[0,1]``.
Objectives add, subtract, negate and scale; ``batch=i`` restricts one to image
i (the others get 0), which is how a batch holds several objectives.

``units_objective(layer, units)`` is the batched form: image i maximises unit
``units[i]`` with one gather, which is how all 1000 class units of a model are
rendered in one call.

Penalties (``l1``, ``l2``, ``total_variation``, ``diversity``) return positive
values, to be subtracted: ``channel("block10", 3) - 1e2 * diversity("block10")``
as in Lucid.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

Acts = Mapping[str, jax.Array]
ObjectiveFn = Callable[[Acts, jax.Array], jax.Array]
INPUT = "input"


@dataclasses.dataclass(frozen=True)
class Objective:
  """A per-image objective; see the module docstring.

  Attributes:
    fn: ``(acts, images) -> [B]`` values.
    layers: names of the activations it reads (``"input"`` = the images).
    name: a readable description.
  """

  fn: ObjectiveFn
  layers: frozenset = frozenset()
  name: str = "objective"

  def __call__(self, acts: Acts, images: jax.Array) -> jax.Array:
    return self.fn(acts, images)

  def __add__(self, other):
    other = _lift(other)
    return Objective(lambda a, x: self(a, x) + other(a, x), self.layers | other.layers, f"({self.name} + {other.name})")

  __radd__ = __add__

  def __neg__(self):
    return Objective(lambda a, x: -self(a, x), self.layers, f"-{self.name}")

  def __sub__(self, other):
    return self + (-_lift(other))

  def __rsub__(self, other):
    return _lift(other) + (-self)

  def __mul__(self, scale):
    if isinstance(scale, Objective):
      return Objective(lambda a, x: self(a, x) * scale(a, x), self.layers | scale.layers, f"{self.name} * {scale.name}")
    return Objective(lambda a, x: scale * self(a, x), self.layers, f"{scale} * {self.name}")

  __rmul__ = __mul__

  def __truediv__(self, scale):
    return self * (1.0 / scale)


def _lift(x: Any) -> Objective:
  if isinstance(x, Objective):
    return x
  return Objective(lambda a, images: jnp.full((images.shape[0],), x, jnp.float32), frozenset(), str(x))


def _restrict(values: jax.Array, batch: int | None) -> jax.Array:
  if batch is None:
    return values
  return jnp.where(jnp.arange(values.shape[0]) == batch, values, 0.0)


def _layer(acts: Acts, images: jax.Array, layer: str) -> jax.Array:
  return images if layer == INPUT else acts[layer]


def _spatial_mean(t: jax.Array) -> jax.Array:
  """``[B,h,w,c] -> [B,c]``; dense ``[B,c]`` passes through."""
  return t.mean(axis=tuple(range(1, t.ndim - 1))) if t.ndim > 2 else t


def unit_values(acts: Acts, layer: str) -> jax.Array:
  """``[B, C]``: every unit's value (spatial mean of its channel) at ``layer``."""
  return _spatial_mean(acts[layer])


def channel(layer: str, n: int, batch: int | None = None) -> Objective:
  """Mean activation of channel ``n`` over all positions (dense layers: the value)."""
  return Objective(lambda a, x: _restrict(_spatial_mean(_layer(a, x, layer))[:, n], batch),
                   frozenset({layer}), f"channel({layer}:{n})")


def neuron(layer: str, n: int, x: int | None = None, y: int | None = None, batch: int | None = None) -> Objective:
  """Channel ``n`` at one position, the centre by default."""

  def fn(a, images):
    t = _layer(a, images, layer)
    if t.ndim == 2:
      return _restrict(t[:, n], batch)
    xx = t.shape[2] // 2 if x is None else x
    yy = t.shape[1] // 2 if y is None else y
    return _restrict(t[:, yy, xx, n], batch)

  return Objective(fn, frozenset({layer}), f"neuron({layer}:{n})")


def class_logit(n: int, batch: int | None = None) -> Objective:
  """The pre-softmax logit of class ``n``."""
  return Objective(lambda a, x: _restrict(a["logits"][:, n], batch), frozenset({"logits"}), f"logit({n})")


def direction(layer: str, vec: Any, batch: int | None = None) -> Objective:
  """Mean over positions of the dot product with ``vec`` (Lucid's direction)."""
  vec = jnp.asarray(vec, jnp.float32)

  def fn(a, x):
    t = _layer(a, x, layer)
    return _restrict((t * vec).reshape(t.shape[0], -1).mean(-1), batch)

  return Objective(fn, frozenset({layer}), f"direction({layer})")


def diversity(layer: str) -> Objective:
  """Lucid's diversity term: for image i, the summed cosine similarity of its
  Gram matrix to those of the other images, divided by the batch size (the sum
  over images is Lucid's value). Subtract it to make a batch diverse."""

  def fn(a, x):
    t = _layer(a, x, layer)
    b, c = t.shape[0], t.shape[-1]
    flat = t.reshape(b, -1, c)
    grams = jnp.einsum("bpc,bpd->bcd", flat, flat).reshape(b, -1)
    grams = grams / jnp.maximum(jnp.linalg.norm(grams, axis=-1, keepdims=True), 1e-10)
    sims = grams @ grams.T
    return (sims.sum(-1) - jnp.diagonal(sims)) / b

  return Objective(fn, frozenset({layer}), f"diversity({layer})")


def l1(layer: str = INPUT, constant: float = 0.0, batch: int | None = None) -> Objective:
  """Sum of ``|t - constant|`` (a penalty)."""

  def fn(a, x):
    t = _layer(a, x, layer)
    return _restrict(jnp.abs(t - constant).reshape(t.shape[0], -1).sum(-1), batch)

  return Objective(fn, frozenset({layer}), f"l1({layer})")


def l2(layer: str = INPUT, constant: float = 0.0, epsilon: float = 1e-6, batch: int | None = None) -> Objective:
  """``sqrt(epsilon + sum((t - constant)^2))`` (a penalty)."""

  def fn(a, x):
    t = _layer(a, x, layer)
    return _restrict(jnp.sqrt(epsilon + ((t - constant) ** 2).reshape(t.shape[0], -1).sum(-1)), batch)

  return Objective(fn, frozenset({layer}), f"l2({layer})")


def total_variation(layer: str = INPUT, batch: int | None = None) -> Objective:
  """Sum of absolute differences of neighbouring pixels (``tf.image.total_variation``)."""

  def fn(a, x):
    t = _layer(a, x, layer)
    dy = jnp.abs(t[:, 1:] - t[:, :-1]).reshape(t.shape[0], -1).sum(-1)
    dx = jnp.abs(t[:, :, 1:] - t[:, :, :-1]).reshape(t.shape[0], -1).sum(-1)
    return _restrict(dy + dx, batch)

  return Objective(fn, frozenset({layer}), f"tv({layer})")


def units_objective(layer: str, units: Sequence[int] | np.ndarray, kind: str = "channel") -> Objective:
  """Image i maximises unit ``units[i]`` of ``layer`` (one gather for the batch).

  Args:
    layer: layer name.
    units: ``[B]`` unit index per image.
    kind: ``"channel"`` (spatial mean) or ``"neuron"`` (centre position).
  """
  if kind not in ("channel", "neuron"):
    raise ValueError(f"Unknown units objective kind {kind!r}; accepted: 'channel', 'neuron'.")
  idx = jnp.asarray(np.asarray(units, np.int32))

  def fn(a, x):
    t = _layer(a, x, layer)
    if t.ndim > 2 and kind == "neuron":
      t = t[:, t.shape[1] // 2, t.shape[2] // 2]
    elif t.ndim > 2:
      picked = jnp.take_along_axis(t, idx.reshape(-1, *(1,) * (t.ndim - 1)), axis=-1)
      return picked.reshape(t.shape[0], -1).mean(-1)
    return jnp.take_along_axis(t, idx[:, None], axis=-1)[:, 0]

  return Objective(fn, frozenset({layer}), f"units({layer}, {len(np.asarray(units))})")


def as_objective(spec: str | Objective) -> Objective:
  """``"layer:unit"`` -> ``channel(layer, unit)``; an Objective passes through."""
  if isinstance(spec, Objective):
    return spec
  layer, sep, unit = str(spec).rpartition(":")
  if not sep or not layer or not unit.strip().isdigit():
    raise ValueError(f"Cannot parse objective {spec!r}; expected 'layer:unit', e.g. 'block10:3' or 'logits:967'.")
  return channel(layer, int(unit))
