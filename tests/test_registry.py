"""Model registry and record errors: one sentence, with what exists."""

import numpy as np
import pytest

from fvjax import models


def test_unknown_model_lists_known_and_suggests():
  with pytest.raises(KeyError) as e:
    models.load("efficientnet_lite")
  msg = str(e.value)
  assert "Did you mean 'efficientnet_lite0'?" in msg
  for name in models.names():
    assert name in msg


def test_unknown_option_lists_accepted():
  with pytest.raises(TypeError, match="accepted options: weights"):
    models.load("efficientnet_lite0", weight="x.pth")


def test_unknown_layer_suggests(lite0):
  with pytest.raises(KeyError, match="Did you mean 'block10'"):
    lite0.check_layer("blok10")
  assert lite0.check_layer("block10") == "block10"


@pytest.mark.parametrize("bad, match", [
    (np.zeros((224, 224, 3), np.float32), r"shape \(batch, height, width, 3\)"),
    (np.zeros((1, 224, 224, 3), np.uint8), "divide uint8 images by 255"),
    (np.full((1, 8, 8, 3), 255.0, np.float32), r"values in \[0, 1\]"),
])
def test_bad_images_are_refused_in_one_sentence(lite0, bad, match):
  with pytest.raises(ValueError, match=match):
    models.check_images(lite0, bad)


def test_missing_weight_file_says_where_it_comes_from():
  with pytest.raises(FileNotFoundError):
    models.load("efficientnet_lite0", weights="/nonexistent/lite0.pth")


def test_public_surface_of_the_package():
  import fvjax  # pylint: disable=g-import-not-at-top
  from fvjax.optvis import render  # pylint: disable=g-import-not-at-top
  assert fvjax.render is render.render and fvjax.load is models.load
  assert fvjax.experiments.sanity_check.run and fvjax.objectives.channel and fvjax.store.fingerprint
  with pytest.raises(AttributeError, match="public names: ModelRecord"):
    fvjax.nothing  # pylint: disable=pointless-statement
