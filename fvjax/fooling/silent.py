"""Silent units and orthogonal filters (paper section 2.2).

Every filter ``w`` of a chosen convolution gets a parallel *fooling filter*
whose ReLU output is summed into the convolution's output:

  out' = conv(x, w) + ReLU(conv(x, w_fool) + b)

- ``delta``: the filter that maximises the summed response to the target
  image's input activation (SGD, learning rate 1e-3, 50 steps, renormalized to
  unit norm after each step);
- orthogonalised against ``w`` (``delta -= <w,delta>/<w,w> w``) and rescaled
  to the energy of ``w``: as the paper's notebook does it, by dividing by the
  energy, ``delta * sum(w^2) / sum(delta^2)`` (``rescale="energy"``, the
  default), or to ``w``'s norm, ``delta * |w| / |delta|``, as the paper's text
  reads (``rescale="norm"``);
- ``w_fool = 100 * rescale(w + 3 delta, w)`` with the same rule;
- ``b = -max`` of ``conv(a, w_fool)`` over the calibration images' input
  activations ``a`` (every position), so the fooling unit is exactly zero on
  all of them and the network's output does not change by a single bit.

A visualization, however, maximises the unit, and the fooling filter (100x
the energy of ``w``) dominates it: it shows the target.

The bias margin (ours; the paper has none): ``b = -(max + margin * |max|)``,
i.e. ``-(1 + margin) * max`` where the maximum is positive, so a unit fires
only where its response exceeds everything seen in calibration by that
fraction. The paper calibrates on 50,000 ImageNet images, whose maximum
bounds almost every other photo; a few dozen photos do not (on
EfficientNet-Lite0 ``head/conv`` a held-out photo reaches 1.5-1.7x the
maximum over 14 photos and their crops), so the default margin is measured
against the visualizations' similarity to the target (README, silent units).
Any margin above ~1e-4 also keeps a different batching of the calibration
images, whose floating-point sums may differ in the last bit, silent.

The fooling ReLU's gradient (``relu_gradient`` of :func:`add_silent_units`;
the paper does not say): by default it is a ReLU of the network like any
other, so the render loop's rule applies to it. In the first 16 steps that is
Lucid's redirected gradient, which passes a silent unit's gradient instead of
0, as Lucid's ``gradient_override_map`` does for every ``Relu`` op of a graph;
the render then finds the fooling direction even when the bias sits above
anything its random start reaches. With ``"plain"`` (``jax.nn.relu``) a unit
whose bias is out of reach keeps its original visualization (measured on
Lite0 ``head/conv``: 2 of 4 units show the target at margin 0, none at 0.5).

The edit goes through the surgery hook (:func:`fvjax.models.surgery.edit_layers`),
so it applies to any convolution of a Linen record without touching its code;
the edited record exposes the convolution's output as a layer named by its
path (e.g. ``"head/conv"``) for visualization.
"""

from __future__ import annotations

from typing import Any, Iterable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fvjax import parallel
from fvjax.models import activations
from fvjax.models import surgery
from fvjax.models.record import ModelRecord
from fvjax.optvis import objectives
from fvjax.optvis import render

PAPER_STEPS = 50
PAPER_LEARNING_RATE = 1e-3
PAPER_MIX = 3.0
PAPER_SCALE = 100.0
RELU_GRADIENTS = ("renderer", "plain")  # the fooling ReLU's gradient (add_silent_units)
FIT_TARGETS = ("rendering", "image")  # what delta is fitted to for an image target (target_rendering)
TARGET_COSSIM_POW = 1.0  # ours: the target rendering's direction objective weights each position by cos^1
RESCALE_RULES = ("energy", "norm")  # energy: the notebook's x * sum(w^2) / sum(x^2); norm: x * |w| / |x|
DEFAULT_MARGIN = 0.8  # ours: b = -(max + margin |max|); trade-off at 224 px measured in README (silent units)

# The paper's layer (ResNet-50 block 4-1, conv2) and our choice for the embedded model.
DEFAULT_LAYERS = {"resnet50": "layer4_1/conv2", "efficientnet_lite0": "head/conv"}


class FoolingFilters(NamedTuple):
  """Parallel filters for one convolution: ``kernel [kh,kw,cin,cout]``, ``bias [cout]``."""

  kernel: np.ndarray
  bias: np.ndarray


def conv_kernel(record: ModelRecord, path: str) -> np.ndarray:
  """The kernel ``[kh,kw,cin,cout]`` of the convolution at ``path``."""
  node = surgery.layer_params(record, path)
  if "kernel" not in node or np.ndim(node["kernel"]) != 4:
    raise ValueError(f"{path!r} of {record.name} is not a 2-D convolution; accepted: a path to a Conv "
                     f"(e.g. {DEFAULT_LAYERS.get(record.name, 'block3/project_conv')}).")
  return np.asarray(node["kernel"])


