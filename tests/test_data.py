"""Embedded photos, image folders and augmented crops."""

import jax
import numpy as np
import pytest
from PIL import Image

from fvjax import data


def test_sample_photos_are_square_rgb_in_unit_range():
  images, names = data.sample_photos(64, names=("chelsea", "camera", "china"))
  assert images.shape == (3, 64, 64, 3) and images.dtype == np.float32
  assert 0.0 <= images.min() and images.max() <= 1.0
  np.testing.assert_array_equal(images[1, ..., 0], images[1, ..., 2])  # grayscale repeated
  with pytest.raises(ValueError, match="accepted: chelsea"):
    data.sample_photos(64, names=("lena",))


def test_image_folder_layout(tmp_path):
  for cls, n in (("n02", 2), ("n01", 3)):
    (tmp_path / cls).mkdir()
    for i in range(n):
      Image.fromarray(np.full((10, 20, 3), 40 * i, np.uint8)).save(tmp_path / cls / f"{i}.png")
  (tmp_path / "n01" / "notes.txt").write_text("x")
  paths, labels, classes = data.image_folder(tmp_path, per_class=2)
  assert classes == ("n01", "n02")
  assert list(labels) == [0, 0, 1, 1]
  batch = next(data.batches(paths, 8, 3))
  assert batch.shape == (3, 8, 8, 3)
  with pytest.raises(FileNotFoundError, match="one subfolder of images per class"):
    data.image_folder(tmp_path / "missing")
  (tmp_path / "bad.png").write_bytes(b"not an image")
  with pytest.raises(ValueError, match="Cannot read"):
    data.load_image(tmp_path / "bad.png", 8)


def test_augmented_crops_differ_and_stay_in_range():
  images, _ = data.sample_photos(64, names=("chelsea", "coffee"))
  crops = np.asarray(data.augmented_crops(jax.random.PRNGKey(0), images, 3, 32))
  assert crops.shape == (6, 32, 32, 3)
  assert 0.0 <= crops.min() and crops.max() <= 1.0
  assert not np.allclose(crops[0], crops[1])
  again = np.asarray(data.augmented_crops(jax.random.PRNGKey(0), images, 3, 32))
  np.testing.assert_array_equal(crops, again)


def test_sixteen_bit_and_bomb_images(tmp_path, monkeypatch):
  ramp = (np.linspace(0, 65535, 32 * 32).reshape(32, 32)).astype(np.uint16)
  Image.fromarray(ramp).save(tmp_path / "gray16.png")  # PIL writes mode I;16
  image = data.load_image(tmp_path / "gray16.png", 32)
  # True range, not saturated: the ramp spans [0, 1] with its mean near 0.5 (convert("RGB") gave all white).
  assert image.min() < 0.02 and image.max() > 0.98 and abs(image.mean() - 0.5) < 0.05
  Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "big.png")
  monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64*64 > 2x the limit: PIL's bomb error
  with pytest.raises(ValueError, match="decompression bomb"):
    data.load_image(tmp_path / "big.png", 8)


def test_json_results_never_hold_nan(tmp_path):
  from fvjax import io  # pylint: disable=g-import-not-at-top
  io.write_json(tmp_path / "m.json", {"a": float("nan"), "b": np.array([1.0, np.inf]), "c": np.float32(2)})
  text = (tmp_path / "m.json").read_text()
  assert "NaN" not in text and "Infinity" not in text
  assert io.read_json(tmp_path / "m.json") == {"a": None, "b": [1.0, None], "c": 2.0}
