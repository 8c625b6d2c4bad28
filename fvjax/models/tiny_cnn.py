"""A small random CNN for fast tests (64 px, 10 classes, input x*2-1)."""

from __future__ import annotations

import flax.linen as nn
import jax

from fvjax.models import activations
from fvjax.models.linen import init_variables, record_from_linen
from fvjax.models.record import ModelRecord

INPUT_SIZE = (64, 64)
LAYERS = ("conv1", "conv2", "conv3", "logits")


class _ConvRelu(nn.Module):
  features: int
  stride: int

  @nn.compact
  def __call__(self, x):
    return activations.relu(nn.Conv(self.features, (3, 3), (self.stride, self.stride), name="conv")(x))


class TinyCNN(nn.Module):
  """``__call__(x) -> (logits [B,10], acts)``."""

  num_classes: int = 10

  @nn.compact
  def __call__(self, x):
    acts = {}
    x = acts["conv1"] = _ConvRelu(8, 1, name="conv1")(x)
    x = acts["conv2"] = _ConvRelu(16, 2, name="conv2")(x)
    x = acts["conv3"] = _ConvRelu(16, 2, name="conv3")(x)
    logits = acts["logits"] = nn.Dense(self.num_classes, name="logits")(x.mean(axis=(1, 2)))
    return logits, acts


def build(weights: str | None = None, *, key: jax.Array | None = None) -> ModelRecord:
  """A deterministic random TinyCNN (``weights``: an .npz of Flax variables saved by fvjax)."""
  module = TinyCNN()
  if weights in (None, "random"):  # a random test model by design
    weights = "random"
    variables = init_variables(module, INPUT_SIZE, key)
  else:
    from fvjax.models import weights as weights_lib  # pylint: disable=g-import-not-at-top
    variables = weights_lib.unflatten(weights_lib.read_weights(weights), sep="/")
  return record_from_linen("tiny_cnn", module, variables, input_size=INPUT_SIZE, layers=LAYERS,
                           preprocess=lambda x: x * 2.0 - 1.0, input_range="x*2-1", num_classes=10,
                           labels=tuple(f"class_{i}" for i in range(10)), weights=weights)
