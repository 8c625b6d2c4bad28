"""Composable objectives over a model's named activations (Lucid's vocabulary).

An :class:`Objective` is a pure function plus the arrays it reads:
``fn(acts, images, data) -> values [B]``, one value per image of the batch,
to be *maximised* (the render loop minimises the negated sum). ``acts`` is
the model's activation dict including ``"logits"``; ``images`` is the
``[B,H,W,3]`` batch in ``[0,1]`` that the penalties read as the layer
``"input"`` (whatever the render loop passes there); ``data`` is a pytree of
arrays (unit indices, direction vectors), kept out of ``fn`` so that the
render loop passes it as an argument and reuses its compiled step for other
units. ``objective(acts, images)`` evaluates it with its own data.

Objectives add, subtract, negate, multiply and divide by numbers; ``batch=i``
restricts one to image i (the others get 0), which is how one batch holds
several objectives. The values of a batch sum to Lucid's scalar objective, so
weights such as ``channel - 1e2 * diversity`` mean what they mean in Lucid:
a unit objective without ``batch`` is Lucid's mean over the batch (each image
holds ``1/B`` of it), ``l2`` is one root over the whole batch (an equal share
each), ``l1`` and ``total_variation`` are sums over the batch, and
``diversity`` is ``-sum_{i!=j} <G_i, G_j> / B``::

  obj = objectives.channel("mixed4a", 97) - 1e2 * objectives.diversity("mixed4a")
  obj = objectives.as_objective("mixed4a:97")          # == channel("mixed4a", 97)

``units_objective(layer, units)`` is the batched form: image i maximises unit
``units[i]`` with one gather, which is how all 1000 class units of a model are
rendered in one call; its ``fn`` depends only on ``(layer, kind)``.

Penalties (``l1``, ``l2``, ``total_variation``, ``diversity``) return positive
values, to be subtracted, as in Lucid.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from fvjax.models.record import unknown_name_message

Acts = Mapping[str, jax.Array]
ObjectiveFn = Callable[[Acts, jax.Array, Any], jax.Array]
INPUT = "input"


@dataclasses.dataclass(frozen=True, eq=False)
class Objective:
  """A per-image objective; see the module docstring.

  Attributes:
    fn: ``(acts, images [B,H,W,3], data) -> [B]`` values to maximise.
    data: pytree of arrays ``fn`` reads (``()`` when none).
    layers: names of the activations it reads (``"input"`` = the images).
    name: a readable description.
  """

  fn: ObjectiveFn
  data: Any = ()
  layers: frozenset = frozenset()
  name: str = "objective"
  units: tuple = ()  # (layer, index) of every single unit it reads, checked against the model by render

  def __call__(self, acts: Acts, images: jax.Array) -> jax.Array:
    """Returns the ``[B]`` values of the objective (with its own ``data``)."""
    return self.fn(acts, images, self.data)

  def __repr__(self) -> str:
    return f"Objective({self.name})"

  def __add__(self, other: Any) -> "Objective":
    other = _lift(other)
    return Objective(_sum_fn(self.fn, other.fn), (self.data, other.data),
                     self.layers | other.layers, f"({self.name} + {other.name})", self.units + other.units)

  __radd__ = __add__  # also makes sum([...]) work

  def __neg__(self) -> "Objective":
    return Objective(_scaled_fn(self.fn, -1.0), self.data, self.layers, f"-{self.name}", self.units)

  def __sub__(self, other: Any) -> "Objective":
    return self + (-_lift(other))

  def __rsub__(self, other: Any) -> "Objective":
    return _lift(other) + (-self)

  def __mul__(self, other: Any) -> "Objective":
    f = self.fn
    if isinstance(other, Objective):
      g = other.fn
      return Objective(lambda a, x, d: f(a, x, d[0]) * g(a, x, d[1]), (self.data, other.data),
                       self.layers | other.layers, f"{self.name} * {other.name}", self.units + other.units)
    s = _scalar(other, "multiply")
    return Objective(_scaled_fn(f, s), self.data, self.layers, f"{s:g} * {self.name}", self.units)

  __rmul__ = __mul__

  def __truediv__(self, other: Any) -> "Objective":
    return self * (1.0 / _scalar(other, "divide"))


# Sums and multiples of cached functions are cached too, so an objective built the same way twice (the same
# units objective minus the same weighted penalty, for another list of units) has the same ``fn`` and reuses
# render's compiled step.
@functools.lru_cache(maxsize=256)
def _sum_fn(f: ObjectiveFn, g: ObjectiveFn) -> ObjectiveFn:
  return lambda a, x, d: f(a, x, d[0]) + g(a, x, d[1])


@functools.lru_cache(maxsize=256)
def _scaled_fn(f: ObjectiveFn, s: float) -> ObjectiveFn:
  return (lambda a, x, d: -f(a, x, d)) if s == -1.0 else (lambda a, x, d: s * f(a, x, d))


def _scalar(x: Any, verb: str) -> float:
  if isinstance(x, numbers.Real) or (isinstance(x, (np.ndarray, jax.Array)) and np.ndim(x) == 0):
    return float(x)
  raise TypeError(f"Can only {verb} an Objective by a number (or multiply by another Objective); "
                  f"got {type(x).__name__}.")


def _lift(x: Any) -> Objective:
  if isinstance(x, Objective):
    return x
  c = _scalar(x, "add to or subtract from")
  return Objective(lambda a, images, d: jnp.full((images.shape[0],), c, jnp.float32), (), frozenset(), f"{c:g}")


def _restrict(values: jax.Array, batch: int | None) -> jax.Array:
  """Zeroes every image but ``batch`` (no-op for ``None``): for sums over the batch."""
  if batch is None:
    return values
  return jnp.where(jnp.arange(values.shape[0]) == batch, values, 0.0)


def _batch_mean(values: jax.Array, batch: int | None) -> jax.Array:
  """Lucid's unit objectives: the mean over the batch (each image holds ``1/B``), or image ``batch`` alone."""
  if batch is None:
    return values / values.shape[0]
  return _restrict(values, batch)


