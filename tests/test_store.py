"""The one resumable store: entries are keyed by the settings that made them, never mixed."""

import jax
import numpy as np
import pytest

from fvjax import models
from fvjax import store
from fvjax.experiments import train_detector
from fvjax.fooling import detector as det


def test_same_settings_resume_other_settings_get_a_fresh_entry(tmp_path):
  settings = {"steps": 4, "key": jax.random.PRNGKey(0), "layers": ("a", "b")}
  assert store.load_arrays(str(tmp_path), "x", settings) is None
  store.save_arrays(str(tmp_path), "x", settings, {"v": np.arange(3)})
  # Same settings in another spelling (list for tuple, key order): found.
  again = {"layers": ["a", "b"], "key": np.asarray(jax.random.PRNGKey(0)), "steps": 4.0}
  np.testing.assert_array_equal(store.load_arrays(str(tmp_path), "x", again)["v"], np.arange(3))
  for change in ({"steps": 5}, {"key": jax.random.PRNGKey(1)}, {"layers": ("a",)}):
    assert store.load_arrays(str(tmp_path), "x", {**settings, **change}) is None, change
  store.save_json(str(tmp_path), "u", settings, {"acc": 0.5})
  assert store.load_json(str(tmp_path), "u", settings) == {"acc": 0.5}
  assert store.load_json(str(tmp_path), "u", {**settings, "steps": 5}) is None


def test_an_entry_whose_settings_do_not_match_its_name_is_refused(tmp_path):
  where = store.save_arrays(str(tmp_path), "x", {"steps": 4}, {"v": np.zeros(2)})
  forged = store.path(str(tmp_path), "x", {"steps": 5}, ".npz")
  import shutil  # pylint: disable=g-import-not-at-top
  shutil.copy(where, forged)
  with pytest.raises(ValueError, match="other settings than its name says"):
    store.load_arrays(str(tmp_path), "x", {"steps": 5})


def test_model_settings_tell_weights_and_options_apart():
  a = models.load("tiny_cnn")
  b = a.replace(params=jax.tree_util.tree_map(lambda x: x + 1, a.params))
  assert store.model_settings(a) == store.model_settings(models.load("tiny_cnn"))
  assert store.model_settings(a)["params"] != store.model_settings(b)["params"]
  assert store.model_settings(a.replace(options={"x": 1})) != store.model_settings(a)


def test_detector_rerun_with_other_settings_trains_afresh(tmp_path):
  """Issue 15: a rerun with other --thresholds or --detector_steps reused the old pools and detector."""
  model = models.load("tiny_cnn")
  common = dict(key=jax.random.PRNGKey(0), train_units=[1, 2], heldout_units=[3], size=16, render_batch=2,
                config=det.DetectorConfig(size=16), batch_size=4, optimizer="adam", learning_rate=1e-3,
                num_heldout_photos=2, heldout_crops=1, progress=False)
  train_detector.run(model, str(tmp_path / "w"), thresholds=(1,), steps=2, **common)
  for change in (dict(thresholds=(2,), steps=2), dict(thresholds=(1,), steps=3)):
    reused = train_detector.run(model, str(tmp_path / "w"), **change, **common)
    fresh = train_detector.run(model, str(tmp_path / f"fresh{change['steps']}{change['thresholds'][0]}"), **change,
                               **common)
    for k in ("accuracy_natural", "accuracy_visualization", "train_accuracy_visualization", "history"):
      assert reused[k] == fresh[k], (change, k)
    published = det.load(tmp_path / "w" / "detector")  # the rerun's own detector, not the first run's
    expected = det.load(tmp_path / f"fresh{change['steps']}{change['thresholds'][0]}" / "detector")
    for x, y in zip(jax.tree_util.tree_leaves(published.variables), jax.tree_util.tree_leaves(expected.variables)):
      np.testing.assert_array_equal(x, y)
