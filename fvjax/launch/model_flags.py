"""The --model and --weights flags shared by every launch script that studies a model."""

from absl import flags

from fvjax import models

MODEL = flags.DEFINE_string(
    "model", "efficientnet_lite0",
    f"Registered model name ({', '.join(models.names())}) or 'package.module:function' returning your own "
    "ModelRecord (see README, Bring your own model).")
WEIGHTS = flags.DEFINE_string("weights", None, "Weight file for models without embedded weights (.pth, .npz, "
                              ".safetensors), or 'random' for an untrained network (recorded in metrics.json).")


OPTIONS = flags.DEFINE_list(
    "model_options", [], "Options of the model's build as name=value items, e.g. lucent_relu_gradient=false "
    "(InceptionV1: plain ReLU gradients instead of lucent's) or depthwise_impl=conv (EfficientNet-Lite0 on GPU/TPU).")


def _value(text: str):
  lowered = text.strip().lower()
  if lowered in ("true", "false"):
    return lowered == "true"
  try:
    return int(text)
  except ValueError:
    return text.strip()


def options() -> dict:
  """``--model_options`` as keyword arguments (true/false -> bool, digits -> int)."""
  out = {}
  for item in OPTIONS.value:
    name, sep, value = item.partition("=")
    if not sep or not name.strip():
      raise ValueError(f"Cannot read model option {item!r}; accepted: name=value items, e.g. "
                       "lucent_relu_gradient=false.")
    out[name.strip()] = _value(value)
  return out


def load() -> models.ModelRecord:
  """The model the flags name (prints a warning line for random weights)."""
  model = models.load(MODEL.value, **({} if WEIGHTS.value is None else {"weights": WEIGHTS.value}), **options())
  if model.weights == "random":
    print(f"weights: random ({model.name} is untrained; its results say nothing about a trained network)")
  return model
