"""The embedded default model: real ImageNet behaviour and the reference port."""

import os

import jax
import numpy as np
import pytest

from fvjax import classify
from fvjax import models
from fvjax.models import efficientnet_lite

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "efficientnet_lite0_reference.npz")


def test_record_metadata(lite0):
  assert lite0.input_size == (224, 224)
  assert lite0.layers[0] == "stem" and lite0.layers[-1] == "logits"
  assert lite0.layers == ("stem", *(f"block{i}" for i in range(16)), "head", "logits")
  assert lite0.num_classes == 1000 and len(lite0.labels) == 1000
  assert lite0.labels[967] == "espresso"
  np.testing.assert_allclose(lite0.preprocess(np.array([0.0, 1.0])), [-127 / 128, 1.0])


def test_chelsea_is_a_cat_and_coffee_is_espresso(lite0, photos):
  images, names = photos
  idx, probs = classify.top_k(lite0, images[:2], k=5)
  assert names[:2] == ("chelsea", "coffee")
  assert 281 <= idx[0, 0] <= 285, idx[0]
  assert idx[1, 0] == 967, idx[1]
  assert probs[1, 0] > 0.5


def test_every_layer_is_returned_with_its_shape(lite0, photos):
  logits, acts = jax.jit(lite0.apply)(lite0.params, photos[0][:1])
  assert set(acts) == set(lite0.layers)
  assert acts["stem"].shape == (1, 112, 112, 32)
  assert acts["block15"].shape == (1, 7, 7, 320)
  assert acts["head"].shape == (1, 7, 7, 1280)
  np.testing.assert_array_equal(acts["logits"], logits)


@pytest.mark.skipif(not os.path.exists(FIXTURE), reason="reference fixture not generated")
def test_logits_match_reference_pytorch_implementation(lite0):
  ref = np.load(FIXTURE)
  images = ref["images_uint8"].astype(np.float32) / 255.0
  # Full float32 matmuls: on GPUs JAX's default (TF32) moves logits by ~1e-2.
  with jax.default_matmul_precision("float32"):
    logits, acts = jax.jit(lite0.apply)(lite0.params, images)
  np.testing.assert_allclose(np.asarray(logits), ref["logits"], atol=1e-3, rtol=0)
  if "stem" in ref:
    np.testing.assert_allclose(np.asarray(acts["stem"]), ref["stem"].astype(np.float32), atol=2e-3)


def test_depthwise_impls_agree(lite0, photos):
  conv = efficientnet_lite.build(depthwise_impl="conv")
  a = jax.jit(lite0.apply)(lite0.params, photos[0][:2])[0]
  b = jax.jit(conv.apply)(conv.params, photos[0][:2])[0]
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-3)


def test_random_init_has_the_same_structure(lite0):
  rand = models.load("efficientnet_lite0", weights="random", key=jax.random.PRNGKey(1))
  same = jax.tree_util.tree_structure(rand.params) == jax.tree_util.tree_structure(lite0.params)
  assert same
  shapes = jax.tree_util.tree_map(np.shape, rand.params) == jax.tree_util.tree_map(np.shape, lite0.params)
  assert shapes


def test_foreign_state_dict_is_refused():
  with pytest.raises(ValueError, match="Not an EfficientNet-Lite state dict: key '_conv_stem.weight'"):
    efficientnet_lite.convert_state_dict({"conv1.weight": np.zeros((64, 3, 7, 7))})


@pytest.mark.parametrize("k, s, h", [(3, 1, 9), (3, 2, 10), (5, 2, 11), (5, 2, 14), (3, 2, 7)])
def test_shift_depthwise_and_its_custom_gradient_match_grouped_conv(k, s, h):
  r = np.random.default_rng(0)
  x = r.normal(size=(2, h, h + 1, 4)).astype(np.float32)
  w = r.normal(size=(k, k, 4)).astype(np.float32)
  ref = lambda x, w: jax.lax.conv_general_dilated(x, w[:, :, None, :], (s, s), "SAME",
                                                  dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=4)
  shift = lambda x, w: efficientnet_lite._depthwise_shift(x, w, s)  # pylint: disable=protected-access
  y, vjp = jax.vjp(shift, x, w)
  y_ref, vjp_ref = jax.vjp(ref, x, w)
  np.testing.assert_allclose(y, y_ref, atol=1e-5)
  g = r.normal(size=y.shape).astype(np.float32)
  for got, want in zip(vjp(g), vjp_ref(g)):
    np.testing.assert_allclose(got, want, atol=1e-4)
