"""The causal-understanding benchmark: sweep, trials, references, observer, launch."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import fast_compile_env
from fvjax import data
from fvjax import launch
from fvjax import models
from fvjax.causal import benchmark
from fvjax.causal import blur
from fvjax.causal import observer
from fvjax.causal import occlusion
from fvjax.causal import references
from fvjax.causal import trials
from fvjax.models import inception_v1
from fvjax.models.record import ModelRecord
from fvjax.optvis import objectives
from fvjax.optvis import render as render_lib
from fvjax.optvis import transforms

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 64
REGION = (32, 64, 0, 32)  # rows, cols the hand-built unit looks at


@pytest.fixture(scope="module")
def tiny():
  return models.load("tiny_cnn")


@pytest.fixture(scope="module")
def patch_model():
  # One record for the module: its jitted sweeps compile once and are shared.
  return _patch_record()


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


def test_unit_of_one_patch_gives_the_obvious_answer(patch_model):
  model = patch_model
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


def test_observer_with_perfect_references_is_near_perfect(tiny, patch_model):
  model, rng = patch_model, np.random.default_rng(1)
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


def test_grouped_synthetic_objective_has_lucids_weighting_per_group():
  # Units 2 and 3, each with a group of 3 (synthetic) and one of 2 (the mixed condition's): every group's
  # values are Lucid's channel - w * diversity on that group alone (mean over the group, sum_{i!=j} / m).
  acts = {"l": jnp.asarray(np.random.default_rng(0).normal(size=(10, 4, 4, 5)), jnp.float32)}
  images = jnp.zeros((10, 8, 8, 3))
  obj = references.synthetic_objective("l", [2, 3], n=(3, 2), diversity=7.0)
  assert obj.data[1].tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3]

  @jax.jit
  def both(a):
    groups = [(0, 3, 2), (3, 5, 2), (5, 8, 3), (8, 10, 3)]
    expect = [(objectives.channel("l", u) - 7.0 * objectives.diversity("l"))({"l": a[i:j]}, images[i:j])
              for i, j, u in groups]
    return obj({"l": a}, images), jnp.concatenate(expect)

  values, expect = both(acts["l"])
  np.testing.assert_allclose(values, expect, rtol=1e-5, atol=1e-6)
  padded = references.synthetic_objective("l", [2], n=3, multiple=4)
  assert padded.data[0].tolist() == [2, 2, 2, 2] and padded.data[1].tolist() == [0, 0, 0, -1]


def test_synthetic_references_use_the_studys_transforms_and_crop_the_padding(tiny, monkeypatch):
  # The study's milder set: jitter 16, scale {0.95..1.05}, rotate +-5 deg, jitter 8 (24 px smaller) ...
  assert transforms.OCCLUSION_STUDY_SCALES == (1.0, 0.975, 1.025, 0.95, 1.05)
  assert transforms.OCCLUSION_STUDY_ANGLES == tuple(range(-5, 6))
  out = jax.eval_shape(transforms.occlusion_study_transforms(), jax.random.PRNGKey(0),
                       jax.ShapeDtypeStruct((2, 96, 96, 3), jnp.float32))
  assert out.shape == (2, 72, 72, 3)
  # ... on a canvas 2 x 16 px larger whose centre is kept (render replaced by a spy: no compilation).
  calls = []

  def spy(model, obj, *, key, batch, size, transforms, thresholds, **kwargs):
    calls.append((batch, size, transforms, thresholds))
    rows = np.broadcast_to(np.arange(size)[:, None, None], (size, size, 3))
    return render_lib.RenderResult(np.broadcast_to(rows / 1000.0, (1, batch, size, size, 3)), thresholds,
                                   np.zeros((1, batch)), np.zeros((1, batch)))

  monkeypatch.setattr(references.render_lib, "render", spy)
  images = references.synthetic_references(tiny, "conv3", [0, 1], key=jax.random.PRNGKey(0), n=(3, 2), steps=5,
                                           size=40, progress=False)
  assert images.shape == (2, 5, 40, 40, 3)
  assert calls[-1] == (10, 72, references.TRANSFORM_PRESETS["study"][0], (5,))
  np.testing.assert_allclose(images[1, 4, :, 0, 0], np.arange(16, 56) / 1000.0)
  # Lucid's standard set on the image itself when asked for.
  references.synthetic_references(tiny, "conv3", [0], key=jax.random.PRNGKey(0), n=3, steps=5, size=40,
                                  preset="lucid", progress=False)
  assert calls[-1][1:3] == (40, references.TRANSFORM_PRESETS["lucid"][0])


def test_natural_references_come_from_rank_bins_below_the_queries():
  values = -np.arange(40.0)  # image i has rank i + 1
  sources = np.arange(40)
  queries = trials.top_queries(values, 3)
  bins = references.rank_bins(values, sources, queries, n=9)  # bins as wide as the 3 queries
  assert bins.tolist() == [[3 + 3 * b, 4 + 3 * b, 5 + 3 * b] for b in range(9)]
  draws = references.natural_references(values, sources, queries, key=jax.random.PRNGKey(0), n=9)
  assert draws.shape == (3, 9)
  for b in range(9):  # trial k takes element k of every shuffled bin: one per bin, each image once
    assert sorted(draws[:, b].tolist()) == bins[b].tolist()
  assert draws[0].tolist() != list(range(3, 12))  # not the top 9 below the queries
  again = references.natural_references(values, sources, queries, key=jax.random.PRNGKey(0), n=9)
  np.testing.assert_array_equal(draws, again)
  # The mixed condition's 5 natural references: the 5 bins right below the queries (study: ranks 21-120).
  assert references.rank_bins(values, sources, queries, n=5).max() == 17
  # A small natural set: the bins shrink to fit (17 images for 9 bins: one rank each).
  assert references.rank_bins(values[:20], sources[:20], queries, n=9).tolist() == [[i] for i in range(3, 12)]
  # Images of a query's photo are never references (the embedded set's crops).
  values = np.array([9.0, 8.0, 7.0, 6.0, 5.0, 4.0])
  sources = np.array([0, 0, 1, 2, 2, 3])
  assert references.rank_bins(values, sources, [0], n=3, width=1).tolist() == [[2], [3], [4]]
  with pytest.raises(ValueError, match="share no photo"):
    references.rank_bins(values, sources, [0], n=5)


def test_mixed_condition_is_five_natural_and_four_synthetic_of_nine():
  assert references.mixed_split(9) == (5, 4) and references.mixed_split(3) == (2, 1)
  assert references.check_conditions(["mixed", "blurred", "mixed"]) == ("mixed", "blurred")
  with pytest.raises(ValueError, match="mixed condition needs num_references >= 2"):
    references.mixed_split(1)


def test_blurred_reference_keeps_the_patch_that_drives_the_unit_sharp(patch_model):
  # The study's kernel: 21 x 21 with OpenCV's sigma for sigma 0 (3.5) at 224 px; scaled at other sizes.
  assert blur.kernel_size(224) == 21 and blur.opencv_sigma(21) == pytest.approx(3.5)
  assert blur.kernel_size(64) == 7
  rng = np.random.default_rng(0)
  small = rng.uniform(size=(12, 12, 3)).astype(np.float32)
  taps = blur.gaussian_kernel(5)
  padded = np.pad(small, ((2, 2), (2, 2), (0, 0)), mode="reflect")  # numpy's reflect = OpenCV's REFLECT_101
  direct = sum(taps[i] * taps[j] * padded[i:i + 12, j:j + 12] for i in range(5) for j in range(5))
  np.testing.assert_allclose(blur.gaussian_blur(small, 5), direct, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(blur.gaussian_blur(np.full((8, 8, 3), 0.3)), 0.3, rtol=1e-6)
  # The hand-built unit 0 sees edges in REGION: the best sharp window covers the checkerboard there.
  image = _patch_query(np.random.default_rng(2), top=44, left=10)
  g = occlusion.grid(SIZE, 0.4, 2)
  best = blur.window_positions(patch_model, "edges", image, fraction=0.4, stride=2)
  assert best.shape == (2,)
  r, c = g.corner(best[0])
  assert r <= 44 and r + g.side >= 56 and c <= 10 and c + g.side >= 22
  # The same argmax as a plain loop over every window position.
  background = blur.gaussian_blur(image)
  revealed = np.stack([background] * g.count)
  for k in range(g.count):
    rr, cc = g.corner(k)
    revealed[k, rr:rr + g.side, cc:cc + g.side] = image[rr:rr + g.side, cc:cc + g.side]
  unit_values = np.asarray(objectives.unit_values(patch_model.apply(patch_model.params, revealed), "edges"))
  np.testing.assert_array_equal(best, unit_values.argmax(0))
  reference = blur.blurred_reference(image, int(best[0]), g)
  np.testing.assert_array_equal(reference[r:r + g.side, c:c + g.side], image[r:r + g.side, c:c + g.side])
  np.testing.assert_allclose(reference[:r], background[:r])


def test_paper_flagfile_names_the_studys_units():
  # research/facts2.md section 2a: 18 units in Lucid's <block>_pre_relu layers, a 3x3- and a pool-branch
  # unit of each block; their offsets within the branch, as the study's table gives them.
  lines = open(os.path.join(ROOT, "fvjax", "launch", "flags", "causal_imagenet.flags")).read().splitlines()
  flags = dict(line[2:].split("=", 1) for line in lines if line.startswith("--"))
  items = [item.rpartition(":") for item in flags["units"].split(",")]
  study = {"mixed3a": (125, 3), "mixed3b": (50, 14), "mixed4a": (65, 42), "mixed4b": (179, 43),
           "mixed4c": (119, 48), "mixed4d": (230, 19), "mixed4e": (268, 112), "mixed5a": (22, 39),
           "mixed5b": (300, 111)}
  assert [layer for layer, _, _ in items] == [f"{b}_pre_relu" for b in study for _ in range(2)]
  for k, (layer, _, unit) in enumerate(items):
    block = layer[:-len("_pre_relu")]
    widths = inception_v1.MIXED[block][1]
    out = (widths[0], widths[2], widths[4], widths[5])  # 1x1, 3x3, 5x5, pool_reduce, concatenated
    edges = np.cumsum((0,) + out)
    branch = int(np.searchsorted(edges, int(unit), side="right")) - 1
    assert inception_v1.OUTPUT_BRANCHES[branch] == ("3x3", "pool_reduce")[k % 2], (layer, unit)
    assert int(unit) - edges[branch] == study[block][k % 2], (layer, unit)
  assert flags["conditions"] == "synthetic,natural,mixed,blurred,none" and flags["transforms"] == "study"
  assert (flags["stride"], flags["top_k"], flags["steps"], flags["diversity"]) == ("2", "20", "2560", "100")


def test_bad_input_gets_one_sentence():
  with pytest.raises(ValueError, match=r"Unknown condition 'blured'.*synthetic, natural, mixed, blurred, none"):
    references.check_conditions(["synthetic", "blured"])
  with pytest.raises(ValueError, match=r"Unknown transform preset 'soft'.*study, lucid"):
    references.check_preset("soft")
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


@pytest.mark.slow
def test_launch_writes_trials_metrics_and_plot_and_resumes(tmp_path, tiny):
  out = subprocess.run([sys.executable, "-m", "launch.causal_benchmark", "--model=tiny_cnn", "--layer=conv3",
                        "--units=0-1", "--observer_model=tiny_cnn", "--stride=8", "--top_k=2", "--num_references=3",
                        "--steps=2", "--crops_per_photo=0", "--chunk=16", "--seed=3", f"--workdir={tmp_path}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300, env=fast_compile_env())
  assert out.returncode == 0, out.stderr[-3000:]
  metrics = json.load(open(tmp_path / "metrics.json"))
  assert metrics["num_units"] == 2 and metrics["num_trials"] == 4
  assert metrics["occluder"] == {"size": 64, "side": 26, "stride": 8, "positions": 25}
  assert list(metrics["conditions"]) == list(references.CONDITIONS)  # the default: all five
  for cond in references.CONDITIONS:
    m = metrics["conditions"][cond]
    assert 0 <= m["accuracy"] <= 1 and m["num_trials"] == 4 and len(m["accuracy_ci95"]) == 2
  assert metrics["conditions"]["none"]["accuracy"] == 0.5
  assert metrics["weights"] == "random" and metrics["observer"]["weights"] == "random"
  refs = metrics["references"]
  assert (refs["synthetic"]["transforms"], refs["synthetic"]["canvas"], refs["synthetic"]["cropped_px"]) == (
      "study", 96, 16)
  assert refs["natural"]["bin_width_used"] == [2] and (refs["mixed"]["natural"], refs["mixed"]["synthetic"]) == (2, 1)
  assert (refs["blurred"]["patch"], refs["blurred"]["stride"]) == (26, 8)
  unit = json.load(open(tmp_path / "unit_0.json"))
  used = [t["references"]["natural"] for t in unit["trials"]]
  assert len(used[0]) == 3 and not set(used[0]) & set(used[1])  # each trial its own element of every bin
  assert sorted(used[0] + used[1]) == sorted(sum(unit["bins"]["natural"], []))
  assert len(unit["trials"][0]["references"]["blurred_corners"]) == 3
  for name in ("accuracy.png", "trials/unit_0_q0.png", "trials/unit_1_q1.png", "references/unit_0_synthetic.png",
               "references/unit_1_q1_natural.png", "references/unit_0_q0_mixed.png",
               "references/unit_1_q0_blurred.png", "unit_0.json"):
    assert (tmp_path / name).stat().st_size > 0, name
  # Same settings again (in this process): every unit is read back, nothing is recomputed.
  [entry] = (tmp_path / "store").glob("unit_0-*.json")
  before = entry.stat().st_mtime_ns
  key = jax.random.PRNGKey(3)
  again = benchmark.run(tiny, "conv3", [0, 1], str(tmp_path), key=key, natural=trials.embedded_set(
      jax.random.fold_in(key, 1), SIZE, 0), observer=tiny, stride=8, top_k=2, num_references=3, steps=2,
                        chunk=16, progress=False)
  assert entry.stat().st_mtime_ns == before
  assert again["conditions"] == metrics["conditions"]
  with pytest.raises(ValueError, match="Unknown condition 'blured'"):
    benchmark.run(tiny, "conv3", [0], str(tmp_path), key=key, natural=None, observer=tiny,
                  conditions=["blured"])
  assert ValueError in launch.USER_ERRORS  # so the launch script prints the sentence, not a traceback
  # Units of several layers (the paper's span nine): per-layer runs pooled over all units, in the conditions
  # both runs have (the second renders nothing: no compilation of a render step in this process).
  other = benchmark.run(tiny, "conv2", [0], str(tmp_path / "conv2"), key=key, natural=trials.embedded_set(
      jax.random.fold_in(key, 1), SIZE, 0), observer=tiny, conditions=("natural", "blurred", "none"), stride=8,
                        top_k=2, num_references=3, chunk=16, progress=False)
  pooled = benchmark.combine([metrics, other], str(tmp_path / "pooled"))
  assert pooled["num_units"] == 3 and pooled["num_trials"] == 6 and pooled["layer"] == "conv3+conv2"
  assert list(pooled["conditions"]) == ["natural", "blurred", "none"]
  for cond in ("natural", "blurred"):
    per_unit = pooled["conditions"][cond]["per_unit"]
    assert sorted(per_unit) == ["conv2:0", "conv3:0", "conv3:1"]
    np.testing.assert_allclose(pooled["conditions"][cond]["accuracy"],
                               np.mean([m["accuracy"] for m in per_unit.values()]))
  assert (tmp_path / "pooled" / "accuracy.png").exists()
  from fvjax.experiments import causal_benchmark  # pylint: disable=g-import-not-at-top
  assert causal_benchmark.layer_units(["mixed3a:64", "mixed4a:1-2", "5"], "block9") == {
      "mixed3a": [64], "mixed4a": [1, 2], "block9": [5]}
