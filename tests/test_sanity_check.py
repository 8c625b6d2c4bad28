"""The sanity-check job on an ImageNet-layout folder (the paper's mode), with a tiny model."""

import dataclasses
import json

import jax
import numpy as np
import pytest
from PIL import Image

from fvjax import models
from fvjax.experiments import sanity_check


def test_folder_mode_streams_classes_and_resumes(tmp_path):
  rng = np.random.default_rng(0)
  root = tmp_path / "val"
  for c in range(4):
    (root / f"n{c:03d}").mkdir(parents=True)
    base = rng.uniform(0, 255, size=(1, 1, 3))
    for i in range(3):
      img = np.clip(base + rng.normal(0, 30, size=(40, 40, 3)), 0, 255).astype(np.uint8)
      Image.fromarray(img).save(root / f"n{c:03d}" / f"{i}.png")
  model = models.load("tiny_cnn")
  # tiny_cnn's classes are not ImageNet's: its folders map through a class map.
  classes = sanity_check.folder_classes(str(root), model, per_class=3, class_map={f"n{c:03d}": c + 1 for c in range(4)})
  assert classes.classes == (1, 2, 3, 4) and classes.names == ("class_1 (n000)", "class_2 (n001)", "class_3 (n002)",
                                                               "class_4 (n003)")
  assert classes.load(2).shape == (3, 64, 64, 3)
  work = tmp_path / "work"
  config = sanity_check.Config(steps=3, render_batch=2, num_other=2, num_bootstrap=20)
  metrics = sanity_check.run(model, config, str(work), classes=classes, progress=False)
  assert metrics["num_classes"] == 4 and metrics["num_other_classes"] == 2
  assert len(list((work / "store").glob("visualizations-*.npz"))) == 2  # one entry per render chunk
  # Colour-blob classes: natural images of a class are more alike than across classes.
  assert metrics["per_layer"]["conv1"]["s_same"] > metrics["per_layer"]["conv1"]["s_diff"]
  # Killed after the similarity of some classes: a rerun finishes and agrees.
  [entry] = (work / "store").glob("similarity-*.npz")
  progress = dict(np.load(entry))
  progress["fv"][:2] = np.nan
  np.savez(entry, **progress)
  again = sanity_check.run(model, config, str(work), classes=classes, progress=False)
  assert again["per_layer"] == json.loads(json.dumps(metrics["per_layer"]))


def _two_classes():
  rng = np.random.default_rng(1)
  base = rng.uniform(0, 1, size=(2, 1, 1, 1, 3))
  images = np.clip(base + rng.normal(0, 0.1, size=(2, 3, 64, 64, 3)), 0, 1).astype(np.float32)
  return sanity_check.ClassImages((1, 2), lambda i: images[i], ("a", "b"), source={"images": "blobs"})


@pytest.mark.slow
def test_rerun_with_other_settings_never_reuses_old_results(tmp_path):
  """A workdir reused with another measure, layer list, step count or seed gives that run's own numbers."""
  model, classes = models.load("tiny_cnn"), _two_classes()
  base = sanity_check.Config(steps=2, layers=("conv1", "conv2"), render_batch=2, num_bootstrap=5)
  sanity_check.run(model, base, str(tmp_path / "w"), classes=classes, progress=False)
  for change in (dict(measure="pearson"), dict(layers=["conv1", "logits"]), dict(steps=3), dict(seed=1)):
    config = dataclasses.replace(base, **change)
    reused = sanity_check.run(model, config, str(tmp_path / "w"), classes=classes, progress=False)
    fresh = sanity_check.run(model, config, str(tmp_path / f"fresh_{len(change)}_{list(change)[0]}"),
                             classes=classes, progress=False)
    assert reused["per_layer"] == fresh["per_layer"], change


def test_degenerate_settings_are_refused_before_any_work(tmp_path):
  import pytest  # pylint: disable=g-import-not-at-top
  from fvjax import classify  # pylint: disable=g-import-not-at-top
  model = models.load("tiny_cnn")
  one = sanity_check.ClassImages((3,), lambda i: np.zeros((2, 64, 64, 3), np.float32), ("x",))
  with pytest.raises(ValueError, match="at least 2 classes"):
    sanity_check.run(model, sanity_check.Config(), str(tmp_path), classes=one)
  two = one._replace(classes=(3, 4), names=("x", "y"))
  with pytest.raises(ValueError, match=r"num_bootstrap=0; accepted: an integer >= 1"):  # the config refuses it
    sanity_check.Config(num_bootstrap=0)
  as_uint8 = two._replace(load=lambda i: np.full((2, 64, 64, 3), 200, np.uint8))
  with pytest.raises(ValueError, match=r"must be floats in \[0, 1\]"):
    sanity_check.run(model, sanity_check.Config(steps=1, num_bootstrap=2), str(tmp_path / "u8"), classes=as_uint8,
                     progress=False)
  broken = model.replace(params=jax.tree_util.tree_map(lambda a: np.full_like(a, np.nan), model.params))
  with pytest.raises(ValueError, match="non-finite logits"):
    classify.top_k(broken, np.zeros((2, 64, 64, 3), np.float32))


@pytest.mark.slow
def test_method_accentuation_starts_from_the_class_photo_and_keys_the_store(tmp_path):
  model, classes = models.load("tiny_cnn"), _two_classes()
  base = sanity_check.Config(steps=2, layers=("conv1", "logits"), render_batch=2, num_bootstrap=5, crops=1)
  lucid = sanity_check.run(model, base, str(tmp_path), classes=classes, progress=False)
  accent = sanity_check.run(model, dataclasses.replace(base, method="accentuation"), str(tmp_path), classes=classes,
                            progress=False)
  assert (lucid["method"], accent["method"]) == ("lucid", "accentuation")
  assert len(list((tmp_path / "store").glob("visualizations-*.npz"))) == 2  # each method its own entry
  # Two steps from the class's first photo: processed like that class's photos at the first layer, unlike
  # Lucid's noise.
  assert accent["per_layer"]["conv1"]["normalized"] > 0.5 > lucid["per_layer"]["conv1"]["normalized"]
