"""Paper section 4 made executable: each witness checked numerically, the reliable classes decoded."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import fast_compile_env
from fvjax.experiments import theory
from fvjax.theory import core
from fvjax.theory import networks
from fvjax.theory import samplers
from fvjax.theory import witnesses

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
P2 = core.grid(65, 2)
P1 = core.grid(65, 1)


def _assert_witness(w, value_tol=1e-6, position_tol=0.0, margin=0.0):
  fv1, fv2 = core.feature_visualization(w.points, w.f1), core.feature_visualization(w.points, w.f2)
  q = int(core.nearest_index(w.points, w.query))
  assert float(jnp.linalg.norm(fv1.argmax - fv2.argmax)) <= position_tol
  assert float(jnp.linalg.norm(fv1.argmin - fv2.argmin)) <= position_tol
  assert abs(float(fv1.max - fv2.max)) <= value_tol and abs(float(fv1.min - fv2.min)) <= value_tol
  assert float(w.f1[q]) > float(core.midpoint(fv1)) + margin
  assert float(w.f2[q]) < float(core.midpoint(fv2)) - margin
  assert core.check_witness(w, value_tol, position_tol, margin)["valid"]
  # A decoder sees one feature visualization, so it is wrong on exactly one of the two.
  assert set(core.pair_errors(w).values()) == {0.5}


@pytest.mark.parametrize("name", ["general", "piecewise_affine", "monotonic", "affine_2d", "convex"])
@pytest.mark.parametrize("n", [65, 101])
def test_analytic_witnesses(name, n):
  _assert_witness(getattr(witnesses, name)(core.grid(n, 2)))


def test_paper_examples_values():
  a, c = witnesses.affine_2d(P2), witnesses.convex(P2)
  q = int(core.nearest_index(P2, jnp.array([1.0, 0.0])))
  np.testing.assert_allclose([a.f1[q], a.f2[q]], [0.9, 0.1], atol=1e-6)
  np.testing.assert_allclose([c.f1[q], c.f2[q]], [0.45, 0.13], atol=1e-6)
  for f in (c.f1, c.f2):  # unique argmax (1, 1), value 0.49
    fv = core.feature_visualization(P2, f)
    np.testing.assert_allclose(fv.argmax, [1, 1]) and np.testing.assert_allclose(fv.max, 0.49, atol=1e-6)
    assert int(jnp.sum(f >= fv.max - 1e-6)) == 1


def test_witnesses_belong_to_their_class():
  n = 65
  img = lambda f: np.asarray(f).reshape(n, n)
  for f in (*witnesses.monotonic(P2)[1:3], *witnesses.affine_2d(P2)[1:3]):  # non-decreasing along both axes
    assert (np.diff(img(f), axis=0) >= -1e-6).all() and (np.diff(img(f), axis=1) >= -1e-6).all()
  for f in witnesses.convex(P2)[1:3]:  # second differences along axes and diagonals
    g = img(f)
    for d2 in (g[2:] - 2 * g[1:-1] + g[:-2], g[:, 2:] - 2 * g[:, 1:-1] + g[:, :-2],
               g[2:, 2:] - 2 * g[1:-1, 1:-1] + g[:-2, :-2], g[2:, :-2] - 2 * g[1:-1, 1:-1] + g[:-2, 2:]):
      assert (d2 >= -1e-6).all()
  for f in witnesses.affine_2d(P2)[1:3]:
    coef, res, *_ = np.linalg.lstsq(np.c_[np.asarray(P2), np.ones(len(P2))], np.asarray(f), rcond=None)
    assert res[0] < 1e-8


def test_hand_built_network_is_the_tent_witness():
  w = networks.hand_built_witness(P2)
  _assert_witness(w)
  q = jnp.array([0.25, 0.5])
  ramp = 0.5 * (P2[:, 0] + P2[:, 1])
  np.testing.assert_allclose(w.f1, ramp + 0.3 * witnesses.tent(P2, q, 0.2), atol=1e-6)
  np.testing.assert_allclose(w.f2, ramp - 0.3 * witnesses.tent(P2, q, 0.2), atol=1e-6)


@pytest.mark.slow
def test_erm_trained_networks_witness():
  w, info = networks.erm_witness(jax.random.PRNGKey(0), P2)
  _assert_witness(w, **networks.ERM_TOLERANCE)
  assert (np.asarray(info["final_loss"]) < 1e-3).all()


def test_affine_1d_nearest_extreme_decoder_never_errs():
  values = samplers.affine(jax.random.PRNGKey(0), P1, 1000)
  errors = core.decoder_errors(jax.random.PRNGKey(1), P1, values, num_queries=64)
  assert errors["nearest_extreme"] == 0.0 and errors["always_strong"] > 0.4
  # The feature visualization determines the line.
  a, b = witnesses.affine_1d_from_fv(core.feature_visualization(P1, values))
  np.testing.assert_allclose(a[:, None] * P1[:, 0] + b[:, None], values, atol=1e-4)


def test_constant_decided_trivially():
  values = samplers.constant(jax.random.PRNGKey(0), P2, 50)
  idx = jnp.broadcast_to(jnp.arange(P2.shape[0]), values.shape)
  assert not bool(core.strong_activator(P2, values, idx).any())
  assert set(core.decoder_errors(jax.random.PRNGKey(1), P2, values).values()) == {0.0}


@pytest.mark.parametrize("lip", [1.0, 2.0, 4.0, 8.0])
def test_lipschitz_forced_radius_and_witness_elsewhere(lip):
  # Within R/(2L) of the extremes every sampled L-Lipschitz function answers as forced.
  values = samplers.lipschitz_1d(jax.random.PRNGKey(0), P1, 200, lip)
  assert float(jax.vmap(lambda v: witnesses.max_slope(P1, v))(values[:20]).max()) <= lip * (1 + 1e-5)
  fv = core.feature_visualization(P1, values)
  rad = witnesses.forced_radius(fv.max - fv.min, lip)[:, None]
  d_plus, d_minus = jnp.abs(P1[:, 0] - fv.argmax), jnp.abs(P1[:, 0] - fv.argmin)
  mid = core.midpoint(fv)[:, None]
  assert bool(jnp.all(jnp.where(d_plus < rad, values > mid, True)))
  assert bool(jnp.all(jnp.where(d_minus <= rad, values <= mid + 1e-6, True)))
  # Farther than R/(2L) from both extremes, the construction is an L-Lipschitz witness.
  r = float(witnesses.forced_radius(1.0, lip))
  x = np.asarray(P1[:, 0])
  outside = np.flatnonzero((np.abs(x - 1) > r + 1e-6) & (x > r + 1e-6))
  assert len(outside) == 0 if lip == 1.0 else len(outside) > 0
  for i in outside[::4]:
    w = witnesses.lipschitz(P1, lip, P1[i], [1.0], [0.0])
    _assert_witness(w)
    assert float(witnesses.max_slope(P1, w.f1)) <= lip * (1 + 1e-5)
    assert float(witnesses.max_slope(P1, w.f2)) <= lip * (1 + 1e-5)
  inside = np.flatnonzero((np.abs(x - 1) < r) | (x < r))
  for i in inside[::4]:
    assert not core.check_witness(witnesses.lipschitz(P1, lip, P1[i], [1.0], [0.0]))["valid"]
  fraction = float(witnesses.lipschitz_witness_region(
      P1, core.FeatureVis(jnp.ones(1), jnp.zeros(1), jnp.ones(()), jnp.zeros(())), lip).mean())
  assert abs(fraction - (1 - 1 / lip)) <= 2 / 65


def test_lipschitz_below_range_is_rejected():
  with pytest.raises(ValueError, match="use L >= 1"):
    witnesses.lipschitz(P1, 0.5, [0.5], [1.0], [0.0])
  with pytest.raises(ValueError, match=">= 1"):
    theory.Config(lipschitz=[0.5])


@pytest.mark.slow
def test_launch_theory_end_to_end(tmp_path):
  out = subprocess.run([sys.executable, "-m", "launch.theory", f"--workdir={tmp_path}", "--grid=17",
                        "--num_samples=20", "--num_trained=4", "--lipschitz=1,4", "--erm_steps=200",
                        f"--figure={tmp_path / 'all.png'}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600, env=fast_compile_env())
  assert out.returncode == 0, out.stderr[-3000:]
  metrics = json.load(open(tmp_path / "metrics.json"))
  names = [r["class"] for r in metrics["rows"]]
  assert names == ["general", "neural_network", "erm_network", "piecewise_affine", "monotonic", "convex",
                   "lipschitz_L1", "lipschitz_L4", "affine_2d", "affine_1d", "constant"]
  for r in metrics["rows"]:
    assert r["reliable"] == r["paper_reliable"], r
    assert (tmp_path / f"{r['class']}.png").stat().st_size > 0
  assert [d["L"] for d in metrics["lipschitz"]] == [1.0, 4.0]
  assert all(d["error_in_forced_region"] == 0.0 for d in metrics["lipschitz"])
  assert (tmp_path / "all.png").exists() and "| constant |" in (tmp_path / "table.md").read_text()
  assert "| constant |" in out.stdout
