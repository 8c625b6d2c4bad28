"""The surgery hook replaces a named layer's output; everything downstream follows."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fvjax.models import surgery


def test_replacing_a_layer_changes_downstream_and_acts(lite0, photos):
  x = photos[0][:2]
  base_logits, base_acts = jax.jit(lite0.apply)(lite0.params, x)

  def zero_channel(p, inputs, out):
    del inputs
    return out.at[..., p["channel"]].set(0.0)

  edited = surgery.edit_layers(lite0, {"block10": zero_channel}, {"block10": {"channel": 3}})
  logits, acts = jax.jit(edited.apply)(edited.params, x)
  assert np.all(np.asarray(acts["block10"][..., 3]) == 0)
  assert np.abs(np.asarray(base_acts["block10"][..., 3])).max() > 0
  np.testing.assert_array_equal(acts["block9"], base_acts["block9"])  # upstream untouched
  assert not np.allclose(logits, base_logits)  # downstream follows
  # The original record is not mutated.
  again = jax.jit(lite0.apply)(lite0.params, x)[0]
  np.testing.assert_array_equal(again, base_logits)


def test_identity_edit_is_exact_and_sees_the_layer_input(lite0, photos):
  seen = {}

  def identity(p, inputs, out):
    seen["in"] = inputs[0].shape
    return out

  edited = surgery.edit_layers(lite0, {"head": identity})
  a = jax.jit(lite0.apply)(lite0.params, photos[0][:1])[0]
  b = jax.jit(edited.apply)(edited.params, photos[0][:1])[0]
  np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)
  assert seen["in"] == (1, 7, 7, 320)


def test_nested_submodule_and_stacked_edits(lite0, photos):
  x = photos[0][:1]
  plus = lambda p, inputs, out: out + p
  once = surgery.edit_layers(lite0, {"logits": plus}, {"logits": 100.0})
  twice = surgery.edit_layers(once, {"block3/bn2": lambda p, i, o: o})
  l0 = jax.jit(lite0.apply)(lite0.params, x)[0]
  l2 = jax.jit(twice.apply)(twice.params, x)[0]
  np.testing.assert_allclose(np.asarray(l2), np.asarray(l0) + 100.0, atol=1e-3)
  g = jax.jit(jax.grad(lambda im: twice.apply(twice.params, im)[0][0, 5]))(jnp.asarray(x))
  assert np.isfinite(np.asarray(g)).all() and np.abs(np.asarray(g)).max() > 0


def test_unknown_layer_is_refused(lite0):
  with pytest.raises(KeyError, match="Did you mean 'block3'"):
    surgery.edit_layers(lite0, {"blok3": lambda p, i, o: o})
