"""Lucid's InceptionV1 (GoogLeNet, the paper's model) in Flax Linen.

Mirrors lucent's ``InceptionV1`` (weights file ``inception5h.pth``, converted
from Lucid's TensorFlow graph by ProGamerGov): convolutions with bias and
ReLU, explicit TF-style paddings, local response normalization (size 9,
alpha 1e-4, beta 0.5, k 1), max pools padded with -inf, nine mixed blocks
and ``softmax2_pre_activation_matmul`` (1024 -> 1008 classes; Lucid's label
list starts with a dummy class). Input: ``x*255 - 117``.

Layers: conv2d0, conv2d1, conv2d2, mixed3a, mixed3b, mixed4a..mixed4e, mixed5a,
mixed5b, logits. The pooling and normalization between two named layers run at
the start of the later one, so each named output is exactly lucent's hooked
activation (the ReLU output, or the concatenation for mixed layers). Global
average pooling replaces lucent's 7x7 average pool (identical at 224 px, and
defined at any size).

Also ``mixed3a_pre_relu`` .. ``mixed5b_pre_relu`` (Lucid's names): each mixed
block's four branch convolutions before their ReLU, concatenated in the
block's channel order (1x1, 3x3, 5x5, pool_reduce), so channel ``c`` of
``mixed4a_pre_relu`` is channel ``c`` of ``mixed4a`` before the ReLU. The
NeurIPS 2021 occlusion study measures its units there (the 3x3 and pool
branches' spatial means).

Gradient: like lucent's InceptionV1 (the paper's model), every ReLU's backward
pass multiplies the gradient by 0.1 where its input is negative
(``lucent_relu_gradient=True``, the default; ``False`` for the plain
gradient). Forward values are the same either way.
"""

from __future__ import annotations

import contextlib
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fvjax.models import activations
from fvjax.models import labels as labels_lib
from fvjax.models import weights as weights_lib
from fvjax.models.linen import load_variables, record_from_linen
from fvjax.models.record import ModelRecord

INPUT_SIZE = (224, 224)
INPUT_RANGE = "x*255-117"
NUM_CLASSES = 1008
BRANCHES = ("1x1", "3x3_bottleneck", "3x3", "5x5_bottleneck", "5x5", "pool_reduce")
# name -> (what runs before the block, widths of 1x1, 3x3_bottleneck, 3x3, 5x5_bottleneck, 5x5, pool_reduce)
MIXED = {
    "mixed3a": ("lrn_pool", (64, 96, 128, 16, 32, 32)),
    "mixed3b": (None, (128, 128, 192, 32, 96, 64)),
    "mixed4a": ("pool", (192, 96, 204, 16, 48, 64)),
    "mixed4b": (None, (160, 112, 224, 24, 64, 64)),
    "mixed4c": (None, (128, 128, 256, 24, 64, 64)),
    "mixed4d": (None, (112, 144, 288, 32, 64, 64)),
    "mixed4e": (None, (256, 160, 320, 32, 128, 128)),
    "mixed5a": ("pool", (256, 160, 320, 48, 128, 128)),
    "mixed5b": (None, (384, 192, 384, 48, 128, 128)),
}
OUTPUT_BRANCHES = ("1x1", "3x3", "5x5", "pool_reduce")  # concatenated in this order
PRE_RELU = tuple(f"{block}_pre_relu" for block in MIXED)
LAYERS = ("conv2d0", "conv2d1", "conv2d2", *(n for block in MIXED for n in (f"{block}_pre_relu", block)), "logits")


def preprocess(images: jax.Array) -> jax.Array:
  """Maps ``[0,1]`` images to InceptionV1's input range (``x*255 - 117``)."""
  return images * 255.0 - 117.0


