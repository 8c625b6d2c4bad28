"""Silent wrong results refused up front (issue: trying to break fvjax as a careless user would)."""

import os
import subprocess
import sys

import pytest

from conftest import fast_compile_env
from fvjax.experiments import train_detector

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_heldout_units_that_are_training_units_are_refused():
  with pytest.raises(ValueError, match=r"both lists hold \[2, 5\]"):
    train_detector.choose_units(10, units=[1, 2, 5], heldout=[2, 5, 7])
  train, held = train_detector.choose_units(10, units=[1, 2], heldout=[3])
  assert (train, held) == ([1, 2], [3])


def test_visualize_thresholds_beyond_steps_are_refused(tmp_path):
  proc = subprocess.run([sys.executable, "-m", "launch.visualize", "--model=tiny_cnn", "--steps=4", "--thresholds=64",
                         f"--workdir={tmp_path}"], cwd=ROOT, env=fast_compile_env(), capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 2 and "must not exceed --steps=4" in proc.stderr, proc.stderr[-2000:]
  assert not os.listdir(tmp_path)


def test_nan_and_out_of_range_images_are_refused_at_every_entry_point():
  import numpy as np  # pylint: disable=g-import-not-at-top
  from fvjax import classify, models  # pylint: disable=g-import-not-at-top
  from fvjax.causal import trials  # pylint: disable=g-import-not-at-top
  model = models.load("tiny_cnn")
  nan = np.full((2, 64, 64, 3), np.nan, np.float32)
  with pytest.raises(ValueError, match="must be finite floats"):
    classify.top_k(model, nan)
  as_255 = trials.NaturalSet(64, 2, lambda idx: np.full((len(idx), 64, 64, 3), 255.0, np.float32), np.arange(2),
                             ("a", "b"))
  with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
    trials.unit_values(model, "conv1", as_255)
  with pytest.raises(ValueError, match="must be finite floats"):
    trials.unit_values(model, "conv1", as_255._replace(load=lambda idx: nan[:len(idx)]))
