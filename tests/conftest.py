"""Shared fixtures: the real embedded model is built once per test session."""

import functools

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")  # figures go to files in tests


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