def _layer(acts: Acts, images: jax.Array, layer: str) -> jax.Array:
  if layer == INPUT:
    return images
  if layer not in acts:
    raise KeyError(unknown_name_message("layer", layer, sorted(acts), where="the activations"))
  return acts[layer]


def _spatial_mean(t: jax.Array) -> jax.Array:
  """``[B,h,w,c] -> [B,c]``; dense ``[B,c]`` passes through."""
  return t.mean(axis=tuple(range(1, t.ndim - 1))) if t.ndim > 2 else t


def _per_image_sum(t: jax.Array) -> jax.Array:
  return t.reshape(t.shape[0], -1).sum(-1)


def unit_values(acts: Acts | tuple[jax.Array, Acts], layer: str) -> jax.Array:
  """``[B, C]``: every unit's value (spatial mean of its channel) at ``layer``.

  Args:
    acts: the activation dict, or the ``(logits, acts)`` pair a record's
      ``apply`` returns.
    layer: layer name (``"logits"`` included).
  """
  if isinstance(acts, tuple):
    logits, acts = acts
    acts = dict(acts, logits=logits)
  return _spatial_mean(_layer(acts, None, layer))


def _check_unit(t: jax.Array, layer: str, n: Any) -> None:
  """A clear error for a unit outside the layer's channels, where the index is known (render checks
  its objective's ``units`` against the model before tracing, where it is not)."""
  if isinstance(n, jax.core.Tracer):
    return
  n = int(n)
  if not 0 <= n < t.shape[-1]:
    raise ValueError(f"Unit {n} is out of range for layer {layer!r}, which has units 0..{t.shape[-1] - 1}.")


