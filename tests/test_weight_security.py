"""Crafted weight files: views outside their storage, lying headers, wrong tensor shapes.

Every .pth here is written byte by byte (no torch): the pickle opcodes torch.save
emits, then the storages beside it (zip) or after it (legacy). Each test first
reads a well-formed file of the same make, so a refusal is due to the crafted field.
"""

import io
import json
import pickle
import re
import struct
import zipfile

import numpy as np
import pytest

from fvjax.models import efficientnet_lite
from fvjax.models import linen
from fvjax.models import resnet50
from fvjax.models import weights

_STORAGE = np.arange(4, dtype=np.float32)
_GOOD = {"w": ("0", 4, 0, (2, 2), (2, 1))}  # name -> (storage key, declared numel, offset, size, stride)


def _push(obj) -> bytes:
  """The opcodes that push ``obj`` (a str, int, None or tuple of them): a protocol-2 pickle less PROTO and STOP."""
  return pickle.dumps(obj, protocol=2)[2:-1]


def _state_dict_pickle(tensors, view=()) -> bytes:
  """An OrderedDict of float tensors pickled as torch.save does; ``view=(None,)`` gives legacy persistent ids."""
  body = b"".join(
      _push(name) + b"ctorch._utils\n_rebuild_tensor_v2\n(("
      + _push("storage") + b"ctorch\nFloatStorage\n" + _push(key) + _push("cpu") + _push(numel)
      + b"".join(_push(v) for v in view) + b"tQ"
      + _push(offset) + _push(tuple(size)) + _push(tuple(stride)) + b"\x89ccollections\nOrderedDict\n)RtR"
      for name, (key, numel, offset, size, stride) in tensors.items())
  return b"\x80\x02ccollections\nOrderedDict\n)R(" + body + b"u."


def _write_pth(path, fmt, tensors, storages=None, view=(None,), record_numel=None):
  """A zip (torch >= 1.6) or legacy .pth of float32 ``storages`` (key -> array) and ``tensors``."""
  storages = {"0": _STORAGE} if storages is None else storages
  if fmt == "zip":
    with zipfile.ZipFile(path, "w") as zf:
      zf.writestr("archive/data.pkl", _state_dict_pickle(tensors))
      zf.writestr("archive/byteorder", "little")
      for key, data in storages.items():
        zf.writestr(f"archive/data/{key}", data.tobytes())
  else:
    header = b"".join(pickle.dumps(x, 2) for x in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}))
    records = b"".join(struct.pack("<q", data.size if record_numel is None else record_numel) + data.tobytes()
                       for data in storages.values())
    path.write_bytes(header + _state_dict_pickle(tensors, view) + pickle.dumps(list(storages), 2) + records)
  return path


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_crafted_file_writer_makes_readable_files(tmp_path, fmt):
  got = weights.read_pth(_write_pth(tmp_path / "good.pth", fmt, _GOOD))
  np.testing.assert_array_equal(got["w"], [[0, 1], [2, 3]])


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
@pytest.mark.parametrize("case, tensor, match", [
    ("negative stride", ("0", 4, 0, (2,), (-1,)), "negative"),  # old code read the float before the buffer
    ("negative offset", ("0", 4, -4, (2,), (1,)), "negative"),
    ("stride 0, a PiB", ("0", 4, 0, (2**24, 2**24), (0, 0)), "more than a file"),  # old code: MemoryError
    ("numel lies", ("0", 3, 0, (3,), (1,)), "declares 3"),
])
def test_views_outside_their_storage_are_refused(tmp_path, fmt, case, tensor, match):
  del case
  weights.read_pth(_write_pth(tmp_path / "good.pth", fmt, _GOOD))
  with pytest.raises(weights.CorruptWeightFileError, match=match):
    weights.read_pth(_write_pth(tmp_path / "bad.pth", fmt, {"w": tensor}))


def test_legacy_record_larger_than_the_file_is_refused_before_reading(tmp_path):
  huge = 2**60  # old code: f.read(2**62) -> MemoryError
  path = _write_pth(tmp_path / "bad.pth", "legacy", {"w": ("0", huge, 0, (2,), (1,))}, record_numel=huge)
  with pytest.raises(weights.CorruptWeightFileError, match="truncated inside storage '0'"):
    weights.read_pth(path)


def test_legacy_storage_views_are_refused(tmp_path):
  path = _write_pth(tmp_path / "view.pth", "legacy", _GOOD, view=(("1", 2, 2),))  # old code ignored the view
  with pytest.raises(weights.CorruptWeightFileError, match="storage views"):
    weights.read_pth(path)


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_many_views_of_one_storage_stay_within_the_budget(tmp_path, fmt, monkeypatch):
  monkeypatch.setattr(weights, "_SLACK", 0, raising=False)
  data = np.zeros(1024, np.float32)
  tensors = {f"w{i}": ("0", 1024, 0, (1024,), (1,)) for i in range(64)}  # 256 KiB of arrays from a ~10 KB file
  weights.read_pth(_write_pth(tmp_path / "few.pth", fmt, dict(list(tensors.items())[:2]), {"0": data}))
  with pytest.raises(weights.CorruptWeightFileError, match="more than a file of"):
    weights.read_pth(_write_pth(tmp_path / "many.pth", fmt, tensors, {"0": data}))


