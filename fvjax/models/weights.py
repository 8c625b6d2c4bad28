"""Safe weight-file readers: PyTorch ``.pth`` without torch, ``.npz``, ``.safetensors``.

A PyTorch checkpoint is a pickle, and unpickling runs whatever callables the
file names. The reader here never does: its unpickler resolves only an
allow-list of globals (an ordered dict, the tensor-rebuild functions and the
storage types), each mapped to a numpy stand-in; any other global is refused
with :class:`UnsafeWeightFileError` before anything runs. Both formats are
read: the zip format of torch >= 1.6 (``archive/data.pkl`` plus one file per
storage) and the legacy format (magic number, protocol, system info, the
pickled object, the storage keys, then each storage's raw bytes).

A crafted file must not reach memory it does not hold: every tensor's offset,
sizes and strides are checked against its storage's real length (the bytes in
the file, not the count the pickle claims), ``.npz`` headers against their
members' bytes, and the arrays of one file together may take at most
:data:`_GROWTH` times its size plus :data:`_SLACK` bytes. Anything else is a
one-sentence :class:`CorruptWeightFileError`.

Every reader returns a flat ``dict[str, numpy.ndarray]`` of state-dict keys;
:func:`check_state_dict` then checks one against the tensors a model needs.
"""

from __future__ import annotations

import collections
import difflib
import functools
import io
import math
import operator
import os
import pickle
import struct
import zipfile
from typing import Any, Callable

import numpy as np

ACCEPTED = ".pth/.pt/.bin (PyTorch state dict), .npz or .safetensors"
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
# Views may hold more bytes than their storages (tied weights share one, a stride-0 expand repeats
# an element, bf16 widens to float32), so a file's arrays may outgrow it, but only so far: a crafted
# stride-0 view of one float could otherwise ask for any amount of memory.
_GROWTH, _SLACK = 4, 1 << 26

# torch storage type name -> numpy dtype
_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
    "BFloat16Storage": "bfloat16",
}


class UnsafeWeightFileError(ValueError):
  """The file's pickle names a callable outside the tensor allow-list."""


class CorruptWeightFileError(ValueError):
  """The file is truncated, inconsistent, or not a weight file of the claimed format."""


class _Storage:
  """A storage the pickle names; its elements (``data``) lie beside (zip) or after (legacy) the pickle."""

  def __init__(self, key: str, dtype: Any, numel: int):
    self.key, self.dtype, self.numel, self.data = key, dtype, numel, None


class _Tensor:
  """What the unpickler builds for a tensor: a view description of a storage."""

  def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple):
    self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
  return _Tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=None, backward_hooks=None, *unused):
  del requires_grad, backward_hooks
  return data


class _StorageType:
  def __init__(self, name):
    self.name = name


_ALLOWED: dict[tuple[str, str], Callable[..., Any] | Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch", "Size"): tuple,
    **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
}


class _SafeUnpickler(pickle.Unpickler):
  """Resolves only allow-listed globals; storages come from ``load_storage``."""

  def __init__(self, file, path: str, load_storage: Callable[[tuple], _Storage]):
    super().__init__(file)
    self._path, self._load_storage = path, load_storage

  def find_class(self, module, name):
    try:
      return _ALLOWED[(module, name)]
    except KeyError:
      raise UnsafeWeightFileError(
          f"Refusing to load {self._path!r}: its pickle calls {module}.{name}, and only tensor "
          "rebuilds (torch._utils._rebuild_tensor_v2, storages, OrderedDict) are allowed.") from None

  def persistent_load(self, pid):
    return self._load_storage(pid)


def _storage_dtype(storage_type, path):
  name = getattr(storage_type, "name", storage_type)
  dtype = _STORAGE_DTYPES.get(name) if isinstance(name, str) else None
  if dtype is None:
    raise UnsafeWeightFileError(f"Refusing to load {path!r}: unknown storage type {name!r}.")
  return dtype


