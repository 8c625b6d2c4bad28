"""Paper section 2.2 end to end: silent fooling units, before/after visualizations.

Writes into ``workdir``: ``comparison.png`` (a spread of units: original
visualization, manipulated visualization; the target) and ``metrics.json``:

- ``calibration_silent_fraction`` / ``heldout_silent_fraction``: fraction of
  calibration / held-out natural images on which every fooling unit is exactly 0;
- ``bias_margin``: the margin of the bias (:func:`silent.fooling_filters`);
- ``heldout_peak_over_threshold``: the largest fooling response on a held-out
  image divided by its unit's threshold ``-b`` (``max + margin |max|`` over the
  calibration images; units with a positive threshold): above 1 some unit
  fires; ``(1 + margin) * ratio - 1`` is the margin that would have kept every
  held-out image silent;
- ``calibration_logits_bit_identical``: the manipulated model's logits on the
  calibration images equal the original's bit for bit;
- ``natural_max_abs_logit_diff`` and ``natural_top1_agreement`` on held-out images;
- ``target_similarity_manipulated`` / ``_original``: mean Pearson correlation of
  the visualizations with the target image (pixels, target resized);
- ``target_activation_similarity_manipulated`` / ``_original``: mean Pearson
  correlation of the convolution's input activation (spatial mean) of each
  visualization with that of the target: what the fooling filters read, and
  the fairer measure at a deep layer, where two images that excite the same
  features need not share pixels;
- ``fooling_active_fraction``: fraction of the visualized units whose
  fooling unit fires on the unit's manipulated visualization (0: the
  visualization never found the target's direction);
- ``fit_to``: ``"rendering"`` when delta was fitted to a rendering of the
  target's features (:func:`silent.target_rendering`), ``"image"`` when to the
  target itself; ``fitted_rendering_activation_similarity``: that rendering's
  input-activation correlation with the target (None without one);
- ``naturally_silent_units``: units of the convolution that are exactly 0 on
  every natural image before any manipulation.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Callable, Iterable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from scipy import ndimage

from fvjax import data
from fvjax import io
from fvjax import parallel
from fvjax import plots
from fvjax import similarity
from fvjax.experiments import config as config_lib
from fvjax.fooling import silent
from fvjax.models import surgery
from fvjax.models.record import ModelRecord, check_images
from fvjax.optvis import render as render_lib


# Natural images: an array [N,H,W,3] (the same on every process), or a zero-argument function returning an
# iterable of such batches (re-iterable, so 50,000 ImageNet images stream from disk; under jax.distributed, the
# batches of this process's share of them, as :func:`folder_images` makes).
Images = np.ndarray | Callable[[], Iterable[np.ndarray]]


HELDOUT_PHOTOS = ("chelsea", "coffee", "rocket", "clock")  # the demo's held-out shipped photos
# The demo's calibration (ours): 14 photos stand in for the paper's 50,000 images, so each comes with augmented
# crops and a blurred copy of every crop (README, silent units: the calibration maximum grows with the crops up to
# ~16-32 per photo; the blurred copies raise it where blurry photos reach further, e.g. the held-out clock).
DEFAULT_CROPS = 32
DEFAULT_BLUR = 3.0  # largest Gaussian sigma (px) of the blurred copies; 0: none
MIN_BLUR = 0.5  # smallest sigma (px)


def shipped_photos(size: int, key: jax.Array, crops: int = DEFAULT_CROPS, held: bool = False,
                   blur: float | None = None) -> np.ndarray:
  """The demo's natural images: the held-out (or the other) shipped photos with augmented crops.

  Args:
    size: image side.
    key: PRNG key.
    crops: augmented crops per photo (:func:`fvjax.data.augmented_crops`:
      random scale 0.5-1, flips, brightness/contrast jitter), made a photo at
      a time so that memory stays bounded.
    held: the held-out photos (:data:`HELDOUT_PHOTOS`), else the others.
    blur: also a Gaussian-blurred copy of every crop, sigma uniform in
      ``[0.5, blur]`` px (0: none); default :data:`DEFAULT_BLUR` for the
      calibration photos and none for the held-out ones, which stay as shot.

  Returns:
    ``[N,size,size,3]``: the photos, then each photo's crops, then the blurred copies.
  """
  blur = (0.0 if held else DEFAULT_BLUR) if blur is None else blur
  if not (np.isfinite(blur) and (blur == 0 or blur >= MIN_BLUR)):
    raise ValueError(f"Blur {blur} is not allowed; accepted: 0 (no blurred copies) or a sigma >= {MIN_BLUR} px.")
  names = [n for n in data.SAMPLE_PHOTOS if (n in HELDOUT_PHOTOS) == held]
  photos, _ = data.sample_photos(size, names)
  k_crops, k_blur = jax.random.split(key)
  keys = jax.random.split(k_crops, len(photos))
  parts = [photos, *(np.asarray(data.augmented_crops(k, photos[i:i + 1], crops, size)) for i, k in enumerate(keys))]
  if blur:
    sigmas = np.asarray(jax.random.uniform(k_blur, (len(photos) * crops,), minval=MIN_BLUR, maxval=blur))
    crops_only = np.concatenate(parts[1:])
    parts.append(np.stack([ndimage.gaussian_filter(c, (s, s, 0), mode="reflect") for c, s in zip(crops_only, sigmas)]))
  return np.concatenate(parts).astype(np.float32)


def folder_images(directory: str, size: int, per_class: int | None = None, batch_size: int = 32) -> Images:
  """An image folder as a re-iterable stream of batches (read from disk on every pass); under ``jax.distributed``,
  of this process's share of the files."""
  paths, _, _ = data.image_folder(directory, per_class=per_class)
  share = parallel.process_share(len(paths))
  return lambda: data.batches(paths[share.start:share.stop], size, batch_size)


