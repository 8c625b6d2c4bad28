"""The one resumable store: entries are keyed by the settings that made them, never mixed."""

import dataclasses
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


@pytest.mark.slow
def test_detector_rerun_with_other_settings_trains_afresh(tmp_path):
  """Issue 15: a rerun with other --thresholds or --detector_steps reused the old pools and detector."""
  model = models.load("tiny_cnn")
  # As many held-out units as training ones: both pools render with one compiled step.
  base = train_detector.Config(units=(1, 2), heldout_units=(3, 4), render_size=16, render_batch=2, detector_size=16,
                               detector_batch=4, detector_optimizer="adam", detector_learning_rate=1e-3,
                               heldout_photos=2, heldout_crops=1, initial_sizes=(), checkpoint_every=1)
  work = str(tmp_path / "w")
  run = lambda **change: train_detector.run(model, dataclasses.replace(base, **change), work, progress=False)
  first = run(thresholds=(1,), detector_steps=2)
  assert first["num_train_visualizations"] == 2 and [h["step"] for h in first["history"]] == [1, 2]
  more = run(thresholds=(1, 2), detector_steps=2)
  assert more["num_train_visualizations"] == 4 and more["num_heldout_visualizations"] == 4  # fresh pools
  longer = run(thresholds=(1, 2), detector_steps=3)
  assert [h["step"] for h in longer["history"]] == [1, 2, 3]  # trained anew, not the 2-step detector
  published = det.load(tmp_path / "w" / "detector")  # the last run's detector, not the first one's
  finished = [det.load(p / "detector") for p in (tmp_path / "w" / "store").glob("detector-*")]
  assert len(finished) == 3
  last = [d for d in finished if all(np.array_equal(a, b) for a, b in zip(
      jax.tree_util.tree_leaves(d.variables), jax.tree_util.tree_leaves(published.variables)))]
  assert len(last) == 1


@pytest.mark.slow
def test_hard_negatives_are_the_circuits_snapshots_the_detector_calls_natural():
  from conftest import constant_detector  # pylint: disable=g-import-not-at-top
  model = models.load("tiny_cnn")
  opts = dict(key=jax.random.PRNGKey(0), thresholds=(0, 1, 2), size=16)
  missed, total = train_detector.hard_negatives(model, constant_detector(False), [1, 2], ["coffee"], **opts)
  assert total == 2 * 3 and missed.shape == (6, 16, 16, 3)  # E = 0 everywhere: every snapshot is missed
  missed, total = train_detector.hard_negatives(model, constant_detector(True), [1, 2], ["permutation"], **opts)
  assert total == 6 and len(missed) == 0
  start = train_detector.initial_images(jax.random.PRNGKey(0), 3, (16, 64), 16)
  assert start.shape == (6, 16, 16, 3) and 0.3 < start.mean() < 0.7 and start.std() < 0.1  # nearly uniform grey


@pytest.mark.slow
def test_detector_training_with_hard_negative_rounds_reports_each_round(tmp_path):
  model = models.load("tiny_cnn")
  config = train_detector.Config(units=(1, 2), heldout_units=(3, 4), thresholds=(1, 2), render_size=16, render_batch=2,
                                 detector_size=16, detector_steps=2, detector_batch=4, detector_optimizer="adam",
                                 detector_learning_rate=1e-3, heldout_photos=2, heldout_crops=1,
                                 hard_negative_rounds=1, hard_negative_units=2, hard_negative_targets=("permutation",),
                                 hard_negative_steps=2)
  m = train_detector.run(model, config, str(tmp_path), progress=False)
  rounds = m["hard_negative_rounds"]
  assert [r["round"] for r in rounds] in ([0], [0, 1]) and all(r["rendered"] == 2 * 3 for r in rounds)  # steps 0, 1, 2
  assert m["initial_sizes"] == [16, 64] and m["num_train_visualizations"] == 2 * 2 + 2 * 2
  assert 0 <= m["accuracy_initial_images"] <= 1
