"""Random image transforms for transformation robustness (Lucid's vocabulary).

Each transform is a pure function ``(key, images [B,H,W,3]) -> images`` that
draws independently for every image of the batch (one key per image), so a
batch of units is optimised exactly as if each image were rendered alone.
Output shapes are static (needed under jit): ``pad`` and ``jitter`` change the
size by fixed amounts; ``random_scale`` and ``random_rotate`` resample about
the image centre into the same size (bilinear, differentiable), filling
uncovered pixels with Lucid's pad value 0.5.

Differences from Lucid, chosen and documented: Lucid draws one jitter offset,
scale and angle per *batch* (we draw per image); its rotation uses nearest
interpolation (tf.contrib.image.rotate; lucent uses bilinear, as here); its
random scale changes the canvas size (here the content is zoomed about the
centre inside a fixed canvas, which a globally pooled objective cannot tell
apart).
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

Transform = Callable[[jax.Array, jax.Array], jax.Array]
PAD_VALUE = 0.5


def image_keys(key: jax.Array, n: int) -> jax.Array:
  """``n`` keys, key i = fold_in(key, i): image i's randomness does not depend on
  the batch size (so padding a batch for sharding changes no image)."""
  return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(n))


def _per_image(fn):
  """Lifts ``fn(key, image [H,W,3])`` to a batch with one key per image."""

  def apply(key, images):
    return jax.vmap(fn)(image_keys(key, images.shape[0]), images)

  return apply


def pad(width: int, value: float = PAD_VALUE, mode: str = "constant") -> Transform:
  """Pads every side by ``width`` pixels (Lucid's standard set: constant 0.5)."""

  def apply(key, images):
    del key
    widths = ((0, 0), (width, width), (width, width), (0, 0))
    if mode == "constant":
      return jnp.pad(images, widths, constant_values=value)
    return jnp.pad(images, widths, mode=mode)

  return apply


def jitter(d: int) -> Transform:
  """A random ``(H-d, W-d)`` crop of each image (Lucid's jitter)."""

  def one(key, image):
    h, w, c = image.shape
    oy, ox = jax.random.randint(key, (2,), 0, d + 1)
    return jax.lax.dynamic_slice(image, (oy, ox, 0), (h - d, w - d, c))

  return _per_image(one)


def center_crop(size: int | tuple[int, int]) -> Transform:
  """The central ``size`` crop."""
  sh, sw = (size, size) if isinstance(size, int) else size

  def apply(key, images):
    del key
    _, h, w, _ = images.shape
    top, left = (h - sh) // 2, (w - sw) // 2
    return images[:, top:top + sh, left:left + sw]

  return apply


def affine_resample(image: jax.Array, scale: jax.Array, angle_rad: jax.Array,
                    fill: float = PAD_VALUE) -> jax.Array:
  """Zooms by ``scale`` and rotates by ``angle_rad`` about the centre (bilinear).

  Args:
    image: ``[H,W,C]``.
    scale: zoom factor (>1 enlarges the content).
    angle_rad: counter-clockwise rotation.
    fill: value of pixels that map outside the image.

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
  return _bilinear(image, src_y, src_x, fill)


def _bilinear(image, y, x, fill):
  h, w, _ = image.shape
  y0, x0 = jnp.floor(y), jnp.floor(x)
  wy, wx = (y - y0)[..., None], (x - x0)[..., None]
  y0, x0 = y0.astype(jnp.int32), x0.astype(jnp.int32)

  def tap(yi, xi):
    inside = ((yi >= 0) & (yi < h) & (xi >= 0) & (xi < w))[..., None]
    v = image[jnp.clip(yi, 0, h - 1), jnp.clip(xi, 0, w - 1)]
    return jnp.where(inside, v, fill)

  return ((1 - wy) * ((1 - wx) * tap(y0, x0) + wx * tap(y0, x0 + 1))
          + wy * ((1 - wx) * tap(y0 + 1, x0) + wx * tap(y0 + 1, x0 + 1)))


def _choice(key, values):
  return jnp.asarray(np.asarray(values, np.float32))[jax.random.randint(key, (), 0, len(values))]


def random_scale(scales: Sequence[float]) -> Transform:
  """Zooms each image by a factor drawn uniformly from ``scales``."""
  return _per_image(lambda k, im: affine_resample(im, _choice(k, scales), jnp.float32(0.0)))


def random_rotate(angles: Sequence[float]) -> Transform:
  """Rotates each image by an angle in degrees drawn uniformly from ``angles``."""
  return _per_image(lambda k, im: affine_resample(im, jnp.float32(1.0), jnp.deg2rad(_choice(k, angles))))


def random_scale_rotate(scales: Sequence[float], angles: Sequence[float]) -> Transform:
  """``random_scale`` then ``random_rotate`` in one resampling pass (same draws,
  one bilinear interpolation instead of two)."""

  def one(key, image):
    ks, kr = jax.random.split(key)
    return affine_resample(image, _choice(ks, scales), jnp.deg2rad(_choice(kr, angles)))

  return _per_image(one)


def compose(*transforms: Transform) -> Transform:
  """Applies ``transforms`` in order, each with its own key."""

  def apply(key, images):
    for k, t in zip(jax.random.split(key, len(transforms)), transforms):
      images = t(k, images)
    return images

  return apply


LUCID_SCALES = tuple(1 + (i - 5) / 50.0 for i in range(11))  # 0.90, 0.92, ..., 1.10
LUCID_ANGLES = tuple(range(-10, 11)) + 5 * (0,)


def standard_transforms(fused: bool = False) -> Transform:
  """Lucid's ``standard_transforms``: pad 12 (0.5), jitter 8, random scale
  0.90..1.10, random rotate -10..10 degrees (plus five extra 0s), jitter 4.

  Args:
    fused: resample scale and rotation in one pass (fewer interpolations;
      the same distribution of transforms).
  """
  middle = ((random_scale_rotate(LUCID_SCALES, LUCID_ANGLES),) if fused
            else (random_scale(LUCID_SCALES), random_rotate(LUCID_ANGLES)))
  return compose(pad(12), jitter(8), *middle, jitter(4))


def scaled_standard_transforms(size: int = 224, fused: bool = False) -> Transform:
  """The size-scaled set of the authors' later fork (unit = size // 32): pad
  3u, jitter 2u, random scale, random rotate, jitter u, centre crop to size."""
  u = max(size // 32, 1)
  middle = ((random_scale_rotate(LUCID_SCALES, LUCID_ANGLES),) if fused
            else (random_scale(LUCID_SCALES), random_rotate(LUCID_ANGLES)))
  return compose(pad(3 * u), jitter(2 * u), *middle, jitter(u), center_crop(size))