def batches(images: Images, size: int = 16) -> Iterator[np.ndarray]:
  """The batches of an :data:`Images` source (of an array, this process's share of it)."""
  if callable(images):
    yield from images()
  else:
    share = parallel.process_share(len(images))
    for i in range(share.start, share.stop, size):
      yield images[i:min(i + size, share.stop)]


def _checked(model: ModelRecord, images: Images) -> Callable[[], Iterator[np.ndarray]]:
  """``images`` as a stream of batches, each checked to be floats in ``[0, 1]`` (one sentence otherwise)."""
  return lambda: (check_images(model, b) for b in batches(images))


def natural_passes(model: ModelRecord, manipulated: ModelRecord, path: str, filters: silent.FoolingFilters,
                   sources: Sequence[Images]) -> list[dict]:
  """One streamed pass over each set of natural images: what the manipulation changed on them.

  Returns:
    Per source: ``count``; ``silent``: images on which every fooling unit is
    exactly 0; ``identical``: images whose logits are bit-identical; ``top1``:
    images with the same top-1 class; ``max_abs_diff`` of the logits;
    ``peak`` ``[cout]``: each original unit's largest absolute output at ``path``;
    ``over_threshold``: the largest fooling response divided by its unit's
    threshold ``-bias`` (units with a positive threshold).
  """
  capture, conv = surgery.capture(model, path), silent.conv_function(model, path)
  exposed = silent.expose(model, path)  # the original model, with the layer's output in acts
  threshold = -np.asarray(filters.bias, np.float32)
  inverse = np.where(threshold > 0, 1 / np.where(threshold > 0, threshold, 1), 0).astype(np.float32)

  @jax.jit
  def per_image(params, x):
    p, q, kernel, bias = params
    f, acts = exposed.apply(p, x)
    a = manipulated.apply(q, x)[0]
    response = conv(capture(p["base"], x)[0], kernel)
    fool = jax.nn.relu(response + bias).reshape(len(x), -1).max(axis=1)
    return dict(count=jnp.ones(len(x), jnp.int32), silent=(fool == 0).astype(jnp.int32),
                identical=jnp.all(f == a, axis=1).astype(jnp.int32),
                top1=(f.argmax(-1) == a.argmax(-1)).astype(jnp.int32), max_abs_diff=jnp.abs(a - f).max(axis=1),
                peak=jnp.abs(acts[path]).max(axis=(1, 2)),
                over_threshold=(response * inverse).reshape(len(x), -1).max(axis=1))

  maxima = ("max_abs_diff", "peak", "over_threshold")
  summarize = lambda out: {k: v.max(axis=0) if k in maxima else v.sum() for k, v in out.items()}
  combine = lambda a, b: {k: np.maximum(a[k], b[k]) if k in maxima else a[k] + b[k] for k in a}
  none = dict(count=0, silent=0, identical=0, top1=0, max_abs_diff=np.float32(0),
              peak=np.zeros(len(threshold), np.float32), over_threshold=np.float32(-np.inf))
  params = (exposed.params, manipulated.params, filters.kernel, filters.bias)
  results = []
  for images in sources:
    out = parallel.fold_batches(per_image, params, batches(images), summarize, combine, none)
    results.append({k: int(v) if k not in maxima else float(v) if k != "peak" else v for k, v in out.items()})
  return results


