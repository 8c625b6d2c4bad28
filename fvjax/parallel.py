"""Data parallelism over a 1-D device mesh.

fvjax shards the *batch* of images being optimised (or classified) across
devices and replicates the model's params; ``jax.jit`` then partitions every
op by the batch axis. (pmap is in maintenance mode in current JAX and built on
shard_map; jit with NamedSharding is the recommended path.) On CPU, test it
with ``XLA_FLAGS=--xla_force_host_platform_device_count=8``.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "data"


def data_mesh(devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
  """A 1-D mesh named ``"data"`` over ``devices`` (default: all devices)."""
  devices = list(jax.devices() if devices is None else devices)
  return jax.make_mesh((len(devices),), (AXIS,), devices=devices,
                       axis_types=(jax.sharding.AxisType.Auto,))


def round_up(n: int, multiple: int) -> int:
  """Smallest multiple of ``multiple`` that is >= ``n``."""
  return -(-n // multiple) * multiple


def batch_sharding(mesh: jax.sharding.Mesh, ndim: int, axis: int = 0) -> NamedSharding:
  """Splits dimension ``axis`` of an ``ndim``-array over the mesh; the other dimensions are replicated."""
  spec = [None] * ndim
  spec[axis] = AXIS
  return NamedSharding(mesh, P(*spec))


def shard_batch(tree: Any, mesh: jax.sharding.Mesh, axis: int = 0) -> Any:
  """Places every array whose ``axis`` divides by the mesh size sharded along it;
  the rest (scalars such as Adam's step count) is replicated."""

  def place(x):
    x = np.asarray(x) if not isinstance(x, jax.Array) else x
    if x.ndim > axis and x.shape[axis] % mesh.size == 0:
      return jax.device_put(x, batch_sharding(mesh, x.ndim, axis))
    return jax.device_put(x, NamedSharding(mesh, P()))

  return jax.tree_util.tree_map(place, tree)


def replicate(tree: Any, mesh: jax.sharding.Mesh) -> Any:
  """Places a pytree on every device of the mesh (e.g. model params)."""
  return jax.device_put(tree, NamedSharding(mesh, P()))


def map_batches(fn: Callable[[Any, jax.Array], Any], params: Any, images: Any, batch_size: int = 16,
                mesh: jax.sharding.Mesh | None = None) -> Any:
  """Batched inference: ``fn(params, batch)`` over ``images`` in equal, device-sharded batches.

  Every batch has the same shape (the last one is padded by repeating its last
  image, and the padding stripped), so a jitted ``fn`` compiles once; each
  batch is split over the mesh and ``params`` replicated.

  Args:
    fn: ``(params, images [b,...]) -> pytree of [b, ...]`` arrays, usually jitted.
    params: any pytree ``fn`` reads besides the images (model params, ...);
      replicate it once with :func:`replicate` when calling this in a loop
      (already placed arrays are not copied again).
    images: ``[N, ...]`` array.
    batch_size: images per call (rounded up to a multiple of the device count;
      for fewer images, the next power of two above their number).
    mesh: a 1-D device mesh (default: all devices).

  Returns:
    The outputs as numpy arrays, concatenated over the ``N`` images.
  """
  mesh = mesh or data_mesh()
  n = len(images)
  # Fewer images than a batch: the next power of two, so that sets of many sizes share a few compiled shapes.
  size = round_up(min(batch_size, 1 << max(n - 1, 0).bit_length()), mesh.size)
  params = replicate(params, mesh)
  outs = []
  for start in range(0, n, size):
    chunk = np.asarray(images[start:start + size])
    m = len(chunk)
    chunk = np.concatenate([chunk, np.repeat(chunk[-1:], size - m, axis=0)]) if m < size else chunk
    out = fn(params, shard_batch(chunk, mesh))
    outs.append(jax.tree_util.tree_map(lambda a, m=m: np.asarray(a)[:m], out))
  return jax.tree_util.tree_map(lambda *parts: np.concatenate(parts), *outs)
