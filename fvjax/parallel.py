"""Data parallelism over a 1-D device mesh, on one process or many.

fvjax shards the *batch* of images being optimised (or classified) across
devices and replicates the model's params; ``jax.jit`` then partitions every
op by the batch axis. (pmap is in maintenance mode in current JAX and built on
shard_map; jit with NamedSharding is the recommended path.) On CPU, test it
with ``XLA_FLAGS=--xla_force_host_platform_device_count=8``.

Beyond one host, the same code runs under ``jax.distributed`` (one process per
host, started with :func:`jax.distributed.initialize`): the mesh spans every
device of every process, values every process holds alike (params, rendering
state, shipped photos) are placed with :func:`put`, each process may feed only
its own share of a set of images (:func:`process_share`,
``map_batches(..., process_local=True)``), and results come back to every
process as numpy arrays (:func:`to_host`); a pass over a stream of batches
whose results combine in any order (counts, maxima) runs each process's own
batches on its own devices and combines the results (:func:`fold_batches`). Only process 0 writes files (:func:`is_writer`, used by
:mod:`fvjax.io`).
"""

from __future__ import annotations

import functools
import io
from typing import Any, Callable, Iterable, Iterator, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "data"


def is_distributed() -> bool:
  """Whether this is one of several processes of a ``jax.distributed`` run (without starting JAX's backend)."""
  return jax.distributed.is_initialized() and jax.process_count() > 1


def is_writer() -> bool:
  """Whether this process writes files: always, except in a multi-process run, where process 0 alone does."""
  return not is_distributed() or jax.process_index() == 0