def activation_similarity(model: ModelRecord, path: str, images: np.ndarray, target: np.ndarray) -> np.ndarray:
  """Pearson correlation of each image's input activation at ``path`` (spatial mean) with the target's; ``[N]``."""
  capture = surgery.capture(model, path)
  fn = jax.jit(lambda p, x: capture(p, x)[0].mean(axis=(1, 2)))
  rows = parallel.map_batches(fn, model.params, images)
  ref = parallel.map_batches(fn, model.params, target[None])
  rows, ref = rows - rows.mean(1, keepdims=True), ref - ref.mean(1, keepdims=True)
  return (rows @ ref[0]) / (np.linalg.norm(rows, axis=1) * np.linalg.norm(ref) + 1e-12)


option = config_lib.option


@dataclasses.dataclass(frozen=True)
class Config:
  """Settings of :func:`run` (the paper's energy rescaling; our calibration crops, blur and bias margin, README);
  the flags of ``fvjax.launch.silent_units``."""

  layer: str | None = option(None, "Convolution to manipulate (surgery path); default "
                             + ", ".join(f"{k}: {v}" for k, v in silent.DEFAULT_LAYERS.items()) + ".")
  target_image: str | None = option(None, "Target image file (default: visualization of unit 0).")
  target_steps: int = option(512, "Steps for the default target (paper: 2000) and for the rendering of "
                             "--target_image that delta is fitted to (--fit_to=rendering).", lower=1)
  fit_to: str = option(
      "rendering", "What delta is fitted to for --target_image: rendering = a feature visualization of the "
      "image's features at the layer's input (ours: a photo's own features are too natural to reach past the "
      "calibrated bias in the 16 redirected steps, README); image = the image itself (the paper's recipe, whose "
      "target is a visualization). The default target is fitted to directly.", choices=silent.FIT_TARGETS)
  target_cossim_pow: float = option(
      silent.TARGET_COSSIM_POW, "cossim_pow of the direction objective of --fit_to=rendering (ours; 0: a plain dot "
      "product).", check=lambda v: math.isfinite(v) and v >= 0, accepted="a finite number >= 0")
  calibration_dir: str | None = option(None, "Image folder the fooling units must be silent on (default: 14 "
                                       "shipped photos with augmented crops and blurred copies).", folder=True)
  heldout_dir: str | None = option(None, "Image folder of held-out natural images (default: the other 4 shipped "
                                   "photos with crops).", folder=True)
  heldout_per_class: int | None = option(None, "Images per class subfolder of --heldout_dir (default: all; the "
                                         "calibration folder is always used whole).", lower=1)
  crops: int = option(DEFAULT_CROPS, "Augmented crops (random scale 0.5-1, flips, colour jitter) per shipped "
                      "calibration photo (ours: 14 photos and their crops stand in for the paper's 50,000 images).",
                      lower=1)
  calibration_blur: float = option(
      DEFAULT_BLUR, "A Gaussian-blurred copy of every calibration crop, sigma uniform in [0.5, this] px (0: none; "
      "ours: raises the calibration maximum where blurry photos reach further).",
      check=lambda v: math.isfinite(v) and (v == 0 or v >= MIN_BLUR),
      accepted=f"0 (no blurred copies) or a sigma >= {MIN_BLUR} px")
  heldout_crops: int | None = option(None, "Augmented crops per held-out shipped photo (default: --crops).",
                                     lower=1)
  bias_margin: float = option(
      silent.DEFAULT_MARGIN, "Safety margin of the fooling units' bias: b = -(max + margin * |max|) over the "
      "calibration images, so a unit fires only above (1 + margin) times the calibration maximum (paper: 0; our "
      "default measured against the visualizations' similarity to the target, README).",
      check=lambda v: math.isfinite(v) and v >= 0, accepted="a finite number >= 0 (0 is the paper's bias)")
  relu_gradient: str = option(
      "renderer", "Gradient of the fooling ReLU in the renders: renderer = the render loop's rule, as for every "
      "ReLU of the model (Lucid's redirected gradient in the first 16 steps, so a silent unit can still be found); "
      "plain = 0 while the unit is silent.", choices=silent.RELU_GRADIENTS)
  units: tuple[int, ...] = option((1, 100, 500, 900), "Units of --layer to visualize.", units="required")
  steps: int = option(render_lib.LUCID_STEPS, "Render steps for the unit visualizations.", lower=1)
  size: int | None = config_lib.size(None, "Visualization size (default: the model's input size).")
  rescale: str = option("energy", "How delta and the fooling filter are rescaled against w: energy = the paper's "
                        "notebook (x * sum(w^2) / sum(x^2)), norm = to w's norm.", choices=silent.RESCALE_RULES)
  seed: int = config_lib.seed()

  def __post_init__(self):
    config_lib.validate(self)


