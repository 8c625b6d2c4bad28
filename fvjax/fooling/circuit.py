"""The fooling circuit (paper section 2.1): visualizations show any target.

For each chosen logit F, a gated circuit computes

  F' = ReLU(F + 100),  D' = ReLU(D + 100)
  A  = ReLU(F' - k E) + ReLU(D' + k E - k),  k = 250

where D is the unit whose visualization A should show and E is the hard
thresholded natural-vs-visualization detector (1: visualization). On a
natural image (E = 0) A = F + 100; on a visualization (E = 1) A = D + 100, and
the gradient flows only through D. The +100 is a constant shift of every logit
(the unchosen ones get it too, through the same circuit with D = F), so
softmax and argmax are unchanged wherever the detector says "natural".

Targets:

- :func:`permutation`: class i shows the visualization of class
  ``(i + offset) mod n`` over the model's ``n`` real classes
  (``record.class_logits``: InceptionV1's 1000 classes, never its 1008
  outputs; paper: offset 100).
- :func:`image_target`: D is a linear unit on the model's preprocessed input
  whose weight is the target image itself, in ``[0, 1]``:
  ``D = s <pre(x), t> / (h*w)`` (the paper's notebook: the image divided by
  224*224, ``s = 1``), ``t`` resized to the input's size.

The scale ``s`` is ours (``scale="auto"``, the default): the largest that
provably keeps ``s D + shift`` below ``k`` on every image in ``[0, 1]``, times
0.9. With the paper's ``s = 1``, D's gradient is hundreds of times smaller
than a logit's; a single step on which the detector says "natural" (the
nearly grey first image) fills Adam's moment estimates with the logit's
gradient and D's updates stay tiny for hundreds of steps, so the target never
shows (measured on EfficientNet-Lite0: Pearson 0.07 with the target after 32
steps at ``s = 1``, 0.55 at ``s = 50``, 0.62 for D rendered alone).

The gate is exact only while ``F + shift < k`` and ``D + shift < k``
(otherwise ``C = ReLU(D' + kE - k)`` leaks into natural logits);
:func:`margin` measures both on natural images.

:func:`circuit` is pure: it returns a new model record whose params are
``{"model": ..., "detector": ..., "target": ...}``; the old record is untouched.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from fvjax import parallel
from fvjax.fooling import detector as det
from fvjax.models.record import ModelRecord

PAPER_K = 250.0
PAPER_SHIFT = 100.0  # F' = ReLU(F + 100) keeps logits positive
PAPER_PERMUTATION_OFFSET = 100


AUTO = "auto"
PAPER_SCALE = 1.0  # the notebook's D: the image divided by 224*224, nothing more
AUTO_SCALE_FRACTION = 0.9  # of the largest scale that keeps C = 0 on every image


class Target(NamedTuple):
  """What the manipulated visualizations show: a permutation or an image."""

  kind: str  # "permutation" or "image"
  offset: int = 0
  image: np.ndarray | None = None  # [H,W,3] in [0,1]
  scale: float | str = AUTO  # image targets: D's scale s, or "auto"


def permutation(offset: int = PAPER_PERMUTATION_OFFSET) -> Target:
  """Unit i shows the visualization of unit ``(i + offset) mod n``."""
  return Target("permutation", offset=int(offset))


def image_target(image: np.ndarray, scale: float | str = AUTO) -> Target:
  """Every chosen unit shows ``image`` (``[H,W,3]`` in ``[0,1]``) through ``D = s <pre(x), t>/(h*w)``.

  Args:
    image: the target.
    scale: ``s``; ``"auto"`` (default, see the module docstring) or a number
      (the paper's notebook: 1).
  """
  image = np.asarray(image, np.float32)
  if image.ndim != 3 or image.shape[-1] != 3 or image.min() < 0 or image.max() > 1:
    raise ValueError(f"A target image must be [H,W,3] with values in [0,1]; got shape {image.shape}.")
  if image.max() == 0:
    raise ValueError("A target image must not be all black (D would be 0 on every image); accepted: any other "
                     "[H,W,3] image in [0,1].")
  if scale != AUTO and not (isinstance(scale, (int, float)) and scale > 0):
    raise ValueError(f"The target scale must be a positive number or {AUTO!r}; got {scale!r}.")
  return Target("image", image=image, scale=scale)


def largest_safe_scale(model: ModelRecord, image: np.ndarray, k: float = PAPER_K, shift: float = PAPER_SHIFT) -> float:
  """The largest ``s`` with ``s D(x) + shift <= k`` for every image ``x`` in ``[0, 1]``.

  D is linear in ``pre(x)`` with a non-negative weight, so its supremum over
  all images puts every pixel at whichever of black or white ``pre`` maps
  higher: ``sup D = sum t * max(pre(0), pre(1)) / (h*w)``.
  """
  black, white = (np.asarray(model.preprocess(jnp.full((1, 1, 1, 3), v, jnp.float32)))[0, 0, 0] for v in (0.0, 1.0))
  sup = float(np.sum(np.asarray(image) * np.maximum(black, white)) / np.prod(np.shape(image)[:2]))
  if sup <= 0:
    return float("inf")
  return (k - shift) / sup


def target_scale(model: ModelRecord, target: Target, k: float = PAPER_K, shift: float = PAPER_SHIFT) -> float:
  """D's scale ``s`` for this model: the target's number, or for ``"auto"`` 0.9 of :func:`largest_safe_scale`
  (1 for a permutation, whose D is a logit of the model itself)."""
  if target.kind != "image":
    return 1.0
  if target.scale != AUTO:
    return float(target.scale)
  return AUTO_SCALE_FRACTION * largest_safe_scale(model, target.image, k, shift)


def gate(f: jax.Array, d: jax.Array, e: jax.Array, k: float = PAPER_K, shift: float = PAPER_SHIFT) -> jax.Array:
  """``A = ReLU(ReLU(F+shift) - kE) + ReLU(ReLU(D+shift) + kE - k)``.

  Args:
    f: original units ``[B,N]``.
    d: units to show instead ``[B,N]``.
    e: detector decisions ``[B]`` (1 visualization, 0 natural).
    k: gate strength (paper 250); must exceed every ``F + shift`` and ``D + shift``.
    shift: the constant offset added to every unit.

  Returns:
    ``[B,N]``.
  """
  e = e[:, None]
  f_pos, d_pos = jax.nn.relu(f + shift), jax.nn.relu(d + shift)
  return jax.nn.relu(f_pos - k * e) + jax.nn.relu(d_pos + k * e - k)


def linear_unit(model: ModelRecord, weight: jax.Array, images: jax.Array, scale: float = PAPER_SCALE) -> jax.Array:
  """``[B]``: the paper's ``D = s <pre(x), t> / (h*w)``, ``t`` (in ``[0,1]``) resized to the images' size."""
  b, h, w, _ = images.shape
  if weight.shape[:2] != (h, w):
    weight = jax.image.resize(weight, (h, w, 3), "linear")
  return jnp.einsum("bhwc,hwc->b", model.preprocess(images), weight) * (scale / (h * w))


def target_unit(model: ModelRecord, target: Target, k: float = PAPER_K, shift: float = PAPER_SHIFT) -> ModelRecord:
  """An image target's D alone, as a record with one logit: what the manipulated units can show at best
  (rendered with the same key, size and steps, it gives ``target_similarity_ceiling``)."""
  if target.kind != "image":
    raise ValueError("Only an image target has a unit D of its own; a permutation shows the model's own logits.")
  scale = target_scale(model, target, k, shift)

  def apply(weight, images):
    d = linear_unit(model, weight, images, scale)[:, None]
    return d, {"logits": d}

  return model.replace(name=f"{model.name}:target", apply=apply, params=jnp.asarray(target.image), layers=("logits",),
                       num_classes=1, labels=None, wnids=None, module=None)


def source_logits(model: ModelRecord, offset: int) -> np.ndarray:
  """``[K]``: the logit whose visualization each logit shows under :func:`permutation`.

  Class ``class_logits[i]`` shows ``class_logits[(i + offset) mod n]``; logits
  that are not classes (InceptionV1's dummy and extra outputs) show themselves.
  """
  classes = model.class_logits
  source = np.arange(model.num_classes)
  source[classes] = classes[(np.arange(len(classes)) + offset) % len(classes)]
  return source


def circuit(model: ModelRecord, detector: det.Detector, target: Target, *, units: Sequence[int] | None = None,
            k: float = PAPER_K, shift: float = PAPER_SHIFT, name: str | None = None) -> ModelRecord:
  """A new record whose chosen logits follow the fooling circuit.

  Args:
    model: the original model record.
    detector: the trained natural-vs-visualization detector ``E``.
    target: :func:`permutation` or :func:`image_target`.
    units: the logits to manipulate (default all). Every other logit gets the
      same constant shift, so the ranking of logits is kept.
    k: gate strength (paper 250).
    shift: constant offset (paper 100).
    name: the new record's name (default ``<model>+fooling``).

  Returns:
    The manipulated record; ``acts["logits"]`` and the logits are ``A``.

  Raises:
    ValueError: an unknown target kind or a unit outside the logits.
  """
  n = model.num_classes
  chosen = np.arange(n) if units is None else np.asarray(sorted({int(u) for u in units}), np.int64)
  if not len(chosen) or chosen.min() < 0 or chosen.max() >= n:
    raise ValueError(f"Units to manipulate must be logit indices in 0..{n - 1} of {model.name}; got {list(units)}.")
  mask = np.zeros(n, bool)
  mask[chosen] = True
  if target.kind == "permutation":
    source = source_logits(model, target.offset)
    weight = np.zeros((), np.float32)
  elif target.kind == "image":
    source, weight = None, jnp.asarray(target.image)
  else:
    raise ValueError(f"Unknown target kind {target.kind!r}; accepted: permutation, image.")
  scale = target_scale(model, target, k, shift)
  config, base_apply = detector.config, model.apply

  def apply(params, images):
    f, acts = base_apply(params["model"], images)
    e = det.is_visualization(config, params["detector"], images)
    if source is not None:
      d = f[:, source]
    else:
      d = jnp.broadcast_to(linear_unit(model, params["target"], images, scale)[:, None], f.shape)
    a = gate(f, jnp.where(mask, d, f), e, k, shift)
    return a, dict(acts, logits=a)

  params = {"model": model.params, "detector": detector.variables, "target": weight}
  return model.replace(name=name or f"{model.name}+fooling", apply=apply, params=params, module=None)


def margin(model: ModelRecord, target: Target, images: np.ndarray, *, k: float = PAPER_K,
           shift: float = PAPER_SHIFT, batch_size: int = 16) -> dict:
  """The circuit's precondition on natural images: ``F + shift`` and ``D + shift`` stay below ``k``.

  Where ``D + shift >= k`` on a natural image, ``C = ReLU(D' - k)`` is non-zero
  with ``E = 0`` and the natural logits change; where ``F + shift >= k``, the
  original unit survives ``E = 1`` and leaks into the visualization.

  Args:
    model: the original record.
    target: the circuit's target.
    images: natural images ``[N,H,W,3]`` in ``[0,1]``.
    k: gate strength.
    shift: constant offset.
    batch_size: images per forward pass.

  Returns:
    ``{"max_f_shifted", "max_d_shifted", "k", "ok"}``: the largest ``F + shift``
    and ``D + shift`` over the images (and logits), ``k``, and whether both are
    below ``k``.
  """
  weight = target.image if target.kind == "image" else np.zeros((), np.float32)
  scale = target_scale(model, target, k, shift)
  f, d = parallel.map_batches(_f_and_d(model, target.kind, scale), (model.params, weight), images, batch_size)
  max_f, max_d = float(f.max()) + shift, float(d.max()) + shift
  return {"max_f_shifted": max_f, "max_d_shifted": max_d, "k": float(k), "target_scale": scale,
          "ok": bool(max(max_f, max_d) < k)}


def _f_and_d(model: ModelRecord, kind: str, scale: float):
  """A jitted ``((params, weight), images) -> (F [B,K], D [B])`` (``D = F`` for a permutation)."""

  @jax.jit
  def fn(params_and_weight, images):
    params, weight = params_and_weight
    f = model.apply(params, images)[0]
    return f, (f if kind == "permutation" else linear_unit(model, weight, images, scale))

  return fn

