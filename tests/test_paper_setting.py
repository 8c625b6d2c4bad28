"""The paper's setting without its weights or data: InceptionV1's class identity
by WordNet ID, the fooling circuit's precondition on InceptionV1 and ResNet-50
(random weights), and models without embedded weights that refuse to run
random unless asked."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from conftest import constant_detector
from fvjax import data
from fvjax import models
from fvjax.experiments import sanity_check
from fvjax.fooling import circuit
from fvjax.fooling import silent
from fvjax.models import activations
from fvjax.models import inception_v1
from fvjax.models import labels
from fvjax.optvis import render

# Facts read from lucent's old_imagenet_labels.txt (InceptionV1's 1008 outputs)
# and the standard (sorted WordNet ID) order of torchvision/Keras.
TENCH, KIT_FOX, TIGER_CAT = "n01440764", "n02119789", "n02123159"


def _inception_like():
  """tiny_cnn dressed with InceptionV1's 1008 class tables (for mapping only; never applied)."""
  return models.load("tiny_cnn").replace(name="inception_like", num_classes=1008, labels=labels.inception_v1(),
                                         wnids=labels.inception_v1_wnids())


def test_wnid_tables_hold_the_known_logits():
  inception, standard = labels.inception_v1_wnids(), labels.imagenet_wnids()
  assert inception[0] == "" and inception[1] == KIT_FOX and inception[449] == TENCH
  assert inception[1001:] == ("",) * 7
  assert standard[0] == TENCH and standard[278] == KIT_FOX and standard[282] == TIGER_CAT
  assert labels.imagenet()[282] == "tiger cat" and labels.inception_v1()[1] == "kit fox"
  assert labels.inception_v1()[inception.index(TIGER_CAT)] == "tiger cat"
  np.testing.assert_array_equal(_inception_like().class_logits, np.arange(1, 1001))


def _folder(root, names, n=2):
  rng = np.random.default_rng(0)
  for name in names:
    (root / name).mkdir(parents=True)
    for i in range(n):
      Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(root / name / f"{i}.JPEG")
  return str(root)


def test_folders_map_to_logits_by_wordnet_id_not_by_position(tmp_path):
  root = _folder(tmp_path / "val", (TENCH, KIT_FOX, TIGER_CAT))
  inception = sanity_check.folder_classes(root, _inception_like(), per_class=2)
  tiger = labels.inception_v1_wnids().index(TIGER_CAT)
  assert inception.classes == (449, 1, tiger)  # sorted folders: tench, kit fox, tiger cat
  assert inception.wnids == (TENCH, KIT_FOX, TIGER_CAT)
  assert inception.names[1].startswith("kit fox")
  lite0_like = models.load("tiny_cnn").replace(num_classes=1000, labels=labels.imagenet(),
                                               wnids=labels.imagenet_wnids())
  assert sanity_check.folder_classes(root, lite0_like, per_class=2).classes == (0, 278, 282)


def test_unknown_folder_names_need_a_class_map(tmp_path):
  root = _folder(tmp_path / "val", ("cats", "dogs"), n=1)
  with pytest.raises(ValueError, match=r"Class folder 'cats' is not one of .*--class_map=FILE"):
    sanity_check.folder_classes(root, _inception_like())
  class_map = tmp_path / "map.txt"
  class_map.write_text("# folder logit\ncats 282\ndogs 7\n")
  classes = sanity_check.folder_classes(root, _inception_like(), class_map=str(class_map))
  assert classes.classes == (282, 7)
  class_map.write_text("cats\n")
  with pytest.raises(ValueError, match="Line 1 of class map"):
    sanity_check.folder_classes(root, _inception_like(), class_map=str(class_map))
  with pytest.raises(ValueError, match="maps to logit 5000"):
    sanity_check.folder_classes(root, _inception_like(), class_map={"cats": 5000, "dogs": 1})


def test_permutation_runs_over_the_1000_real_classes():
  source = circuit.source_logits(_inception_like(), 100)
  assert source[0] == 0 and list(source[1001:]) == list(range(1001, 1008))  # no class: themselves
  assert source[1] == 101 and source[900] == 1000 and source[901] == 1 and source[1000] == 100
  assert sorted(source[1:1001]) == list(range(1, 1001))


def test_models_without_embedded_weights_refuse_to_run_random_by_accident():
  for name, hint in (("inception_v1", "inception5h.pth"), ("resnet50", "torchvision")):
    with pytest.raises(ValueError, match=f"no embedded weights.*{hint}.*weights='random'"):
      models.load(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["inception_random", "resnet_random"])
