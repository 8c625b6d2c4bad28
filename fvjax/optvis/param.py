"""Image parameterizations, each a pair of pure functions (the optax pattern).

``ImageParam(init, to_rgb)``: ``init(key, batch, (h, w)) -> params`` and
``to_rgb(params) -> images [B,h,w,3] in [0,1]``. The default, Lucid's
``param.image(...)``, is a Fourier spectrum scaled by 1/f (so that all
frequencies move at a similar rate under gradient descent), followed by
Lucid's colour decorrelation and a sigmoid.

Constants are Lucid's (lucid/optvis/param/spatial.py and color.py):
spectrum initialised Normal(0, 0.01); scale = 1 / max(f, 1/max(h,w))^decay
times sqrt(h*w); image = irfft2(scale * spectrum) / 4 (irfft2 normalised by
1/(h*w), as TensorFlow's); colour matrix below divided by its largest column
norm.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

# Square root of ImageNet's colour covariance (Lucid's color_correlation_svd_sqrt).
COLOR_CORRELATION_SVD_SQRT = np.array(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], np.float32)
MAX_NORM_SVD_SQRT = float(np.max(np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=0)))  # 0.4619524
COLOR_CORRELATION_NORMALIZED = COLOR_CORRELATION_SVD_SQRT / MAX_NORM_SVD_SQRT
COLOR_MEAN = np.array([0.48, 0.46, 0.41], np.float32)  # added when not using a sigmoid
LUCID_SD = 0.01


class ImageParam(NamedTuple):
  """An image parameterization.

  Attributes:
    init: ``(key, batch, (h, w)) -> params`` (a pytree).
    to_rgb: ``params -> [batch, h, w, 3]`` images in ``[0, 1]``.
  """

  init: Callable[[jax.Array, int, tuple[int, int]], Any]
  to_rgb: Callable[[Any], jax.Array]


def rfft2d_freqs(h: int, w: int) -> np.ndarray:
  """Frequency magnitudes ``[h, w//2+1 (+1 if w odd)]`` of a real 2-D FFT (Lucid's rule)."""
  fy = np.fft.fftfreq(h)[:, None]
  fx = np.fft.fftfreq(w)[: w // 2 + (2 if w % 2 else 1)]
  return np.sqrt(fx * fx + fy * fy)


def spectrum_scale(h: int, w: int, decay_power: float = 1.0) -> np.ndarray:
  """Lucid's 1/f scale times sqrt(h*w) (a unitary-like transform)."""
  freqs = rfft2d_freqs(h, w)
  return (1.0 / np.maximum(freqs, 1.0 / max(h, w)) ** decay_power * np.sqrt(w * h)).astype(np.float32)


def decorrelate_color(t: jax.Array) -> jax.Array:
  """Maps decorrelated colour ``[...,3]`` to RGB: each pixel t -> M_normalized @ t."""
  return t @ jnp.asarray(COLOR_CORRELATION_NORMALIZED).T


def to_valid_rgb(t: jax.Array, decorrelate: bool = True, sigmoid: bool = True) -> jax.Array:
  """Lucid's ``to_valid_rgb``: optional decorrelation, then sigmoid (or clip) to [0,1]."""
  if decorrelate:
    t = decorrelate_color(t)
  if decorrelate and not sigmoid:
    t = t + jnp.asarray(COLOR_MEAN)
  if sigmoid:
    return jax.nn.sigmoid(t)
  return jnp.clip(t, 0.0, 1.0)


@flax.struct.dataclass
class Spectrum:
  """Fourier coefficients ``[B, 3, h, w//2+1 (+1 if w odd), 2]`` (real, imaginary)
  and the image size, kept as static metadata so that ``to_rgb`` needs no size."""

  coeffs: jax.Array
  size: tuple[int, int] = flax.struct.field(pytree_node=False)


def fourier(decay_power: float = 1.0, sd: float = LUCID_SD, channels: int = 3) -> tuple[Callable, Callable]:
  """Raw Fourier parameterization ``(init, to_image)``, before colour handling."""

  def init(key, batch, size):
    h, w = size
    fh, fw = rfft2d_freqs(h, w).shape
    return Spectrum(sd * jax.random.normal(key, (batch, channels, fh, fw, 2), jnp.float32), (h, w))

  def to_image(spectrum: Spectrum) -> jax.Array:
    h, w = spectrum.size
    c = spectrum.coeffs
    z = jax.lax.complex(c[..., 0], c[..., 1]) * spectrum_scale(h, w, decay_power)
    # irfft2 divides by the number of pixels, like TF's; for odd w the extra
    # column Lucid keeps is cropped off.
    img = jnp.fft.irfft2(z, s=(h, 2 * (z.shape[-1] - 1)), axes=(-2, -1))[..., :h, :w]
    return jnp.transpose(img, (0, 2, 3, 1)) / 4.0

  return init, to_image


def image(fft: bool = True, decorrelate: bool = True, sigmoid: bool = True, sd: float = LUCID_SD,
          decay_power: float = 1.0) -> ImageParam:
  """Lucid's ``param.image``: Fourier (or pixel) + decorrelated colour + sigmoid.

  Args:
    fft: Fourier parameterization with 1/f scaling (else one parameter per pixel).
    decorrelate: Lucid's colour decorrelation.
    sigmoid: squash to [0,1] with a sigmoid (else clip).
    sd: init standard deviation (Lucid: 0.01).
    decay_power: spectrum decay (Lucid: 1).

  Returns:
    An :class:`ImageParam`.
  """
  if fft:
    raw_init, raw_image = fourier(decay_power, sd)
  else:
    raw_init, raw_image = pixel_raw(sd)

  return ImageParam(raw_init, lambda p: to_valid_rgb(raw_image(p), decorrelate, sigmoid))


def pixel_raw(sd: float = LUCID_SD) -> tuple[Callable, Callable]:
  """One parameter per pixel and channel, Normal(0, sd)."""

  def init(key, batch, size):
    return {"pixels": sd * jax.random.normal(key, (batch, *size, 3), jnp.float32)}

  return init, lambda p: p["pixels"]


def pixel(sd: float = LUCID_SD, decorrelate: bool = True, sigmoid: bool = True) -> ImageParam:
  """Pixel parameterization (Lucid's ``image(..., fft=False)``)."""
  return image(fft=False, decorrelate=decorrelate, sigmoid=sigmoid, sd=sd)


def fourier_image(decay_power: float = 1.0, sd: float = LUCID_SD, decorrelate: bool = True,
                  sigmoid: bool = True) -> ImageParam:
  """Fourier parameterization with colour handling (the default)."""
  return image(fft=True, decorrelate=decorrelate, sigmoid=sigmoid, sd=sd, decay_power=decay_power)
