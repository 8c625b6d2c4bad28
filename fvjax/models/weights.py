"""Safe weight-file readers: PyTorch ``.pth`` without torch, ``.npz``, ``.safetensors``.

A PyTorch checkpoint is a pickle, and unpickling runs whatever callables the
file names. The reader here never does: its unpickler resolves only an
allow-list of globals (an ordered dict, the tensor-rebuild functions and the
storage types), each mapped to a numpy stand-in; any other global is refused
with :class:`UnsafeWeightFileError` before anything runs. Both formats are
read: the zip format of torch >= 1.6 (``archive/data.pkl`` plus one file per
storage) and the legacy format (magic number, protocol, system info, the
pickled object, the storage keys, then each storage's raw bytes).

Every reader returns a flat ``dict[str, numpy.ndarray]`` of state-dict keys.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from typing import Any, Callable

import numpy as np

ACCEPTED = ".pth/.pt/.bin (PyTorch state dict), .npz or .safetensors"
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

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
  """The file is truncated or is not a weight file of the claimed format."""


class _Storage:
  """A reference to a storage; its bytes arrive after (legacy) or beside (zip) the pickle."""

  def __init__(self, key: str, dtype: Any):
    self.key, self.dtype = key, dtype


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


def _materialise(obj: Any, buffers: dict[str, np.ndarray]) -> Any:
  """Replaces every _Tensor in a nested structure by a numpy copy of its view."""
  if isinstance(obj, _Tensor):
    buf = buffers[obj.storage.key]
    numel = int(np.prod(obj.size)) if obj.size else 1
    if numel == 0:
      return np.zeros(obj.size, buf.dtype)
    last = obj.offset + sum((n - 1) * s for n, s in zip(obj.size, obj.stride))
    if last >= buf.size:
      raise CorruptWeightFileError("A tensor reaches past the end of its storage; the file is corrupt.")
    view = np.lib.stride_tricks.as_strided(buf[obj.offset:], obj.size, [s * buf.itemsize for s in obj.stride])
    return np.array(view)
  if isinstance(obj, dict):
    return type(obj)((k, _materialise(v, buffers)) for k, v in obj.items())
  if isinstance(obj, (list, tuple)):
    return type(obj)(_materialise(v, buffers) for v in obj)
  return obj


def _from_bytes(raw: bytes, dtype, path: str) -> np.ndarray:
  if dtype == "bfloat16":  # widen bf16 to f32: its bits are the top half of a float32
    return (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
  return np.frombuffer(raw, dtype)


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
      # ('storage', storage_type, key, location, numel)
      _, storage_type, key, _, _ = pid
      storages[key] = _Storage(key, _storage_dtype(storage_type, path))
      return storages[key]

    obj = _SafeUnpickler(io.BytesIO(zf.read(pkl)), path, load_storage).load()
    buffers = {k: _from_bytes(zf.read(f"{prefix}data/{k}"), s.dtype, path) for k, s in storages.items()}
  return _materialise(obj, buffers)


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
      # ('storage', storage_type, key, location, numel[, view_metadata])
      storage_type, key = pid[1], pid[2]
      storages.setdefault(key, _Storage(key, _storage_dtype(storage_type, path)))
      return storages[key]

    obj = _SafeUnpickler(f, path, load_storage).load()
    keys = load_plain()
    buffers = {}
    for key in keys:
      header = f.read(8)
      if len(header) < 8:
        raise CorruptWeightFileError(f"{path!r} is truncated: storage {key!r} is missing.")
      numel = struct.unpack("<q", header)[0]
      dtype = storages[key].dtype
      itemsize = 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize
      raw = f.read(numel * itemsize)
      if len(raw) < numel * itemsize:
        raise CorruptWeightFileError(f"{path!r} is truncated inside storage {key!r}.")
      buffers[key] = _from_bytes(raw, dtype, path)
  return _materialise(obj, buffers)


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
          TypeError, IndexError, AttributeError, UnicodeDecodeError) as e:
    raise CorruptWeightFileError(f"{path!r} is truncated or not a PyTorch checkpoint ({type(e).__name__}); "
                                 f"accepted: {ACCEPTED}.") from e
  return _state_dict(obj, path)


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Reads an ``.npz`` of named arrays (pickled objects are refused)."""
  try:
    with np.load(os.fspath(path), allow_pickle=False) as z:
      return {k: z[k] for k in z.files}
  except ValueError as e:
    raise UnsafeWeightFileError(f"Refusing to load {os.fspath(path)!r}: it holds pickled objects.") from e
  except (zipfile.BadZipFile, OSError, EOFError) as e:
    raise CorruptWeightFileError(f"{os.fspath(path)!r} is truncated or not an .npz file.") from e


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Reads a ``.safetensors`` file (bf16 tensors are widened to float32)."""
  from safetensors import safe_open  # pylint: disable=g-import-not-at-top
  from safetensors import SafetensorError  # pylint: disable=g-import-not-at-top
  try:
    try:
      from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
      return dict(load_file(os.fspath(path)))
    except TypeError:  # bf16 has no numpy dtype: go through the raw bytes
      out = {}
      with safe_open(os.fspath(path), framework="flax") as f:
        for k in f.keys():
          out[k] = np.asarray(f.get_tensor(k), np.float32)
      return out
  except (SafetensorError, OSError) as e:
    raise CorruptWeightFileError(f"{os.fspath(path)!r} is truncated or not a .safetensors file ({e}).") from e


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
