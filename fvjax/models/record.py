"""The model record: everything in fvjax takes one of these.

A record bundles a pure ``apply(params, images) -> (logits, acts)`` with its
parameters (a plain nested dict) and the metadata that feature visualization
needs to be correct: the input size, the value range the network expects and
the ordered names of the layers a user may visualize. ``images`` are always
float arrays of shape ``(batch, height, width, 3)`` with values in ``[0, 1]``;
each record owns the preprocessing from ``[0, 1]`` to what its network expects
(the most common silent failure of FV libraries is getting that wrong, so it is
done in one place and never by the caller).
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np

Params = Any  # a plain nested dict of arrays
Acts = Mapping[str, jax.Array]
ApplyFn = Callable[[Params, jax.Array], tuple[jax.Array, Acts]]


@dataclasses.dataclass(frozen=True)
class ModelRecord:
  """A trained (or random) network as fvjax sees it.

  Attributes:
    name: registry name, e.g. ``"efficientnet_lite0"``.
    apply: pure function ``(params, images[B,H,W,3] in [0,1]) -> (logits[B,K],
      acts)`` where ``acts`` maps every name in ``layers`` to its activation
      (``[B,h,w,c]`` for convolutional layers, ``[B,c]`` for dense ones).
    params: plain nested dict of arrays.
    input_size: ``(height, width)`` the network was trained at.
    layers: activation names in depth order; the last one is ``"logits"``.
    preprocess: maps ``[0,1]`` images to the network's own input range.
    input_range: human-readable statement of ``preprocess``, e.g.
      ``"(x*255-127)/128"``.
    num_classes: number of logits.
    labels: class names indexed by logit, or ``None``.
    module: the Flax module (Linen or NNX) behind ``apply`` when there is one
      (used by the surgery hook); ``None`` for wrapped records (e.g. the
      fooling circuit's).
    wnids: the WordNet ID of every logit (``""`` where a logit is not an
      ImageNet class, e.g. InceptionV1's dummy 0 and its 7 extra outputs), or
      ``None`` when the classes are not ImageNet's. Image folders are mapped
      to logits through it, never by folder order.
    weights: where ``params`` came from: ``"random"`` (an untrained network,
      asked for explicitly), a file path, or the embedded package; ``None``
      when unknown (a user's own record). Every experiment's ``metrics.json``
      records it.
    options: the build options it was loaded with (``fvjax.models.load(name,
      **options)``), e.g. ``{"lucent_relu_gradient": False}``; part of every
      stored result's settings, since they change what ``apply`` computes.
  """

  name: str
  apply: ApplyFn
  params: Params
  input_size: tuple[int, int]
  layers: tuple[str, ...]
  preprocess: Callable[[jax.Array], jax.Array]
  input_range: str
  num_classes: int
  labels: tuple[str, ...] | None = None
  module: Any = None
  wnids: tuple[str, ...] | None = None
  weights: str | None = None
  options: Mapping[str, Any] | None = None

  def __post_init__(self):
    for field in ("labels", "wnids"):
      names = getattr(self, field)
      if names is not None and len(names) != self.num_classes:
        raise ValueError(f"{self.name}: {field} must name every one of its {self.num_classes} logits; "
                         f"got {len(names)}.")

  @property
  def class_logits(self) -> np.ndarray:
    """The logits that are real classes: those with a WordNet ID (all when ``wnids`` is ``None``).

    InceptionV1 has 1008 outputs but 1000 classes (logits 1..1000); class
    permutations and accuracies run over these.
    """
    if self.wnids is None:
      return np.arange(self.num_classes)
    return np.flatnonzero(np.asarray([bool(w) for w in self.wnids]))

  def logit_of_wnid(self) -> dict[str, int]:
    """``{wnid: logit}`` for every ImageNet class of the model (empty without ``wnids``)."""
    return {w: i for i, w in enumerate(self.wnids or ()) if w}

  def check_layer(self, layer: str) -> str:
    """Returns ``layer`` if the model has it, else raises a "did you mean" error."""
    if layer not in self.layers:
      raise KeyError(unknown_name_message("layer", layer, self.layers, where=f"model {self.name!r}"))
    return layer

  def replace(self, **changes) -> "ModelRecord":
    """A new record with some fields changed (records are immutable)."""
    return dataclasses.replace(self, **changes)


def unknown_name_message(kind: str, name: str, known: Sequence[str], where: str = "") -> str:
  """One sentence: what is unknown, a close match, and what exists."""
  where = f" in {where}" if where else ""
  # Compared in lower case: difflib rates "Tiny_CNN" too far from "tiny_cnn" to suggest it.
  lowered = {str(k).lower(): k for k in reversed(list(known))}  # the first of names equal but for case wins
  close = [lowered[c] for c in difflib.get_close_matches(str(name).lower(), list(lowered), n=1)]
  hint = f" Did you mean {close[0]!r}?" if close else ""
  return f"Unknown {kind} {name!r}{where}; known {kind}s are: {', '.join(known)}.{hint}"


def check_images(record: ModelRecord, images: Any) -> np.ndarray:
  """Validates a batch of images for ``record`` eagerly (outside jit).

  Args:
    record: the model.
    images: array ``[B,H,W,3]`` with values in ``[0,1]``.

  Returns:
    ``images`` as a float32 numpy array.

  Raises:
    ValueError: one sentence saying what is wrong and what is accepted.
  """
  arr = np.asarray(images)
  if arr.ndim != 4 or arr.shape[-1] != 3:
    raise ValueError(
        f"Images for {record.name} must have shape (batch, height, width, 3); got {arr.shape}.")
  if not np.issubdtype(arr.dtype, np.floating):
    raise ValueError(
        f"Images for {record.name} must be floats in [0, 1] (got dtype {arr.dtype}); divide uint8 images by 255.")
  if not np.isfinite(arr).all():
    raise ValueError(f"Images for {record.name} must be finite floats in [0, 1]; got NaN or infinite values.")
  lo, hi = float(arr.min(initial=0.0)), float(arr.max(initial=0.0))
  if lo < -1e-3 or hi > 1 + 1e-3:
    raise ValueError(
        f"Images for {record.name} must have values in [0, 1] (got [{lo:.3g}, {hi:.3g}]); "
        f"the model applies its own preprocessing {record.input_range}.")
  return arr.astype(np.float32)