@functools.lru_cache(maxsize=256)
def _unit_fn(layer: str, batch: int | None, kind: str, x: int | None = None, y: int | None = None) -> ObjectiveFn:
  """``fn(acts, images, n)`` of one unit: the index ``n`` is data, so every unit of a layer shares one ``fn``
  (and one compiled render step)."""

  def fn(a, images, n):
    t = _layer(a, images, layer)
    _check_unit(t, layer, n)
    if kind == "channel" or t.ndim == 2:
      v = jnp.take(t, n, axis=-1)  # [B] or [B, h, w]: pick first, then average
      return _batch_mean(v.reshape(v.shape[0], -1).mean(-1), batch)
    xx = t.shape[1] // 2 if x is None else x
    yy = t.shape[2] // 2 if y is None else y
    return _batch_mean(jnp.take(t[:, xx, yy], n, axis=-1), batch)

  return fn


def channel(layer: str, n: int, batch: int | None = None) -> Objective:
  """Mean of channel ``n`` over all positions (for dense ``[B,c]`` layers: the value).

  Without ``batch``, Lucid's mean over the batch too: image i's value is its
  own mean divided by ``B`` (at batch 1, the unit's value itself).
  """
  return Objective(_unit_fn(layer, batch, "channel"), np.int32(n), frozenset({layer}), f"channel({layer}:{n})",
                   ((layer, int(n)),))


def neuron(layer: str, n: int, x: int | None = None, y: int | None = None, batch: int | None = None) -> Objective:
  """Channel ``n`` at one position, the centre by default.

  As in Lucid and lucent, ``x`` indexes the *first* spatial axis (rows) and
  ``y`` the second (columns): the value is ``acts[layer][:, x, y, n]``, with
  ``x = h // 2`` and ``y = w // 2`` by default. Dense layers ignore ``x, y``.
  """
  return Objective(_unit_fn(layer, batch, "neuron", x, y), np.int32(n), frozenset({layer}), f"neuron({layer}:{n})",
                   ((layer, int(n)),))


def class_logit(n: int, batch: int | None = None) -> Objective:
  """The pre-softmax logit of class ``n`` (the ``"logits"`` entry)."""
  return Objective(_unit_fn("logits", batch, "channel"), np.int32(n), frozenset({"logits"}), f"logit({n})",
                   (("logits", int(n)),))


@functools.lru_cache(maxsize=256)
def _direction_fn(layer: str, batch: int | None, cossim_pow: float) -> ObjectiveFn:

  def fn(a, x, vec):
    t = _layer(a, x, layer)
    t = t.reshape(t.shape[0], -1, t.shape[-1])  # [B, positions, c]
    vec = jnp.asarray(vec, t.dtype)
    dot = t @ vec
    if cossim_pow:
      eps = 1e-4
      cos = dot / (eps + jnp.linalg.norm(t, axis=-1)) / (eps + jnp.linalg.norm(vec))
      dot = dot * jnp.maximum(0.1, cos) ** cossim_pow
    return _batch_mean(dot.mean(-1), batch)

  return fn


def direction(layer: str, vec: Any, batch: int | None = None, cossim_pow: float = 0.0) -> Objective:
  """Lucid's ``direction``: the mean over positions of ``<acts, vec>``.

  Args:
    layer: layer name.
    vec: ``[c]`` direction in the layer's channel space (carried as ``data``).
    batch: restrict to one image.
    cossim_pow: Lucid's option: weight each position's dot product by
      ``max(0.1, cos(acts, vec))**cossim_pow`` (0 = a plain dot product).
  """
  vec = np.asarray(vec, np.float32)
  if vec.ndim != 1:
    raise ValueError(f"direction needs a 1-D vector over the layer's channels; got shape {vec.shape}.")
  return Objective(_direction_fn(layer, batch, float(cossim_pow)), vec, frozenset({layer}), f"direction({layer})")


