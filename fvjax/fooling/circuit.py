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
  ``D = <pre(x), t> / (h*w)`` (the paper's notebook: the image divided by
  224*224), ``t`` resized to the input's size.

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


class Target(NamedTuple):
  """What the manipulated visualizations show: a permutation or an image."""

  kind: str  # "permutation" or "image"
  offset: int = 0
  image: np.ndarray | None = None  # [H,W,3] in [0,1]


def permutation(offset: int = PAPER_PERMUTATION_OFFSET) -> Target:
  """Unit i shows the visualization of unit ``(i + offset) mod n``."""
  return Target("permutation", offset=int(offset))


def image_target(image: np.ndarray) -> Target:
  """Every chosen unit shows ``image`` (``[H,W,3]`` in ``[0,1]``)."""
  image = np.asarray(image, np.float32)
  if image.ndim != 3 or image.shape[-1] != 3 or image.min() < 0 or image.max() > 1:
    raise ValueError(f"A target image must be [H,W,3] with values in [0,1]; got shape {image.shape}.")
  return Target("image", image=image)


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


def linear_unit(model: ModelRecord, weight: jax.Array, images: jax.Array) -> jax.Array:
  """``[B]``: the paper's ``D = <pre(x), t> / (h*w)``, ``t`` (in ``[0,1]``) resized to the images' size."""
  b, h, w, _ = images.shape
  if weight.shape[:2] != (h, w):
    weight = jax.image.resize(weight, (h, w, 3), "linear")
  return jnp.einsum("bhwc,hwc->b", model.preprocess(images), weight) / (h * w)


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
  config, base_apply = detector.config, model.apply

  def apply(params, images):
    f, acts = base_apply(params["model"], images)
    e = det.is_visualization(config, params["detector"], images)
    if source is not None:
      d = f[:, source]
    else:
      d = jnp.broadcast_to(linear_unit(model, params["target"], images)[:, None], f.shape)
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
  f, d = parallel.map_batches(_f_and_d(model, target.kind), (model.params, weight), images, batch_size)
  max_f, max_d = float(f.max()) + shift, float(d.max()) + shift
  return {"max_f_shifted": max_f, "max_d_shifted": max_d, "k": float(k), "ok": bool(max(max_f, max_d) < k)}


def _f_and_d(model: ModelRecord, kind: str):
  """A jitted ``((params, weight), images) -> (F [B,K], D [B])`` (``D = F`` for a permutation)."""

  @jax.jit
  def fn(params_and_weight, images):
    params, weight = params_and_weight
    f = model.apply(params, images)[0]
    return f, (f if kind == "permutation" else linear_unit(model, weight, images))

  return fn


def pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Pearson correlation of each image in ``a [B,H,W,3]`` with ``b`` (``[B,h,w,3]`` or one ``[h,w,3]``),
  after resizing ``b`` to ``a``'s size; ``[B]``."""
  a = np.asarray(a, np.float32)
  b = np.asarray(b, np.float32)
  b = np.broadcast_to(b, (len(a), *b.shape[-3:])) if b.ndim == 3 else b
  if b.shape[1:3] != a.shape[1:3]:
    b = np.asarray(jax.image.resize(b, (len(b), *a.shape[1:3], 3), "linear"))
  x = a.reshape(len(a), -1) - a.reshape(len(a), -1).mean(1, keepdims=True)
  y = b.reshape(len(b), -1) - b.reshape(len(b), -1).mean(1, keepdims=True)
  denom = np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1)
  return np.sum(x * y, axis=1) / np.where(denom > 0, denom, 1.0)