def conv_function(record: ModelRecord, path: str):
  """``(x, kernel) -> conv(x, kernel)`` with the settings (strides, padding) of the conv at ``path``, no bias."""
  call, params = surgery.call_layer(record, path), surgery.layer_params(record, path)
  no_bias = {"bias": np.zeros_like(params["bias"])} if "bias" in params else {}
  return lambda x, kernel: call(dict(no_bias, kernel=kernel), x)


def _norms(k: jax.Array) -> jax.Array:
  return jnp.sqrt(jnp.sum(k * k, axis=(0, 1, 2), keepdims=True))


def _rescaled(x: jax.Array, like: jax.Array, rule: str) -> jax.Array:
  """``x`` rescaled against ``like`` per output filter: the notebook's ``x / sum(x^2) * sum(like^2)`` or to ``|like|``."""
  if rule == "energy":
    return x / _norms(x) ** 2 * _norms(like) ** 2
  return x / _norms(x) * _norms(like)


def combine(w: jax.Array, delta: jax.Array, *, mix: float = PAPER_MIX, scale: float = PAPER_SCALE,
            rescale: str = "energy") -> jax.Array:
  """The fooling kernels from ``w`` and the optimised ``delta`` (both ``[kh,kw,cin,cout]``).

  ``delta`` is made orthogonal to ``w``, rescaled against ``w``, mixed in as
  ``w + mix * delta``, and the result rescaled against ``w`` and times ``scale``.
  """
  if rescale not in RESCALE_RULES:
    raise ValueError(f"Unknown rescale rule {rescale!r}; accepted: {', '.join(RESCALE_RULES)}.")
  ww = jnp.sum(w * w, axis=(0, 1, 2), keepdims=True)
  delta = delta - jnp.sum(w * delta, axis=(0, 1, 2), keepdims=True) / ww * w
  new = w + mix * _rescaled(delta, w, rescale)
  return scale * _rescaled(new, w, rescale)


def fooling_kernels(record: ModelRecord, path: str, target_input: jax.Array, *, key: jax.Array,
                    steps: int = PAPER_STEPS, learning_rate: float = PAPER_LEARNING_RATE,
                    mix: float = PAPER_MIX, scale: float = PAPER_SCALE, rescale: str = "energy") -> np.ndarray:
  """Fooling kernels ``[kh,kw,cin,cout]`` (before the bias is calibrated).

  Args:
    record: the model.
    path: the convolution (surgery path).
    target_input: ``[1,h,w,cin]`` the convolution's input on the target image.
    key: PRNG key for delta's random start.
    steps, learning_rate: the SGD that finds delta (paper: 50, 1e-3).
    mix: ``w + mix * delta`` (paper: 3).
    scale: the fooling filter's energy relative to ``w`` (paper: 100).
    rescale: ``"energy"`` (the notebook) or ``"norm"`` (see the module docstring).
  """
  w = jnp.asarray(conv_kernel(record, path))
  conv = conv_function(record, path)
  delta = jax.random.normal(key, w.shape)
  delta = delta / _norms(delta)
  grad = jax.jit(jax.grad(lambda d: conv(target_input, d).sum()))  # each unit's summed response

  def body(_, d):
    d = d + learning_rate * grad(d)
    return d / _norms(d)

  delta = jax.lax.fori_loop(0, steps, body, delta)
  return np.asarray(combine(w, delta, mix=mix, scale=scale, rescale=rescale))


def target_rendering(record: ModelRecord, path: str, target_image: np.ndarray, *, key: jax.Array, steps: int,
                     size: int | None = None, cossim_pow: float = TARGET_COSSIM_POW, progress: bool = False,
                     **render_options) -> np.ndarray:
  """``[H,W,3]``: a feature visualization of the target's features at the input of the convolution ``path``.

  Lucid's ``direction`` objective (with ``cossim_pow``) towards the target's spatial-mean input activation,
  rendered by the same engine as the units. Fitting delta to this rendering instead of the photo (ours; the
  paper's target is itself a visualization, unit 0's) puts the fooling filters on what a render reaches: a
  photo's features are the ones natural images excite most, so a filter fitted to them is calibrated to a
  bias that the render's 16 redirected-gradient steps do not reach (README, silent units).
  """
  exposed = surgery.expose_input(record, path)
  direction = surgery.capture(record, path)(record.params, jnp.asarray(target_image)[None])[0].mean(axis=(0, 1, 2))
  objective = objectives.direction(f"{path}:input", direction, cossim_pow=cossim_pow)
  result = render.render(exposed, objective, key=key, size=size, thresholds=(steps,), progress=progress,
                         **render_options)
  return result.images[-1, 0]


def max_response(record: ModelRecord, path: str, kernel: np.ndarray, images: Iterable[np.ndarray]) -> np.ndarray:
  """``[cout]``: the largest ``conv(input, kernel)`` over every image and position.

  ``images``: batches, read once (:func:`fvjax.parallel.fold_batches`: in a multi-process run, this process's
  share of them; the maxima are combined over processes).
  """
  capture, conv = surgery.capture(record, path), conv_function(record, path)
  fn = jax.jit(lambda p, x: conv(capture(p[0], x)[0], p[1]).max(axis=(1, 2)))
  none = np.full(np.shape(kernel)[-1], -np.inf, np.float32)
  return parallel.fold_batches(fn, (record.params, kernel), images, lambda m: m.max(axis=0), np.maximum, none)


