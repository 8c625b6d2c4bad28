"""The --model and --weights flags shared by every launch script that studies a model."""

from absl import flags

from fvjax import models

MODEL = flags.DEFINE_string(
    "model", "efficientnet_lite0",
    f"Registered model name ({', '.join(models.names())}) or 'package.module:function' returning your own "
    "ModelRecord (see README, Bring your own model).")
WEIGHTS = flags.DEFINE_string("weights", None, "Weight file for models without embedded weights (.pth, .npz, "
                              ".safetensors).")


def load() -> models.ModelRecord:
  """The model the flags name."""
  return models.load(MODEL.value, **({} if WEIGHTS.value is None else {"weights": WEIGHTS.value}))
