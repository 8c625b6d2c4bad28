"""InceptionV1, ResNet-50 and TinyCNN on random params: layers, shapes, state-dict loading."""

import functools

import jax
import numpy as np
import pytest

from fvjax import models
from fvjax.models import inception_v1
from fvjax.models import resnet50

INCEPTION_SHAPES = {
    "conv2d0": (112, 112, 64), "conv2d1": (56, 56, 64), "conv2d2": (56, 56, 192),
    "mixed3a": (28, 28, 256), "mixed3b": (28, 28, 480), "mixed4a": (14, 14, 508), "mixed4b": (14, 14, 512),
    "mixed4c": (14, 14, 512), "mixed4d": (14, 14, 528), "mixed4e": (14, 14, 832), "mixed5a": (7, 7, 832),
    "mixed5b": (7, 7, 1024), "logits": (1008,),
}


@functools.cache
def _record(name):
  return models.load(name, weights="random")


def _shapes(record):
  h, w = record.input_size
  out = jax.eval_shape(record.apply, record.params, jax.ShapeDtypeStruct((1, h, w, 3), np.float32))[1]
  return {k: v.shape[1:] for k, v in out.items()}


def test_inception_v1_layers_and_shapes():
  rec = _record("inception_v1")
  # Each mixed block's pre-ReLU concatenation (Lucid's *_pre_relu) comes right before the block.
  pre = {f"{b}_pre_relu": INCEPTION_SHAPES[b] for b in inception_v1.MIXED}
  assert rec.layers == tuple(n for layer in INCEPTION_SHAPES for n in ((f"{layer}_pre_relu",) * (layer in
                                                                                               inception_v1.MIXED) + (layer,)))
  assert _shapes(rec) == {**INCEPTION_SHAPES, **pre}
  assert rec.input_range == "x*255-117" and rec.num_classes == 1008
  np.testing.assert_allclose(rec.preprocess(np.array([0.0, 1.0])), [-117.0, 138.0])


def test_resnet50_layers_and_shapes():
  rec = _record("resnet50")
  shapes = _shapes(rec)
  assert rec.layers[0] == "conv1" and rec.layers[-1] == "logits" and len(rec.layers) == 18
  assert shapes["conv1"] == (112, 112, 64)
  assert shapes["layer1_2"] == (56, 56, 256) and shapes["layer2_3"] == (28, 28, 512)
  assert shapes["layer3_5"] == (14, 14, 1024) and shapes["layer4_2"] == (7, 7, 2048)
  assert shapes["logits"] == (1000,)


def test_tiny_cnn():
  rec = _record("tiny_cnn")
  assert rec.layers == ("conv1", "conv2", "conv3", "logits")
  assert _shapes(rec)["logits"] == (10,)


def _to_torch(kernel):
  return kernel.T if kernel.ndim == 2 else np.transpose(kernel, (3, 2, 0, 1))  # HWIO -> OIHW


def _inception_state_dict(rng):
  like = _record("inception_v1").params
  sd = {}
  for path, prefix in inception_v1._torch_names().items():  # pylint: disable=protected-access
    node = like["params"]
    for p in path:
      node = node[p]
    sd[f"{prefix}.weight"] = _to_torch(rng.normal(size=node["kernel"].shape).astype(np.float32) * 0.05)
    sd[f"{prefix}.bias"] = rng.normal(size=node["bias"].shape).astype(np.float32) * 0.05
  return sd


def _resnet_state_dict(rng):
  like = _record("resnet50").params
  sd = {}
  for path, (prefix, kind) in resnet50._mapping().items():  # pylint: disable=protected-access
    for (collection, leaf), torch_name in resnet50._KINDS[kind].items():  # pylint: disable=protected-access
      node = like[collection]
      for p in path:
        node = node[p]
      value = rng.uniform(0.5, 1.5, size=node[leaf].shape).astype(np.float32)
      sd[f"{prefix}.{torch_name}"] = _to_torch(value) if leaf == "kernel" else value
  sd["bn1.num_batches_tracked"] = np.array(5)
  return sd


def _conv_at(x, w_oihw, b, y, x0, stride, pad):
  """One output pixel of a PyTorch conv, by hand (checks the transpose and padding)."""
  k = w_oihw.shape[-1]
  xp = np.pad(x, ((pad[0], pad[1]), (pad[0], pad[1]), (0, 0)))
  patch = xp[y * stride:y * stride + k, x0 * stride:x0 * stride + k]  # [k,k,in]
  return np.einsum("hwi,oihw->o", patch, w_oihw) + (0 if b is None else b)


def test_inception_state_dict_loads_and_converts_correctly(tmp_path, rng):
  sd = _inception_state_dict(rng)
  np.savez(tmp_path / "inception.npz", **sd)
  rec = models.load("inception_v1", weights=str(tmp_path / "inception.npz"))
  image = rng.uniform(size=(1, 224, 224, 3)).astype(np.float32)
  acts = jax.jit(rec.apply)(rec.params, image)[1]
  x = image[0] * 255 - 117
  for yy, xx in ((0, 0), (111, 111), (50, 7)):
    want = np.maximum(_conv_at(x, sd["conv2d0_pre_relu_conv.weight"], sd["conv2d0_pre_relu_conv.bias"],
                               yy, xx, 2, (2, 3)), 0)
    np.testing.assert_allclose(np.asarray(acts["conv2d0"][0, yy, xx]), want, rtol=1e-4, atol=1e-3)


def test_resnet_state_dict_loads_and_converts_correctly(tmp_path, rng):
  sd = _resnet_state_dict(rng)
  np.savez(tmp_path / "resnet.npz", **sd)
  rec = models.load("resnet50", weights=str(tmp_path / "resnet.npz"))
  image = rng.uniform(size=(1, 224, 224, 3)).astype(np.float32)
  acts = jax.jit(rec.apply)(rec.params, image)[1]
  x = (image[0] - resnet50.MEAN) / resnet50.STD
  for yy, xx in ((0, 0), (111, 111)):
    conv = _conv_at(x, sd["conv1.weight"], None, yy, xx, 2, (3, 3))
    bn = (conv - sd["bn1.running_mean"]) / np.sqrt(sd["bn1.running_var"] + 1e-5) * sd["bn1.weight"] + sd["bn1.bias"]
    np.testing.assert_allclose(np.asarray(acts["conv1"][0, yy, xx]), np.maximum(bn, 0), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("name, make", [("inception_v1", _inception_state_dict), ("resnet50", _resnet_state_dict)])
def test_bad_state_dicts_are_refused_in_one_sentence(rng, name, make):
  module = {"inception_v1": inception_v1, "resnet50": resnet50}[name]
  like = _record(name).params
  sd = make(rng)
  first = sorted(sd)[0]
  missing = {k: v for k, v in sd.items() if k != first}
  with pytest.raises(ValueError, match=f"key {first!r} is missing"):
    module.convert_state_dict(missing, like)
  wrong = dict(sd)
  wrong[first] = np.zeros((3, 3), np.float32)
  with pytest.raises(ValueError, match=f"Key {first!r} has shape"):
    module.convert_state_dict(wrong, like)


@pytest.mark.parametrize("name, hint", [("inception_v1", "inception5h.pth"), ("resnet50", "torchvision")])
def test_missing_weights_say_where_they_come_from(name, hint):
  with pytest.raises(FileNotFoundError, match=hint):
    models.load(name, weights="/nonexistent/weights.pth")
