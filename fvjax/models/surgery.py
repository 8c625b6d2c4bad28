"""The surgery hook: replace the output of any named layer of a Flax model.

Fooling constructions (:mod:`fvjax.fooling`) change what a layer outputs
without touching the model's code. For Linen records
``flax.linen.intercept_methods`` wraps every submodule call; for NNX records
(:mod:`fvjax.models.nnx`) the submodule is swapped for a wrapper on a freshly
merged copy of the model. Either way, for the submodules named in ``edits``
the original output goes to an edit function whose return value replaces it,
and everything downstream (later layers, ``acts``, logits) sees the edited
value.

Edits are pure: :func:`edit_layers` returns a *new* record whose params are
``{"base": old_params, "edits": edit_params}``; the old record is untouched.
Edit constants therefore live in the params pytree (they can be checkpointed,
sharded and differentiated like any weight).

Example::

  def add_one(p, inputs, out):       # p = edit params, inputs = layer's args
    return out + p["delta"]
  edited = edit_layers(model, {"block3": add_one}, {"block3": {"delta": 1.0}})
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from flax import nnx
import flax.linen as nn
import jax
import jax.numpy as jnp

from fvjax.models import nnx as nnx_lib
from fvjax.models.record import ModelRecord, unknown_name_message

# (edit_params, layer_inputs: tuple, layer_output) -> new layer output
EditFn = Callable[[Any, tuple, Any], Any]


def _is_nnx(record: ModelRecord) -> bool:
  return isinstance(record.module, nnx_lib.NnxModule)


def _base_params(record: ModelRecord) -> Any:
  params = record.params
  while "base" in params and "edits" in params:  # an already-edited record
    params = params["base"]
  return params


def module_names(record: ModelRecord) -> tuple[str, ...]:
  """Every submodule path of a Flax record, ``"/"``-joined (e.g. ``block3/bn1``)."""
  if record.module is None:
    return ()
  if _is_nnx(record):
    return nnx_lib.module_paths(record.module)
  found = []

  def collect(tree, prefix):
    for k, v in tree.items():
      if isinstance(v, Mapping):
        path = f"{prefix}/{k}" if prefix else k
        found.append(path)
        collect(v, path)

  collect(_base_params(record).get("params", {}), "")
  return tuple(dict.fromkeys(found))


def layer_params(record: ModelRecord, path: str) -> Any:
  """The parameters of the submodule at ``path`` (e.g. ``{"kernel", "bias"}`` of a conv)."""
  _check_paths(record, [path])
  node = _base_params(record)
  node = node if _is_nnx(record) else node["params"]
  for part in path.split("/"):
    if not hasattr(node, "keys"):
      break
    node = node[part] if part in node else node.get(int(part) if part.isdigit() else part)
  if not hasattr(node, "keys"):
    raise KeyError(f"Layer {path!r} of {record.name} has no parameters of its own; accepted: a path to a "
                   f"parametrised submodule such as a convolution.")
  return node


def call_layer(record: ModelRecord, path: str) -> Callable[[Any, jax.Array], jax.Array]:
  """``(layer_params, x) -> output``: the submodule at ``path`` as a pure function of its parameters.

  It keeps the submodule's settings (strides, padding, ...), so
  ``call_layer(r, "conv")({"kernel": k, "bias": 0 * b}, x)`` is the same
  convolution with another kernel.
  """
  if _is_nnx(record):
    _check_paths(record, [path])
    sub = nnx_lib.get(nnx_lib.merge(record.module, _base_params(record)), path)
    info = nnx_lib.NnxModule(*nnx.split(sub), preprocess=lambda x: x)
    return lambda p, x: nnx_lib.merge(info, p)(x)
  module = _submodule(record, path)
  return lambda p, x: module.apply({"params": p}, x)


def _submodule(record: ModelRecord, path: str) -> nn.Module:
  """The unbound Linen submodule at ``path`` (e.g. a ``nn.Conv`` with its settings)."""
  found = {}

  def interceptor(next_fun, args, kwargs, context):
    if "/".join(context.module.path) == path and context.method_name == "__call__":
      found["module"] = context.module.clone(parent=None)
    return next_fun(*args, **kwargs)

  _check_paths(record, [path])
  h, w = record.input_size
  with nn.intercept_methods(interceptor):
    # A fresh function, so that no cached trace skips the interceptor.
    jax.eval_shape(lambda p, x: record.apply(p, x), record.params, jax.ShapeDtypeStruct((1, h, w, 3), jnp.float32))
  return found["module"]


def _apply_seeing(record: ModelRecord, path: str) -> Callable[[Any, jax.Array], tuple[Any, Any, jax.Array, Any]]:
  """``(params, images) -> (logits, acts, input, output)``: the forward pass, also returning the first input and
  the output of the submodule at ``path``."""
  _check_paths(record, [path])
  if _is_nnx(record):

    def fn_nnx(params, images):
      seen = {}

      def hook(args, out):
        seen["in"], seen["out"] = args[0], out
        return out

      logits, acts = nnx_lib.run(record.module, params, images, extra={path: hook})
      return logits, acts, seen["in"], seen["out"]

    return fn_nnx

  def fn(params, images):
    seen = {}

    def interceptor(next_fun, args, kwargs, context):
      out = next_fun(*args, **kwargs)
      if "/".join(context.module.path) == path and context.method_name == "__call__":
        seen["in"], seen["out"] = args[0], out
      return out

    with nn.intercept_methods(interceptor):
      logits, acts = record.apply(params, images)
    return logits, acts, seen["in"], seen["out"]

  return fn


def capture(record: ModelRecord, path: str) -> Callable[[Any, jax.Array], tuple[jax.Array, jax.Array]]:
  """A jitted ``(params, images) -> (input, output)`` of the submodule at ``path``."""
  fn = _apply_seeing(record, path)
  return jax.jit(lambda params, images: fn(params, images)[2:])


def expose_input(record: ModelRecord, path: str, name: str | None = None) -> ModelRecord:
  """The record with the input of the submodule at ``path`` added to ``acts`` (and ``layers``) as ``name``
  (default ``"<path>:input"``), so that objectives can read it; the forward pass is otherwise unchanged."""
  fn, name = _apply_seeing(record, path), name or f"{path}:input"

  def apply(params, images):
    logits, acts, inputs, _ = fn(params, images)
    return logits, dict(acts, **{name: inputs})

  return record.replace(apply=apply, layers=(*record.layers[:-1], name, record.layers[-1]))


def _check_paths(record: ModelRecord, paths) -> None:
  if record.module is None:
    raise ValueError(
        f"Model {record.name!r} has no Flax module, so its layers cannot be intercepted; "
        "accepted: records from fvjax.models.load, record_from_linen or record_from_nnx.")
  known = module_names(record) or record.layers
  for path in paths:
    if path not in known and path not in record.layers:
      raise KeyError(unknown_name_message("layer", path, known, where=f"model {record.name!r}"))


def edit_layers(record: ModelRecord, edits: Mapping[str, EditFn],
                edit_params: Mapping[str, Any] | None = None, name: str | None = None,
                expose: bool = False) -> ModelRecord:
  """A new record whose named submodules' outputs pass through edit functions.

  Args:
    record: a record built from a Linen or NNX module (``record.module``
      set), or one already returned by this function (edits nest).
    edits: submodule path (a layer name such as ``"block3"`` or a nested path
      such as ``"block3/depthwise_conv"``) -> ``fn(p, inputs, output)``.
    edit_params: path -> the pytree ``p`` handed to that path's edit function.
    name: the new record's name (default: the old one plus ``"+edited"``).
    expose: also return each edited submodule's (new) output in ``acts`` under
      its path, and list the paths in ``layers`` (before ``"logits"``), so
      that objectives can visualize its units.

  Returns:
    The edited record; ``params = {"base": record.params, "edits": edit_params}``.

  Raises:
    KeyError: a path that is not a submodule (lists the layers, "did you mean").
    ValueError: the record has no Flax module to intercept.
  """
  _check_paths(record, edits)
  edit_params = dict(edit_params or {})
  new_layers = [p for p in edits if p not in record.layers] if expose else []
  changes = dict(name=name or f"{record.name}+edited", params={"base": record.params, "edits": edit_params},
                 layers=(*record.layers[:-1], *new_layers, record.layers[-1]))
  if _is_nnx(record):
    info = record.module._replace(edits=(*record.module.edits, (dict(edits), expose)))
    return record.replace(apply=lambda params, images: nnx_lib.run(info, params, images), module=info, **changes)
  base_apply = record.apply

  def apply(params, images):
    outputs = {}

    def interceptor(next_fun, args, kwargs, context):
      out = next_fun(*args, **kwargs)
      if context.method_name != "__call__":
        return out
      path = "/".join(context.module.path)
      if path in edits:
        out = outputs[path] = edits[path](params["edits"].get(path), args, out)
      return out

    with nn.intercept_methods(interceptor):
      logits, acts = base_apply(params["base"], images)
    return logits, (dict(acts, **outputs) if expose else acts)

  return record.replace(apply=apply, **changes)