def diversity(layer: str) -> Objective:
  """Lucid's diversity penalty (subtract it to make a batch diverse).

  Lucid flattens each image's activations to ``[positions, c]``, takes the
  Gram matrix ``[c, c]``, l2-normalizes it, and returns
  ``sum_{i != j} <G_i, G_j> / B``. Here image i's value is
  ``sum_{j != i} <G_i, G_j> / B``, so the values sum to Lucid's. Identical
  images give ``(B - 1) / B`` each.
  """

  def fn(a, x, d):
    t = _layer(a, x, layer)
    b, c = t.shape[0], t.shape[-1]
    flat = t.reshape(b, -1, c)
    grams = jnp.einsum("bpc,bpd->bcd", flat, flat).reshape(b, -1)
    grams = grams / jnp.sqrt(jnp.maximum(jnp.sum(grams * grams, axis=-1, keepdims=True), 1e-10))
    sims = grams @ grams.T
    return (sims.sum(-1) - jnp.diagonal(sims)) / b

  return Objective(fn, (), frozenset({layer}), f"diversity({layer})")


def l1(layer: str = INPUT, constant: float = 0.0, batch: int | None = None) -> Objective:
  """Lucid's ``L1``: sum of ``|t - constant|`` (per image; they sum to Lucid's batch sum) (a penalty)."""
  return Objective(lambda a, x, d: _restrict(_per_image_sum(jnp.abs(_layer(a, x, layer) - constant)), batch),
                   (), frozenset({layer}), f"l1({layer})")


def l2(layer: str = INPUT, constant: float = 0.0, epsilon: float = 1e-6, batch: int | None = None) -> Objective:
  """Lucid's ``L2``: ``sqrt(epsilon + sum((t - constant)^2))`` over the whole batch (a penalty).

  Without ``batch`` it is one root over all images, shared equally (the values
  sum to Lucid's); with ``batch=i`` the root of image i alone.
  """

  def fn(a, x, d):
    sq = _per_image_sum((_layer(a, x, layer) - constant) ** 2)
    if batch is None:
      return jnp.broadcast_to(jnp.sqrt(epsilon + sq.sum()) / sq.shape[0], sq.shape)
    return _restrict(jnp.sqrt(epsilon + sq), batch)

  return Objective(fn, (), frozenset({layer}), f"l2({layer})")


def total_variation(layer: str = INPUT, batch: int | None = None) -> Objective:
  """Sum of absolute differences of neighbouring pixels (``tf.image.total_variation``)."""

  def fn(a, x, d):
    t = _layer(a, x, layer)
    dy = _per_image_sum(jnp.abs(t[:, 1:] - t[:, :-1]))
    dx = _per_image_sum(jnp.abs(t[:, :, 1:] - t[:, :, :-1]))
    return _restrict(dy + dx, batch)

  return Objective(fn, (), frozenset({layer}), f"tv({layer})")