def natural_images(config: Config, size: int, key: jax.Array, held: bool) -> Images:
  """The calibration (or held-out) images ``config`` names: a folder's (streamed from disk), or the demo's
  shipped photos with crops (and, for calibration, blurred copies)."""
  directory = config.heldout_dir if held else config.calibration_dir
  if directory:
    return folder_images(directory, size, config.heldout_per_class if held else None)
  crops = (config.heldout_crops or config.crops) if held else config.crops
  return shipped_photos(size, key, crops, held, blur=0.0 if held else config.calibration_blur)


def run(model: ModelRecord, config: Config, workdir: str, *, calibration: Images | None = None,
        heldout: Images | None = None, target_image: np.ndarray | None = None, progress: bool = True,
        **render_options) -> dict:
  """Silent units end to end: the layer (``config.layer`` or the model's default), the natural images
  (:func:`natural_images`, unless given), the target (``target_image``, ``config.target_image`` or unit 0's
  visualization), then :func:`compare`.

  Returns:
    The metrics written to ``metrics.json``.
  """
  layer = config.layer or silent.DEFAULT_LAYERS.get(model.name)
  if layer is None:
    raise ValueError(f"Give --layer for {model.name}: the path of a convolution, e.g. block3/project_conv.")
  size = model.input_size[0]
  k_cal, k_held, k_run = jax.random.split(jax.random.PRNGKey(config.seed), 3)
  if target_image is None and config.target_image:
    target_image = data.load_image(config.target_image, config.size or size)
  calibration = natural_images(config, size, k_cal, held=False) if calibration is None else calibration
  heldout = natural_images(config, size, k_held, held=True) if heldout is None else heldout
  return compare(model, layer, workdir, key=k_run, calibration=calibration, heldout=heldout, units=config.units,
                 target_image=target_image, target_steps=config.target_steps, fit_to=config.fit_to,
                 target_cossim_pow=config.target_cossim_pow, thresholds=(config.steps,),
                 size=config.size, rescale=config.rescale, bias_margin=config.bias_margin,
                 relu_gradient=config.relu_gradient, progress=progress, **render_options)