def _new_storage(pid: Any, path: str) -> _Storage:
  """The storage of a persistent id ``('storage', type, key, location, numel[, view])``, checked."""
  if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage" and isinstance(pid[2], str)
          and type(pid[4]) is int and pid[4] >= 0):  # pylint: disable=unidiomatic-typecheck
    raise CorruptWeightFileError(f"{path!r} is corrupt: {pid!r} is not a storage reference "
                                 "('storage', type, key, location, element count).")
  if len(pid) == 6 and pid[5] is not None:
    raise CorruptWeightFileError(f"{path!r} uses storage views (torch < 0.4), which this reader does not support; "
                                 "re-save it with a newer torch.")
  return _Storage(pid[2], _storage_dtype(pid[1], path), pid[4])


def _itemsize(dtype: Any) -> int:
  return 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize


def _fill(storage: _Storage, raw: bytes, path: str) -> None:
  """Gives a storage its bytes, which must be exactly the elements its reference declares."""
  if len(raw) != storage.numel * _itemsize(storage.dtype):
    raise CorruptWeightFileError(f"{path!r} is corrupt: storage {storage.key!r} declares {storage.numel} "
                                 f"elements of {_itemsize(storage.dtype)} bytes but holds {len(raw)} bytes.")
  if storage.dtype == "bfloat16":  # widen bf16 to f32: its bits are the top half of a float32
    storage.data = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
  else:
    storage.data = np.frombuffer(raw, storage.dtype)


