"""The occlusion sweep of the causal-understanding task (shared/paper.md section 6).

A square occluder whose side is ``fraction`` of the image side, filled with
the mean colour of the patch it hides, slides over the query image with a
given stride; for every position the sweep records the activation of one unit
(the spatial mean of a channel) on the occluded image. At 224 px, fraction 0.4
(a 90 px occluder) and stride 2 that is a 68 x 68 grid: 4,624 occluded images
per query.

:func:`sweep` is one jitted call per query: the occluded images are built on
device from the query and the grid (the patch means of all positions come from
two small matrix products), a ``lax.map`` over fixed-size chunks keeps memory
bounded, and each chunk's batch is sharded over the 1-D device mesh of
:mod:`fvjax.parallel` (the params and the query are replicated). Only the
studied layer is returned, so XLA drops the layers above it.
:func:`brute_force_sweep` is the obvious per-occlusion loop, kept as the
reference for tests and for the benchmark.

:func:`reveal_sweep` is the inverse, for the study's "blurred" references: a
background (the blurred image) everywhere except a sharp window of the same
side at each grid position; it returns, for every unit of the layer at once,
the window position that maximises the unit's activation.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding

from fvjax import parallel
from fvjax.models.record import ModelRecord, check_images
from fvjax.optvis import objectives
from fvjax.optvis import render as render_lib

PAPER_FRACTION = 0.4  # a 90 px occluder at 224 px
PAPER_STRIDE = 2  # 68 x 68 positions at 224 px


class Grid(NamedTuple):
  """Where the occluder goes.

  Attributes:
    size: image side in pixels.
    side: occluder side in pixels.
    stride: step between positions in pixels.
    n: positions per axis; the grid is ``n x n`` and position ``(i, j)`` has
      its top-left corner at pixel ``(i * stride, j * stride)``.
  """

  size: int
  side: int
  stride: int
  n: int

  @property
  def count(self) -> int:
    """Number of occluder positions, ``n * n``."""
    return self.n * self.n

  def corner(self, flat_index: int) -> tuple[int, int]:
    """Top-left pixel ``(row, col)`` of the occluder at a flat grid index."""
    i, j = divmod(int(flat_index), self.n)
    return i * self.stride, j * self.stride


def grid(size: int, fraction: float = PAPER_FRACTION, stride: int = PAPER_STRIDE) -> Grid:
  """The occluder grid for a square image.

  Args:
    size: image side in pixels.
    fraction: occluder side as a fraction of the image side, in ``(0, 1)``.
    stride: pixels between neighbouring positions, ``>= 1``.

  Returns:
    A :class:`Grid` (``grid(224, 0.4, 2)`` is 68 x 68 with a 90 px occluder).

  Raises:
    ValueError: a fraction outside ``(0, 1)``, a stride below 1 or a size
      below 2, in one sentence.
  """
  if not isinstance(size, (int, np.integer)) or size < 2:
    raise ValueError(f"The image size must be an integer number of pixels >= 2; got {size!r}.")
  if not 0.0 < float(fraction) < 1.0:
    raise ValueError(f"The occluder fraction must lie strictly between 0 and 1 (paper: 0.4); got {fraction!r}.")
  if not isinstance(stride, (int, np.integer)) or stride < 1:
    raise ValueError(f"The occluder stride must be an integer >= 1 pixel (paper: 2); got {stride!r}.")
  side = int(min(size - 1, max(1, round(float(fraction) * size))))
  return Grid(int(size), side, int(stride), (size - side) // stride + 1)


def patch_means(image: jax.Array, g: Grid) -> jax.Array:
  """``[n, n, 3]``: the mean colour under the occluder at every grid position.

  Args:
    image: ``[size, size, 3]``.
    g: the grid.
  """
  starts = jnp.arange(g.n) * g.stride
  pix = jnp.arange(g.size)
  box = ((pix[None] >= starts[:, None]) & (pix[None] < starts[:, None] + g.side)).astype(image.dtype)  # [n, size]
  sums = jnp.einsum("ih,hwc,jw->ijc", box, image, box, precision=jax.lax.Precision.HIGHEST)
  return sums / (g.side * g.side)


def occlude(image: jax.Array, rows: jax.Array, cols: jax.Array, means: jax.Array, side: int) -> jax.Array:
  """Occluded copies of one image.

  Args:
    image: ``[H, W, 3]``.
    rows: ``[P]`` top row of each occluder.
    cols: ``[P]`` left column of each occluder.
    means: ``[P, 3]`` fill colour of each occluder.
    side: occluder side in pixels.

  Returns:
    ``[P, H, W, 3]``: copy p has the square at ``(rows[p], cols[p])`` filled
    with ``means[p]``.
  """
  h, w = image.shape[:2]
  return jnp.where(_mask(h, w, rows, cols, side), means[:, None, None, :], image[None])


def reveal(image: jax.Array, background: jax.Array, rows: jax.Array, cols: jax.Array, side: int) -> jax.Array:
  """Copies of ``background`` with one square window of ``image`` each.

  Args:
    image: ``[H, W, 3]`` the sharp image.
    background: ``[H, W, 3]`` what shows outside the window (e.g. ``image`` blurred).
    rows: ``[P]`` top row of each window.
    cols: ``[P]`` left column of each window.
    side: window side in pixels.

  Returns:
    ``[P, H, W, 3]``: copy p shows ``image`` inside the square at
    ``(rows[p], cols[p])`` and ``background`` elsewhere.
  """
  h, w = image.shape[:2]
  return jnp.where(_mask(h, w, rows, cols, side), image[None], background[None])


def _mask(h: int, w: int, rows: jax.Array, cols: jax.Array, side: int) -> jax.Array:
  """``[P, H, W, 1]``: True inside the square of side ``side`` at ``(rows[p], cols[p])``."""
  in_r = (jnp.arange(h)[None] >= rows[:, None]) & (jnp.arange(h)[None] < rows[:, None] + side)  # [P, H]
  in_c = (jnp.arange(w)[None] >= cols[:, None]) & (jnp.arange(w)[None] < cols[:, None] + side)  # [P, W]
  return in_r[:, :, None, None] & in_c[:, None, :, None]


def occluded_images(image: np.ndarray, g: Grid, flat_indices) -> np.ndarray:
  """``[len(flat_indices), size, size, 3]``: the occluded images at some grid positions."""
  idx = np.asarray(flat_indices, np.int32).reshape(-1)
  means = np.asarray(patch_means(jnp.asarray(image, jnp.float32), g)).reshape(-1, 3)[idx]
  rows, cols = (idx // g.n) * g.stride, (idx % g.n) * g.stride
  return np.asarray(occlude(jnp.asarray(image, jnp.float32), jnp.asarray(rows), jnp.asarray(cols),
                            jnp.asarray(means), g.side))


@functools.lru_cache(maxsize=32)
def _sweep_fn(apply, layer: str, g: Grid, chunk: int, mesh: jax.sharding.Mesh, mode: str = "occlude"):
  """The jitted sweep for one setting.

  ``mode="occlude"``: ``(params, image [S,S,3], unit) -> [n*n]`` activations
  of one unit with the occluder at every position. ``mode="reveal"``:
  ``(params, image, background, _) -> [C]`` for every unit of the layer the
  flat grid index of the sharp window that maximises it.
  """
  num_chunks = -(-g.count // chunk)
  sharded = parallel.batch_sharding(mesh, 4)

  def values(params, image, background, unit):
    """``[num_chunks * chunk]`` (occlude: ``unit`` only) or ``[num_chunks * chunk, C]`` (reveal)."""
    flat = jnp.minimum(jnp.arange(num_chunks * chunk), g.count - 1)
    rows, cols = (flat // g.n) * g.stride, (flat % g.n) * g.stride
    if mode == "occlude":
      fills = patch_means(image, g).reshape(-1, 3)[flat]
    else:
      fills = jnp.zeros((num_chunks * chunk, 3), image.dtype)
    xs = (rows.reshape(num_chunks, chunk), cols.reshape(num_chunks, chunk), fills.reshape(num_chunks, chunk, 3))

    def one_chunk(x):
      r, c, m = x
      batch = occlude(image, r, c, m, g.side) if mode == "occlude" else reveal(image, background, r, c, g.side)
      v = objectives.unit_values(apply(params, jax.lax.with_sharding_constraint(batch, sharded)), layer)
      return jnp.take(v, unit, axis=1) if mode == "occlude" else v  # [chunk] or [chunk, C]

    out = jax.lax.map(one_chunk, xs)
    return out.reshape(num_chunks * chunk, *out.shape[2:])

  @jax.jit
  def fn(params, image, background, unit):
    v = values(params, image, background, unit)[:g.count]
    return v if mode == "occlude" else jnp.argmax(v, axis=0)  # argmax: the first maximum, row-major

  return fn


def _prepare(model: ModelRecord, image, fraction: float, stride: int, chunk: int, mesh, params):
  """Checks a sweep's arguments; returns ``(image, grid, chunk, mesh, params)``."""
  image = check_images(model, np.asarray(image)[None])[0]
  if image.shape[0] != image.shape[1]:
    raise ValueError(f"Occlusion queries must be square images; got {image.shape[0]}x{image.shape[1]}.")
  g = grid(image.shape[0], fraction, stride)
  if not isinstance(chunk, (int, np.integer)) or chunk < 1:
    raise ValueError(f"chunk must be a positive number of images per pass; got {chunk!r}.")
  mesh = mesh or parallel.data_mesh()
  # As few chunks as ``chunk`` allows, evened out so that the last one is not mostly padding
  # (81 positions with chunk 64: two chunks of 41, not 128 images).
  num_chunks = -(-g.count // min(int(chunk), g.count))
  chunk = parallel.round_up(-(-g.count // num_chunks), mesh.size)
  params = parallel.replicate(model.params, mesh) if params is None else params
  return image, g, chunk, mesh, params


def sweep(model: ModelRecord, image, layer: str, unit: int, *, fraction: float = PAPER_FRACTION,
          stride: int = PAPER_STRIDE, chunk: int = 128, mesh: jax.sharding.Mesh | None = None,
          params=None) -> np.ndarray:
  """The unit's activation for every occluder position, in one jitted pass.

  Args:
    model: the model record.
    image: ``[S, S, 3]`` query image in ``[0, 1]`` (square; any side the model
      accepts).
    layer: layer of the unit.
    unit: channel index; its activation is the spatial mean of the channel.
    fraction: occluder side / image side, in ``(0, 1)``.
    stride: pixels between positions, ``>= 1``.
    chunk: most occluded images per forward pass; bounds memory. The
      positions are split into as few passes as that allows, of equal size
      (rounded up to a multiple of the device count).
    mesh: 1-D device mesh; default all devices.
    params: the model's params already placed on ``mesh`` (default: the
      record's, replicated here on every call).

  Returns:
    ``[n, n]`` float32: entry ``(i, j)`` is the activation with the occluder's
    top-left corner at pixel ``(i * stride, j * stride)``.

  Raises:
    ValueError: a bad image, fraction, stride, chunk or unit, in one sentence.
  """
  image, g, chunk, mesh, params = _prepare(model, image, fraction, stride, chunk, mesh, params)
  width = render_lib.layer_width(model, layer)
  if not 0 <= int(unit) < width:
    raise ValueError(f"Unit {unit} is out of range for layer {layer!r} of {model.name}, "
                     f"which has units 0..{width - 1}.")
  fn = _sweep_fn(model.apply, layer, g, chunk, mesh)
  replicated = jax.device_put(image, NamedSharding(mesh, jax.sharding.PartitionSpec()))
  values = fn(params, replicated, replicated, jnp.int32(unit))
  return np.asarray(values).reshape(g.n, g.n)


def reveal_sweep(model: ModelRecord, image, background, layer: str, *, fraction: float = PAPER_FRACTION,
                 stride: int = PAPER_STRIDE, chunk: int = 128, mesh: jax.sharding.Mesh | None = None,
                 params=None) -> np.ndarray:
  """Where a sharp window on a background maximises each unit of a layer.

  The image shown at a grid position is ``background`` everywhere except a
  square window (the occluder's side) that shows ``image``. One jitted pass
  over all positions, like :func:`sweep`; every unit of the layer is read
  from the same forward passes.

  Args:
    model, image, layer, fraction, stride, chunk, mesh, params: as for :func:`sweep`.
    background: ``[S, S, 3]`` in ``[0, 1]``, the same shape as ``image``.

  Returns:
    ``[C]`` int: per unit, the flat grid index (row-major; the first on
    ties) of the window position with the highest activation; corners via
    ``grid(S, fraction, stride).corner(index)``.
  """
  image, g, chunk, mesh, params = _prepare(model, image, fraction, stride, chunk, mesh, params)
  background = check_images(model, np.asarray(background)[None])[0]
  if background.shape != image.shape:
    raise ValueError(f"The background must have the image's shape {tuple(image.shape)}; "
                     f"got {tuple(background.shape)}.")
  fn = _sweep_fn(model.apply, model.check_layer(layer), g, chunk, mesh, "reveal")
  rep = NamedSharding(mesh, jax.sharding.PartitionSpec())
  return np.asarray(fn(params, jax.device_put(image, rep), jax.device_put(background, rep), jnp.int32(0)))


def brute_force_sweep(model: ModelRecord, image, layer: str, unit: int, *, fraction: float = PAPER_FRACTION,
                      stride: int = PAPER_STRIDE, limit: int | None = None) -> np.ndarray:
  """The same map as :func:`sweep` by the obvious loop (reference for tests).

  One occluded image at a time, built in numpy (``patch[...] = patch.mean()``)
  and passed through a jitted single-image forward pass.

  Args:
    model, image, layer, unit, fraction, stride: as for :func:`sweep`.
    limit: stop after this many positions (row-major; for timing); the rest
      of the map is NaN.

  Returns:
    ``[n, n]`` float32 activations.
  """
  image = check_images(model, np.asarray(image)[None])[0]
  g = grid(image.shape[0], fraction, stride)
  fn = jax.jit(lambda p, x: objectives.unit_values(model.apply(p, x), layer)[0, unit])
  out = np.full(g.count, np.nan, np.float32)
  for k in range(g.count if limit is None else min(limit, g.count)):
    r, c = g.corner(k)
    occluded = image.copy()
    patch = occluded[r:r + g.side, c:c + g.side]
    patch[...] = patch.mean(axis=(0, 1))
    out[k] = float(fn(model.params, occluded[None]))
  return out.reshape(g.n, g.n)