SUMMARY_METRICS = ("calibration_silent_fraction", "heldout_silent_fraction", "heldout_peak_over_threshold",
                   "calibration_logits_bit_identical", "natural_max_abs_logit_diff", "natural_top1_agreement",
                   "target_similarity_manipulated", "target_similarity_original",
                   "target_activation_similarity_manipulated", "target_activation_similarity_original",
                   "fooling_active_fraction")


def summary(metrics: dict) -> str:
  """The main numbers, one per line, and how many units of the layer were silent before any manipulation."""
  lines = [f"{name:>42}: {metrics[name]}" for name in SUMMARY_METRICS]
  return "\n".join(lines + [f"naturally silent units of {metrics['layer']}: {len(metrics['naturally_silent_units'])}"])


def compare(model: ModelRecord, path: str, workdir: str, *, key: jax.Array, calibration: Images,
            heldout: Images, units: Sequence[int], target_image: np.ndarray | None = None, target_steps: int = 512,
            fit_to: str = "rendering", target_cossim_pow: float = silent.TARGET_COSSIM_POW,
            thresholds: Sequence[int] = (render_lib.LUCID_STEPS,), size: int | None = None, rescale: str = "energy",
            bias_margin: float = silent.DEFAULT_MARGIN, relu_gradient: str = "renderer", progress: bool = True,
            **render_options) -> dict:
  """Adds silent fooling units to the convolution ``path`` and measures what changed.

  Args:
    model: the original record (Linen or NNX).
    path: a convolution (surgery path), e.g. ``"head/conv"``.
    workdir: output folder.
    key: PRNG key.
    calibration: natural images the fooling units must be silent on: an
      array ``[N,H,W,3]`` or a function returning an iterable of batches
      (streamed twice).
    heldout: natural images not used for calibration (same forms; streamed once).
    units: output channels of ``path`` to visualize before and after.
    target_image: ``[H,W,3]`` in ``[0,1]``; default the visualization of unit 0
      of ``path`` (the paper's choice) rendered for ``target_steps`` steps.
    target_steps: steps for that default target (paper: 2000), and for the
      target's rendering.
    fit_to: for a given ``target_image``, what delta is fitted to:
      ``"rendering"`` (:func:`silent.target_rendering`, ours) or ``"image"``
      (the paper's recipe); the default target is fitted to directly.
    target_cossim_pow: the rendering's direction objective's ``cossim_pow``.
    thresholds: render step counts for the unit visualizations.
    size: render size (default the model's input size).
    rescale: ``"energy"`` (the paper's notebook) or ``"norm"``: how delta and
      the fooling filter are rescaled against ``w`` (:func:`silent.combine`).
    bias_margin: ``b = -(max + bias_margin * |max|)`` over the calibration
      images (paper: 0; see :mod:`fvjax.fooling.silent`).
    relu_gradient: the fooling ReLU's gradient, ``"renderer"`` (the render
      rule, like every ReLU of the model) or ``"plain"``
      (:func:`silent.add_silent_units`).
    progress: progress bars.
    **render_options: passed to :func:`fvjax.optvis.render.render`.

  Returns:
    The metrics written to ``metrics.json``.
  """
  start = time.time()
  calibration, heldout = (_checked(model, source) for source in (calibration, heldout))
  k_target, k_delta, k_render = jax.random.split(key, 3)
  original = silent.expose(model, path)
  opts = dict(layer=path, size=size, progress=progress, **render_options)
  if fit_to not in silent.FIT_TARGETS:
    raise ValueError(f"Unknown fit_to {fit_to!r}; accepted: {', '.join(silent.FIT_TARGETS)}.")
  fitted = None  # the image delta is fitted to, when it is not the target itself
  if target_image is None:
    target_image = render_lib.render(original, [0], key=k_target, thresholds=(target_steps,), **opts).images[-1, 0]
  elif fit_to == "rendering":
    fitted = silent.target_rendering(model, path, target_image, key=k_target, steps=target_steps,
                                     cossim_pow=target_cossim_pow, **opts)
  filters = silent.fooling_filters(model, path, target_image if fitted is None else fitted, batches(calibration),
                                   key=k_delta, rescale=rescale, margin=bias_margin)
  manipulated = silent.add_silent_units(model, path, filters, relu_gradient=relu_gradient)

  units = [int(u) for u in units]
  before = render_lib.render(original, units, key=k_render, thresholds=thresholds, **opts)
  after = render_lib.render(manipulated, units, key=k_render, thresholds=thresholds, **opts)
  fired = silent.fooling_activations(model, path, filters, after.images[-1])
  active = [bool(fired[i, ..., u].max() > 0) for i, u in enumerate(units)]
  cal, held = natural_passes(model, manipulated, path, filters, [calibration, heldout])
  metrics = {
      "model": model.name,
      "weights": model.weights,
      "layer": path,
      "rescale": rescale,
      "fit_to": "image" if fitted is None else "rendering",
      "bias_margin": bias_margin,
      "relu_gradient": relu_gradient,
      "num_units": int(filters.kernel.shape[-1]),
      "num_calibration_images": cal["count"],
      "num_heldout_images": held["count"],
      "calibration_silent_fraction": cal["silent"] / cal["count"],
      "heldout_silent_fraction": held["silent"] / held["count"],
      "heldout_peak_over_threshold": held["over_threshold"],
      "calibration_logits_bit_identical": cal["identical"] == cal["count"],
      "natural_max_abs_logit_diff": held["max_abs_diff"],
      "natural_top1_agreement": held["top1"] / held["count"],
      "visualized_units": units,
      "thresholds": list(after.thresholds),
      "target_similarity_manipulated": float(np.mean(similarity.image_pearson(after.images[-1], target_image))),
      "target_similarity_original": float(np.mean(similarity.image_pearson(before.images[-1], target_image))),
      "target_activation_similarity_manipulated": float(np.mean(
          activation_similarity(model, path, after.images[-1], target_image))),
      "target_activation_similarity_original": float(np.mean(
          activation_similarity(model, path, before.images[-1], target_image))),
      "fooling_active_fraction": float(np.mean(active)),
      "fitted_rendering_activation_similarity": None if fitted is None else float(
          activation_similarity(model, path, fitted[None], target_image)[0]),
      "naturally_silent_units": np.flatnonzero(np.maximum(cal["peak"], held["peak"]) == 0).tolist(),
      "seconds": 0.0,
  }
  shown = np.asarray(jax.image.resize(target_image, after.images.shape[2:], "linear"))  # any target size
  cells = [im for i in range(len(units)) for im in (before.images[-1, i], after.images[-1, i])] + [shown]
  titles = [t for u in units for t in (f"{path}:{u} original", f"{path}:{u} manipulated")] + ["target"]
  if fitted is not None:
    cells, titles = cells + [fitted], titles + ["target's rendering (delta's fit)"]
  plots.save_figure(plots.labelled_grid(np.stack(cells), titles, cols=2), os.path.join(workdir, "comparison.png"))
  metrics["seconds"] = time.time() - start
  io.write_json(os.path.join(workdir, "metrics.json"), metrics)
  return metrics