@functools.lru_cache(maxsize=256)
def _units_fn(layer: str, kind: str) -> ObjectiveFn:
  """One function per ``(layer, kind)``: the units themselves are ``data``."""

  def fn(a, x, units):
    t = _layer(a, x, layer)
    if t.shape[0] != units.shape[0]:
      raise ValueError(f"units_objective has {units.shape[0]} units but the batch has {t.shape[0]} images; "
                       "they must match (one unit per image).")
    if isinstance(units, np.ndarray) and units.size and not 0 <= units.min() <= units.max() < t.shape[-1]:
      bad = units[(units < 0) | (units >= t.shape[-1])][0]
      raise ValueError(f"Unit {bad} is out of range for layer {layer!r}, which has units 0..{t.shape[-1] - 1}.")
    if t.ndim > 2 and kind == "neuron":
      t = t[:, t.shape[1] // 2, t.shape[2] // 2]
    picked = t[jnp.arange(t.shape[0]), ..., units]  # [B] or [B, h, w]
    return picked.reshape(t.shape[0], -1).mean(-1)

  return fn


def units_objective(layer: str, units: Sequence[int] | np.ndarray, kind: str = "channel") -> Objective:
  """Image i maximises unit ``units[i]`` of ``layer``, with one gather.

  Equal to ``sum_i channel(layer, units[i], batch=i)`` (or ``neuron``) but
  costs one gather ``acts[layer][arange(B), ..., units]`` however many units.
  The units are the objective's ``data`` and its ``fn`` depends only on
  ``(layer, kind)``, so a render loop compiled for one list of units serves
  any other list of the same length.

  Args:
    layer: layer name.
    units: ``[B]`` unit index per image; the batch must have ``B`` images.
    kind: ``"channel"`` (spatial mean) or ``"neuron"`` (centre position).

  Returns:
    An :class:`Objective`.
  """
  if kind not in ("channel", "neuron"):
    raise ValueError(f"Unknown units objective kind {kind!r}; accepted: 'channel', 'neuron'.")
  units = np.asarray(units)
  if units.ndim != 1 or not (np.issubdtype(units.dtype, np.integer) or units.size == 0):
    raise ValueError(f"units must be a 1-D sequence of ints, one per image; got shape {units.shape}, "
                     f"dtype {units.dtype}.")
  return Objective(_units_fn(layer, kind), units.astype(np.int32), frozenset({layer}),
                   f"units({layer}, {len(units)})")


def as_objective(spec: str | Objective) -> Objective:
  """``"layer:unit"`` -> ``channel(layer, unit)``; an Objective passes through.

  Raises:
    ValueError: for a string that is not ``"layer:unit"`` with an int unit.
  """
  if isinstance(spec, Objective):
    return spec
  layer, sep, unit = str(spec).rpartition(":")
  if not isinstance(spec, str) or not sep or not layer.strip() or not unit.strip().isdigit():
    raise ValueError(f"Cannot parse objective {spec!r}; expected 'layer:unit' with a non-negative int unit, "
                     "e.g. 'mixed4a:97' or 'logits:967'.")
  return channel(layer.strip(), int(unit))


ANCHOR_PREFIX = "anchor/"


def anchored(layer: str) -> str:
  """The name under which ``render(..., anchored=True)`` passes a layer's activations on the anchor images."""
  return ANCHOR_PREFIX + layer


def unanchored(name: str) -> str:
  """The model layer an activation name refers to (``"anchor/mixed3a"`` -> ``"mixed3a"``)."""
  return name[len(ANCHOR_PREFIX):] if name.startswith(ANCHOR_PREFIX) else name


SEED_DISTANCE_EPS = 1e-12


@functools.lru_cache(maxsize=64)
def _seed_distance_fn(layer: str) -> ObjectiveFn:

  def fn(a, x, d):
    if anchored(layer) not in a:
      raise KeyError(f"seed_distance({layer!r}) reads the anchor images' activations: render with anchored=True.")
    t, seed = _layer(a, x, layer), a[anchored(layer)]
    sq = ((t - seed) ** 2).reshape(t.shape[0], -1, t.shape[-1]).sum(-1)  # [B, positions]
    # sqrt(eps + sq) - sqrt(eps): faccent's norm, with a finite gradient (0) where the image is the seed.
    return (jnp.sqrt(SEED_DISTANCE_EPS + sq) - np.sqrt(SEED_DISTANCE_EPS)).mean(-1)

  return fn


def seed_distance(layer: str) -> Objective:
  """Feature accentuation's regulariser (Hamblin et al. 2024): how far each image is from its seed in the
  network's own latent space (a penalty: subtract it).

  faccent's ``l2_compare(layer)`` (faccent/objectives.py): at every position of ``layer`` the L2 norm over
  channels of the difference between the image's and the seed's activations, averaged over positions.
  Like faccent (which passes the seed through the model with every step's transforms), the seed is the
  render's anchor image, transformed with the same draws as the image
  (``render(..., init_params=param.seed_spectrum(seeds), anchored=True)``); the seeds are render inputs,
  sharded with the batch, so every list of units shares one compiled step.
  """
  return Objective(_seed_distance_fn(layer), (), frozenset({layer, anchored(layer)}), f"seed_distance({layer})")
