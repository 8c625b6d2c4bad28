"""Feature-visualization methods by name: what each one passes to :func:`fvjax.optvis.render.render`.

``render_options(method, model, ...)`` returns the keyword arguments of ``render`` that make a method; the
experiments (visualize, sanity check, causal benchmark) take ``--method`` and call it, so every method runs
through the same batched, sharded loop (1000 units in one call)::

  opts = methods.render_options("maco", model)              # spectrum of the shipped photos
  result = render.render(model, units, layer="logits", key=key, **opts)

* ``lucid``: Lucid's defaults (``{}``): Fourier + decorrelated colour + sigmoid, standard transforms,
  Adam(0.05), the redirected ReLU for 16 steps.
* ``pixel``: the same with one parameter per pixel (Lucid's ``param.image(fft=False)``).
* ``maco``: MACO (Fel et al., NeurIPS 2023, "Unlocking feature visualization for deeper networks with
  magnitude constrained optimization"): :func:`fvjax.optvis.param.maco` over a natural magnitude spectrum,
  :func:`fvjax.optvis.transforms.maco_transforms` drawn :data:`MACO_CROPS` times a step, NAdam(1.0).
* ``accentuation``: feature accentuation (Hamblin et al. 2024, "Feature Accentuation: Revealing 'What'
  Features Respond to in Natural Images"): from one seed photo per image,
  :func:`fvjax.optvis.param.accentuation`, :func:`fvjax.optvis.transforms.accentuation_transforms` drawn
  :data:`ACCENTUATION_CROPS` times a step, Adam(0.05), minus ``weight *``
  :func:`fvjax.optvis.objectives.seed_distance` at a layer a quarter of the way into the model.

Every call with the same settings returns the same transforms, optimizer and objective functions, so a
render compiled for one list of units serves the next.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import numpy as np
import optax

from fvjax import data
from fvjax.models.record import ModelRecord, unknown_name_message
from fvjax.optvis import objectives
from fvjax.optvis import param as param_lib
from fvjax.optvis import transforms as transforms_lib

METHODS = ("lucid", "maco", "accentuation", "pixel")
MACO_LEARNING_RATE = 1.0  # Horama maco_fv.py maco(learning_rate=1.0) with torch.optim.NAdam; xplique Nadam(1.0)
MACO_CROPS = 6  # Horama maco(crops_per_iteration=6); xplique's default is nb_crops=32
ACCENTUATION_LEARNING_RATE = 0.05  # faccent render.py render_vis: torch.optim.Adam(params, lr=.05)
ACCENTUATION_CROPS = 16  # faccent render_vis(nb_transforms=16)
# faccent render_vis: accent_reg_alpha defaults to 1; faccent further multiplies it by the ratio of the
# objective's to the regulariser's gradient norms at its first image, which is left out here: this
# parameterization gives the seed back exactly, where the regulariser's gradient is 0.
ACCENTUATION_WEIGHT = 1.0

_NADAM = optax.nadam(MACO_LEARNING_RATE)
_ADAM = optax.adam(ACCENTUATION_LEARNING_RATE)


def check_method(method: str) -> str:
  """``method`` if it names one of :data:`METHODS`, else a one-sentence error naming them."""
  if method not in METHODS:
    raise ValueError(unknown_name_message("feature-visualization method", str(method), METHODS))
  return method


def needs_seeds(method: str) -> bool:
  """Whether ``method`` starts from natural seed images (one per rendered image)."""
  return check_method(method) == "accentuation"


def accentuation_layer(model: ModelRecord) -> str:
  """The default layer of accentuation's regulariser: the one a quarter of the way into ``model.layers``
  (InceptionV1's ``mixed3a``, the layer of faccent's API demo; EfficientNet-Lite0's ``block3``)."""
  return model.layers[len(model.layers) // 4]


@functools.lru_cache(maxsize=16)
def _maco_transforms(out_size: tuple[int, int]) -> transforms_lib.Transform:
  return transforms_lib.maco_transforms(out_size)


@functools.lru_cache(maxsize=16)
def _accentuation_transforms(out_size: tuple[int, int]) -> transforms_lib.Transform:
  return transforms_lib.accentuation_transforms(out_size)


def _canvas(model: ModelRecord, size: int | None) -> tuple[int, int]:
  return model.input_size if size is None else (int(size), int(size))


def _resized(images: np.ndarray, canvas: tuple[int, int]) -> np.ndarray:
  images = np.asarray(images, np.float32)
  if images.shape[1:3] == canvas:
    return images
  return np.asarray(jax.image.resize(images, (len(images), *canvas, images.shape[-1]), "bilinear"))


def render_options(method: str, model: ModelRecord, *, size: int | None = None,
                   spectrum_images: np.ndarray | None = None, seeds: np.ndarray | None = None,
                   accent_layer: str | None = None, accent_weight: float = ACCENTUATION_WEIGHT,
                   crops: int | None = None) -> dict[str, Any]:
  """The ``render`` keyword arguments of a method.

  Args:
    method: one of :data:`METHODS`.
    model: the model record.
    size: the canvas side that will be rendered (default: the model's input size); MACO's and
      accentuation's crops are resized to the model's input size.
    spectrum_images: MACO: natural images ``[N,h,w,3]`` whose mean spectrum is the magnitude (default: the
      shipped photos; the paper's setting: ImageNet images).
    seeds: accentuation: ``[B,h,w,3]`` in ``[0,1]``, one seed per rendered image (resized to the canvas).
    accent_layer: accentuation: the regulariser's layer (default :func:`accentuation_layer`).
    accent_weight: accentuation: the regulariser's weight (faccent: 1).
    crops: MACO and accentuation: transform draws per step (default :data:`MACO_CROPS`,
      :data:`ACCENTUATION_CROPS`); Lucid's recipe draws once.

  Returns:
    A dict of ``render`` keyword arguments (empty for ``lucid``).
  """
  check_method(method)
  if crops is not None and int(crops) < 1:
    raise ValueError(f"crops must be a positive number of transform draws per step; got {crops}.")
  canvas = _canvas(model, size)
  if method == "lucid":
    return {}
  if method == "pixel":
    return {"param": _PIXEL}
  if method == "maco":
    if spectrum_images is None:
      spectrum_images, _ = data.sample_photos(canvas[0])
    magnitude = param_lib.natural_spectrum(_resized(spectrum_images, canvas))
    return {"param": param_lib.maco(magnitude), "transforms": _maco_transforms(tuple(model.input_size)),
            "optimizer": _NADAM, "crops": int(crops or MACO_CROPS)}
  if seeds is None:
    raise ValueError("Feature accentuation starts from natural seed images: pass one seed image per rendered "
                     "image (seeds=[B, h, w, 3] in [0, 1]).")
  layer = model.check_layer(accent_layer or accentuation_layer(model))
  return {"param": _ACCENTUATION, "init_params": param_lib.seed_spectrum(_resized(seeds, canvas)),
          "anchored": True, "transforms": _accentuation_transforms(tuple(model.input_size)), "optimizer": _ADAM,
          "crops": int(crops or ACCENTUATION_CROPS),
          "regularizer": -float(accent_weight) * objectives.seed_distance(layer)}


_PIXEL = param_lib.pixel()
_ACCENTUATION = param_lib.accentuation()