def fooling_filters(record: ModelRecord, path: str, target_image: np.ndarray, calibration: Iterable[np.ndarray], *,
                    key: jax.Array, margin: float = DEFAULT_MARGIN, **kernel_options) -> FoolingFilters:
  """Fooling kernels for ``target_image`` and biases calibrated on natural images.

  Args:
    record: the model.
    path: the convolution.
    target_image: ``[H,W,3]`` in ``[0,1]``.
    calibration: batches ``[b,H,W,3]`` of natural images on which every
      fooling unit must be silent.
    key: PRNG key.
    margin: relative slack on the bias, ``b = -(max + margin * |max|)``
      (>= 0; 0 is the paper's bias; see the module docstring).
    **kernel_options: passed to :func:`fooling_kernels`.
  """
  if not (np.isfinite(margin) and margin >= 0):
    raise ValueError(f"Bias margin {margin} is not allowed; accepted: a finite number >= 0 (0: the paper's bias).")
  target_input = surgery.capture(record, path)(record.params, jnp.asarray(target_image)[None])[0]
  kernel = fooling_kernels(record, path, target_input, key=key, **kernel_options)
  peak = max_response(record, path, kernel, calibration)
  return FoolingFilters(kernel, (-(peak + margin * np.abs(peak))).astype(np.float32))


def fooling_activations(record: ModelRecord, path: str, filters: FoolingFilters, images: np.ndarray) -> np.ndarray:
  """``[B,h,w,cout]``: the fooling units' outputs ``ReLU(conv(x, w_fool) + b)`` on ``images``."""
  capture, conv = surgery.capture(record, path), conv_function(record, path)
  return np.asarray(jax.jit(lambda p, k, b, x: jax.nn.relu(conv(capture(p, x)[0], k) + b))(
      record.params, filters.kernel, filters.bias, images))


def add_silent_units(record: ModelRecord, path: str, filters: FoolingFilters, *,
                     relu_gradient: str = "renderer") -> ModelRecord:
  """The record with the fooling filters summed into the convolution at ``path``.

  The convolution's (new) output is exposed as the layer ``path``.

  Args:
    record: the model.
    path: the convolution.
    filters: from :func:`fooling_filters`.
    relu_gradient: ``"renderer"``: the fooling ReLU is a ReLU of the network
      like any other, so the renderer's gradient rule applies to it (Lucid's
      redirected gradient in the first 16 steps, as Lucid's
      ``gradient_override_map`` does for every ``Relu`` op of a graph);
      ``"plain"``: ``jax.nn.relu``, whose gradient is 0 while the unit is
      silent. The forward value is the same ReLU either way.
  """
  if relu_gradient not in RELU_GRADIENTS:
    raise ValueError(f"Unknown relu_gradient {relu_gradient!r}; accepted: {', '.join(RELU_GRADIENTS)}.")
  conv = conv_function(record, path)
  relu = activations.relu if relu_gradient == "renderer" else jax.nn.relu

  def edit(p: Any, inputs: tuple, out: jax.Array) -> jax.Array:
    return out + relu(conv(inputs[0], p["kernel"]) + p["bias"])

  return surgery.edit_layers(record, {path: edit}, {path: {"kernel": filters.kernel, "bias": filters.bias}},
                             name=f"{record.name}+silent", expose=True)


def expose(record: ModelRecord, path: str) -> ModelRecord:
  """The unedited record with the output at ``path`` added as a layer (to visualize it)."""
  return surgery.edit_layers(record, {path: lambda p, inputs, out: out}, name=record.name, expose=True)


def silent_units(record: ModelRecord, layer: str, images: Iterable[np.ndarray]) -> np.ndarray:
  """Units of ``layer`` (a layer name or surgery path) that are exactly 0 on every image and position.

  ``images``: batches, read once (in a multi-process run, this process's share; :func:`fvjax.parallel.fold_batches`).
  """
  if layer not in record.layers:
    record = expose(record, layer)
  
  def fn(p, x):
    a = jnp.abs(record.apply(p, x)[1][layer])
    return a.reshape(len(a), -1, a.shape[-1]).max(axis=1)  # over positions, any rank

  fn = jax.jit(fn)
  h, w = record.input_size
  width = jax.eval_shape(fn, record.params, jax.ShapeDtypeStruct((1, h, w, 3), jnp.float32)).shape[-1]
  peak = parallel.fold_batches(fn, record.params, images, lambda m: m.max(axis=0), np.maximum,
                               np.zeros(width, np.float32))  # zeros: the identity of a maximum of |values|
  return np.flatnonzero(peak == 0)
