"""Turning a Flax NNX module into a model record, and the NNX side of surgery.

An NNX model is a mutable Python object; a record needs a pure
``apply(params, images)``. :func:`record_from_nnx` splits the model once into
its graph definition and state, keeps the state as a plain nested dict
(``record.params``, the form of ``nnx.to_pure_dict``) and rebuilds a fresh
model inside every ``apply`` (``nnx.merge``), so nothing outside is mutated.

The surgery hook (:mod:`fvjax.models.surgery`) needs to change what a named
submodule outputs. For Linen it intercepts method calls; for NNX it replaces,
on the freshly merged model, the submodule at a path (attribute names and
list indices joined by ``"/"``, e.g. ``"blocks/2/conv"``) with a wrapper that
calls the original and hands its output to a hook. Edits are stored in
:class:`NnxModule` (``record.module``) so that they are re-installed on every
call.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple, Sequence

from flax import nnx
import jax
import numpy as np

from fvjax.models import linen
from fvjax.models.record import ModelRecord

# (inputs: tuple, output) -> new output
Hook = Callable[[tuple, Any], Any]


class NnxModule(NamedTuple):
  """What an NNX record keeps in ``record.module``.

  Attributes:
    graphdef: the model's ``nnx.GraphDef``.
    state: an ``nnx.State`` template (its values are replaced on each call).
    preprocess: ``[0,1]`` images to the network's input.
    edits: one entry per :func:`fvjax.models.surgery.edit_layers` call, in
      order: ``(path -> edit fn, expose)``.
  """

  graphdef: Any
  state: Any
  preprocess: Callable[[jax.Array], jax.Array]
  edits: tuple[tuple[Mapping[str, Callable], bool], ...] = ()


class _Hooked(nnx.Module):
  """Calls ``inner`` and passes ``(args, output)`` through ``hook``."""

  def __init__(self, inner: nnx.Module, hook: Hook):
    self.inner = inner
    self.hook = hook

  def __call__(self, *args, **kwargs):
    return self.hook(args, self.inner(*args, **kwargs))


def _key(node: Any, part: str) -> Any:
  return int(part) if isinstance(node, (Sequence, nnx.List)) and not isinstance(node, str) else part


def get(model: nnx.Module, path: str) -> Any:
  """The submodule of ``model`` at ``path`` (``"/"``-joined attributes and indices)."""
  node = model
  for part in path.split("/"):
    key = _key(node, part)
    node = node[key] if isinstance(key, int) else getattr(node, key)
  return node


def _set(model: nnx.Module, path: str, value: Any) -> None:
  parent_path, _, last = path.rpartition("/")
  parent = get(model, parent_path) if parent_path else model
  key = _key(parent, last)
  if isinstance(key, int):
    parent[key] = value
  else:
    setattr(parent, key, value)


def module_paths(info: NnxModule) -> tuple[str, ...]:
  """Every submodule path of the model, ``"/"``-joined, in graph order."""
  model = nnx.merge(info.graphdef, info.state)
  return tuple("/".join(map(str, p)) for p, _ in nnx.iter_modules(model) if p)


def merge(info: NnxModule, params: Any) -> nnx.Module:
  """A fresh model holding ``params`` (a pure dict shaped like ``record.params``)."""
  state = jax.tree_util.tree_map(lambda x: x, info.state)  # new Variables: the template stays as it was
  nnx.replace_by_pure_dict(state, params)
  return nnx.merge(info.graphdef, state)


def install(model: nnx.Module, hooks: Mapping[str, Hook]) -> None:
  """Wraps each submodule named in ``hooks`` (on a fresh model from :func:`merge`)."""
  for path, hook in hooks.items():
    _set(model, path, _Hooked(get(model, path), hook))


def run(info: NnxModule, params: Any, images: jax.Array, extra: Mapping[str, Hook] | None = None):
  """``(logits, acts)`` of the (possibly edited) model, with ``extra`` hooks installed last."""
  levels = []
  for _ in info.edits:
    levels.append(params["edits"])
    params = params["base"]
  model = merge(info, params)
  exposed = {}
  for (edits, expose), edit_params in zip(info.edits, reversed(levels)):
    def hooks_for(edits=edits, edit_params=edit_params, expose=expose):
      def make(path):
        def hook(args, out):
          out = edits[path](edit_params.get(path), args, out)
          if expose:
            exposed[path] = out
          return out
        return hook
      return {path: make(path) for path in edits}
    install(model, hooks_for())
  install(model, extra or {})
  logits, acts = model(info.preprocess(images))
  return logits, (dict(acts, **exposed) if exposed else acts)


def record_from_nnx(name: str, model: nnx.Module, **description) -> ModelRecord:
  """Wraps an NNX module whose ``__call__(x) -> (logits, acts)`` into a record.

  Put the model in inference mode first (``model.eval()``: batch norm uses
  its running averages, dropout is off). ``__call__`` takes the
  *preprocessed* input ``[B,H,W,3]``.

  Args:
    name: the record's name.
    model: the NNX module (not modified).
    **description: the keyword arguments of :func:`fvjax.models.linen.record_from_linen`
      (``input_size``, ``layers``, ``preprocess``, ``input_range``, ``num_classes``; ``labels``, ``wnids``,
      ``weights`` optional).

  Returns:
    The record; ``params`` is ``nnx.to_pure_dict`` of the model's state (numpy
    arrays) and ``module`` an :class:`NnxModule` (for surgery).
  """
  graphdef, state = nnx.split(model)
  info = NnxModule(graphdef, state, description["preprocess"])
  return linen.record_from_apply(name, lambda params, images: run(info, params, images),
                                 jax.tree_util.tree_map(np.asarray, nnx.to_pure_dict(state)), info, **description)