def process_share(n: int) -> range:
  """The indices of ``n`` items (images of a class, files) this process loads: a contiguous block, in process order
  (process 0 the first ``ceil(n / processes)``); all of ``range(n)`` on a single process."""
  if not is_distributed():
    return range(n)
  per = -(-n // jax.process_count())
  start = min(n, jax.process_index() * per)
  return range(start, min(n, start + per))


def process_items(items: Iterable[Any]) -> Iterator[Any]:
  """The items this process handles: every ``processes``-th, from its own index (all of them on one process).

  For work whose results combine in any order (:func:`fold_batches`, :func:`process_max`); every process still
  iterates over all the items (so make the items cheap: paths or chunks of paths, not decoded images).
  """
  if not is_distributed():
    yield from items
    return
  index, count = jax.process_index(), jax.process_count()
  for i, item in enumerate(items):
    if i % count == index:
      yield item


def process_max(x: Any) -> np.ndarray:
  """The elementwise maximum of every process's ``x`` (the same shape on each), on every process (a collective)."""
  x = np.asarray(x)
  return multihost_utils.process_allgather(x).max(axis=0) if is_distributed() else x


def data_mesh(devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
  """A 1-D mesh named ``"data"`` over ``devices`` (default: all devices, of every process)."""
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


def put(x: Any, sharding: jax.sharding.Sharding) -> jax.Array:
  """``jax.device_put(x, sharding)``, also onto devices of other processes.

  A sharding over several processes takes a value every process holds alike (the same params, the same initial
  images): each process places its own devices' parts of it. (``jax.device_put`` would first compare the value
  across processes, a gather of all of it, on every call.) An array already placed so is not copied.
  """
  if sharding.is_fully_addressable or (isinstance(x, jax.Array) and (not x.is_fully_addressable
                                                                        or x.sharding == sharding)):
    return jax.device_put(x, sharding)
  host = np.asarray(x)
  host = host.astype(jax.dtypes.canonicalize_dtype(host.dtype), copy=False)  # float64 -> float32, as device_put
  return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def shard_batch(tree: Any, mesh: jax.sharding.Mesh, axis: int = 0) -> Any:
  """Places every array whose ``axis`` divides by the mesh size sharded along it;
  the rest (scalars such as Adam's step count) is replicated."""

  def place(x):
    x = np.asarray(x) if not isinstance(x, jax.Array) else x
    if x.ndim > axis and x.shape[axis] % mesh.size == 0:
      return put(x, batch_sharding(mesh, x.ndim, axis))
    return put(x, NamedSharding(mesh, P()))

  return jax.tree_util.tree_map(place, tree)


def shard_loaded(load: Callable[[np.ndarray | None], Any], size: int, mesh: jax.sharding.Mesh) -> Any:
  """:func:`shard_batch` of a ``[size, ...]`` batch (a pytree of them) of which each process loads only its rows.

  ``load(rows)`` returns the given rows of the batch, in their order (``None``: all of them). A process calls it
  with the rows its devices hold and feeds them with ``jax.make_array_from_process_local_data``: under
  ``jax.distributed`` no process reads the images of the others. On a single process, or when ``size`` does not
  divide by the mesh (the batch is then replicated), it loads the whole batch.
  """
  if not is_distributed() or size % mesh.size:
    return shard_batch(load(None), mesh)
  rows = _process_rows(batch_sharding(mesh, 1), size)[jax.process_index()]
  return jax.tree_util.tree_map(
      lambda x: jax.make_array_from_process_local_data(batch_sharding(mesh, x.ndim), x, (size, *x.shape[1:])),
      load(rows))


def replicate(tree: Any, mesh: jax.sharding.Mesh) -> Any:
  """Places a pytree on every device of the mesh (e.g. model params)."""
  return jax.tree_util.tree_map(lambda x: put(x, NamedSharding(mesh, P())), tree)


def to_host(tree: Any) -> Any:
  """Every array of ``tree`` as a numpy array; arrays spread over several processes are gathered, so that every
  process gets the whole value (a collective: every process must call it)."""
  leaves, treedef = jax.tree_util.tree_flatten(tree)
  spread = [i for i, x in enumerate(leaves) if isinstance(x, jax.Array) and not x.is_fully_addressable]
  if spread:
    if all(isinstance(leaves[i].sharding, NamedSharding) for i in spread):  # one gather for the whole tree
      gathered = jax.jit(_identity, out_shardings=tuple(NamedSharding(leaves[i].sharding.mesh, P()) for i in spread))(
          tuple(leaves[i] for i in spread))
      gathered = [g.addressable_data(0) for g in gathered]
    else:
      gathered = [multihost_utils.process_allgather(leaves[i], tiled=True) for i in spread]
    for i, g in zip(spread, gathered):
      leaves[i] = g
  return jax.tree_util.tree_unflatten(treedef, [np.asarray(x) for x in leaves])


def _identity(x):  # at module level: jit's cache keeps one compiled gather per set of shapes
  return x


def broadcast_bytes(data: bytes | None) -> bytes | None:
  """Process 0's ``data`` on every process (what the others pass is ignored); ``data`` itself on one process.

  How every process of a multi-process run resumes from the same stored results, which only process 0 need see
  (:mod:`fvjax.store`). A collective: every process must call it.
  """
  if not is_distributed():
    return data
  first = jax.process_index() == 0
  n = int(multihost_utils.broadcast_one_to_all(np.int64(-1 if data is None or not first else len(data))))
  if n < 0:
    return None
  # A few buffer sizes, so a few compiled broadcasts: powers of two up to 1 MiB, then whole MiB.
  size = 1 << max(n - 1, 1023).bit_length() if n <= 1 << 20 else round_up(n, 1 << 20)
  buffer = np.zeros(size, np.uint8)
  if first:
    buffer[:n] = np.frombuffer(data, np.uint8)
  return multihost_utils.broadcast_one_to_all(buffer)[:n].tobytes()


def from_first_process(x: Any) -> np.ndarray:
  """Process 0's ``x`` on every process (what the others pass is ignored); ``x`` itself on one process.

  For a value each process derives from its own share of the data but that must be the same everywhere (the
  class's first image as a seed: process 0's share starts with it).
  """
  if not is_distributed():
    return np.asarray(x)
  buffer = io.BytesIO()
  if jax.process_index() == 0:
    np.save(buffer, np.asarray(x), allow_pickle=False)
  return np.load(io.BytesIO(broadcast_bytes(buffer.getvalue())), allow_pickle=False)


def _process_rows(sharding: jax.sharding.Sharding, size: int) -> np.ndarray:
  """``[processes, size // processes]``: the rows of a ``[size, ...]`` batch sharded by ``sharding`` that hold each
  process's local data, in its order (what ``jax.make_array_from_process_local_data`` does with it)."""
  starts: dict[int, list[tuple[int, int]]] = {}
  for device, index in sharding.devices_indices_map((size,)).items():
    rows = index[0]
    starts.setdefault(device.process_index, []).append((rows.start or 0, rows.stop if rows.stop is not None else size))
  return np.stack([np.concatenate([np.arange(a, b) for a, b in sorted(set(starts[p]))]) for p in sorted(starts)])


def map_batches(fn: Callable[[Any, jax.Array], Any], params: Any, images: Any, batch_size: int = 16,
                mesh: jax.sharding.Mesh | None = None, *, process_local: bool = False) -> Any:
  """Batched inference: ``fn(params, batch)`` over ``images`` in equal, device-sharded batches.

  Every batch has the same shape (the last one is padded by repeating its last
  image, and the padding stripped), so a jitted ``fn`` compiles once; each
  batch is split over the mesh and ``params`` replicated.

  Args:
    fn: ``(params, images [b,...]) -> pytree of [b, ...]`` arrays, usually jitted.
    params: any pytree ``fn`` reads besides the images (model params, ...);
      replicate it once with :func:`replicate` when calling this in a loop
      (already placed arrays are not copied again).
    images: ``[N, ...]`` array (the same on every process), or with
      ``process_local`` this process's share of the images (e.g. its
      :func:`process_share` of them; shares may differ in size, even be empty).
    batch_size: images per call (rounded up to a multiple of the device count;
      for fewer images, the next power of two above their number).
    mesh: a 1-D device mesh (default: all devices).
    process_local: ``images`` are this process's share; the outputs are those
      of every process's images, process 0's first (on a single process, the
      same as without it).

  Returns:
    The outputs as numpy arrays, concatenated over the ``N`` images (on every process).
  """
  mesh = mesh or data_mesh()
  if process_local and is_distributed():
    return _map_local(fn, params, images, batch_size, mesh)
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
    outs.append(jax.tree_util.tree_map(lambda a, m=m: a[:m], to_host(out)))
  return jax.tree_util.tree_map(lambda *parts: np.concatenate(parts), *outs)


def _map_local(fn, params, images, batch_size, mesh):
  """:func:`map_batches` over every process's share: each process feeds its own rows of every batch, slicing its
  share batch by batch (a lazy sequence is loaded one batch at a time)."""
  counts = multihost_utils.process_allgather(np.int64(len(images)))  # [processes]
  processes = len(counts)
  n = int(counts.sum())
  size = round_up(min(batch_size, 1 << max(n - 1, 0).bit_length()), mesh.size)
  local = size // processes
  mine = len(images)
  first = np.asarray(images[0:local]) if mine else None
  shape, dtype = _item_type(first)
  sharding = batch_sharding(mesh, 1 + len(shape))
  rows = _process_rows(sharding, size)  # where each process's rows land in a batch
  params = replicate(params, mesh)
  parts: list[list[Any]] = [[] for _ in range(processes)]
  for start in range(0, int(counts.max()), local):
    chunk = first if start == 0 else np.asarray(images[start:start + local]) if start < mine else None
    if chunk is None:  # this share is done: padding while the others feed theirs
      chunk = np.zeros((local, *shape), dtype)
    elif len(chunk) < local:
      chunk = np.concatenate([chunk, np.repeat(chunk[-1:], local - len(chunk), axis=0)])
    out = to_host(fn(params, jax.make_array_from_process_local_data(sharding, chunk, (size, *shape))))
    for p in range(processes):
      m = int(np.clip(counts[p] - start, 0, local))
      parts[p].append(jax.tree_util.tree_map(lambda a, p=p, m=m: a[rows[p][:m]], out))
  flat = [part for per in parts for part in per]
  return jax.tree_util.tree_map(lambda *xs: np.concatenate(xs), *flat)


def _item_type(chunk: np.ndarray | None) -> tuple[tuple[int, ...], np.dtype]:
  """The shape and dtype of one image of every process's share, from the first process with a ``chunk`` (the first
  batch of its share; ``None`` for an empty share, which still feeds padding of that shape). A collective."""
  mine = np.full(8, -1, np.int64)  # dtype code, then the item's dimensions (-1: none); -1 first: no chunk
  if chunk is not None:
    mine[:chunk.ndim] = [ord(chunk.dtype.char), *chunk.shape[1:]]
  every = multihost_utils.process_allgather(mine)
  spec = every[every[:, 0] >= 0][0]
  return tuple(int(d) for d in spec[1:] if d >= 0), np.dtype(chr(spec[0]))


def fold_batches(fn: Callable[[Any, jax.Array], Any], params: Any, batches: Iterable[Any],
                 summarize: Callable[[Any], Any], combine: Callable[[Any, Any], Any], initial: Any, *,
                 batch_size: int = 32) -> Any:
  """A reduction over a stream of batches: ``fn`` on each (:func:`map_batches` over this process's devices),
  ``summarize`` of its per-image outputs, all summaries folded with ``combine`` (then over processes).

  ``combine`` must be associative and commutative with ``initial`` as its identity (counts add, maxima take the
  maximum), so that the result does not depend on how the batches are split: a 50,000-image calibration runs
  in constant memory, and under ``jax.distributed`` each process passes only its own share of the batches
  (:func:`process_share` of a folder's files, or :func:`process_items`) and every process gets the combined
  result (a collective: every process must call it).

  Args:
    fn: ``(params, images [b,...]) -> pytree of [b, ...]`` per-image outputs, usually jitted.
    params: any pytree ``fn`` reads besides the images; replicated once.
    batches: this process's batches ``[b_i, ...]`` (any sizes; a few compiled shapes, see :func:`map_batches`).
    summarize: per-image outputs of one batch -> a summary (a pytree of numpy arrays).
    combine: ``(summary, summary) -> summary``.
    initial: the summary of no images (what a process without batches contributes).
    batch_size: images per device call.

  Returns:
    The combined summary of every batch of every process.
  """
  mesh = data_mesh(jax.local_devices())  # this process's batches on this process's devices
  params = replicate(params, mesh)
  total = initial
  for batch in batches:
    total = combine(total, summarize(map_batches(fn, params, batch, batch_size, mesh)))
  if not is_distributed():
    return total
  every = multihost_utils.process_allgather(total)  # each leaf gains a leading axis of processes
  shares = [jax.tree_util.tree_map(lambda x, i=i: np.asarray(x)[i], every) for i in range(jax.process_count())]
  return functools.reduce(combine, shares)
