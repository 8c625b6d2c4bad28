"""Transforms: shapes, per-image randomness, determinism, identities, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fvjax.optvis import transforms as T

KEY = jax.random.PRNGKey(0)


def _images(b=4, h=32, w=32, seed=0):
  return jnp.asarray(np.random.default_rng(seed).uniform(size=(b, h, w, 3)).astype(np.float32))


def _run(transform, x, key=KEY):
  """Applies a transform under jit (one compile instead of op-by-op dispatch)."""
  return np.asarray(jax.jit(transform)(key, x))


def test_lucid_constants():
  np.testing.assert_allclose(T.LUCID_SCALES, [0.90, 0.92, 0.94, 0.96, 0.98, 1.0, 1.02, 1.04, 1.06, 1.08, 1.10])
  assert T.LUCID_ANGLES == tuple(range(-10, 11)) + (0, 0, 0, 0, 0)
  assert T.PAD_VALUE == 0.5


def test_standard_transforms_shape_and_determinism():
  x = _images()
  t = jax.jit(T.standard_transforms())
  y = t(KEY, x)
  assert y.shape == (4, 32 + 24 - 8 - 4, 32 + 24 - 8 - 4, 3)
  np.testing.assert_array_equal(y, t(KEY, x))
  assert not np.allclose(y, t(jax.random.PRNGKey(1), x))
  shape = jax.eval_shape(T.standard_transforms(crop=32), KEY, x).shape  # traced, not compiled
  assert shape == (4, 32, 32, 3)


def test_scaled_standard_transforms_keep_size():
  assert jax.eval_shape(T.scaled_standard_transforms(64), KEY, _images(2, 64, 64)).shape == (2, 64, 64, 3)
  assert jax.eval_shape(T.scaled_standard_transforms(224), KEY, _images(1, 224, 224)).shape == (1, 224, 224, 3)


def test_jitter_is_a_crop_drawn_independently_per_image():
  d = 3
  x = jnp.repeat(_images(1, 12, 12), 16, axis=0)
  y = _run(T.jitter(d), x)
  assert y.shape == (16, 12 - d, 12 - d, 3)
  src = np.asarray(x[0])
  offsets = set()
  for img in y:
    hits = [(oy, ox) for oy in range(d + 1) for ox in range(d + 1)
            if np.array_equal(img, src[oy:oy + 12 - d, ox:ox + 12 - d])]
    assert len(hits) == 1
    offsets.add(hits[0])
  assert len(offsets) > 4  # identical images, different offsets


def test_image_draws_do_not_depend_on_batch_size():
  keys = T.image_keys(KEY, 4)
  np.testing.assert_array_equal(jax.random.key_data(keys[:2]), jax.random.key_data(T.image_keys(KEY, 2)))
  x = _images(4, 16, 16)
  np.testing.assert_array_equal(_run(T.jitter(4), x[:1])[0], _run(T.jitter(4), x)[0])


def test_pad_and_center_crop():
  x = _images(1, 8, 8)
  y = T.pad(2)(None, x)
  assert y.shape == (1, 12, 12, 3) and float(y[0, 0, 0, 0]) == 0.5
  np.testing.assert_array_equal(T.center_crop(8)(None, y), x)
  np.testing.assert_array_equal(T.pad(1, mode="reflect")(None, x)[0, 0, 1:-1], x[0, 1])
  assert T.center_crop((4, 6))(None, x).shape == (1, 4, 6, 3)


def test_identity_scale_and_rotation():
  x = _images(2)
  t = T.compose(T.random_scale([1.0]), T.random_rotate([0]), T.random_scale_rotate([1.0], [0]))
  np.testing.assert_allclose(_run(t, x), x, atol=1e-5)


def test_rotation_by_90_degrees_matches_rot90():
  x = _images(1, 16, 16)
  y = _run(T.random_rotate([90]), x)[0]
  want = np.rot90(np.asarray(x)[0], k=1, axes=(0, 1))  # counter-clockwise
  np.testing.assert_allclose(y[1:-1, 1:-1], want[1:-1, 1:-1], atol=1e-4)


def test_scale_zooms_about_the_centre():
  x = np.zeros((1, 21, 21, 3), np.float32)
  x[0, 10, 12] = 1.0  # 2 px right of the centre
  y = _run(T.random_scale([2.0]), jnp.asarray(x))[0, ..., 0]
  assert np.unravel_index(np.argmax(y), y.shape) == (10, 14)


def test_uncovered_pixels_are_filled():
  ones = jnp.ones((1, 16, 16, 3))
  both = _run(lambda k, x: (T.random_rotate([45])(k, x), T.random_rotate([45], fill=0.5)(k, x),
                           T.random_scale([0.5])(k, x)), ones)
  assert float(both[0][0, 0, 0, 0]) == pytest.approx(0.0)  # Lucid/lucent: zeros
  assert float(both[1][0, 0, 0, 0]) == pytest.approx(0.5)
  shrunk = both[2][0, ..., 0]
  assert shrunk[0, 0] == 0.0 and shrunk[8, 8] == pytest.approx(1.0)


@pytest.mark.parametrize("fused", [False, True])
def test_gradients_flow_through_standard_transforms(fused):
  x = _images(2)
  w = jnp.asarray(np.random.default_rng(1).normal(size=(2, 44, 44, 3)).astype(np.float32))
  g = jax.jit(jax.grad(lambda im: (T.standard_transforms(fused)(KEY, im) * w).sum()))(x)
  g = np.asarray(g)
  assert np.isfinite(g).all() and np.abs(g).sum() > 0
  assert (np.abs(g).reshape(2, -1).sum(1) > 0).all()  # every image gets a gradient


def test_clear_errors():
  with pytest.raises(ValueError, match="jitter"):
    T.jitter(8)(KEY, _images(1, 8, 8))
  with pytest.raises(ValueError, match="center_crop"):
    T.center_crop(40)(KEY, _images(1))
  with pytest.raises(ValueError, match="at least one value"):
    T.random_scale([])
  with pytest.raises(ValueError, match="positive"):
    T.random_scale([0.0, 1.0])
