"""A user's own Flax model (Linen or NNX) works with every experiment's building blocks."""

import json
import os
import subprocess
import sys

from flax import nnx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import fast_compile_env
from fvjax import models
from fvjax import similarity
from fvjax.fooling import circuit
from fvjax.fooling import silent
from fvjax.models import surgery
from fvjax.optvis import render

SIZE = (32, 32)
TESTS = os.path.dirname(os.path.abspath(__file__))


class NnxNet(nnx.Module):
  """A small NNX CNN; ``__call__(x) -> (logits, acts)`` as fvjax expects."""

  def __init__(self, rngs: nnx.Rngs):
    self.stem = nnx.Conv(3, 8, (3, 3), rngs=rngs)
    self.bn = nnx.BatchNorm(8, rngs=rngs)
    self.blocks = nnx.List([nnx.Conv(8, 8, (3, 3), strides=2, rngs=rngs) for _ in range(2)])
    self.head = nnx.Linear(8, 5, rngs=rngs)

  def __call__(self, x):
    acts = {}
    x = acts["stem"] = nnx.relu(self.bn(self.stem(x)))
    for i, block in enumerate(self.blocks):
      x = acts[f"block{i}"] = nnx.relu(block(x))
    logits = acts["logits"] = self.head(x.mean(axis=(1, 2)))
    return logits, acts


class LinenNet(nn.Module):
  """The same shape in Linen."""

  @nn.compact
  def __call__(self, x):
    acts = {}
    x = acts["stem"] = nn.relu(nn.Conv(8, (3, 3), name="stem")(x))
    x = acts["block0"] = nn.relu(nn.Conv(8, (3, 3), strides=2, name="block0")(x))
    logits = acts["logits"] = nn.Dense(5, name="head")(x.mean(axis=(1, 2)))
    return logits, acts


def nnx_record():
  model = NnxNet(nnx.Rngs(0))
  model.eval()
  return model, models.record_from_nnx("nnx_net", model, input_size=SIZE, layers=("stem", "block0", "block1", "logits"),
                                       preprocess=lambda x: x * 2 - 1, input_range="x*2-1", num_classes=5)


def linen_record():
  module = LinenNet()
  variables = module.init(jax.random.PRNGKey(0), jnp.zeros((1, *SIZE, 3)))
  return models.record_from_linen("linen_net", module, jax.tree_util.tree_map(np.asarray, dict(variables)),
                                  input_size=SIZE, layers=("stem", "block0", "logits"),
                                  preprocess=lambda x: x * 2 - 1, input_range="x*2-1", num_classes=5)


def images(n=4, seed=0):
  return np.random.default_rng(seed).uniform(size=(n, *SIZE, 3)).astype(np.float32)


def test_nnx_record_is_the_model_and_is_pure():
  model, record = nnx_record()
  x = images()
  logits, acts = jax.jit(record.apply)(record.params, x)
  direct, _ = model(jnp.asarray(x) * 2 - 1)
  np.testing.assert_allclose(np.asarray(logits), np.asarray(direct), atol=1e-5)
  assert set(acts) == set(record.layers) and acts["block1"].shape == (4, 8, 8, 8)
  # Other params give other logits (params are inputs, not baked-in constants), and gradients flow to them.
  doubled = jax.tree_util.tree_map(lambda p: p * 2, record.params)
  assert not np.allclose(np.asarray(record.apply(doubled, x)[0]), np.asarray(logits))
  g = jax.grad(lambda p: record.apply(p, x)[0].sum())(record.params)
  assert np.abs(np.asarray(g["stem"]["kernel"])).sum() > 0
  assert "blocks/1" in surgery.module_names(record) and "bn" in surgery.module_names(record)


@pytest.mark.parametrize("make", [nnx_record, linen_record], ids=["nnx", "linen"])
def test_feature_visualization_and_path_similarity(make):
  record = make()[1] if make is nnx_record else make()
  # No transforms: Lucid's (pad 12, jitter 8) would swamp a 32 px canvas; this checks the plumbing.
  result = render.render(record, [0, 3], layer="logits", key=jax.random.PRNGKey(0), thresholds=(1, 16),
                         transforms=lambda key, x: x, progress=False)
  assert result.images.shape == (2, 2, *SIZE, 3)
  assert (result.values[1] > result.values[0]).all()
  acts = jax.jit(record.apply)(record.params, result.images[-1])[1]
  nat = jax.jit(record.apply)(record.params, images())[1]
  s = similarity.similarity_matrix(similarity.features(acts["stem"]), similarity.features(nat["stem"]))
  assert s.shape == (2, 4)


