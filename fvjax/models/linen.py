"""Turning a Flax Linen module into a model record."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fvjax.models import weights as weights_lib
from fvjax.models.record import ModelRecord


def record_from_linen(
    name: str,
    module: nn.Module,
    variables: dict[str, Any],
    *,
    input_size: tuple[int, int],
    layers: Sequence[str],
    preprocess: Callable[[jax.Array], jax.Array],
    input_range: str,
    num_classes: int,
    labels: Sequence[str] | None = None,
    wnids: Sequence[str] | None = None,
    weights: str | None = None,
) -> ModelRecord:
  """Wraps a Linen module whose ``__call__(x) -> (logits, acts)`` into a record.

  Conventions for fvjax Linen modules: ``__call__`` takes the *preprocessed*
  input ``[B,H,W,3]``, runs in inference mode (batch norm uses running
  averages, no dropout), and returns ``(logits, acts)`` where every key of
  ``acts`` is the output of a top-level submodule of the same name, so the
  surgery hook (:mod:`fvjax.models.surgery`) can replace it.

  Args:
    name: registry name.
    module: the Linen module.
    variables: its variables, a plain nested dict (``{"params": ...,
      "batch_stats": ...}``); becomes ``record.params``.
    input_size: ``(height, width)``.
    layers: activation names in depth order, ending with ``"logits"``.
    preprocess: ``[0,1]`` images to the network's input.
    input_range: human-readable form of ``preprocess``.
    num_classes: number of logits.
    labels: class names.
    wnids: the WordNet ID of every logit (``""`` for a non-class output),
      when the logits are ImageNet classes.
    weights: where the parameters came from (recorded in every metrics.json).

  Returns:
    The model record.
  """

  def apply(params, images):
    return module.apply(params, preprocess(images))

  return record_from_apply(name, apply, variables, module, input_size=input_size, layers=layers,
                           preprocess=preprocess, input_range=input_range, num_classes=num_classes, labels=labels,
                           wnids=wnids, weights=weights)


def record_from_apply(name: str, apply: Callable, params: Any, module: Any, **description) -> ModelRecord:
  """The record of a wrapped Linen or NNX model: its ``apply(params, images)``, ``params``, ``module`` (for
  surgery) and the keyword arguments of :func:`record_from_linen` that describe it (``input_size``, ``layers``,
  ``preprocess``, ``input_range``, ``num_classes``; ``labels``, ``wnids``, ``weights`` optional)."""
  labels, wnids = description.pop("labels", None), description.pop("wnids", None)
  return ModelRecord(name=name, apply=apply, params=params, input_size=tuple(description.pop("input_size")),
                     layers=tuple(description.pop("layers")), labels=None if labels is None else tuple(labels),
                     wnids=None if wnids is None else tuple(wnids), module=module, **description)


def plain(tree: Any) -> Any:
  """Plain nested dicts (Flax may hand back FrozenDicts)."""
  return {k: plain(v) for k, v in tree.items()} if hasattr(tree, "items") else tree


def init_variables(module: nn.Module, input_size: tuple[int, int], key: jax.Array | None = None) -> dict[str, Any]:
  """A random initialisation of ``module`` as plain nested dicts of numpy arrays.

  Args:
    module: a Linen module taking ``[B,H,W,3]``.
    input_size: ``(height, width)``.
    key: PRNG key (default ``PRNGKey(0)``: the same random model every time).
  """
  key = jax.random.PRNGKey(0) if key is None else key
  x = jnp.zeros((1, *input_size, 3))
  # init runs once: compile it with the least backend optimisation (2-3x faster to build;
  # the random values agree with an optimised build to the last bit or so).
  init = jax.jit(module.init).lower(key, x).compile(compiler_options={"xla_backend_optimization_level": "0"})
  return jax.tree_util.tree_map(np.asarray, plain(init(key, x)))


def variable_shapes(module: nn.Module, input_size: tuple[int, int]) -> dict[str, Any]:
  """The shapes of ``module``'s variables (``jax.ShapeDtypeStruct`` leaves), from an abstract init: nothing compiles."""
  return plain(jax.eval_shape(module.init, jax.random.PRNGKey(0), jnp.zeros((1, *input_size, 3))))


def random_variables(module: nn.Module, input_size: tuple[int, int], key: jax.Array | None = None) -> dict[str, Any]:
  """A random network without compiling it (seconds instead of a minute for InceptionV1 or ResNet-50).

  Shapes come from :func:`variable_shapes`; values from numpy with Flax's
  default initialisers: LeCun-normal kernels (standard deviation
  ``1/sqrt(fan_in)``), zero biases, unit batch-norm scales and variances.

  Args:
    module: a Linen module taking ``[B,H,W,3]``.
    input_size: ``(height, width)``.
    key: PRNG key (default ``PRNGKey(0)``); the same key gives the same network.
  """
  key = jax.random.PRNGKey(0) if key is None else key
  rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())

  def draw(path, leaf):
    name = getattr(path[-1], "key", None)
    if name == "kernel":
      fan_in = int(np.prod(leaf.shape[:-1]))
      return (rng.standard_normal(leaf.shape) / np.sqrt(fan_in)).astype(leaf.dtype)
    return (np.ones if name in ("scale", "var") else np.zeros)(leaf.shape, leaf.dtype)

  return jax.tree_util.tree_map_with_path(draw, variable_shapes(module, input_size))



def load_variables(module: nn.Module, input_size: tuple[int, int], weights: str | None, model: str, hint: str,
                   convert: Callable[[dict, dict], dict], key: jax.Array | None = None) -> tuple[dict[str, Any], str]:
  """A zoo model's variables: converted from its weight file, or random for ``weights="random"``.

  Args:
    module: the Linen module.
    input_size: its input size.
    weights: the ``weights=`` option (a path or ``"random"``; see
      :func:`fvjax.models.weights.weight_source`).
    model: the model's name, for the messages.
    hint: where its weight file comes from, for the messages.
    convert: ``(state dict, expected variable shapes) -> variables``.
    key: PRNG key of the random network.

  Returns:
    ``(variables, provenance)``: the provenance is the path or ``"random"``.
  """
  path = weights_lib.weight_source(weights, model, hint)
  if path is None:
    return random_variables(module, input_size, key), weights_lib.RANDOM
  return convert(weights_lib.read_weights(path), variable_shapes(module, input_size)), path
