"""Shared fixtures: the real embedded model is built once per test session."""

import atexit
import functools
import os
import shutil
import tempfile

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")  # figures go to files in tests

# One persistent XLA compilation cache for the whole run, shared by both xdist
# workers and every subprocess the tests launch (they inherit the
# environment): most tests compile the same programs again (each train() and
# render() call builds fresh closures, each launch is a new process), and
# compilation is most of a small test's time on CPU. Set before jax is
# imported; a fresh folder per run, so timings are those of a cold cache (set
# JAX_COMPILATION_CACHE_DIR yourself to keep one between runs). The cache key
# covers the program, the compile options and XLA_FLAGS, so results are the
# same as without it.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="fvjax-tests-xla-")
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.1"
  atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)  # by its creator


def pytest_collection_modifyitems(items):
  """Slow tests first: with ``--dist worksteal`` (``make test``) an idle worker takes tests from the end of
  the other's queue, so the two finish together instead of one running a last long test while the other
  idles (longest-first scheduling). ``-m "not slow"`` leaves them out."""
  items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: otherwise file order


@functools.cache
def _lite0():
  from fvjax import models  # pylint: disable=g-import-not-at-top
  return models.load("efficientnet_lite0")


@functools.cache
def _photos(size):
  from fvjax import data  # pylint: disable=g-import-not-at-top
  return data.sample_photos(size)


@pytest.fixture(scope="session")
def lite0():
  """The embedded EfficientNet-Lite0 record with ImageNet weights."""
  return _lite0()


@functools.cache
def _random(name):
  from fvjax import models  # pylint: disable=g-import-not-at-top
  return models.load(name, weights="random")


@pytest.fixture(scope="session")
def inception_random():
  """InceptionV1 (the paper's model) with random weights: the paper's setting without its weight file."""
  return _random("inception_v1")


@pytest.fixture(scope="session")
def resnet_random():
  """ResNet-50 with random weights."""
  return _random("resnet50")


def constant_detector(says_visualization: bool, size: int = 16):
  """A detector whose logit is +-50 whatever the image (zero kernel, biased output)."""
  import jax  # pylint: disable=g-import-not-at-top
  from fvjax.fooling import detector as det  # pylint: disable=g-import-not-at-top
  d = det.init(jax.random.PRNGKey(0), det.DetectorConfig(size=size))
  params = jax.tree_util.tree_map(np.zeros_like, d.variables)
  params["params"]["Dense_0"]["bias"] = np.full((1,), 50.0 if says_visualization else -50.0, np.float32)
  return det.Detector(params, d.config)


@pytest.fixture(scope="session")
def photos():
  """The embedded natural photos at 224 px: (images, names)."""
  return _photos(224)


@pytest.fixture
def rng():
  return np.random.default_rng(0)


FAST_COMPILE = "--xla_backend_optimization_level=0"


def fast_compile_env(**extra: str) -> dict:
  """The environment for a subprocess that runs a tiny model: XLA compiles with less LLVM optimisation.

  Tiny-model runs are mostly compile time; their programs run a little slower
  and compile several times faster. Real-model tests keep the default.
  """
  import os  # pylint: disable=g-import-not-at-top
  env = dict(os.environ, **extra)
  env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {FAST_COMPILE}".strip()
  return env
