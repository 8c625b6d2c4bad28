"""The jitted feature-visualization loop: many units at once, over devices.

``render(model, objective_or_units, key=...)`` optimises one image per batch
entry. The whole step (parameterization -> transforms -> model -> objective ->
Adam update) is one jitted function; the steps between two thresholds run on
device in a ``lax.fori_loop`` with a dynamic trip count, so every threshold
list reuses the same compiled code. Rendering N units is one batch of N images
(the objective gathers unit i for image i), and the batch is sharded over a
1-D device mesh (data parallel: each device optimises its own images; the
model's params are replicated).

Randomness: the step key is ``fold_in(key, step)`` and the transforms split it
into one key per image, so the same key gives the same images on any number of
devices. (Up to float summation order, which differs between shardings;
Adam's per-coefficient normalization can amplify such rounding differences in
coefficients whose gradient is near zero, so long runs on different device
counts agree closely but not bit for bit.)
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from fvjax import parallel
from fvjax.models import activations
from fvjax.models.record import ModelRecord
from fvjax.optvis import objectives as objectives_lib
from fvjax.optvis import param as param_lib
from fvjax.optvis import transforms as transforms_lib

LUCID_LEARNING_RATE = 0.05  # Lucid's render_vis: Adam(0.05)
LUCID_STEPS = 512
LUCID_REDIRECTED_RELU_STEPS = 16


class RenderResult(NamedTuple):
  """What :func:`render` returns.

  Attributes:
    images: ``[T, B, H, W, 3]`` in ``[0,1]``, the images at each threshold.
    thresholds: the ``T`` step counts.
    values: ``[T, B]`` objective value of each untransformed image at each
      threshold (higher is better).
    history: ``[steps, B]`` objective value at every step (on the transformed
      images the optimiser saw).
    transparency: with ``render(..., transparency=True)``: ``[T, B, H, W, 3]``,
      the absolute gradient of the objective with respect to each image summed
      over the steps up to each threshold (MACO's transparency map, Horama's
      ``transparency_accumulator``); else None.
  """

  images: np.ndarray
  thresholds: tuple[int, ...]
  values: np.ndarray
  history: np.ndarray
  transparency: np.ndarray | None = None


class _State(NamedTuple):
  params: Any
  opt_state: Any
  transparency: Any = ()  # the summed |d objective / d image| when asked for


def make_objective(model: ModelRecord, objective_or_units: Any, layer: str | None = None,
                   multiple: int = 1, regularizer: objectives_lib.Objective | None = None,
                   ) -> tuple[objectives_lib.Objective, int | None]:
  """Normalizes what a user passes into ``(Objective, batch size or None)``.

  Accepted: an :class:`~fvjax.optvis.objectives.Objective`; a string
  ``"layer:unit"``; or a sequence of unit indices together with ``layer``
  (image i optimises unit i: the batched form). Unit lists are padded to a
  multiple of ``multiple`` by repeating the last unit (for even sharding).
  ``regularizer`` (an Objective without per-image data) is added to it.
  """
  if isinstance(objective_or_units, objectives_lib.Objective):
    obj, batch = objective_or_units, None
  elif isinstance(objective_or_units, str):
    obj, batch = objectives_lib.as_objective(objective_or_units), None
  elif isinstance(objective_or_units, (Sequence, np.ndarray, jax.Array)) and layer is not None:
    units = np.asarray(objective_or_units, np.int32).reshape(-1)
    check_units(model, layer, units)
    padded = np.concatenate([units, np.full(parallel.round_up(len(units), multiple) - len(units), units[-1])])
    obj, batch = objectives_lib.units_objective(layer, padded), len(units)
  else:
    raise TypeError(
        "render takes an Objective, a 'layer:unit' string, or a sequence of unit "
        f"indices with layer=...; got {type(objective_or_units).__name__}.")
  if regularizer is not None:
    obj = obj + regularizer
  for name in obj.layers:
    if name != "input":
      model.check_layer(objectives_lib.unanchored(name))
  for name, unit in obj.units:  # unit indices are traced data: check them here, where they are known
    check_units(model, name, np.asarray([unit]))
  return obj, batch


def unit_values(model: ModelRecord, layer: str, images: Any, batch_size: int = 32, *,
                process_local: bool = False) -> np.ndarray:
  """``[N, C]``: every unit's value (spatial mean of its channel) at ``layer`` on natural images.

  ``images`` is an ``[N,H,W,3]`` array or any sequence with ``len`` and slicing
  (e.g. a loader reading files batch by batch); batches are padded and
  sharded over the devices (:func:`fvjax.parallel.map_batches`). With
  ``process_local``, ``images`` is this process's share of them and the values
  of every process's images come back, process 0's first.
  """
  model.check_layer(layer)
  fn = _unit_values_fn(model.apply, layer)
  return parallel.map_batches(fn, model.params, images, batch_size, process_local=process_local)


@functools.lru_cache(maxsize=32)
def _unit_values_fn(apply, layer):
  return jax.jit(lambda p, x: objectives_lib.unit_values(apply(p, x), layer))


def check_units(model: ModelRecord, layer: str, units: np.ndarray) -> None:
  """Raises a one-sentence error for units outside the layer's channels."""
  n = layer_width(model, layer)
  bad = units[(units < 0) | (units >= n)]
  if bad.size:
    raise ValueError(f"Unit {int(bad[0])} is out of range for layer {layer!r} of {model.name}, which has units 0..{n - 1}.")