def lrn(x: jax.Array, size: int = 9, alpha: float = 1e-4, beta: float = 0.5, k: float = 1.0) -> jax.Array:
  """torch's local_response_norm over channels: x / (k + alpha*mean(x^2 in window))^beta."""
  sq = jnp.pad(x * x, ((0, 0), (0, 0), (0, 0), (size // 2, (size - 1) // 2)))
  window = jax.lax.reduce_window(sq, 0.0, jax.lax.add, (1, 1, 1, size), (1, 1, 1, 1), "VALID") / size
  return x / (k + alpha * window) ** beta


def max_pool(x: jax.Array, stride: int, pad: tuple[int, int]) -> jax.Array:
  """3x3 max pool with explicit -inf padding ((before, after) on both axes)."""
  return nn.max_pool(x, (3, 3), (stride, stride), padding=(pad, pad))


def _conv(features, kernel, name, pad=0, stride=1):
  pads = pad if isinstance(pad, tuple) else (pad, pad)
  return nn.Conv(features, (kernel, kernel), (stride, stride), padding=(pads, pads), name=name)


class Conv2d0(nn.Module):
  """7x7 stride-2 conv to 64 channels, ReLU (Lucid's ``conv2d0``)."""

  @nn.compact
  def __call__(self, x):
    return activations.relu(_conv(64, 7, "conv", pad=(2, 3), stride=2)(x))


class Conv2d1(nn.Module):
  """Max pool, local response norm, 1x1 conv to 64 channels, ReLU (Lucid's ``conv2d1``)."""

  @nn.compact
  def __call__(self, x):
    x = lrn(max_pool(x, 2, (0, 1)))
    return activations.relu(_conv(64, 1, "conv")(x))


class Conv2d2(nn.Module):
  """3x3 conv to 192 channels, ReLU (Lucid's ``conv2d2``)."""

  @nn.compact
  def __call__(self, x):
    return activations.relu(_conv(192, 3, "conv", pad=1)(x))


class Mixed(nn.Module):
  """An inception block: 1x1 | 1x1->3x3 | 1x1->5x5 | pool->1x1, concatenated."""

  pre: str | None
  widths: tuple[int, ...]

  @nn.compact
  def __call__(self, x):
    if self.pre == "lrn_pool":
      x = max_pool(lrn(x), 2, (0, 1))
    elif self.pre == "pool":
      x = max_pool(x, 2, (0, 1))
    w = dict(zip(BRANCHES, self.widths))
    relu_conv = lambda name, k, pad, t: activations.relu(_conv(w[name], k, name, pad)(t))
    b1 = relu_conv("1x1", 1, 0, x)
    b3 = relu_conv("3x3", 3, 1, relu_conv("3x3_bottleneck", 1, 0, x))
    b5 = relu_conv("5x5", 5, 2, relu_conv("5x5_bottleneck", 1, 0, x))
    bp = relu_conv("pool_reduce", 1, 0, max_pool(x, 1, (1, 1)))
    return jnp.concatenate([b1, b3, b5, bp], axis=-1)


class InceptionV1(nn.Module):
  """``__call__(x) -> (logits [B,1008], acts)``; x is ``images*255 - 117``."""

  @nn.compact
  def __call__(self, x):
    acts = {}
    x = acts["conv2d0"] = Conv2d0(name="conv2d0")(x)
    x = acts["conv2d1"] = Conv2d1(name="conv2d1")(x)
    x = acts["conv2d2"] = Conv2d2(name="conv2d2")(x)
    for name, (pre, widths) in MIXED.items():
      x = acts[name] = Mixed(pre, widths, name=name)(x)
    logits = acts["logits"] = nn.Dense(NUM_CLASSES, name="logits")(x.mean(axis=(1, 2)))
    return logits, acts


def _torch_names() -> dict[tuple[str, ...], str]:
  """Flax module path -> lucent state-dict prefix."""
  names = {(n, "conv"): f"{n}_pre_relu_conv" for n in ("conv2d0", "conv2d1", "conv2d2")}
  for block in MIXED:
    names.update({(block, b): f"{block}_{b}_pre_relu_conv" for b in BRANCHES})
  names[("logits",)] = "softmax2_pre_activation_matmul"
  return names


def convert_state_dict(sd: dict[str, np.ndarray], like: dict[str, Any]) -> dict[str, Any]:
  """lucent's InceptionV1 state dict -> Flax variables shaped like ``like``.

  Raises:
    ValueError: the first missing key or wrong shape, in one sentence.
  """
  where = {f"{prefix}.{torch_name}": (*path, leaf)  # torch key -> Flax parameter path
           for path, prefix in _torch_names().items() for torch_name, leaf in (("weight", "kernel"), ("bias", "bias"))}
  return {"params": weights_lib.torch_to_flax(sd, where, like["params"], "a lucent InceptionV1")}


WEIGHTS_HINT = ("the path of lucent's inception5h.pth (the torch-lucent model zoo's 'inceptionv1', converted "
                "from Lucid)")


def build(weights: str | None = None, *, key: jax.Array | None = None,
          lucent_relu_gradient: bool = True) -> ModelRecord:
  """The InceptionV1 record with lucent's weights from a file, or ``weights="random"`` (init from ``key``).

  Args:
    weights: path of lucent's ``inception5h.pth`` (or an .npz/.safetensors with
      the same keys), or ``"random"``.
    key: PRNG key of the random network.
    lucent_relu_gradient: lucent's ReLU gradient (0.1 where the input is
      negative) at every step, as the paper ran it; ``False``: plain ReLU
      gradients (then the render loop's Lucid warm-up applies).

  Raises:
    ValueError: no ``weights`` given (says where the file comes from).
    FileNotFoundError: ``weights`` does not exist.
  """
  module = InceptionV1()
  variables, source = load_variables(module, INPUT_SIZE, weights, "InceptionV1", WEIGHTS_HINT, convert_state_dict, key)
  record = record_from_linen("inception_v1", module, variables, input_size=INPUT_SIZE, layers=LAYERS,
                             preprocess=preprocess, input_range=INPUT_RANGE, num_classes=NUM_CLASSES,
                             labels=labels_lib.inception_v1(), wnids=labels_lib.inception_v1_wnids(),
                             weights=source)
  return record.replace(apply=_with_pre_relu(record.apply, lucent_relu_gradient))


def _with_pre_relu(apply, lucent_relu_gradient: bool):
  """``apply`` plus the ``*_pre_relu`` activations (read from the branch convolutions) and lucent's gradient rule."""

  def full(params, images):
    pre = {}

    def grab(next_fun, args, kwargs, context):
      out = next_fun(*args, **kwargs)
      path = context.module.path
      if context.method_name == "__call__" and len(path) == 2 and path[0] in MIXED and path[1] in OUTPUT_BRANCHES:
        pre[path] = out
      return out

    rule = activations.leaky_relu_gradient() if lucent_relu_gradient else contextlib.nullcontext()
    with rule, nn.intercept_methods(grab):
      logits, acts = apply(params, images)
    extra = {f"{b}_pre_relu": jnp.concatenate([pre[(b, br)] for br in OUTPUT_BRANCHES], axis=-1) for b in MIXED}
    return logits, {**acts, **extra}

  return full
