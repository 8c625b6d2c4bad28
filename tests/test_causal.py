"""The causal-understanding benchmark: sweep, trials, references, observer, launch."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import launch

from conftest import fast_compile_env
from fvjax import data
from fvjax import models
from fvjax.causal import benchmark
from fvjax.causal import observer
from fvjax.causal import occlusion
from fvjax.causal import references
from fvjax.causal import trials
from fvjax.models.record import ModelRecord
from fvjax.optvis import objectives

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 64
REGION = (32, 64, 0, 32)  # rows, cols the hand-built unit looks at


@pytest.fixture(scope="module")
def tiny():
  return models.load("tiny_cnn")


def _patch_record() -> ModelRecord:
  """A hand-built model whose unit 0 is the edge energy inside REGION (unit 1: everywhere)."""
  r0, r1, c0, c1 = REGION
  mask = np.zeros((SIZE, SIZE, 1), np.float32)
  mask[r0:r1, c0:c1] = 1.0

  def apply(params, images):
    dy = jnp.pad(jnp.sum((images[:, 1:] - images[:, :-1]) ** 2, -1), ((0, 0), (0, 1), (0, 0)))
    dx = jnp.pad(jnp.sum((images[:, :, 1:] - images[:, :, :-1]) ** 2, -1), ((0, 0), (0, 0), (0, 1)))
    energy = (dx + dy)[..., None]
    edges = jnp.concatenate([energy * params["mask"], energy], axis=-1)
    logits = edges.mean(axis=(1, 2))
    return logits, {"edges": edges, "logits": logits}

  return ModelRecord(name="patch_unit", apply=apply, params={"mask": mask}, input_size=(SIZE, SIZE),
                     layers=("edges", "logits"), preprocess=lambda x: x, input_range="x", num_classes=2)


def _patch_query(rng, top, left, side=12):
  """A smooth random background with a checkerboard patch at (top, left)."""
  yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
  colour = rng.uniform(0.3, 0.7, 3)
  tilt = rng.uniform(-0.1, 0.1, (2, 3))
  image = colour + yy[..., None] * tilt[0] + xx[..., None] * tilt[1]
  checks = (np.add.outer(np.arange(side), np.arange(side)) % 2).astype(np.float32)
  image[top:top + side, left:left + side] = checks[..., None]
  return np.clip(image, 0, 1).astype(np.float32)


def test_grid_matches_the_paper():
  g = occlusion.grid(224, 0.4, 2)
  assert (g.side, g.n, g.count) == (90, 68, 4624)


def test_sweep_agrees_with_brute_force_loop(tiny):
  image = data.sample_photos(SIZE, ["chelsea"])[0][0]
  fast = occlusion.sweep(tiny, image, "conv3", 5, stride=4, chunk=32)  # 100 positions: a padded last chunk
  slow = occlusion.brute_force_sweep(tiny, image, "conv3", 5, stride=4)
  assert fast.shape == slow.shape == (10, 10)
  np.testing.assert_allclose(fast, slow, rtol=1e-4, atol=1e-6)
  assert fast.argmax() == slow.argmax() and fast.argmin() == slow.argmin()


def test_unit_of_one_patch_gives_the_obvious_answer():
  model = _patch_record()
  image = _patch_query(np.random.default_rng(0), top=44, left=10)
  act_map = occlusion.sweep(model, image, "edges", 0, fraction=0.4, stride=2)
  g = occlusion.grid(SIZE, 0.4, 2)
  trial = trials.make_trial(image, act_map, g, unoccluded=0.0)["record"]
  rmin, cmin = trial["min"]["corner"]
  rmax, cmax = trial["max"]["corner"]
  # The lowest activation: the occluder hides the whole checkerboard.
  assert rmin <= 44 and rmin + g.side >= 44 + 12 and cmin <= 10 and cmin + g.side >= 10 + 12
  # The highest: the occluder leaves the checkerboard untouched.
  assert rmax + g.side <= 44 or rmax >= 44 + 12 or cmax + g.side <= 10 or cmax >= 10 + 12
  assert trial["max"]["activation"] > 10 * trial["min"]["activation"]
  # The patch observer's input: what each occluder hides (the wrong one hides the checkerboard).
  hidden = observer.hidden_patches(image, trial)
  assert hidden.shape == (2, g.side, g.side, 3)
  np.testing.assert_array_equal(hidden[1], image[rmin:rmin + g.side, cmin:cmin + g.side])
  roughness = lambda x: np.abs(np.diff(x, axis=0)).mean()
  assert roughness(hidden[1]) > 10 * roughness(hidden[0])


def test_observer_with_perfect_references_is_near_perfect(tiny):
  model, rng = _patch_record(), np.random.default_rng(1)
  g = occlusion.grid(SIZE, 0.4, 2)
  embed = observer.feature_fn(tiny)  # random conv features; references = the query itself
  gaps = []
  for top, left in [(36, 2), (44, 10), (40, 18), (50, 6), (34, 16), (46, 14)]:
    image = _patch_query(rng, top, left)
    act_map = occlusion.sweep(model, image, "edges", 0)
    trial = trials.make_trial(image, act_map, g, 0.0)
    feats = embed(trial["images"])
    gaps.append(observer.similarity_gaps(feats[None, 1:], feats[:1])[0])
  gaps = np.asarray(gaps)
  assert observer.answers(gaps).mean() >= 5 / 6
  temps = observer.crossfit_temperatures([gaps[:3], gaps[3:]])
  calibrated = np.concatenate([observer.probabilities(gaps[:3], temps[0]), observer.probabilities(gaps[3:], temps[1])])
  assert calibrated.mean() > 0.8
  # No references: no information, chance by construction.
  none = observer.similarity_gaps(np.ones((4, 2, 3)), None)
  assert observer.answers(none).mean() == 0.5 and observer.probabilities(none, 0.01).mean() == 0.5


def test_temperature_is_fitted_on_other_units_only():
  gaps = [np.array([0.01, 0.02]), np.array([0.5, 0.4]), np.array([-0.01, 0.03])]
  temps = observer.crossfit_temperatures(gaps)
  assert temps[1] == observer.fit_temperature(np.concatenate([gaps[0], gaps[2]]))
  assert observer.crossfit_temperatures(gaps[:1]) == [observer.DEFAULT_TEMPERATURE]
  assert observer.crossfit_temperatures(gaps, 0.2) == [0.2] * 3


def test_grouped_synthetic_objective_matches_channel_minus_diversity():
  acts = {"l": jax.random.normal(jax.random.PRNGKey(0), (6, 4, 4, 5))}
  obj = references.synthetic_objective("l", [2, 3], n=3, diversity=7.0)
  values = obj(acts, jnp.zeros((6, 8, 8, 3)))
  for g, unit in enumerate([2, 3]):
    sub = {"l": acts["l"][3 * g:3 * g + 3]}
    expect = (objectives.channel("l", unit) - 7.0 * objectives.diversity("l"))(sub, jnp.zeros((3, 8, 8, 3)))
    np.testing.assert_allclose(values[3 * g:3 * g + 3], expect, rtol=1e-5, atol=1e-5)
  padded = references.synthetic_objective("l", [2], n=3, multiple=4)
  assert padded.data[0].tolist() == [2, 2, 2, 2] and padded.data[1].tolist() == [0, 0, 0, -1]


def test_natural_references_skip_the_queries_photos():
  values = np.array([9.0, 8.0, 7.0, 6.0, 5.0, 4.0])
  sources = np.array([0, 0, 1, 2, 2, 3])
  queries = trials.top_queries(values, 1)
  assert references.natural_references(values, sources, queries, n=3).tolist() == [2, 3, 4]
  with pytest.raises(ValueError, match="share no photo"):
    references.natural_references(values, sources, queries, n=5)


def test_bad_input_gets_one_sentence():
  with pytest.raises(ValueError, match=r"Unknown condition 'blurred'.*synthetic, natural, none"):
    references.check_conditions(["synthetic", "blurred"])
  with pytest.raises(ValueError, match=r"fraction must lie strictly between 0 and 1"):
    occlusion.grid(224, 1.0)
  with pytest.raises(ValueError, match=r"fraction must lie strictly between 0 and 1"):
    occlusion.grid(224, 0.0)
  with pytest.raises(ValueError, match=r"stride must be an integer >= 1"):
    occlusion.grid(224, 0.4, 0)
  with pytest.raises(ValueError, match=r"top_k must be between 1"):
    trials.top_queries(np.ones(5), 6)
  with pytest.raises(ValueError, match=r"Unknown observer mode 'pixels'; accepted: image, patch"):
    observer.check_mode("pixels")
  with pytest.raises(ValueError, match=r"temperature must be > 0"):
    observer.probabilities(np.ones(2), 0.0)


def test_launch_writes_trials_metrics_and_plot_and_resumes(tmp_path, tiny):
  out = subprocess.run([sys.executable, "-m", "launch.causal_benchmark", "--model=tiny_cnn", "--layer=conv3",
                        "--units=0-1", "--observer_model=tiny_cnn", "--stride=8", "--top_k=2", "--num_references=3",
                        "--steps=2", "--crops_per_photo=0", "--chunk=16", "--seed=3", f"--workdir={tmp_path}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300, env=fast_compile_env())
  assert out.returncode == 0, out.stderr[-3000:]
  metrics = json.load(open(tmp_path / "metrics.json"))
  assert metrics["num_units"] == 2 and metrics["num_trials"] == 4
  assert metrics["occluder"] == {"size": 64, "side": 26, "stride": 8, "positions": 25}
  for cond in ("synthetic", "natural", "none"):
    m = metrics["conditions"][cond]
    assert 0 <= m["accuracy"] <= 1 and m["num_trials"] == 4 and len(m["accuracy_ci95"]) == 2
  assert metrics["conditions"]["none"]["accuracy"] == 0.5
  for name in ("accuracy.png", "trials/unit_0_q0.png", "trials/unit_1_q1.png", "references/unit_0_synthetic.png",
               "references/unit_1_natural.png", "unit_0.json"):
    assert (tmp_path / name).stat().st_size > 0, name
  # Same settings again (in this process): every unit is read back, nothing is recomputed.
  before = (tmp_path / "unit_0.json").stat().st_mtime_ns
  key = jax.random.PRNGKey(3)
  again = benchmark.run(tiny, "conv3", [0, 1], str(tmp_path), key=key, natural=trials.embedded_set(
      jax.random.fold_in(key, 1), SIZE, 0), observer=tiny, stride=8, top_k=2, num_references=3, steps=2,
                        chunk=16, progress=False)
  assert (tmp_path / "unit_0.json").stat().st_mtime_ns == before
  assert again["conditions"] == metrics["conditions"]
  with pytest.raises(ValueError, match="Unknown condition 'blurred'"):
    benchmark.run(tiny, "conv3", [0], str(tmp_path), key=key, natural=None, observer=tiny,
                  conditions=["blurred"])
  assert ValueError in launch.USER_ERRORS  # so the launch script prints the sentence, not a traceback
  # Units of several layers (the paper's span nine): per-layer runs pooled over all units.
  other = benchmark.run(tiny, "conv2", [0], str(tmp_path / "conv2"), key=key, natural=trials.embedded_set(
      jax.random.fold_in(key, 1), SIZE, 0), observer=tiny, stride=8, top_k=2, num_references=3, steps=2,
                        chunk=16, progress=False)
  pooled = benchmark.combine([metrics, other], str(tmp_path / "pooled"))
  assert pooled["num_units"] == 3 and pooled["num_trials"] == 6 and pooled["layer"] == "conv3+conv2"
  for cond in ("synthetic", "natural"):
    per_unit = pooled["conditions"][cond]["per_unit"]
    assert sorted(per_unit) == ["conv2:0", "conv3:0", "conv3:1"]
    np.testing.assert_allclose(pooled["conditions"][cond]["accuracy"],
                               np.mean([m["accuracy"] for m in per_unit.values()]))
  assert (tmp_path / "pooled" / "accuracy.png").exists()
  from launch import causal_benchmark  # pylint: disable=g-import-not-at-top
  assert causal_benchmark.layer_units(["mixed3a:64", "mixed4a:1-2", "5"], "block9") == {
      "mixed3a": [64], "mixed4a": [1, 2], "block9": [5]}
