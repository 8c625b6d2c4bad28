"""torchvision's ResNet-50 (v1.5: stride in the 3x3 conv) in Flax Linen.

Weights: torchvision's ``resnet50-*.pth`` or timm's ``model.safetensors`` (timm
uses the same key names). Input: ImageNet mean/std normalization. Batch norm
eps 1e-5; explicit symmetric paddings as in PyTorch (not TF "SAME").

Layers: conv1 (after batch norm and ReLU), layer1_0 ... layer4_2 (the output
of each bottleneck block), logits. Inner modules are addressable by path for
the surgery hook, e.g. ``"layer4_0/conv2"``: the 3x3 convolution of the first
block of stage 4, the layer of the paper's silent-units experiment.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import numpy as np

from fvjax.models import activations
from fvjax.models import labels as labels_lib
from fvjax.models import weights as weights_lib
from fvjax.models.linen import load_variables, record_from_linen
from fvjax.models.record import ModelRecord

INPUT_SIZE = (224, 224)
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
INPUT_RANGE = "(x - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]"
STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))  # (width, blocks, stride)
BN_EPS = 1e-5


def preprocess(images: jax.Array) -> jax.Array:
  """Maps ``[0,1]`` images to torchvision's input: ``(x - mean) / std`` per channel."""
  return (images - MEAN) / STD


def _bn(name):
  return nn.BatchNorm(use_running_average=True, epsilon=BN_EPS, name=name)


def _conv(features, kernel, stride, pad, name):
  return nn.Conv(features, (kernel, kernel), (stride, stride), padding=((pad, pad), (pad, pad)),
                 use_bias=False, name=name)


class Stem(nn.Module):
  """7x7 stride-2 conv to 64 channels, batch norm, ReLU (the max pool follows in the network)."""

  @nn.compact
  def __call__(self, x):
    return activations.relu(_bn("bn1")(_conv(64, 7, 2, 3, "conv1")(x)))


class Bottleneck(nn.Module):
  """1x1 -> 3x3 (stride) -> 1x1 (4x width) bottleneck with a projection shortcut when ``downsample``."""

  width: int
  stride: int
  downsample: bool

  @nn.compact
  def __call__(self, x):
    y = activations.relu(_bn("bn1")(_conv(self.width, 1, 1, 0, "conv1")(x)))
    y = activations.relu(_bn("bn2")(_conv(self.width, 3, self.stride, 1, "conv2")(y)))
    y = _bn("bn3")(_conv(self.width * 4, 1, 1, 0, "conv3")(y))
    if self.downsample:
      x = _bn("downsample_bn")(_conv(self.width * 4, 1, self.stride, 0, "downsample_conv")(x))
    return activations.relu(x + y)


class ResNet50(nn.Module):
  """``__call__(x) -> (logits [B,1000], acts)``; x is mean/std-normalized."""

  num_classes: int = 1000

  @nn.compact
  def __call__(self, x):
    acts = {}
    x = acts["conv1"] = Stem(name="conv1")(x)
    x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    for s, (width, blocks, stride) in enumerate(STAGES, start=1):
      for b in range(blocks):
        name = f"layer{s}_{b}"
        x = acts[name] = Bottleneck(width, stride if b == 0 else 1, b == 0, name=name)(x)
    logits = acts["logits"] = nn.Dense(self.num_classes, name="logits")(x.mean(axis=(1, 2)))
    return logits, acts


LAYERS = ("conv1", *(f"layer{s}_{b}" for s, (_, n, _) in enumerate(STAGES, start=1) for b in range(n)), "logits")


def _mapping() -> dict[tuple[str, ...], tuple[str, str]]:
  """Flax path -> (torch prefix, kind) with kind in conv/bn/dense."""
  m = {("conv1", "conv1"): ("conv1", "conv"), ("conv1", "bn1"): ("bn1", "bn"), ("logits",): ("fc", "dense")}
  for s, (_, blocks, _) in enumerate(STAGES, start=1):
    for b in range(blocks):
      f, t = f"layer{s}_{b}", f"layer{s}.{b}"
      for i in (1, 2, 3):
        m[(f, f"conv{i}")] = (f"{t}.conv{i}", "conv")
        m[(f, f"bn{i}")] = (f"{t}.bn{i}", "bn")
      if b == 0:
        m[(f, "downsample_conv")] = (f"{t}.downsample.0", "conv")
        m[(f, "downsample_bn")] = (f"{t}.downsample.1", "bn")
  return m


_KINDS = {
    "conv": {("params", "kernel"): "weight"},
    "dense": {("params", "kernel"): "weight", ("params", "bias"): "bias"},
    "bn": {("params", "scale"): "weight", ("params", "bias"): "bias",
           ("batch_stats", "mean"): "running_mean", ("batch_stats", "var"): "running_var"},
}


def convert_state_dict(sd: dict[str, np.ndarray], like: dict[str, Any]) -> dict[str, Any]:
  """torchvision/timm ResNet-50 state dict -> Flax variables shaped like ``like``.

  Raises:
    ValueError: the first missing key or wrong shape, in one sentence.
  """
  where = {f"{prefix}.{torch_name}": (collection, *path, leaf)  # torch key -> Flax variable path
           for path, (prefix, kind) in _mapping().items() for (collection, leaf), torch_name in _KINDS[kind].items()}
  return weights_lib.torch_to_flax(sd, where, like, "a torchvision/timm ResNet-50")


WEIGHTS_HINT = ("the path of torchvision's resnet50-*.pth (torchvision.models.ResNet50_Weights) or timm's "
                "resnet50 model.safetensors")


def build(weights: str | None = None, *, key: jax.Array | None = None) -> ModelRecord:
  """The ResNet-50 record with weights from a file, or ``weights="random"`` (init from ``key``).

  Raises:
    ValueError: no ``weights`` given (says where the file comes from).
    FileNotFoundError: ``weights`` does not exist.
  """
  module = ResNet50()
  variables, source = load_variables(module, INPUT_SIZE, weights, "ResNet-50", WEIGHTS_HINT, convert_state_dict, key)
  return record_from_linen("resnet50", module, variables, input_size=INPUT_SIZE, layers=LAYERS,
                           preprocess=preprocess, input_range=INPUT_RANGE, num_classes=1000,
                           labels=labels_lib.imagenet(), wnids=labels_lib.imagenet_wnids(),
                           weights=source)
