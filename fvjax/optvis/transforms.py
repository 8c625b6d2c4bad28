"""Random image transforms for transformation robustness (Lucid's vocabulary).

Each transform is a pure function ``(key, images [B,H,W,C]) -> images`` that
draws independently for every image of the batch (image i uses
``fold_in(key, i)``), so a batch of units is optimised as if each image were
rendered alone, and image i's draws do not depend on the batch size.

Output shapes are static (needed under jit): ``pad`` adds ``2*width``,
``jitter(d)`` removes ``d``, ``center_crop`` gives its size, and
``random_scale`` / ``random_rotate`` resample about the image centre into a
canvas of the *same* size (bilinear, differentiable in the image).

Where we differ from Lucid (``lucid/optvis/transform.py``), by choice:

* Lucid draws one jitter offset, scale and angle per *batch*; we draw per image.
* Lucid's ``random_scale`` resizes to ``int(s*H) x int(s*W)`` (a shape that
  depends on the draw). Here the content is zoomed by ``s`` about the centre
  inside the fixed ``H x W`` canvas: for ``s > 1`` the border is cut off, for
  ``s < 1`` it is filled with ``fill`` (0, like lucent's zero padding). Lucid
  scales about the top-left corner (TF1 ``resize_bilinear`` without
  half-pixel centres); the random crop that follows turns that into a shift,
  so scaling about the centre changes the distribution of content only at
  the border.
* Lucid rotates with nearest-neighbour interpolation
  (``tf.contrib.image.rotate``); we use bilinear, as lucent (kornia) does.
  Both fill uncovered corners with 0, as do we by default.
* Lucid's ``pad`` defaults to reflect mode; ours defaults to Lucid's
  ``standard_transforms`` setting, constant 0.5.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

Transform = Callable[[jax.Array, jax.Array], jax.Array]
PAD_VALUE = 0.5  # Lucid's standard_transforms: pad(12, mode="constant", constant_value=.5)
FILL_VALUE = 0.0  # tf.contrib.image.rotate and kornia.warp_affine fill with zeros
LUCID_SCALES = tuple(1 + (i - 5) / 50.0 for i in range(11))  # 0.90, 0.92, ..., 1.10
LUCID_ANGLES = tuple(range(-10, 11)) + 5 * (0,)  # degrees; 0 is drawn 6 times in 26


def image_keys(key: jax.Array, n: int) -> jax.Array:
  """``[n]`` keys, key i = ``fold_in(key, i)``.

  Image i's randomness does not depend on the batch size, so padding a batch
  (e.g. for sharding) changes no image.
  """
  return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(n))


def _per_image(fn: Callable[[jax.Array, jax.Array], jax.Array]) -> Transform:
  """Lifts ``fn(key, image [H,W,C])`` to a batch with one key per image."""

  def apply(key: jax.Array, images: jax.Array) -> jax.Array:
    return jax.vmap(fn)(image_keys(key, images.shape[0]), images)

  return apply


def pad(width: int, value: float = PAD_VALUE, mode: str = "constant") -> Transform:
  """Pads every side by ``width`` pixels.

  Args:
    width: pixels added on each side.
    value: the constant for ``mode="constant"`` (Lucid's standard set: 0.5).
    mode: any ``jnp.pad`` mode (``"constant"``, ``"reflect"``, ``"edge"``, ...).

  Returns:
    A transform ``[B,H,W,C] -> [B,H+2w,W+2w,C]``.
  """
  if width < 0:
    raise ValueError(f"pad width must be >= 0; got {width}.")

  def apply(key: jax.Array, images: jax.Array) -> jax.Array:
    del key
    widths = ((0, 0), (width, width), (width, width), (0, 0))
    if mode == "constant":
      return jnp.pad(images, widths, constant_values=value)
    return jnp.pad(images, widths, mode=mode)

  return apply


def jitter(d: int) -> Transform:
  """Lucid's jitter: a random ``(H-d, W-d)`` crop of each image.

  The offsets are uniform in ``{0, ..., d}`` along each axis, drawn per image.

  Returns:
    A transform ``[B,H,W,C] -> [B,H-d,W-d,C]``.
  """
  if d < 0:
    raise ValueError(f"jitter distance must be >= 0; got {d}.")

  def one(key: jax.Array, image: jax.Array) -> jax.Array:
    h, w, c = image.shape
    if d >= min(h, w):
      raise ValueError(f"jitter({d}) needs images larger than {d} px; got {h}x{w}.")
    oy, ox = jax.random.randint(key, (2,), 0, d + 1)
    return jax.lax.dynamic_slice(image, (oy, ox, 0), (h - d, w - d, c))

  return _per_image(one)


def center_crop(size: int | tuple[int, int]) -> Transform:
  """The central ``size`` crop (``(H-h)//2`` rows above, as the authors' notebook).

  Returns:
    A transform ``[B,H,W,C] -> [B,h,w,C]``.
  """
  sh, sw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))

  def apply(key: jax.Array, images: jax.Array) -> jax.Array:
    del key
    _, h, w, _ = images.shape
    if sh > h or sw > w:
      raise ValueError(f"center_crop({sh}x{sw}) needs images at least that large; got {h}x{w}.")
    top, left = (h - sh) // 2, (w - sw) // 2
    return images[:, top:top + sh, left:left + sw]

  return apply


def affine_resample(image: jax.Array, scale: jax.Array, angle_rad: jax.Array,
                    fill: float = FILL_VALUE) -> jax.Array:
  """Zooms by ``scale`` and rotates by ``angle_rad`` about the centre (bilinear).

  Args:
    image: ``[H,W,C]``.
    scale: zoom factor (``> 1`` enlarges the content).
    angle_rad: counter-clockwise rotation (as displayed, row 0 at the top).
    fill: value of output pixels whose source lies outside the image.

  Returns:
    ``[H,W,C]``.
  """
  h, w, _ = image.shape
  cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
  yy, xx = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32) - cy, jnp.arange(w, dtype=jnp.float32) - cx,
                        indexing="ij")
  cos, sin = jnp.cos(angle_rad), jnp.sin(angle_rad)
  # Inverse map: output pixel -> source coordinate.
  src_y = (cos * yy + sin * xx) / scale + cy
  src_x = (-sin * yy + cos * xx) / scale + cx
  return bilinear_sample(image, src_y, src_x, fill)


def bilinear_sample(image: jax.Array, y: jax.Array, x: jax.Array, fill: float = FILL_VALUE) -> jax.Array:
  """Samples ``image`` at real coordinates; taps outside the image read ``fill``.

  Args:
    image: ``[H,W,C]``.
    y: ``[...]`` row coordinates (0 = the centre of the first row).
    x: ``[...]`` column coordinates.
    fill: value outside the image.

  Returns:
    ``[..., C]``, differentiable in ``image``.
  """
  h, w, _ = image.shape
  y0, x0 = jnp.floor(y), jnp.floor(x)
  wy, wx = (y - y0)[..., None], (x - x0)[..., None]
  y0, x0 = y0.astype(jnp.int32), x0.astype(jnp.int32)

  def tap(yi, xi):
    inside = ((yi >= 0) & (yi < h) & (xi >= 0) & (xi < w))[..., None]
    v = image[jnp.clip(yi, 0, h - 1), jnp.clip(xi, 0, w - 1)]
    return jnp.where(inside, v, jnp.asarray(fill, image.dtype))

  return ((1 - wy) * ((1 - wx) * tap(y0, x0) + wx * tap(y0, x0 + 1))
          + wy * ((1 - wx) * tap(y0 + 1, x0) + wx * tap(y0 + 1, x0 + 1)))


def _choice(key: jax.Array, values: Sequence[float]) -> jax.Array:
  """One of ``values``, uniformly (repeats count, as in Lucid's ``_rand_select``)."""
  return jnp.asarray(np.asarray(values, np.float32))[jax.random.randint(key, (), 0, len(values))]


def _check_choices(name: str, values: Sequence[float]) -> tuple[float, ...]:
  values = tuple(float(v) for v in values)
  if not values:
    raise ValueError(f"{name} needs at least one value to draw from.")
  return values


def random_scale(scales: Sequence[float], fill: float = FILL_VALUE) -> Transform:
  """Zooms each image about its centre by a factor drawn uniformly from ``scales``.

  Returns:
    A transform ``[B,H,W,C] -> [B,H,W,C]`` (see the module docstring).
  """
  scales = _check_choices("random_scale", scales)
  if min(scales) <= 0:
    raise ValueError(f"random_scale factors must be positive; got {scales}.")
  return _per_image(lambda k, im: affine_resample(im, _choice(k, scales), jnp.float32(0.0), fill))


def random_rotate(angles: Sequence[float], fill: float = FILL_VALUE) -> Transform:
  """Rotates each image about its centre by an angle in degrees drawn from ``angles``.

  Returns:
    A transform ``[B,H,W,C] -> [B,H,W,C]``.
  """
  angles = _check_choices("random_rotate", angles)
  return _per_image(lambda k, im: affine_resample(im, jnp.float32(1.0), jnp.deg2rad(_choice(k, angles)), fill))


def random_scale_rotate(scales: Sequence[float], angles: Sequence[float], fill: float = FILL_VALUE) -> Transform:
  """``random_scale`` then ``random_rotate`` in one resampling pass.

  The same distribution of transforms with one bilinear interpolation instead
  of two (slightly sharper, and cheaper).
  """
  scales, angles = _check_choices("random_scale", scales), _check_choices("random_rotate", angles)

  def one(key, image):
    ks, kr = jax.random.split(key)
    return affine_resample(image, _choice(ks, scales), jnp.deg2rad(_choice(kr, angles)), fill)

  return _per_image(one)


def compose(*transforms: Transform) -> Transform:
  """Applies ``transforms`` in order, each with its own key (``split(key, n)``)."""

  def apply(key: jax.Array, images: jax.Array) -> jax.Array:
    if not transforms:
      return images
    for k, t in zip(jax.random.split(key, len(transforms)), transforms):
      images = t(k, images)
    return images

  return apply


def _scale_rotate(fused: bool) -> tuple[Transform, ...]:
  if fused:
    return (random_scale_rotate(LUCID_SCALES, LUCID_ANGLES),)
  return (random_scale(LUCID_SCALES), random_rotate(LUCID_ANGLES))


def standard_transforms(fused: bool = False, crop: int | tuple[int, int] | None = None) -> Transform:
  """Lucid's ``standard_transforms``.

  pad 12 (constant 0.5), jitter 8, random scale ``1 + (i-5)/50`` for
  ``i < 11``, random rotate ``-10..10`` degrees plus five extra 0s, jitter 4.
  The output is 4 px larger than the input on each axis (``H + 24 - 8 - 4``).

  Args:
    fused: resample scale and rotation in one pass.
    crop: if given, a final centre crop to this size, as the paper's notebooks
      do (lucent's ``standard_transforms + [center_crop(224, 224)]``).

  Returns:
    A transform.
  """
  ts = (pad(12), jitter(8), *_scale_rotate(fused), jitter(4))
  return compose(*ts, center_crop(crop)) if crop is not None else compose(*ts)


def scaled_standard_transforms(size: int = 224, fused: bool = False) -> Transform:
  """The size-scaled set of the authors' later fork (``u = size // 32``).

  pad ``3u`` (0.5), jitter ``2u``, random scale, random rotate, jitter ``u``,
  centre crop to ``size``. At 224 px, ``u = 7``.

  Returns:
    A transform ``[B,size,size,C] -> [B,size,size,C]``.
  """
  u = max(size // 32, 1)
  return compose(pad(3 * u), jitter(2 * u), *_scale_rotate(fused), jitter(u), center_crop(size))


OCCLUSION_STUDY_SCALES = (1.0, 0.975, 1.025, 0.95, 1.05)  # Zimmermann et al. 2021, synthetic references
OCCLUSION_STUDY_ANGLES = tuple(range(-5, 6))  # degrees
OCCLUSION_STUDY_PADDING = 16  # px rendered on each side and cropped off afterwards


def occlusion_study_transforms(fused: bool = False) -> Transform:
  """The milder set of the causal-understanding study (Zimmermann et al., NeurIPS 2021).

  jitter 16, random scale from ``(1.0, 0.975, 1.025, 0.95, 1.05)``, random
  rotate ``-5..5`` degrees, jitter 8; no pad transform. The output is 24 px
  smaller on each axis (``H - 16 - 8``). The study renders on a canvas
  ``2 * OCCLUSION_STUDY_PADDING`` px larger than the image it keeps and crops
  that padding off afterwards (:func:`fvjax.causal.references.synthetic_references`
  does both).

  Args:
    fused: resample scale and rotation in one pass.

  Returns:
    A transform ``[B,H,W,C] -> [B,H-24,W-24,C]``.
  """
  if fused:
    middle = (random_scale_rotate(OCCLUSION_STUDY_SCALES, OCCLUSION_STUDY_ANGLES),)
  else:
    middle = (random_scale(OCCLUSION_STUDY_SCALES), random_rotate(OCCLUSION_STUDY_ANGLES))
  return compose(jitter(16), *middle, jitter(8))


# Random box crops resized to the model's input, plus noise: the transforms of MACO (Fel et al. 2023) and of
# feature accentuation (Hamblin et al. 2024). Horama draws box sides as U(0, 1) * (b1 - b0) + b1 from its
# default box_size=(0.20, 0.25) (horama/common.py optimization_step), i.e. sides in [0.25, 0.30] of the canvas;
# xplique's default schedule (a mean side falling linearly from 0.5 to 0.05) averages 0.275 too.
MACO_BOX_SIDES = (0.25, 0.30)
MACO_CENTER_SD = 0.15  # Horama and xplique: box centres 0.5 + Normal(0, 0.15) (fractions of the canvas)
MACO_NOISE = 0.05  # Horama maco(noise=0.05); xplique uses 0.08
ACCENTUATION_BOX_SIDES = (0.05, 0.99)  # faccent transform.py box_crop_2 (standard_box_transforms)
ACCENTUATION_NOISE = 0.02  # faccent transform.py uniform_gaussian_noise(noise_std=0.02)


def box_crop(out_size: int | tuple[int, int], sides: tuple[float, float], center_sd: float | None = None,
             fill: float = FILL_VALUE) -> Transform:
  """A random square box of each image, resampled (bilinear) to ``out_size``.

  Args:
    out_size: side(s) of the output (the model's input size).
    sides: the box side, a fraction of the image side, is drawn uniformly from this range.
    center_sd: box centres are ``0.5 + Normal(0, center_sd)`` (MACO; boxes may reach past the border,
      which reads ``fill``); None: the box lies inside the image, its corner uniform (faccent's ``box_crop_2``).
    fill: value outside the image.

  Returns:
    A transform ``[B,H,W,C] -> [B,out_h,out_w,C]``.
  """
  oh, ow = (out_size, out_size) if isinstance(out_size, int) else (int(out_size[0]), int(out_size[1]))
  lo, hi = float(sides[0]), float(sides[1])
  if not 0 < lo <= hi:
    raise ValueError(f"box_crop sides must satisfy 0 < low <= high; got {sides}.")

  def one(key, image):
    ks, ky, kx = jax.random.split(key, 3)
    side = jax.random.uniform(ks, (), minval=lo, maxval=hi)
    if center_sd is None:
      top, left = (jax.random.uniform(k, ()) * jnp.maximum(1.0 - side, 0.0) for k in (ky, kx))
    else:
      top, left = (0.5 + center_sd * jax.random.normal(k, ()) - side / 2 for k in (ky, kx))
    h, w = image.shape[:2]
    y = (top + side * (jnp.arange(oh) + 0.5) / oh) * h - 0.5
    x = (left + side * (jnp.arange(ow) + 0.5) / ow) * w - 0.5
    return bilinear_sample(image, y[:, None], x[None, :], fill)

  return _per_image(one)


def noise(sd: float) -> Transform:
  """Adds ``Normal(0, sd)`` and ``Uniform(-sd/2, sd/2)`` noise to every value (Horama's and faccent's
  ``uniform_gaussian_noise``)."""

  def one(key, image):
    kn, ku = jax.random.split(key)
    return (image + sd * jax.random.normal(kn, image.shape, image.dtype)
            + sd * (jax.random.uniform(ku, image.shape, image.dtype) - 0.5))

  return _per_image(one)


def maco_transforms(out_size: int | tuple[int, int]) -> Transform:
  """MACO's per-step transform: a box of side 0.25-0.30 around a jittered centre, resized, plus noise 0.05."""
  return compose(box_crop(out_size, MACO_BOX_SIDES, MACO_CENTER_SD), noise(MACO_NOISE))


def accentuation_transforms(out_size: int | tuple[int, int]) -> Transform:
  """faccent's ``standard_box_transforms``: a box of side 0.05-0.99 inside the image, resized, plus noise 0.02."""
  return compose(box_crop(out_size, ACCENTUATION_BOX_SIDES), noise(ACCENTUATION_NOISE))
