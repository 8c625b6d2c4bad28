"""The natural-vs-visualization detector E of the fooling circuit (paper 2.1).

A small CNN on the network's input image that outputs one logit: positive
means "this is a feature visualization", negative "this is a natural image".
The architecture is the paper's: conv 3->16 (3x3), four conv 16->16 (5x5,
stride 2), conv 16->3 (3x3), a ReLU after each, flatten, dropout 0.3, a linear
layer to one logit.

Flattening fixes the input size, so the detector resizes every image to its
own ``size`` first (default 224, the paper's; any model input size then
works). Images arrive in ``[0, 1]`` (the same images the model under study
sees) and are mapped to ``[-1, 1]``: a fixed normalization that does not
depend on the model (our choice; the paper feeds the network's input).

A detector is a plain pair: its Flax variables (a nested dict) and its
:class:`DetectorConfig`; :func:`save` and :func:`load` keep both on disk
(orbax for the weights, a JSON file beside them for the config).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fvjax import checkpoint
from fvjax import io

PAPER_SIZE = 224
PAPER_DROPOUT = 0.3
_CONFIG_FILE = "detector.json"


@dataclasses.dataclass(frozen=True)
class DetectorConfig:
  """Static settings of a detector.

  Attributes:
    size: side the input is resized to before the CNN (paper: 224).
    width: channels of the hidden convolutions (paper: 16).
    dropout: dropout rate before the linear layer (paper: 0.3).
  """

  size: int = PAPER_SIZE
  width: int = 16
  dropout: float = PAPER_DROPOUT


class Detector(NamedTuple):
  """A trained (or fresh) detector: Flax ``variables`` and its ``config``."""

  variables: Any
  config: DetectorConfig


class DetectorNet(nn.Module):
  """``[B,H,W,3]`` in ``[0,1]`` -> ``[B]`` logits (positive: visualization)."""

  config: DetectorConfig

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
    c = self.config
    b = images.shape[0]
    x = images.astype(jnp.float32)
    if x.shape[1:3] != (c.size, c.size):
      x = jax.image.resize(x, (b, c.size, c.size, 3), "linear")
    x = x * 2.0 - 1.0
    x = nn.relu(nn.Conv(c.width, (3, 3), padding="SAME")(x))
    for _ in range(4):
      x = nn.relu(nn.Conv(c.width, (5, 5), strides=(2, 2), padding="SAME")(x))
    x = nn.relu(nn.Conv(3, (3, 3), padding="SAME")(x))
    x = nn.Dropout(c.dropout, deterministic=not train)(x.reshape(b, -1))
    return nn.Dense(1)(x)[:, 0]


def init(key: jax.Array, config: DetectorConfig = DetectorConfig()) -> Detector:
  """A freshly initialised detector."""
  if config.size < 16:
    raise ValueError(f"Detector size must be at least 16 pixels (four stride-2 convolutions); got {config.size}.")
  variables = DetectorNet(config).init(key, jnp.zeros((1, config.size, config.size, 3)))
  return Detector(jax.tree_util.tree_map(np.asarray, flax_dict(variables)), config)


def flax_dict(tree: Any) -> Any:
  """Flax variables as plain nested dicts (FrozenDict-free)."""
  return {k: flax_dict(v) for k, v in tree.items()} if hasattr(tree, "items") else tree


def logits(config: DetectorConfig, variables: Any, images: jax.Array) -> jax.Array:
  """``[B]`` detector logits (evaluation mode; pure, jit-able)."""
  return DetectorNet(config).apply(variables, images)


def is_visualization(config: DetectorConfig, variables: Any, images: jax.Array) -> jax.Array:
  """The hard-thresholded detector ``E``: ``[B]`` floats, 1 for a visualization.

  No gradient flows through it (a step function), as in the paper.
  """
  return jax.lax.stop_gradient((logits(config, variables, images) > 0).astype(jnp.float32))


def save(path: str | os.PathLike, detector: Detector) -> str:
  """Writes the weights (orbax) and ``detector.json`` into the directory ``path``."""
  path = os.path.abspath(os.fspath(path))
  checkpoint.save(os.path.join(path, "variables"), detector.variables)
  io.write_json(os.path.join(path, _CONFIG_FILE), dataclasses.asdict(detector.config))
  return path


def load(path: str | os.PathLike) -> Detector:
  """Reads a detector written by :func:`save` (or by ``launch.train_detector``).

  Raises:
    FileNotFoundError: ``path`` is not a detector directory.
  """
  path = os.path.abspath(os.fspath(path))
  config_file = os.path.join(path, _CONFIG_FILE)
  if not os.path.isfile(config_file):
    raise FileNotFoundError(
        f"No detector at {path}; accepted: a directory written by `python -m launch.train_detector` "
        f"(it holds {_CONFIG_FILE} and variables/).")
  with open(config_file) as f:
    config = DetectorConfig(**json.load(f))
  like = init(jax.random.PRNGKey(0), config).variables
  return Detector(checkpoint.restore(os.path.join(path, "variables"), like), config)