def test_nnx_surgery_edits_capture_and_call_layer():
  model, record = nnx_record()
  x = images()
  base_logits, base_acts = jax.jit(record.apply)(record.params, x)
  zero = surgery.edit_layers(record, {"blocks/0": lambda p, inputs, out: out * p}, {"blocks/0": 0.0}, expose=True)
  logits, acts = jax.jit(zero.apply)(zero.params, x)
  assert np.all(np.asarray(acts["blocks/0"]) == 0) and "blocks/0" in zero.layers
  np.testing.assert_array_equal(np.asarray(acts["stem"]), np.asarray(base_acts["stem"]))  # upstream untouched
  assert not np.allclose(np.asarray(logits), np.asarray(base_logits))  # downstream follows
  # Edits stack; the original record and the user's model are untouched.
  plus = surgery.edit_layers(zero, {"head": lambda p, inputs, out: out + p}, {"head": 7.0})
  np.testing.assert_allclose(np.asarray(plus.apply(plus.params, x)[0]), np.asarray(logits) + 7.0, atol=1e-5)
  np.testing.assert_array_equal(np.asarray(jax.jit(record.apply)(record.params, x)[0]), np.asarray(base_logits))
  assert isinstance(model.blocks[0], nnx.Conv)
  # capture sees the layer's input and output; call_layer reruns the layer with given params.
  inp, out = surgery.capture(record, "blocks/0")(record.params, x)
  np.testing.assert_allclose(np.asarray(inp), np.asarray(base_acts["stem"]), atol=1e-6)
  again = surgery.call_layer(record, "blocks/0")(surgery.layer_params(record, "blocks/0"), inp)
  np.testing.assert_allclose(np.asarray(again), np.asarray(out), atol=1e-5)
  with pytest.raises(KeyError, match="Did you mean 'blocks/1'"):
    surgery.edit_layers(record, {"blocks/7": lambda p, i, o: o})


@pytest.mark.parametrize("make", [nnx_record, linen_record], ids=["nnx", "linen"])
def test_expose_input_adds_a_layers_input_and_changes_nothing_else(make):
  record = make()[1] if make is nnx_record else make()
  path = "blocks/1" if make is nnx_record else "block0"
  x = images()
  exposed = surgery.expose_input(record, path)
  logits, acts = jax.jit(exposed.apply)(exposed.params, x)
  base_logits, base_acts = jax.jit(record.apply)(record.params, x)
  np.testing.assert_array_equal(np.asarray(logits), np.asarray(base_logits))
  np.testing.assert_array_equal(np.asarray(acts[f"{path}:input"]),
                                np.asarray(surgery.capture(record, path)(record.params, x)[0]))
  assert exposed.layers == (*record.layers[:-1], f"{path}:input", "logits") and set(base_acts) < set(acts)


@pytest.mark.parametrize("make", [nnx_record, linen_record], ids=["nnx", "linen"])
def test_silent_units_keep_calibration_logits(make):
  record = make()[1] if make is nnx_record else make()
  path = "blocks/1" if make is nnx_record else "block0"
  calibration = images(8, seed=1)
  filters = silent.fooling_filters(record, path, images(1, seed=2)[0], [calibration], key=jax.random.PRNGKey(0),
                                   steps=5, margin=0.0)  # the paper's bias: the target is as random as the rest
  edited = silent.add_silent_units(record, path, filters)
  np.testing.assert_array_equal(np.asarray(edited.apply(edited.params, calibration)[0]),
                                np.asarray(record.apply(record.params, calibration)[0]))
  assert silent.fooling_activations(record, path, filters, images(1, seed=2)).max() > 0  # fires on the target


def test_fooling_circuit_wraps_an_nnx_record():
  from test_fooling_circuit import constant_detector  # pylint: disable=g-import-not-at-top
  _, record = nnx_record()
  x = images()
  base = np.asarray(record.apply(record.params, x)[0])
  natural = circuit.circuit(record, constant_detector(False), circuit.permutation(1))
  fooled = circuit.circuit(record, constant_detector(True), circuit.permutation(1))
  np.testing.assert_allclose(np.asarray(natural.apply(natural.params, x)[0]), base + circuit.PAPER_SHIFT, atol=1e-3)
  np.testing.assert_allclose(np.asarray(fooled.apply(fooled.params, x)[0]), np.roll(base, -1, axis=1)
                             + circuit.PAPER_SHIFT, atol=1e-3)


def nnx_builder():
  """What a user passes as ``--model=my_module:nnx_builder``."""
  return nnx_record()[1]


def test_models_load_takes_an_import_path_with_clear_errors():
  assert models.load("test_bring_your_own_model:linen_record").name == "linen_net"
  with pytest.raises(KeyError, match="Cannot import 'no_such_module_xyz'"):
    models.load("no_such_module_xyz:build")
  with pytest.raises(KeyError, match="has no function 'nope'"):
    models.load("test_bring_your_own_model:nope")
  with pytest.raises(TypeError, match="returned a ndarray; accepted: a function returning a ModelRecord"):
    models.load("test_bring_your_own_model:images")


@pytest.mark.slow
def test_launch_script_runs_a_users_nnx_model(tmp_path):
  env = fast_compile_env(PYTHONPATH=os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")]))
  out = subprocess.run([sys.executable, "-m", "launch.visualize", "--model=test_bring_your_own_model:nnx_builder",
                        "--layer=block1", "--units=0,5", "--steps=2", f"--workdir={tmp_path}"],
                       cwd=os.path.dirname(TESTS), env=env, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert json.load(open(tmp_path / "metrics.json"))["model"] == "nnx_net"
  assert (tmp_path / "unit_5.png").exists()
