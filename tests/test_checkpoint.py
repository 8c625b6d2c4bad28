"""orbax round trip of a params pytree."""

import numpy as np
import pytest

from fvjax import checkpoint


def test_round_trip(tmp_path, rng):
  tree = {"a": {"kernel": rng.normal(size=(3, 3, 2, 4)).astype(np.float32), "bias": np.arange(4, dtype=np.int32)},
          "b": [np.float32(2.5), rng.normal(size=(5,)).astype(np.float32)]}
  path = checkpoint.save(tmp_path / "ckpt", tree)
  back = checkpoint.restore(path)
  np.testing.assert_array_equal(back["a"]["kernel"], tree["a"]["kernel"])
  np.testing.assert_array_equal(back["a"]["bias"], tree["a"]["bias"])
  np.testing.assert_array_equal(back["b"][1], tree["b"][1])
  assert back["a"]["kernel"].dtype == np.float32


def test_round_trip_of_real_params(tmp_path, lite0):
  head = {"logits": lite0.params["params"]["logits"]}
  back = checkpoint.restore(checkpoint.save(tmp_path / "c", head), like=head)
  np.testing.assert_array_equal(back["logits"]["kernel"], np.asarray(head["logits"]["kernel"]))


def test_missing_checkpoint(tmp_path):
  with pytest.raises(FileNotFoundError, match="No checkpoint at"):
    checkpoint.restore(tmp_path / "nothing")


def test_replacing_a_checkpoint_keeps_the_old_one_until_the_new_one_is_complete(tmp_path, monkeypatch):
  path = checkpoint.save(tmp_path / "c", {"x": np.zeros(3, np.float32)})
  real_replace = checkpoint.os.replace

  def killed(src, dst):  # the kill falls between the two renames of the swap
    real_replace(src, dst)
    if dst.endswith(".old"):
      raise KeyboardInterrupt
  monkeypatch.setattr(checkpoint.os, "replace", killed)
  with pytest.raises(KeyboardInterrupt):
    checkpoint.save(path, {"x": np.ones(3, np.float32)})
  monkeypatch.undo()
  np.testing.assert_array_equal(checkpoint.restore(path)["x"], np.zeros(3))  # the previous one, not nothing
  checkpoint.save(path, {"x": np.ones(3, np.float32)})
  np.testing.assert_array_equal(checkpoint.restore(path)["x"], np.ones(3))
  assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]
