"""Objectives: arithmetic, parsing, batch restriction, the batched units form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fvjax.optvis import objectives as obj


def _acts(seed=0, b=3):
  r = np.random.default_rng(seed)
  return {"conv": jnp.asarray(r.normal(size=(b, 5, 4, 6)).astype(np.float32)),
          "logits": jnp.asarray(r.normal(size=(b, 10)).astype(np.float32))}


def _images(b=3):
  return jnp.asarray(np.random.default_rng(9).uniform(size=(b, 6, 6, 3)).astype(np.float32))


def test_channel_neuron_and_logit():
  a, x = _acts(), _images()
  conv = np.asarray(a["conv"])
  # Without batch=, Lucid's mean over the batch: each of the 3 images holds a third.
  np.testing.assert_allclose(obj.channel("conv", 2)(a, x), conv[..., 2].mean((1, 2)) / 3, rtol=1e-5)
  # Lucid's convention: x indexes rows, y columns; the centre by default.
  np.testing.assert_allclose(obj.neuron("conv", 1)(a, x), conv[:, 2, 2, 1] / 3, rtol=1e-6)
  np.testing.assert_allclose(obj.neuron("conv", 1, x=4, y=0)(a, x), conv[:, 4, 0, 1] / 3, rtol=1e-6)
  np.testing.assert_allclose(obj.class_logit(7)(a, x), a["logits"][:, 7] / 3, rtol=1e-6)
  np.testing.assert_allclose(obj.channel("logits", 7)(a, x), a["logits"][:, 7] / 3, rtol=1e-6)
  np.testing.assert_allclose(obj.channel("logits", 7, batch=1)(a, x)[1], a["logits"][1, 7])
  np.testing.assert_allclose(obj.unit_values(a, "conv"), conv.mean((1, 2)), rtol=1e-5)
  # unit_values also takes the (logits, acts) pair a record's apply returns.
  np.testing.assert_allclose(obj.unit_values((a["logits"], {"conv": a["conv"]}), "logits"), a["logits"])


def test_direction_is_the_mean_dot_product_over_positions():
  a, x = _acts(), _images()
  vec = np.random.default_rng(2).normal(size=6).astype(np.float32)
  conv = np.asarray(a["conv"], np.float64)
  want = np.array([np.mean([conv[b, i, j] @ vec for i in range(5) for j in range(4)]) for b in range(3)])
  np.testing.assert_allclose(obj.direction("conv", vec)(a, x), want / 3, rtol=1e-5)
  # cossim_pow weighs each position by max(0.1, cos)^p (Lucid's _dot_cossim).
  cos = np.einsum("bijc,c->bij", conv, vec) / (1e-4 + np.linalg.norm(conv, axis=-1)) / (1e-4 + np.linalg.norm(vec))
  want = (np.einsum("bijc,c->bij", conv, vec) * np.maximum(0.1, cos) ** 2).mean((1, 2))
  np.testing.assert_allclose(obj.direction("conv", vec, cossim_pow=2)(a, x), want / 3, rtol=1e-4)


def test_arithmetic():
  a, x = _acts(), _images()
  c, l = obj.channel("conv", 0), obj.class_logit(3)
  combo = 2 * c - l / 4 + 1.5
  np.testing.assert_allclose(combo(a, x), 2 * c(a, x) - l(a, x) / 4 + 1.5, rtol=1e-5)
  np.testing.assert_allclose((-c)(a, x), -c(a, x))
  np.testing.assert_allclose((1 - c)(a, x), 1 - c(a, x), rtol=1e-5)
  np.testing.assert_allclose((c * l)(a, x), c(a, x) * l(a, x), rtol=1e-5)
  np.testing.assert_allclose(sum([c, l])(a, x), c(a, x) + l(a, x), rtol=1e-5)
  assert combo.layers == {"conv", "logits"} and (c * 3).layers == {"conv"}
  with pytest.raises(TypeError, match="by a number"):
    c / l
  with pytest.raises(TypeError, match="by a number"):
    c + "conv:1"


def test_batch_restriction():
  a, x = _acts(), _images()
  v = np.asarray(obj.channel("conv", 1, batch=1)(a, x))
  assert v[0] == 0 and v[2] == 0 and v[1] != 0
  both = obj.channel("conv", 0, batch=0) + obj.channel("conv", 3, batch=2)
  np.testing.assert_allclose(both(a, x), [a["conv"][0, ..., 0].mean(), 0.0, a["conv"][2, ..., 3].mean()],
                             rtol=1e-5)
  assert obj.neuron("conv", 1, batch=0)(a, x)[1] == 0 and obj.class_logit(1, batch=2)(a, x)[0] == 0


def test_units_objective_equals_per_image_channels():
  a, x = _acts(), _images()
  units = [3, 0, 5]
  got = obj.units_objective("conv", units)(a, x)
  np.testing.assert_allclose(got, sum(obj.channel("conv", u, batch=i) for i, u in enumerate(units))(a, x),
                             rtol=1e-5)
  np.testing.assert_allclose(got, [a["conv"][i, ..., u].mean() for i, u in enumerate(units)], rtol=1e-5)
  np.testing.assert_allclose(obj.units_objective("logits", [1, 2, 3])(a, x), a["logits"][[0, 1, 2], [1, 2, 3]])
  got = obj.units_objective("conv", units, kind="neuron")(a, x)
  np.testing.assert_allclose(got, [a["conv"][i, 2, 2, u] for i, u in enumerate(units)])
  with pytest.raises(ValueError, match="3 images"):
    obj.units_objective("conv", [1, 2])(a, x)
  with pytest.raises(ValueError, match="kind"):
    obj.units_objective("conv", units, kind="pixel")
  with pytest.raises(ValueError, match="Unit 6 is out of range for layer 'conv', which has units 0..5"):
    obj.units_objective("conv", [1, 6, 2])(a, x)


def test_units_are_data_so_one_compiled_function_serves_any_units():
  a, x = _acts(), _images()
  o1, o2 = obj.units_objective("conv", [3, 0, 5]), obj.units_objective("conv", [1, 1, 2])
  assert o1.fn is o2.fn and o1.data.tolist() == [3, 0, 5]
  f = jax.jit(lambda acts, images, data: o1.fn(acts, images, data))
  np.testing.assert_allclose(f(a, x, o2.data), o2(a, x), rtol=1e-6)
  # Composite objectives carry their parts' data.
  combo = o1 - 0.5 * obj.direction("conv", np.ones(6))
  np.testing.assert_allclose(jax.jit(combo.fn)(a, x, combo.data), o1(a, x) - 0.5 * a["conv"].sum(-1).mean((1, 2)) / 3,
                             rtol=1e-5)


def test_units_objective_gradient_touches_only_its_unit():
  a = _acts()
  g = jax.jit(jax.grad(lambda t: obj.units_objective("conv", [3, 0, 5])({"conv": t}, _images()).sum()))(a["conv"])
  g = np.asarray(g)
  for i, u in enumerate([3, 0, 5]):
    assert np.allclose(g[i, ..., u], 1 / 20) and np.allclose(np.delete(g[i], u, axis=-1), 0)


def test_string_parsing():
  a, x = _acts(), _images()
  np.testing.assert_allclose(obj.as_objective("conv:2")(a, x), obj.channel("conv", 2)(a, x))
  assert obj.as_objective("conv:2").layers == {"conv"}
  c = obj.channel("conv", 1)
  assert obj.as_objective(c) is c
  for bad in ("conv", "conv:x", ":3", "conv:", "conv:-1", "conv:1.5"):
    with pytest.raises(ValueError, match="expected 'layer:unit'"):
      obj.as_objective(bad)


def test_unknown_layer_or_unit_is_a_clear_error():
  with pytest.raises(KeyError, match="Unknown layer 'conf'.*Did you mean 'conv'"):
    obj.channel("conf", 0)(_acts(), _images())
  with pytest.raises(ValueError, match="Unit 6 is out of range for layer 'conv', which has units 0..5"):
    obj.channel("conv", 6)(_acts(), _images())
  with pytest.raises(ValueError, match="Unit 10 is out of range for layer 'logits'"):
    obj.class_logit(10)(_acts(), _images())


def test_diversity_matches_lucid():
  a, x = _acts(), _images()
  d = np.asarray(obj.diversity("conv")(a, x))
  # Lucid: grams of the flattened [positions, c] activations, l2-normalized,
  # sum over i != j of <G_i, G_j>, divided by the batch size.
  conv = np.asarray(a["conv"], np.float64).reshape(3, -1, 6)
  grams = [f.T @ f / np.linalg.norm(f.T @ f) for f in conv]
  lucid = sum((grams[i] * grams[j]).sum() for i in range(3) for j in range(3) if i != j) / 3
  assert d.sum() == pytest.approx(lucid, rel=1e-5)
  same = {"conv": jnp.repeat(a["conv"][:1], 3, axis=0)}
  np.testing.assert_allclose(obj.diversity("conv")(same, x), [2 / 3] * 3, rtol=1e-5)  # (B-1)/B each
  assert d.sum() < 2.0


def test_penalties_on_input():
  x = _images()
  xn = np.asarray(x, np.float64)
  np.testing.assert_allclose(obj.l1(constant=0.5)({}, x), np.abs(xn - 0.5).sum((1, 2, 3)), rtol=1e-5)
  # Lucid's L2 is one root over the whole batch (shared equally); with batch=i, image i's own root.
  np.testing.assert_allclose(obj.l2()({}, x), [np.sqrt(1e-6 + (xn ** 2).sum()) / 3] * 3, rtol=1e-5)
  np.testing.assert_allclose(obj.l2(batch=1)({}, x)[1], np.sqrt(1e-6 + (xn[1] ** 2).sum()), rtol=1e-5)
  tv = np.abs(np.diff(xn, axis=1)).sum((1, 2, 3)) + np.abs(np.diff(xn, axis=2)).sum((1, 2, 3))
  np.testing.assert_allclose(obj.total_variation()({}, x), tv, rtol=1e-5)
  assert obj.l1().layers == {"input"}


def test_gradient_of_channel_under_jit():
  a = _acts()
  g = jax.jit(jax.grad(lambda t: obj.channel("conv", 1)({"conv": t}, _images()).sum()))(a["conv"])
  g = np.asarray(g)
  assert np.allclose(g[..., 1], 1 / 60) and np.allclose(g[..., [0, 2, 3, 4, 5]], 0)  # mean over 3 x 20


def _lucid_scalar(acts, images, unit):
  """Lucid's scalar objective, written from its definitions:
  channel = reduce_mean(T[..., n]) (batch and positions), diversity = sum_{i!=j} <G_i, G_j> / B
  (l2-normalized grams), L1 = reduce_sum(|x|), L2 = sqrt(1e-6 + reduce_sum(x^2)), TV summed over images."""
  t = acts["conv"]
  b = t.shape[0]
  flat = t.reshape(b, -1, t.shape[-1])
  grams = jnp.einsum("bpc,bpd->bcd", flat, flat).reshape(b, -1)
  grams = grams / jnp.linalg.norm(grams, axis=-1, keepdims=True)
  sims = grams @ grams.T
  diversity = (sims.sum() - jnp.trace(sims)) / b
  tv = jnp.abs(jnp.diff(images, axis=1)).sum() + jnp.abs(jnp.diff(images, axis=2)).sum()
  return (t[..., unit].mean() - 1e2 * diversity - 0.5 * jnp.abs(images).sum()
          - 0.3 * jnp.sqrt(1e-6 + (images ** 2).sum()) - 0.2 * tv)


def test_batch_weighting_and_gradients_match_lucid():
  # The causal benchmark's synthetic-reference recipe (channel - 1e2 * diversity over 9 images) plus
  # the penalties: the values sum to Lucid's scalar, so every gradient is Lucid's.
  a, x = _acts(b=9), _images(b=9)
  ours = (obj.channel("conv", 2) - 1e2 * obj.diversity("conv") - 0.5 * obj.l1() - 0.3 * obj.l2()
          - 0.2 * obj.total_variation())
  total = lambda t, im: ours({"conv": t}, im).sum()
  np.testing.assert_allclose(total(a["conv"], x), _lucid_scalar(a, x, 2), rtol=1e-5)
  for argnum, (mine, lucid) in enumerate(zip(jax.grad(total, (0, 1))(a["conv"], x),
                                             jax.grad(lambda t, im: _lucid_scalar({"conv": t}, im, 2), (0, 1))(a["conv"], x))):
    np.testing.assert_allclose(mine, lucid, rtol=1e-4, atol=1e-7, err_msg=f"argument {argnum}")
  # The ratio the old per-image sum got wrong: channel vs diversity gradient weights differ by B.
  g_channel = jax.grad(lambda t: obj.channel("conv", 2)({"conv": t}, x).sum())(a["conv"])
  np.testing.assert_allclose(np.asarray(g_channel)[..., 2], 1 / (9 * 20), rtol=1e-6)


def test_a_second_unit_of_the_same_layer_does_not_compile_again():
  """Unit indices are data, not closures: rendering "conv2:3" after "conv2:2" reuses the compiled step."""
  from fvjax import models  # pylint: disable=g-import-not-at-top
  from fvjax.optvis import render  # pylint: disable=g-import-not-at-top
  model = models.load("tiny_cnn")
  opts = dict(key=jax.random.PRNGKey(0), thresholds=(2,), size=32, progress=False)
  first = render.render(model, "conv2:2", **opts)
  misses = render._compiled.cache_info().misses  # pylint: disable=protected-access
  for spec in ("conv2:3", obj.channel("conv2", 4)):
    again = render.render(model, spec, **opts)
    assert render._compiled.cache_info().misses == misses, spec  # pylint: disable=protected-access
  assert not np.allclose(first.images, again.images)  # another unit, another image
  assert obj.channel("conv2", 3).fn is obj.channel("conv2", 5).fn
  assert obj.class_logit(1).fn is obj.class_logit(7).fn
  with pytest.raises(ValueError, match="Unit 99 is out of range for layer 'conv2'"):
    render.render(model, "conv2:99", **opts)
