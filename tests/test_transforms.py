"""Transforms: shapes, per-image randomness, determinism, identities, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fvjax.optvis import transforms as T


def _images(b=4, h=32, w=32, seed=0):
  return jnp.asarray(np.random.default_rng(seed).uniform(size=(b, h, w, 3)).astype(np.float32))


def test_standard_transforms_shape_and_determinism():
  x = _images()
  key = jax.random.PRNGKey(0)
  t = T.standard_transforms()
  y = t(key, x)
  assert y.shape == (4, 32 + 24 - 8 - 4, 32 + 24 - 8 - 4, 3)
  np.testing.assert_array_equal(y, t(key, x))
  assert not np.allclose(y, t(jax.random.PRNGKey(1), x))


def test_scaled_standard_transforms_keep_size():
  assert T.scaled_standard_transforms(64)(jax.random.PRNGKey(0), _images(2, 64, 64)).shape == (2, 64, 64, 3)


def test_jitter_is_independent_per_image():
  x = jnp.repeat(_images(1), 16, axis=0)
  y = np.asarray(T.jitter(8)(jax.random.PRNGKey(0), x))
  distinct = {y[i].tobytes() for i in range(16)}
  assert len(distinct) > 4


def test_pad_and_center_crop():
  x = _images(1, 8, 8)
  y = T.pad(2)(None, x)
  assert y.shape == (1, 12, 12, 3) and float(y[0, 0, 0, 0]) == 0.5
  np.testing.assert_array_equal(T.center_crop(8)(None, y), x)


def test_identity_scale_and_rotation():
  x = _images(2)
  np.testing.assert_allclose(T.random_scale([1.0])(jax.random.PRNGKey(0), x), x, atol=1e-5)
  np.testing.assert_allclose(T.random_rotate([0])(jax.random.PRNGKey(0), x), x, atol=1e-5)


def test_rotation_by_90_degrees_matches_rot90():
  x = _images(1, 16, 16)
  y = np.asarray(T.random_rotate([90])(jax.random.PRNGKey(0), x))[0]
  want = np.rot90(np.asarray(x)[0], k=1, axes=(0, 1))  # counter-clockwise
  np.testing.assert_allclose(y[1:-1, 1:-1], want[1:-1, 1:-1], atol=1e-4)


def test_scale_zooms_about_the_centre():
  x = np.zeros((1, 21, 21, 3), np.float32)
  x[0, 10, 12] = 1.0  # 2 px right of centre
  y = np.asarray(T.random_scale([2.0])(jax.random.PRNGKey(0), jnp.asarray(x)))[0, ..., 0]
  assert np.unravel_index(np.argmax(y), y.shape) in {(10, 14)}


@pytest.mark.parametrize("fused", [False, True])
def test_gradients_flow_through_standard_transforms(fused):
  x = _images(2)
  g = jax.grad(lambda im: T.standard_transforms(fused)(jax.random.PRNGKey(0), im).sum())(x)
  g = np.asarray(g)
  assert np.isfinite(g).all() and np.abs(g).sum() > 0