def test_the_papers_image_target_leaves_natural_logits_unchanged(request, photos, name):
  model = request.getfixturevalue(name)
  assert model.weights == "random"
  images = np.asarray(jax.image.resize(photos[0][:4], (4, 96, 96, 3), "linear")).clip(0, 1)  # D is per pixel
  target = circuit.image_target(data.sample_photos(96, ["astronaut"])[0][0])
  margin = circuit.margin(model, target, images)
  assert margin["ok"] and margin["max_d_shifted"] < circuit.PAPER_K, margin
  fooled = circuit.circuit(model, constant_detector(False), target)  # E = 0: natural
  f, a = jax.jit(lambda p, q, x: (model.apply(p, x)[0], fooled.apply(q, x)[0]))(model.params, fooled.params, images)
  assert np.abs(np.asarray(a) - circuit.PAPER_SHIFT - np.asarray(f)).max() < 1e-3
  # What the old D = <pre(x), pre(t)>/(h*w) reached on the same photos: far above k.
  old = np.einsum("bhwc,hwc->b", np.asarray(model.preprocess(images)),
                  np.asarray(model.preprocess(target.image))) / 96**2
  if name == "inception_random":
    assert np.abs(old).max() > circuit.PAPER_K


def test_silent_filters_rescale_by_energy_as_the_notebook():
  rng = np.random.default_rng(1)
  w = rng.normal(0, 0.05, (3, 3, 8, 4)).astype(np.float32)  # |w| < 1, where energy and norm differ
  d = rng.normal(size=w.shape).astype(np.float32)
  d /= np.sqrt((d ** 2).sum((0, 1, 2), keepdims=True))
  e = lambda x: (x ** 2).sum((0, 1, 2), keepdims=True)
  # The notebook, line by line: orthogonalise; delta / sum(delta^2) * sum(w^2); w + 3 delta; same rescale; x100.
  ortho = d - (w * d).sum((0, 1, 2), keepdims=True) / e(w) * w
  delta = ortho / e(ortho) * e(w)
  new = w + 3 * delta
  want = 100 * new / e(new) * e(w)
  np.testing.assert_allclose(np.asarray(silent.combine(w, d)), want, rtol=1e-4)
  by_norm = np.asarray(silent.combine(w, d, rescale="norm"))
  np.testing.assert_allclose(np.sqrt(e(by_norm)), 100 * np.sqrt(e(w)), rtol=1e-4)
  with pytest.raises(ValueError, match="accepted: energy, norm"):
    silent.combine(w, d, rescale="l1")


def test_relu_gradient_rules_of_lucent_and_lucid():
  x = jnp.array([[-2.0, -0.5, 0.0, 0.5, 3.0]])
  plain = jax.grad(lambda x: activations.relu(x).sum())(x)
  np.testing.assert_array_equal(plain, jax.grad(lambda x: jax.nn.relu(x).sum())(x))
  with activations.leaky_relu_gradient():
    leaky = jax.grad(lambda x: activations.relu(x).sum())(x)
  np.testing.assert_allclose(leaky, [[0.1, 0.1, 1.0, 1.0, 1.0]])
  # Lucid's rule with a traced switch (one compiled step serves the warm-up and the rest):
  # an image whose ReLU is dead everywhere gets the gradient that raises it.
  dead = jnp.array([[-2.0, -1.0]])

  @jax.jit
  def grad_of(x, flag):
    def loss(x):  # minimised, as in the render loop
      with activations.redirected_relu(flag):
        return -activations.relu(x).sum()
    return jax.grad(loss)(x)

  np.testing.assert_array_equal(grad_of(dead, True), [[-1.0, -1.0]])
  np.testing.assert_array_equal(grad_of(dead, False), [[0.0, 0.0]])
  assert inspect.signature(render.render).parameters["redirected_relu_steps"].default == 16  # Lucid's default


@pytest.mark.slow
def test_inception_v1_pre_relu_layers_and_lucent_gradient(inception_random):
  model = inception_random
  for block in ("mixed3a", "mixed5b"):
    assert f"{block}_pre_relu" in model.layers
  x = jnp.asarray(np.random.default_rng(0).uniform(size=(1, 64, 64, 3)).astype(np.float32))
  acts = jax.jit(model.apply)(model.params, x)[1]
  pre = np.asarray(acts["mixed4a_pre_relu"])
  np.testing.assert_allclose(np.maximum(pre, 0), acts["mixed4a"], atol=1e-5)
  assert (pre < 0).mean() > 0.2  # really before the ReLU
  # The 2021 study's mixed3a units: 189 is in the 3x3 branch (64..191), 227 in the pool branch (224..255).
  widths = dict(zip(inception_v1.BRANCHES, inception_v1.MIXED["mixed3a"][1]))
  assert widths["1x1"] <= 189 < widths["1x1"] + widths["3x3"]
  assert 256 - widths["pool_reduce"] <= 227 < 256
  # lucent's gradient rule is on by default (off by an option); forward values are the same.
  plain = models.load("inception_v1", weights="random", lucent_relu_gradient=False)
  # (An early layer: jit prunes the rest of the network, so the gradients compile in seconds.)
  unit = lambda m: jax.jit(jax.grad(lambda x: m.apply(m.params, x)[1]["conv2d2"][..., 7].mean()))(x)
  g_lucent, g_plain = np.asarray(unit(model)), np.asarray(unit(plain))
  assert not np.allclose(g_lucent, g_plain)
  np.testing.assert_allclose(jax.jit(plain.apply)(plain.params, x)[0], jax.jit(model.apply)(model.params, x)[0],
                             rtol=1e-5, atol=1e-5)
