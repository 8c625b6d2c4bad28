"""Weight readers: torch-free .pth (zip and legacy), .npz, .safetensors, and refusals."""

import os
import pickle
import zipfile

import numpy as np
import pytest

from fvjax.models import efficientnet_lite
from fvjax.models import weights

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def _expected():
  with np.load(os.path.join(FIXTURES, "tiny_expected.npz")) as z:
    return {k: z[k] for k in z.files}


@pytest.mark.parametrize("name", ["tiny_zip.pth", "tiny_legacy.pth", "tiny_wrapped.pth"])
def test_pth_fixtures_match_torch(name):
  got = weights.read_pth(os.path.join(FIXTURES, name))
  want = _expected()
  assert set(got) == set(want)
  for k, v in want.items():
    assert got[k].dtype == v.dtype, k
    np.testing.assert_array_equal(got[k], v, err_msg=k)


def test_real_efficientnet_file():
  sd = weights.read_weights(efficientnet_lite.default_weights_path())
  assert sd["_conv_stem.weight"].shape == (32, 3, 3, 3)
  assert sd["_fc.weight"].shape == (1000, 1280)
  assert all(np.isfinite(v).all() for v in sd.values() if v.dtype.kind == "f")
  assert (sd["_bn0.running_var"] >= 0).all() and (sd["_bn0.running_var"] > 0).mean() > 0.8


class _Payload:
  """Unpickling this would create a marker file."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (os.system, (f"touch {self.marker}",))


def _legacy_with(obj):
  header = b"".join(pickle.dumps(x, protocol=2) for x in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}))
  return header + pickle.dumps(obj, protocol=2) + pickle.dumps([], protocol=2)


def test_hostile_legacy_pickle_is_refused_and_never_runs(tmp_path):
  marker = tmp_path / "pwned"
  for i, blob in enumerate([pickle.dumps(_Payload(marker)), _legacy_with({"w": _Payload(marker)})]):
    path = tmp_path / f"evil{i}.pth"
    path.write_bytes(blob)
    with pytest.raises(weights.UnsafeWeightFileError, match=r"calls (posix|os)\.system"):
      weights.read_weights(path)
  assert not marker.exists()


def test_hostile_zip_pickle_is_refused_and_never_runs(tmp_path):
  marker = tmp_path / "pwned"
  path = tmp_path / "evil.pth"
  with zipfile.ZipFile(path, "w") as zf:
    zf.writestr("archive/data.pkl", pickle.dumps({"w": _Payload(marker)}))
    zf.writestr("archive/byteorder", "little")
  with pytest.raises(weights.UnsafeWeightFileError, match="only tensor rebuilds"):
    weights.read_pth(path)
  assert not marker.exists()


def test_builtins_eval_is_refused(tmp_path):
  path = tmp_path / "eval.pth"
  path.write_bytes(b"cbuiltins\neval\n(S'1+1'\ntR.")  # protocol-0 pickle calling eval("1+1")
  with pytest.raises(weights.UnsafeWeightFileError, match="builtins.eval"):
    weights.read_pth(path)


@pytest.mark.parametrize("source", ["real", "tiny_zip.pth", "tiny_legacy.pth"])
def test_truncated_files_are_reported(tmp_path, source):
  src = efficientnet_lite.default_weights_path() if source == "real" else os.path.join(FIXTURES, source)
  blob = open(src, "rb").read()
  path = tmp_path / "cut.pth"
  path.write_bytes(blob[: len(blob) // 2])
  with pytest.raises(weights.CorruptWeightFileError, match="truncated|not a PyTorch checkpoint"):
    weights.read_pth(path)


def test_npz_and_safetensors_round_trip(tmp_path):
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  arrays = {"a.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(4, np.int64)}
  np.savez(tmp_path / "w.npz", **arrays)
  save_file(arrays, str(tmp_path / "w.safetensors"))
  for name in ("w.npz", "w.safetensors"):
    got = weights.read_weights(tmp_path / name)
    for k, v in arrays.items():
      np.testing.assert_array_equal(got[k], v)


def test_pickled_npz_is_refused(tmp_path):
  np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}], dtype=object))
  with pytest.raises(weights.UnsafeWeightFileError, match="pickled objects"):
    weights.read_weights(tmp_path / "obj.npz")


def test_missing_file_and_wrong_suffix(tmp_path):
  with pytest.raises(FileNotFoundError, match="accepted: .pth"):
    weights.read_weights(tmp_path / "none.pth")
  (tmp_path / "w.h5").write_bytes(b"x")
  with pytest.raises(ValueError, match=r"suffix '.h5'.*accepted"):
    weights.read_weights(tmp_path / "w.h5")


def test_unflatten():
  assert weights.unflatten({"a.b": 1, "a.c": 2, "d": 3}) == {"a": {"b": 1, "c": 2}, "d": 3}