def _npz(path, shape, data: bytes, descr="<f4"):
  header = io.BytesIO()
  np.lib.format.write_array_header_1_0(header, {"descr": descr, "fortran_order": False, "shape": shape})
  with zipfile.ZipFile(path, "w") as zf:
    zf.writestr("w.npy", header.getvalue() + data)
  return path


@pytest.mark.parametrize("shape", [(2**24, 2**24), (-1,), (8,), (2,)])  # old: MemoryError, then "pickled objects"
def test_npz_headers_must_match_their_bytes(tmp_path, shape):
  np.testing.assert_array_equal(weights.read_weights(_npz(tmp_path / "good.npz", (4,), _STORAGE.tobytes()))["w"],
                                _STORAGE)
  with pytest.raises(weights.CorruptWeightFileError, match=r"member 'w.npy' declares shape .* but holds 16 bytes"):
    weights.read_weights(_npz(tmp_path / "bad.npz", shape, _STORAGE.tobytes()))


def _safetensors(path, header, data: bytes):
  raw = json.dumps(header).encode()
  path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
  return path


def test_safetensors_of_a_type_numpy_lacks_is_refused_in_one_sentence(tmp_path):
  path = _safetensors(tmp_path / "f8.safetensors", {"w": {"dtype": "F8_E4M3", "shape": [4], "data_offsets": [0, 4]}},
                      b"\x01" * 4)  # old code: AttributeError from inside safetensors
  with pytest.raises(weights.CorruptWeightFileError, match="numpy cannot represent"):
    weights.read_weights(path)


@pytest.mark.parametrize("entry", [
    {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 1600]}},  # beyond the file
    {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},  # overlapping
     "v": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}},
    {"w": {"dtype": "F32", "shape": [8], "data_offsets": [0, 16]}},  # shape larger than its bytes
    {"w": {"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 16]}},
])
def test_crafted_safetensors_headers_are_refused(tmp_path, entry):
  """The safetensors library checks these itself (this guards that it still does): no check of ours."""
  with pytest.raises(weights.CorruptWeightFileError, match="not a .safetensors file"):
    weights.read_weights(_safetensors(tmp_path / "bad.safetensors", entry, _STORAGE.tobytes()))


@pytest.fixture(scope="module")
def resnet_state_dict():
  """A ResNet-50 state dict of the right shapes that takes no memory (broadcast zeros)."""
  like = linen.variable_shapes(resnet50.ResNet50(), resnet50.INPUT_SIZE)
  sd = {}
  for path, (prefix, kind) in resnet50._mapping().items():  # pylint: disable=protected-access
    for (collection, leaf), name in resnet50._KINDS[kind].items():  # pylint: disable=protected-access
      node = like[collection]
      for p in (*path, leaf):
        node = node[p]
      shape = node.shape[::-1] if len(node.shape) == 2 else node.shape  # dense (in, out) -> (out, in)
      shape = (shape[3], shape[2], shape[0], shape[1]) if len(shape) == 4 else shape  # conv HWIO -> OIHW
      sd[f"{prefix}.{name}"] = np.broadcast_to(np.float32(0), shape)
  return sd, like


@pytest.mark.parametrize("key, shape, want", [
    ("conv1.weight", (64, 3, 5, 5), (64, 3, 7, 7)),  # old message gave the Flax layout (7, 7, 3, 64)
    ("fc.weight", (1000,), (1000, 2048)),  # old: numpy's "axes don't match array"
])
def test_wrong_shape_names_tensor_and_expected_shape(resnet_state_dict, key, shape, want):
  sd, like = resnet_state_dict
  resnet50.convert_state_dict(sd, like)
  bad = {**sd, key: np.zeros(shape, np.float32)}
  with pytest.raises(ValueError, match=rf"Key {key!r} has shape {re.escape(str(shape))}, .* {re.escape(str(want))}"):
    resnet50.convert_state_dict(bad, like)


def test_missing_tensor_names_the_closest_unused_one(resnet_state_dict):
  sd, like = resnet_state_dict
  renamed = {f"backbone.{k}": v for k, v in sd.items()}
  with pytest.raises(ValueError, match=r"key 'conv1.weight' is missing .* closest is 'backbone.conv1.weight'"):
    resnet50.convert_state_dict(renamed, like)


def test_efficientnet_file_with_a_wrong_shape_is_refused_at_load(tmp_path):
  sd = weights.read_weights(efficientnet_lite.default_weights_path())
  sd["_conv_stem.weight"] = np.zeros((32, 3, 5, 5), np.float32)  # old code built the record; apply failed later
  np.savez(tmp_path / "lite0.npz", **sd)
  with pytest.raises(ValueError, match=r"Key '_conv_stem.weight' has shape \(32, 3, 5, 5\), .* \(32, 3, 3, 3\)"):
    efficientnet_lite.build(weights=str(tmp_path / "lite0.npz"))