_WIDTHS: dict = {}  # (apply, layer) -> channels; tracing a real model takes about a second


def layer_width(model: ModelRecord, layer: str) -> int:
  """Number of channels (units) of a layer, from one abstract evaluation per model function and layer."""
  key = (model.apply, model.check_layer(layer))
  if key not in _WIDTHS:
    if len(_WIDTHS) >= 64:  # bounded: the keys hold model functions alive
      _WIDTHS.clear()
    h, w = model.input_size
    shapes = jax.eval_shape(model.apply, model.params, jax.ShapeDtypeStruct((1, h, w, 3), jnp.float32))[1]
    _WIDTHS[key] = int(shapes[layer].shape[-1])
  return _WIDTHS[key]


def render(
    model: ModelRecord,
    objective_or_units: Any,
    *,
    key: jax.Array,
    layer: str | None = None,
    batch: int | None = None,
    size: int | tuple[int, int] | None = None,
    param: param_lib.ImageParam | None = None,
    transforms: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
    optimizer: optax.GradientTransformation | None = None,
    thresholds: Sequence[int] = (LUCID_STEPS,),
    redirected_relu_steps: int = LUCID_REDIRECTED_RELU_STEPS,
    mesh: jax.sharding.Mesh | None = None,
    progress: bool = True,
    chunk: int = 32,
    init_params: Any = None,
    crops: int = 1,
    anchored: bool = False,
    transparency: bool = False,
    regularizer: objectives_lib.Objective | None = None,
) -> RenderResult:
  """Feature visualization with Lucid's defaults.

  Args:
    model: the model record.
    objective_or_units: an Objective, ``"layer:unit"``, or unit indices (with
      ``layer``) to render one image per unit in a single batch.
    key: PRNG key; the same key gives the same images.
    layer: the layer of ``objective_or_units`` when it is a list of units.
    batch: images per objective (default 1, or ``len(units)``).
    size: image side(s); default the model's input size.
    param: image parameterization; default Fourier + decorrelated colour +
      sigmoid (``param.image()``).
    transforms: ``(key, images) -> images``; default Lucid's standard set.
    optimizer: default ``optax.adam(0.05)``.
    thresholds: step counts at which to keep the images (0: the
      parameterization's initial images).
    redirected_relu_steps: use Lucid's redirected ReLU gradient for the first
      this many steps (Lucid's ``render_vis`` default: 16); 0 disables it. A
      model with its own gradient rule (lucent's InceptionV1) keeps that rule.
    mesh: a 1-D device mesh; default all devices (of every process, under ``jax.distributed``).
    progress: show a tqdm progress bar.
    chunk: most steps run on device between two progress updates.
    init_params: the starting params, batched over the images (leading axis
      ``B``; e.g. :func:`~fvjax.optvis.param.seed_spectrum` for feature
      accentuation); default ``param.init`` with one key per image.
    crops: transform draws per step; the objective is averaged over them
      (MACO's crops per step). 1: Lucid's one draw.
    anchored: the model also sees the starting images, transformed with the
      same draws as the images; objectives read their activations as
      ``objectives.anchored(layer)`` (feature accentuation's regulariser).
    transparency: also return the summed absolute image gradients
      (:attr:`RenderResult.transparency`).
    regularizer: an Objective added to the units' objective (e.g.
      :func:`~fvjax.optvis.objectives.seed_distance`).

  Returns:
    A :class:`RenderResult`.
  """
  thresholds = tuple(sorted(set(int(t) for t in thresholds)))
  if not thresholds or thresholds[0] < 0:
    raise ValueError(f"thresholds must be step counts >= 0 (0: the initial images); got {thresholds}.")
  mesh = mesh or parallel.data_mesh()
  if int(crops) < 1:
    raise ValueError(f"crops must be a positive number of transform draws per step; got {crops}.")
  obj, units_batch = make_objective(model, objective_or_units, layer, mesh.size, regularizer)
  batch = units_batch or batch or 1
  size = model.input_size if size is None else ((size, size) if isinstance(size, int) else tuple(size))
  param = param or DEFAULT_PARAM
  transforms = DEFAULT_TRANSFORMS if transforms is None else transforms
  optimizer = optimizer or DEFAULT_OPTIMIZER

  # The batch is padded to a multiple of the device count; padded images are
  # dropped at the end. One init key per image, so image i is the same
  # whatever the padding.
  padded = parallel.round_up(batch, mesh.size)
  init_key, loop_key = jax.random.split(key)
  if init_params is None:
    params = jax.vmap(lambda k: param.init(k, 1, size))(transforms_lib.image_keys(init_key, padded))
    params = jax.tree_util.tree_map(lambda a: a.reshape(padded, *a.shape[2:]), params)
  else:
    params = _pad_rows(init_params, batch, padded)
  state = _State(params, optimizer.init(params))
  if transparency:
    state = state._replace(transparency=jnp.zeros_like(param.to_rgb(params)))
  state = parallel.shard_batch(state, mesh)
  anchors = parallel.shard_batch(param.to_rgb(params), mesh) if anchored else ()
  model_params = parallel.replicate(model.params, mesh)
  obj_data = parallel.shard_batch(obj.data, mesh)
  run, snapshot = _compiled(model.apply, obj.fn, param.to_rgb, transforms, optimizer, redirected_relu_steps > 0,
                            chunk, int(crops), anchored)

  total = thresholds[-1]
  history, shots, vals, alphas = [], [], [], []
  bar = tqdm(total=total, desc=f"render {model.name} x{batch}", disable=not progress, leave=False)
  done = 0
  for t in thresholds:
    while done < t:
      n = min(t - done, chunk)
      state, values = run(state, model_params, obj_data, anchors, loop_key, jnp.int32(done), jnp.int32(n),
                          jnp.int32(redirected_relu_steps))
      history.append(parallel.to_host(values)[:n, :batch])
      bar.update(n)
      done += n
    images, v, alpha = parallel.to_host((*snapshot(state, model_params, obj_data, anchors), state.transparency))
    shots.append(images[:batch])  # on every process, also when the batch spans several
    vals.append(v[:batch])
    alphas.append(alpha[:batch] if transparency else None)
  bar.close()
  history = np.concatenate(history) if history else np.zeros((0, batch), np.float32)
  return RenderResult(np.stack(shots), thresholds, np.stack(vals), history,
                      np.stack(alphas) if transparency else None)


