"""MACO and feature accentuation: their defining properties, batched like Lucid's recipe."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fvjax import data
from fvjax import models
from fvjax.optvis import methods
from fvjax.optvis import objectives
from fvjax.optvis import param
from fvjax.optvis import render

SIZE = 32


@pytest.fixture(scope="module")
def tiny():
  return models.load("tiny_cnn")


@pytest.fixture(scope="module")
def seeds():
  return data.sample_photos(SIZE, names=("chelsea", "coffee", "rocket", "astronaut"))[0]


def _decorrelated_spectrum(images: np.ndarray) -> np.ndarray:
  """``|rfft2|`` of the images in the space MACO fixes it: logit, then the inverse colour matrix."""
  x = np.asarray(images, np.float64)
  t = np.log(x / (1.0 - x)) @ np.linalg.inv(param.COLOR_CORRELATION_NORMALIZED).T
  return np.abs(np.fft.rfft2(np.transpose(t, (0, 3, 1, 2)), axes=(-2, -1)))


def test_maco_magnitude_spectrum_stays_fixed_while_the_image_changes(tiny, seeds):
  opts = methods.render_options("maco", tiny, size=SIZE, spectrum_images=seeds, crops=2)
  result = render.render(tiny, [0, 1, 2], layer="logits", key=jax.random.PRNGKey(0), size=SIZE,
                         thresholds=(0, 3, 6), transparency=True, progress=False, **opts)
  magnitude = param.natural_spectrum(seeds)
  # Columns 1..w/2-1 hold each frequency once (the DC and Nyquist columns are folded with their mirror by the
  # inverse real FFT); MACO's standardization scales the whole spectrum of an image by one number.
  ratio = (_decorrelated_spectrum(result.images.reshape(-1, SIZE, SIZE, 3)) / magnitude)[..., 1:SIZE // 2]
  ratio = ratio.reshape(len(ratio), -1)
  spread = ratio.std(-1) / ratio.mean(-1)
  assert spread.max() < 1e-3, spread
  assert np.abs(result.images[-1] - result.images[0]).max() > 0.05  # the phase moved
  assert (result.values[-1] > result.values[0]).all(), result.values
  # The transparency map: absolute image gradients summed over the steps.
  alpha = result.transparency
  assert alpha.shape == (3, 3, SIZE, SIZE, 3)
  assert (alpha[0] == 0).all() and (alpha[1] > 0).any() and (alpha[2] >= alpha[1]).all()


def test_accentuation_at_zero_objective_weight_keeps_the_seed(tiny, seeds):
  opts = methods.render_options("accentuation", tiny, size=SIZE, seeds=seeds, accent_layer="conv2", crops=2,
                                  accent_weight=0.1)
  assert opts["regularizer"].layers == {"conv2", objectives.anchored("conv2")}
  start = np.asarray(param.accentuation().to_rgb(opts["init_params"]))
  np.testing.assert_allclose(start, seeds, atol=2e-3)  # the seed, but for the logit's clip at 1e-3
  # One batch: images 0 and 1 have no unit objective (weight 0), images 2 and 3 raise logits 1 and 3.
  obj = objectives.channel("logits", 1, batch=2) + objectives.channel("logits", 3, batch=3)
  result = render.render(tiny, obj, key=jax.random.PRNGKey(0), batch=4, size=SIZE, thresholds=(0, 5),
                         progress=False, **opts)
  np.testing.assert_array_equal(result.images[-1, :2], start[:2])
  assert np.abs(result.images[-1, 2:] - start[2:]).max() > 0.02
  before, after = (np.asarray(tiny.apply(tiny.params, x)[0]) for x in (start, result.images[-1]))
  assert after[2, 1] > before[2, 1] and after[3, 3] > before[3, 3], (before, after)


@pytest.mark.slow
def test_maco_renders_1000_units_in_one_call_compiled_once(tiny):
  units = np.arange(1000) % 10
  opts = methods.render_options("maco", tiny, size=8, crops=1)
  before = render._compiled.cache_info().misses  # pylint: disable=protected-access
  first = render.render(tiny, units, layer="logits", key=jax.random.PRNGKey(0), size=8, thresholds=(2,),
                        progress=False, **opts)
  # Other units, another spectrum, another key: the same compiled step.
  other = np.random.default_rng(0).random((4, 8, 8, 3))
  opts = methods.render_options("maco", tiny, size=8, crops=1, spectrum_images=other)
  second = render.render(tiny, units[::-1], layer="logits", key=jax.random.PRNGKey(1), size=8, thresholds=(2,),
                         progress=False, **opts)
  assert first.images.shape == second.images.shape == (1, 1000, 8, 8, 3)
  assert first.transparency is None
  assert render._compiled.cache_info().misses == before + 1  # pylint: disable=protected-access
  run, _ = render._compiled(tiny.apply, objectives.units_objective("logits", units).fn,  # pylint: disable=protected-access
                            opts["param"].to_rgb, opts["transforms"], opts["optimizer"], True, 32, 1, False)
  assert run._cache_size() == 1  # pylint: disable=protected-access


def test_natural_spectrum_of_one_image_is_its_own_magnitude(seeds):
  spectrum = param.natural_spectrum(seeds[:1])
  assert spectrum.shape == (3, SIZE, SIZE // 2 + 1)
  back = np.asarray(param.maco(spectrum).init(jax.random.PRNGKey(0), 2, (SIZE, SIZE)).magnitude)
  np.testing.assert_array_equal(back, np.broadcast_to(spectrum, back.shape))
  with pytest.raises(ValueError, match=r"shape \(3, 16, 9\)"):
    param.maco(spectrum).init(jax.random.PRNGKey(0), 1, (16, 16))


def test_bad_methods_and_missing_seeds_are_one_sentence_errors(tiny):
  with pytest.raises(ValueError, match="lucid, maco, accentuation, pixel"):
    methods.render_options("macoo", tiny)
  with pytest.raises(ValueError, match="seed images"):
    methods.render_options("accentuation", tiny)
  with pytest.raises(ValueError, match="seed images"):
    render.render(tiny, [0], layer="logits", key=jax.random.PRNGKey(0), param=param.accentuation(), progress=False)
  with pytest.raises(KeyError, match="anchored=True"):
    render.render(tiny, objectives.channel("conv2", 0) - objectives.seed_distance("conv2"),
                  key=jax.random.PRNGKey(0), thresholds=(1,), progress=False)
  assert methods.render_options("lucid", tiny) == {}
  assert methods.accentuation_layer(tiny) == "conv2"


@pytest.mark.slow
def test_causal_references_and_visualize_take_the_method(tiny, tmp_path):
  from fvjax.causal import benchmark, trials  # pylint: disable=g-import-not-at-top
  from fvjax.experiments import visualize  # pylint: disable=g-import-not-at-top
  key = jax.random.PRNGKey(0)
  metrics = benchmark.run(tiny, "conv3", [0], str(tmp_path / "causal"), key=key, natural=trials.embedded_set(
      key, 64, 0), observer=tiny, conditions=("synthetic",), stride=16, top_k=2, num_references=2, steps=2,
                          chunk=16, progress=False, method={"method": "accentuation", "crops": 1})
  assert metrics["references"]["synthetic"]["method"] == "accentuation"
  config = visualize.Config(method="accentuation", crops=1, units=(3,), steps=2, accent_layer="conv1")
  result = visualize.run(tiny, config, str(tmp_path / "vis"), progress=False)
  assert result["method"] == "accentuation"