def _materialise(obj: Any, path: str) -> Any:
  """Replaces every _Tensor in a nested structure by a numpy copy of its view, checked first."""
  left = _GROWTH * os.path.getsize(path) + _SLACK  # bytes the arrays may still take

  def tensor(t: _Tensor, name: Any) -> np.ndarray:
    nonlocal left

    def corrupt(why):
      return CorruptWeightFileError(f"{path!r} is corrupt: tensor {name!r} {why}.")

    data = t.storage.data if isinstance(t.storage, _Storage) else None
    if data is None:
      raise corrupt("has no storage bytes in the file")
    dims = (t.offset, *t.size, *t.stride)
    # Exactly int: a bool or float here is no torch size.
    not_int = any(type(d) is not int for d in dims)  # pylint: disable=unidiomatic-typecheck
    if not_int or len(t.size) != len(t.stride):
      raise corrupt(f"has offset {t.offset!r}, sizes {t.size!r} and strides {t.stride!r}, not integers of one rank")
    if min(dims) < 0:
      raise corrupt(f"has offset {t.offset}, sizes {t.size} and strides {t.stride}, but none may be negative")
    numel = math.prod(t.size)
    if numel * data.itemsize > left:
      raise corrupt(f"has {numel} elements, more than a file of {os.path.getsize(path)} bytes can hold")
    left -= numel * data.itemsize
    if numel == 0:
      return np.zeros(t.size, data.dtype)
    end = t.offset + sum((n - 1) * s for n, s in zip(t.size, t.stride))
    if end >= data.size:
      raise corrupt(f"reaches element {end} of a storage that holds {data.size}")
    # A stride over a dimension of size 1 is never taken; zero keeps numpy's byte strides in range.
    strides = [s * data.itemsize if n > 1 else 0 for n, s in zip(t.size, t.stride)]
    return np.array(np.lib.stride_tricks.as_strided(data[t.offset:], t.size, strides))

  def walk(obj: Any, name: Any) -> Any:
    if isinstance(obj, _Tensor):
      return tensor(obj, name)
    if isinstance(obj, dict):
      return type(obj)((k, walk(v, k)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
      return type(obj)(walk(v, name) for v in obj)
    return obj

  return walk(obj, None)


def _read_zip(path: str) -> Any:
  with zipfile.ZipFile(path) as zf:
    names = zf.namelist()
    pkl = next((n for n in names if n.endswith("data.pkl")), None)
    if pkl is None:
      raise CorruptWeightFileError(f"{path!r} is a zip without data.pkl, so not a PyTorch checkpoint; accepted: {ACCEPTED}.")
    prefix = pkl[: -len("data.pkl")]
    byteorder = zf.read(prefix + "byteorder").decode() if prefix + "byteorder" in names else "little"
    if byteorder != "little":
      raise CorruptWeightFileError(f"{path!r} is big-endian; only little-endian checkpoints are supported.")
    storages: dict[str, _Storage] = {}

    def load_storage(pid):
      storage = _new_storage(pid, path)
      if storage.key not in storages:
        _fill(storage, zf.read(f"{prefix}data/{storage.key}"), path)
        storages[storage.key] = storage
      return storages[storage.key]

    obj = _SafeUnpickler(io.BytesIO(zf.read(pkl)), path, load_storage).load()
  return _materialise(obj, path)


def _read_legacy(path: str) -> Any:
  with open(path, "rb") as f:
    def load_plain():
      return _SafeUnpickler(f, path, lambda pid: (_ for _ in ()).throw(
          CorruptWeightFileError(f"{path!r} has a storage in its header; it is corrupt."))).load()

    if load_plain() != _LEGACY_MAGIC:
      raise CorruptWeightFileError(f"{path!r} is not a PyTorch checkpoint (bad magic number); accepted: {ACCEPTED}.")
    load_plain()  # protocol version
    load_plain()  # sys info (endianness, type sizes)
    storages: dict[str, _Storage] = {}

    def load_storage(pid):
      storage = _new_storage(pid, path)
      return storages.setdefault(storage.key, storage)

    obj = _SafeUnpickler(f, path, load_storage).load()
    keys = load_plain()
    size = os.fstat(f.fileno()).st_size
    for key in keys:
      header = f.read(8)
      if len(header) < 8:
        raise CorruptWeightFileError(f"{path!r} is truncated: storage {key!r} is missing.")
      numel, storage = struct.unpack("<q", header)[0], storages[key]
      # The record's count must match the reference, and fit in the file, before anything is read.
      if numel != storage.numel:
        raise CorruptWeightFileError(f"{path!r} is corrupt: storage {key!r} holds {numel} elements "
                                     f"but its reference declares {storage.numel}.")
      nbytes = numel * _itemsize(storage.dtype)
      if nbytes > size - f.tell():
        raise CorruptWeightFileError(f"{path!r} is truncated inside storage {key!r}.")
      _fill(storage, f.read(nbytes), path)
  return _materialise(obj, path)


def _state_dict(obj: Any, path: str) -> dict[str, np.ndarray]:
  """Unwraps ``{"state_dict": ...}``/``{"model": ...}``, strips ``module.``, keeps arrays."""
  for wrapper in ("state_dict", "model"):
    if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
      obj = obj[wrapper]
  if not isinstance(obj, dict):
    raise CorruptWeightFileError(f"{path!r} holds a {type(obj).__name__}, not a state dict; accepted: {ACCEPTED}.")
  out = {}
  for k, v in obj.items():
    if isinstance(v, np.ndarray):
      out[k[len("module."):] if k.startswith("module.") else k] = v
  return out


def read_pth(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Reads a PyTorch state dict (zip or legacy format) without torch or code execution.

  Raises:
    UnsafeWeightFileError: the pickle names a non-tensor callable.
    CorruptWeightFileError: truncated or not a PyTorch checkpoint.
  """
  path = os.fspath(path)
  try:
    obj = _read_zip(path) if zipfile.is_zipfile(path) else _read_legacy(path)
  except (UnsafeWeightFileError, CorruptWeightFileError):
    raise
  except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, struct.error, KeyError, ValueError,
          TypeError, IndexError, AttributeError, UnicodeDecodeError, OverflowError, RecursionError) as e:
    raise CorruptWeightFileError(f"{path!r} is truncated or not a PyTorch checkpoint ({type(e).__name__}); "
                                 f"accepted: {ACCEPTED}.") from e
  return _state_dict(obj, path)


def _npy_member(raw: bytes, name: str, path: str) -> np.ndarray:
  """One ``.npy`` member, its header checked against its bytes before numpy allocates the array."""
  f = io.BytesIO(raw)
  version = np.lib.format.read_magic(f)
  read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
  shape, _, dtype = read_header(f)
  if dtype.hasobject:
    raise UnsafeWeightFileError(f"Refusing to load {path!r}: its member {name!r} holds pickled objects.")
  if min(shape, default=0) < 0 or math.prod(shape) * dtype.itemsize != len(raw) - f.tell():
    raise CorruptWeightFileError(f"{path!r} is corrupt: member {name!r} declares shape {shape} of {dtype} "
                                 f"but holds {len(raw) - f.tell()} bytes of data.")
  f.seek(0)
  return np.lib.format.read_array(f, allow_pickle=False)


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Reads the ``.npy`` members of an ``.npz`` as named arrays (pickled objects are refused)."""
  path = os.fspath(path)
  try:
    with zipfile.ZipFile(path) as zf:
      # zf.read returns the bytes really stored (decompressed), whatever a header claims.
      return {info.filename[:-len(".npy")]: _npy_member(zf.read(info), info.filename, path)
              for info in zf.infolist() if info.filename.endswith(".npy")}
  except (UnsafeWeightFileError, CorruptWeightFileError):
    raise
  except (zipfile.BadZipFile, OSError, EOFError, ValueError, TypeError) as e:
    raise CorruptWeightFileError(f"{path!r} is truncated or not an .npz file ({type(e).__name__}); "
                                 f"accepted: {ACCEPTED}.") from e


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Reads a ``.safetensors`` file (bf16 tensors are widened to float32).

  The safetensors library checks the header itself (offsets inside the file,
  contiguous and not overlapping, each shape matching its bytes, no overflow).
  """
  from safetensors import safe_open  # pylint: disable=g-import-not-at-top
  from safetensors import SafetensorError  # pylint: disable=g-import-not-at-top
  path = os.fspath(path)
  try:
    try:
      from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
      out = dict(load_file(path))
    except TypeError:  # older safetensors: bf16 has no numpy dtype, go through jax
      with safe_open(path, framework="flax") as f:
        out = {k: np.asarray(f.get_tensor(k), np.float32) for k in f.keys()}
  except (SafetensorError, OSError) as e:
    raise CorruptWeightFileError(f"{path!r} is truncated or not a .safetensors file ({e}).") from e
  except AttributeError as e:  # safetensors names a numpy dtype (float8, float4) this numpy lacks
    raise CorruptWeightFileError(f"{path!r} holds tensors of a type numpy cannot represent ({e}); "
                                 "accepted: float, integer and bool tensors.") from e
  return {k: v.astype(np.float32) if v.dtype.name == "bfloat16" else v for k, v in out.items()}


_READERS = {".pth": read_pth, ".pt": read_pth, ".bin": read_pth, ".ckpt": read_pth,
            ".npz": read_npz, ".safetensors": read_safetensors}


def read_weights(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Reads a flat state dict from any supported weight file, chosen by suffix.

  Raises:
    FileNotFoundError: no such file.
    ValueError: unsupported suffix (or an Unsafe/CorruptWeightFileError).
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"No weight file at {path!r}; accepted: {ACCEPTED}.")
  suffix = os.path.splitext(path)[1].lower()
  if suffix not in _READERS:
    raise ValueError(f"Cannot read weight file {path!r} (suffix {suffix or 'none'!r}); accepted: {ACCEPTED}.")
  return _READERS[suffix](path)


def torch_shape(flax_shape: tuple[int, ...], kernel: bool) -> tuple[int, ...]:
  """The PyTorch shape of a Flax parameter: kernels go HWIO -> OIHW (convolution) or (in, out) -> (out, in)."""
  s = tuple(flax_shape)
  if not kernel:
    return s
  return s[::-1] if len(s) == 2 else (s[3], s[2], s[0], s[1])


def check_state_dict(sd: dict[str, np.ndarray], expected: dict[str, tuple[int, ...]], what: str) -> None:
  """Checks that ``sd`` holds every tensor of ``expected`` with its shape, before any conversion.

  Tensors a model does not use are allowed (torchvision's ``num_batches_tracked``,
  the auxiliary heads in lucent's InceptionV1 file), but a missing tensor's message
  names the unused one closest to it, since a renamed prefix is the usual cause.

  Args:
    sd: the state dict read from the file.
    expected: PyTorch key -> PyTorch shape.
    what: the model, with its article (``"a torchvision/timm ResNet-50"``).

  Raises:
    ValueError: naming the first missing tensor, or a tensor, its shape and the expected shape.
  """
  missing = [k for k in expected if k not in sd]
  if missing:
    unused = [k for k in sd if k not in expected]
    closest = difflib.get_close_matches(missing[0], unused, n=1, cutoff=0)
    hint = f"; of the file's {len(unused)} unused keys, the closest is {closest[0]!r}" if unused else ""
    raise ValueError(f"Not {what} state dict: key {missing[0]!r} is missing "
                     f"({len(missing)} of {len(expected)} expected keys absent{hint}).")
  for key, want in expected.items():
    if tuple(np.shape(sd[key])) != tuple(want):
      raise ValueError(f"Key {key!r} has shape {tuple(np.shape(sd[key]))}, "
                       f"but {what} state dict has {tuple(want)} there.")


def torch_to_flax(sd: dict[str, np.ndarray], where: dict[str, tuple], like: Any, what: str) -> dict[str, Any]:
  """A PyTorch state dict as a Flax variable tree shaped like ``like``.

  Args:
    sd: the state dict.
    where: torch key -> path of its Flax leaf in ``like`` (the last element
      ``"kernel"`` for weights, which are transposed to Flax's layout).
    like: the expected tree (arrays or shape structs).
    what: the kind of file, for the messages (e.g. ``"a lucent InceptionV1"``).

  Raises:
    ValueError: the first missing key or wrong shape, in one sentence.
  """
  shape = lambda loc: np.shape(functools.reduce(operator.getitem, loc, like))
  check_state_dict(sd, {k: torch_shape(shape(loc), loc[-1] == "kernel") for k, loc in where.items()}, what)
  out: dict[str, Any] = {}
  for key, (*path, leaf) in where.items():
    value = np.asarray(sd[key], np.float32)
    if leaf == "kernel":  # torch [out, in, kh, kw] / [out, in] -> Flax [kh, kw, in, out] / [in, out]
      value = value.T if value.ndim == 2 else np.transpose(value, (2, 3, 1, 0))
    functools.reduce(lambda node, p: node.setdefault(p, {}), path, out)[leaf] = value
  return out


def unflatten(flat: dict[str, Any], sep: str = ".") -> dict[str, Any]:
  """``{"a.b": x}`` -> ``{"a": {"b": x}}``."""
  out: dict[str, Any] = {}
  for key, value in flat.items():
    node = out
    *parents, leaf = key.split(sep)
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  return out


RANDOM = "random"  # weights="random": an untrained network, asked for explicitly


def weight_source(weights: str | os.PathLike | None, model: str, where: str) -> str | None:
  """Checks a model's ``weights=`` option; returns the file to read, or ``None`` for :data:`RANDOM`.

  A model without embedded weights never falls back to a random network by
  accident: hours of accelerator time on one would give meaningless numbers.

  Args:
    weights: a file path, ``"random"``, or ``None`` (not given).
    model: the model's name, for the messages.
    where: where its weight file comes from, for the messages.

  Raises:
    ValueError: ``weights`` not given.
    FileNotFoundError: no such file.
  """
  if weights is None:
    raise ValueError(f"{model} has no embedded weights: pass weights=PATH (--weights=PATH), {where}, or "
                     f"weights='{RANDOM}' (--weights={RANDOM}) for an untrained network.")
  if os.fspath(weights) == RANDOM:
    return None
  if not os.path.isfile(weights):
    raise FileNotFoundError(f"No {model} weights at {os.fspath(weights)!r}; pass {where}, or weights='{RANDOM}'.")
  return os.fspath(weights)