def _pad_rows(tree: Any, batch: int, padded: int) -> Any:
  """Every leaf's first ``batch`` rows, padded to ``padded`` by repeating the last (like unit lists)."""

  def pad(a):
    a = jnp.asarray(a)
    if a.ndim == 0 or a.shape[0] != batch:
      raise ValueError(f"init_params must hold one row per image: leading axis {batch}; got shape {a.shape}.")
    return jnp.concatenate([a, jnp.repeat(a[-1:], padded - batch, axis=0)])

  return jax.tree_util.tree_map(pad, tree)


DEFAULT_PARAM = param_lib.image()
DEFAULT_TRANSFORMS = transforms_lib.standard_transforms()
DEFAULT_OPTIMIZER = optax.adam(LUCID_LEARNING_RATE)


@functools.lru_cache(maxsize=32)
def _compiled(apply, objective_fn, to_rgb, transforms, optimizer, redirect: bool, chunk: int, crops: int = 1,
              anchored: bool = False):
  """The jitted ``run`` (up to ``chunk`` steps) and ``snapshot`` for one setting.

  Cached on the functions that define the computation (all hashable by
  identity), so rendering another list of units, or more steps, reuses the
  compiled code. Everything that varies between calls (params, units, keys,
  step counts) is an argument, never a closure: closed-over arrays would be
  baked into the executable as constants.
  """

  def values_of(model_params, obj_data, images, seen, anchors_seen):
    # The model sees the transformed images; the layer "input" of penalties
    # (l1, total variation, ...) is the untransformed image, as Lucid's T("input").
    if not anchored:
      logits, acts = apply(model_params, seen)
      return objective_fn(dict(acts, logits=logits), images, obj_data)
    # One forward pass over the images and their anchors, split again.
    logits, acts = apply(model_params, jnp.concatenate([seen, anchors_seen]))
    both, b = dict(acts, logits=logits), seen.shape[0]
    acts = {**{n: a[:b] for n, a in both.items()}, **{objectives_lib.anchored(n): a[b:] for n, a in both.items()}}
    return objective_fn(acts, images, obj_data)

  def seen_values(model_params, obj_data, images, anchors, k):
    if crops == 1:
      return values_of(model_params, obj_data, images, transforms(k, images), anchored and transforms(k, anchors))

    def one(c):  # crop c: the same draws for the images and their anchors
      kc = jax.random.fold_in(k, c)
      return values_of(model_params, obj_data, images, transforms(kc, images), anchored and transforms(kc, anchors))

    return jax.vmap(one)(jnp.arange(crops)).mean(0)

  def step(state, i, model_params, obj_data, anchors, key, use_redirect):
    k = jax.random.fold_in(key, i)

    def loss_of_images(images):
      with activations.redirected_relu(use_redirect):  # a traced flag: one trace serves every step
        v = seen_values(model_params, obj_data, images, anchors, k)
      return -jnp.sum(v), v

    if isinstance(state.transparency, tuple):  # Lucid's path, unchanged
      grads, v = jax.grad(lambda p: loss_of_images(to_rgb(p)), has_aux=True)(state.params)
      alpha = state.transparency
    else:  # the image gradient too: d loss / d params = its pull-back through to_rgb
      images, pull_back = jax.vjp(to_rgb, state.params)
      image_grads, v = jax.grad(loss_of_images, has_aux=True)(images)
      (grads,) = pull_back(image_grads)
      alpha = state.transparency + jnp.abs(image_grads)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    return _State(optax.apply_updates(state.params, updates), opt_state, alpha), v

  @jax.jit
  def run(state, model_params, obj_data, anchors, key, start, n, redirect_until):
    batch = jax.tree_util.tree_leaves(state.params)[0].shape[0]

    def body(j, carry):
      state, values = carry
      i = start + j
      state, v = step(state, i, model_params, obj_data, anchors, key, (i < redirect_until) if redirect else False)
      return state, values.at[j].set(v)

    values = jnp.zeros((chunk, batch), jnp.float32)
    return jax.lax.fori_loop(0, n, body, (state, values))

  @jax.jit
  def snapshot(state, model_params, obj_data, anchors):
    images = to_rgb(state.params)
    return images, values_of(model_params, obj_data, images, images, anchors)

  return run, snapshot
