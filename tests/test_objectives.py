"""Objectives: arithmetic, parsing, batch restriction, the batched units form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fvjax.optvis import objectives as obj


def _acts(seed=0, b=3):
  r = np.random.default_rng(seed)
  return {"conv": jnp.asarray(r.normal(size=(b, 5, 5, 4)).astype(np.float32)),
          "logits": jnp.asarray(r.normal(size=(b, 10)).astype(np.float32))}


def _images(b=3):
  return jnp.asarray(np.random.default_rng(9).uniform(size=(b, 6, 6, 3)).astype(np.float32))


def test_channel_neuron_and_logit():
  a, x = _acts(), _images()
  np.testing.assert_allclose(obj.channel("conv", 2)(a, x), a["conv"][..., 2].mean((1, 2)), rtol=1e-6)
  np.testing.assert_allclose(obj.neuron("conv", 1)(a, x), a["conv"][:, 2, 2, 1])
  np.testing.assert_allclose(obj.class_logit(7)(a, x), a["logits"][:, 7])
  np.testing.assert_allclose(obj.channel("logits", 7)(a, x), a["logits"][:, 7])


def test_arithmetic():
  a, x = _acts(), _images()
  c, l = obj.channel("conv", 0), obj.class_logit(3)
  combo = 2 * c - l / 4 + 1.5
  want = 2 * c(a, x) - l(a, x) / 4 + 1.5
  np.testing.assert_allclose(combo(a, x), want, rtol=1e-6)
  np.testing.assert_allclose((-c)(a, x), -c(a, x))
  assert combo.layers == {"conv", "logits"}


def test_batch_restriction():
  a, x = _acts(), _images()
  v = np.asarray(obj.channel("conv", 1, batch=1)(a, x))
  assert v[0] == 0 and v[2] == 0 and v[1] != 0
  both = obj.channel("conv", 0, batch=0) + obj.channel("conv", 3, batch=2)
  np.testing.assert_allclose(both(a, x)[2], a["conv"][2, ..., 3].mean(), rtol=1e-6)


def test_units_objective_equals_per_image_channels():
  a, x = _acts(), _images()
  units = [3, 0, 2]
  got = obj.units_objective("conv", units)(a, x)
  want = [a["conv"][i, ..., u].mean() for i, u in enumerate(units)]
  np.testing.assert_allclose(got, want, rtol=1e-6)
  np.testing.assert_allclose(obj.units_objective("logits", [1, 2, 3])(a, x), a["logits"][[0, 1, 2], [1, 2, 3]])
  got = obj.units_objective("conv", units, kind="neuron")(a, x)
  np.testing.assert_allclose(got, [a["conv"][i, 2, 2, u] for i, u in enumerate(units)])


def test_string_parsing():
  a, x = _acts(), _images()
  np.testing.assert_allclose(obj.as_objective("conv:2")(a, x), obj.channel("conv", 2)(a, x))
  for bad in ("conv", "conv:x", ":3", "conv:"):
    with pytest.raises(ValueError, match="expected 'layer:unit'"):
      obj.as_objective(bad)


def test_diversity_is_high_for_identical_images():
  same = {"conv": jnp.repeat(_acts()["conv"][:1], 3, axis=0)}
  diff = {"conv": jnp.abs(_acts(1)["conv"])}
  d_same = float(obj.diversity("conv")(same, _images()).sum())
  d_diff = float(obj.diversity("conv")(diff, _images()).sum())
  assert d_same == pytest.approx(3 * 2 / 3, rel=1e-5)  # Lucid: sum over i != j of 1, / batch
  assert d_diff < d_same


def test_penalties_on_input():
  x = _images()
  np.testing.assert_allclose(obj.l1(constant=0.5)({}, x), np.abs(np.asarray(x) - 0.5).sum((1, 2, 3)), rtol=1e-5)
  np.testing.assert_allclose(obj.l2()({}, x), np.sqrt(1e-6 + (np.asarray(x) ** 2).sum((1, 2, 3))), rtol=1e-5)
  tv = np.abs(np.diff(x, axis=1)).sum((1, 2, 3)) + np.abs(np.diff(x, axis=2)).sum((1, 2, 3))
  np.testing.assert_allclose(obj.total_variation()({}, x), tv, rtol=1e-5)


def test_gradient_of_channel():
  a = _acts()
  g = jax.grad(lambda t: obj.channel("conv", 1)({"conv": t}, _images()).sum())(a["conv"])
  g = np.asarray(g)
  assert np.allclose(g[..., 1], 1 / 25) and np.allclose(g[..., [0, 2, 3]], 0)
