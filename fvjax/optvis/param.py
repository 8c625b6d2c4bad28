"""Image parameterizations, each a pair of pure functions (the optax pattern).

``ImageParam(init, to_rgb)``: ``init(key, batch, (h, w)) -> params`` and
``to_rgb(params) -> images [B,h,w,3] in [0,1]``. The default, Lucid's
``param.image(...)``, is a Fourier spectrum scaled by 1/f (so that all
frequencies move at a similar rate under gradient descent), followed by
Lucid's colour decorrelation and a sigmoid::

  p = param.image()                      # fft=True, decorrelate=True, sigmoid=True
  params = p.init(key, 8, (224, 224))
  images = p.to_rgb(params)              # [8, 224, 224, 3] in [0, 1]

Constants are Lucid's (lucid/optvis/param/spatial.py and color.py):

* spectrum ``[B, 3, h, w//2+1 (+1 if w is odd), 2]`` (real, imaginary),
  initialised Normal(0, 0.01) (Lucid stores ``[2, B, 3, ...]``; same
  distribution);
* ``scale = 1 / max(f, 1/max(h, w))**decay_power * sqrt(h*w)`` with
  ``f = sqrt(fx^2 + fy^2)`` from ``fftfreq`` (Lucid's ``rfft2d_freqs``);
* ``image = irfft2(scale * spectrum) / 4`` with TensorFlow's ``irfft2d``
  conventions: no output length is given, so the output width is
  ``2 * (n_freq_x - 1)`` (``w`` for even ``w``, ``w + 1`` for odd ``w``, the
  extra column cropped off) and the result is divided by
  ``h * output_width``;
* each pixel ``t`` (a 3-vector) becomes ``M_normalized @ t`` (Lucid:
  ``matmul(t_flat, M_normalized.T)``), ``M_normalized`` = the square root of
  ImageNet's colour covariance divided by its largest column norm
  (0.4619524), then a sigmoid.
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
COLOR_MEAN = np.array([0.48, 0.46, 0.41], np.float32)  # Lucid adds it when not using a sigmoid
LUCID_SD = 0.01
LUCID_FFT_DIVISOR = 4.0  # Lucid's "magic" constant: image = irfft2(...) / 4


class ImageParam(NamedTuple):
  """An image parameterization.

  Attributes:
    init: ``(key, batch, (h, w)) -> params`` (a pytree).
    to_rgb: ``params -> [batch, h, w, 3]`` images in ``[0, 1]``.
  """

  init: Callable[[jax.Array, int, tuple[int, int]], Any]
  to_rgb: Callable[[Any], jax.Array]


class SpatialParam(NamedTuple):
  """An unconstrained image parameterization (before colour handling).

  Attributes:
    init: ``(key, batch, (h, w)) -> params``.
    to_image: ``params -> [batch, h, w, 3]`` unbounded values.
  """

  init: Callable[[jax.Array, int, tuple[int, int]], Any]
  to_image: Callable[[Any], jax.Array]


@flax.struct.dataclass
class Spectrum:
  """Fourier coefficients and the image size they describe.

  Attributes:
    coeffs: ``[B, 3, h, w//2+1 (+1 if w is odd), 2]`` real and imaginary parts.
    size: ``(h, w)``, static metadata (not a leaf), so ``to_rgb`` needs no size.
  """

  coeffs: jax.Array
  size: tuple[int, int] = flax.struct.field(pytree_node=False)


def _check_size(batch: int, size: Any) -> tuple[int, int]:
  try:
    h, w = (int(s) for s in size)
  except (TypeError, ValueError):
    raise ValueError(f"Image size must be a pair (height, width) of positive ints; got {size!r}.") from None
  if h < 1 or w < 1:
    raise ValueError(f"Image size must be a pair (height, width) of positive ints; got {size!r}.")
  if int(batch) < 1:
    raise ValueError(f"Batch size must be a positive int; got {batch!r}.")
  return h, w


def _normal(key: jax.Array, shape: tuple[int, ...], sd: float) -> jax.Array:
  """``sd * Normal(0, 1)`` of ``shape``, drawn flat and reshaped.

  With JAX's default (partitionable) threefry these are the same values as
  ``jax.random.normal(key, shape)``, but a 1-D draw compiles ~10x faster on
  CPU than a 5-D one.
  """
  return sd * jax.random.normal(key, (int(np.prod(shape)),), jnp.float32).reshape(shape)


def rfft2d_freqs(h: int, w: int) -> np.ndarray:
  """Frequency magnitudes of a real 2-D FFT with Lucid's odd-width rule.

  Args:
    h: image height.
    w: image width.

  Returns:
    ``[h, w//2+1]`` for even ``w``, ``[h, w//2+2]`` for odd ``w`` (Lucid keeps
    one extra frequency and later crops one pixel).
  """
  fy = np.fft.fftfreq(h)[:, None]
  fx = np.fft.fftfreq(w)[: w // 2 + 2] if w % 2 == 1 else np.fft.fftfreq(w)[: w // 2 + 1]
  return np.sqrt(fx * fx + fy * fy)


def spectrum_scale(h: int, w: int, decay_power: float = 1.0) -> np.ndarray:
  """Lucid's spectrum scale ``1 / max(f, 1/max(h,w))**decay_power * sqrt(h*w)``.

  Returns:
    ``float32 [h, w//2+1 (+1 if w is odd)]``.
  """
  freqs = rfft2d_freqs(h, w)
  scale = 1.0 / np.maximum(freqs, 1.0 / max(w, h)) ** decay_power
  return (scale * np.sqrt(w * h)).astype(np.float32)


def fft_image(decay_power: float = 1.0, sd: float = LUCID_SD) -> SpatialParam:
  """Lucid's ``fft_image``: 1/f-scaled Fourier coefficients -> unbounded image.

  Args:
    decay_power: exponent of the 1/f scale (Lucid: 1).
    sd: standard deviation of the Normal init of the coefficients (Lucid: 0.01).

  Returns:
    A :class:`SpatialParam` over :class:`Spectrum` params.
  """

  def init(key: jax.Array, batch: int, size: tuple[int, int]) -> Spectrum:
    h, w = _check_size(batch, size)
    fh, fw = rfft2d_freqs(h, w).shape
    return Spectrum(_normal(key, (int(batch), 3, fh, fw, 2), sd), (h, w))

  def to_image(spectrum: Spectrum) -> jax.Array:
    h, w = spectrum.size
    c = spectrum.coeffs
    z = jax.lax.complex(c[..., 0], c[..., 1]) * spectrum_scale(h, w, decay_power)
    # TF's irfft2d without fft_length: width 2*(n-1), divided by h*width.
    img = jnp.fft.irfft2(z, s=(h, 2 * (z.shape[-1] - 1)), axes=(-2, -1))[..., :h, :w]
    return jnp.transpose(img, (0, 2, 3, 1)) / LUCID_FFT_DIVISOR

  return SpatialParam(init, to_image)


def pixel_image(sd: float = LUCID_SD) -> SpatialParam:
  """Lucid's ``pixel_image``: one Normal(0, sd) parameter per pixel and channel.

  Returns:
    A :class:`SpatialParam` over ``{"pixels": [B, h, w, 3]}`` params.
  """

  def init(key: jax.Array, batch: int, size: tuple[int, int]) -> dict[str, jax.Array]:
    h, w = _check_size(batch, size)
    return {"pixels": _normal(key, (int(batch), h, w, 3), sd)}

  return SpatialParam(init, lambda p: p["pixels"])


def decorrelate_color(t: jax.Array) -> jax.Array:
  """Maps decorrelated colour to RGB: each pixel ``t -> M_normalized @ t``.

  Args:
    t: ``[..., 3]``.

  Returns:
    ``[..., 3]``.
  """
  return t @ jnp.asarray(COLOR_CORRELATION_NORMALIZED).T


@jax.custom_vjp
def _clip_unit(t: jax.Array) -> jax.Array:
  return jnp.clip(t, 0.0, 1.0)


def _clip_unit_fwd(t):
  return _clip_unit(t), t


def _clip_unit_bwd(t, g):
  # Straight-through, except where a descent step (-g) would push a value that
  # is already at a bound further out (the projected gradient Lucid's
  # constrain_L_inf aims for).
  outward = ((t >= 1.0) & (g < 0)) | ((t <= 0.0) & (g > 0))
  return (jnp.where(outward, 0.0, g),)


_clip_unit.defvjp(_clip_unit_fwd, _clip_unit_bwd)


def to_valid_rgb(t: jax.Array, decorrelate: bool = True, sigmoid: bool = True) -> jax.Array:
  """Lucid's ``to_valid_rgb``: optional decorrelation, then a sigmoid or a clip.

  Args:
    t: ``[B, h, w, 3]`` unbounded values.
    decorrelate: apply :func:`decorrelate_color`.
    sigmoid: squash with a sigmoid; otherwise (as in Lucid) add the ImageNet
      colour mean when decorrelating and clip to ``[0, 1]``
      (``constrain_L_inf(2t-1)/2 + 0.5``, which is a clip in the forward pass).

  Returns:
    ``[B, h, w, 3]`` in ``[0, 1]``.
  """
  if decorrelate:
    t = decorrelate_color(t)
  if sigmoid:
    return jax.nn.sigmoid(t)
  if decorrelate:
    t = t + jnp.asarray(COLOR_MEAN)
  return _clip_unit(t)


def image(fft: bool = True, decorrelate: bool = True, sigmoid: bool = True, sd: float = LUCID_SD,
          decay_power: float = 1.0) -> ImageParam:
  """Lucid's ``param.image``: Fourier (or pixel) + decorrelated colour + sigmoid.

  Args:
    fft: Fourier parameterization with 1/f scaling (else one parameter per pixel).
    decorrelate: Lucid's colour decorrelation.
    sigmoid: squash to ``[0,1]`` with a sigmoid (else clip; see :func:`to_valid_rgb`).
    sd: init standard deviation (Lucid: 0.01).
    decay_power: spectrum decay (Lucid: 1); ignored when ``fft`` is False.

  Returns:
    An :class:`ImageParam`.
  """
  spatial = fft_image(decay_power, sd) if fft else pixel_image(sd)
  return ImageParam(spatial.init, lambda p: to_valid_rgb(spatial.to_image(p), decorrelate, sigmoid))


def fourier(decay_power: float = 1.0, sd: float = LUCID_SD, decorrelate: bool = True,
            sigmoid: bool = True) -> ImageParam:
  """The Fourier parameterization with colour handling (the default)."""
  return image(fft=True, decorrelate=decorrelate, sigmoid=sigmoid, sd=sd, decay_power=decay_power)


def pixel(sd: float = LUCID_SD, decorrelate: bool = True, sigmoid: bool = True) -> ImageParam:
  """The pixel parameterization (Lucid's ``image(..., fft=False)``)."""
  return image(fft=False, decorrelate=decorrelate, sigmoid=sigmoid, sd=sd)


# --- Phase-only parameterizations: MACO (Fel et al. 2023) and feature accentuation (Hamblin et al. 2024) ---
#
# Both keep a Fourier magnitude fixed and optimise only the phase:
# image = sigmoid(M_normalized @ irfft2(magnitude * exp(i * phase))).
# MACO's magnitude is a natural-image spectrum shared by all units; feature
# accentuation's is the seed photo's own (faccent/param.py, ``fourrier_phase``
# with ``init_img``), the phase starting at the seed's, so the first image is the seed.

MACO_PHASE_SD = 1.0  # Horama maco_fv.py init_maco_buffer(std_deviation=1.0); xplique init_maco_buffer(std=1.0)
STANDARDIZE_EPS = 1e-4  # Horama common.py standardize: x / (std + 1e-4)
SEED_LOGIT_EPS = 1e-3  # Horama feature_accentuation.py inverse_image_spectrum: log((x + 1e-3) / (1 - x + 1e-3))


@flax.struct.dataclass
class PhaseSpectrum:
  """A phase to optimise over a fixed Fourier magnitude (decorrelated colour).

  Attributes:
    phase: ``[B, 3, h, w//2+1]`` the optimised phase (radians, before any standardization).
    magnitude: ``[B, 3, h, w//2+1]`` the fixed magnitude; ``to_rgb`` stops its
      gradient, so Adam-style optimisers (whose update of a zero gradient is 0)
      never move it.
    size: ``(h, w)``, static metadata.
  """

  phase: jax.Array
  magnitude: jax.Array
  size: tuple[int, int] = flax.struct.field(pytree_node=False)


def _standardize(t: jax.Array) -> jax.Array:
  """Zero mean, unit standard deviation per image (over all but the batch axis); Horama standardizes the one
  image it renders, so per image keeps a batch of units independent."""
  axes = tuple(range(1, t.ndim))
  t = t - t.mean(axes, keepdims=True)
  return t / (t.std(axes, keepdims=True) + STANDARDIZE_EPS)


def phase_spatial(p: PhaseSpectrum, standardize: bool) -> jax.Array:
  """``[B, h, w, 3]`` decorrelated-colour image of a :class:`PhaseSpectrum` (before colour and sigmoid).

  Args:
    p: the spectrum.
    standardize: MACO's recipe (Horama maco_fv.py ``maco_preconditioner``, xplique
      ``maco_image_parametrization``): standardize the phase, and the image after the inverse FFT;
      feature accentuation (faccent ``fourrier_phase`` with a seed image) does neither.
  """
  h, w = p.size
  phase = _standardize(p.phase) if standardize else p.phase
  magnitude = jax.lax.stop_gradient(p.magnitude)
  z = jax.lax.complex(jnp.cos(phase) * magnitude, jnp.sin(phase) * magnitude)
  img = jnp.transpose(jnp.fft.irfft2(z, s=(h, w), axes=(-2, -1)), (0, 2, 3, 1))
  return _standardize(img) if standardize else img


def _check_spectrum(magnitude: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  h, w = size
  magnitude = np.asarray(magnitude, np.float32)
  if magnitude.shape != (3, h, w // 2 + 1):
    raise ValueError(f"A magnitude spectrum for {h}x{w} images must have shape (3, {h}, {w // 2 + 1}); got "
                     f"{magnitude.shape} (natural_spectrum(images) computes one at the images' size).")
  return magnitude


def _decorrelated(images: np.ndarray) -> np.ndarray:
  """``[N, 3, h, w]``: the inverse of :func:`decorrelate_color` applied to every pixel of ``[N, h, w, 3]``."""
  inverse = np.linalg.inv(COLOR_CORRELATION_NORMALIZED).astype(np.float32)
  return np.transpose(np.asarray(images, np.float32) @ inverse.T, (0, 3, 1, 2))


def natural_spectrum(images: np.ndarray) -> np.ndarray:
  """MACO's magnitude: the mean Fourier magnitude of natural images in decorrelated colour.

  Horama and xplique download ``imagenet_decorrelated.npy`` (the mean over ImageNet); here it is computed
  from whatever images are given (the shipped photos by default, an ImageNet folder for the paper's setting),
  at their size, so nothing is downloaded. MACO standardizes the image after the inverse FFT, so only the
  shape of the spectrum matters, not its scale.

  Args:
    images: ``[N, h, w, 3]`` in ``[0, 1]``.

  Returns:
    float32 ``[3, h, w//2+1]``.
  """
  images = np.asarray(images, np.float32)
  if images.ndim != 4 or images.shape[-1] != 3 or not len(images):
    raise ValueError(f"natural_spectrum needs images of shape [N, h, w, 3] with N >= 1; got {images.shape}.")
  return np.abs(np.fft.rfft2(_decorrelated(images), axes=(-2, -1))).mean(0).astype(np.float32)


def _phase_param(init: Callable, standardize: bool) -> ImageParam:
  return ImageParam(init, _PHASE_TO_RGB[standardize])


_PHASE_TO_RGB = {s: (lambda p, s=s: jax.nn.sigmoid(decorrelate_color(phase_spatial(p, s)))) for s in (True, False)}


def maco(magnitude: np.ndarray, sd: float = MACO_PHASE_SD) -> ImageParam:
  """MACO (Fel et al., NeurIPS 2023): a fixed natural magnitude, a random phase, only the phase optimised.

  ``image = sigmoid(M_normalized @ standardize(irfft2(magnitude * exp(i * standardize(phase)))))``
  (Horama maco_fv.py ``maco_preconditioner``; its colour matrix is Lucid's :data:`COLOR_CORRELATION_NORMALIZED`
  written transposed). The images are in ``[0, 1]``: the model record maps them to its input range (Horama's
  ``values_range``).

  Args:
    magnitude: ``[3, h, w//2+1]`` (:func:`natural_spectrum`) for the ``h x w`` images to render.
    sd: the phase's Normal init (Horama and xplique: 1.0).

  Returns:
    An :class:`ImageParam` over :class:`PhaseSpectrum` params. Every call returns the same ``to_rgb``, so
    rendering with another magnitude reuses the compiled step.
  """
  magnitude = np.asarray(magnitude, np.float32)

  def init(key: jax.Array, batch: int, size: tuple[int, int]) -> PhaseSpectrum:
    h, w = _check_size(batch, size)
    mag = _check_spectrum(magnitude, (h, w))
    shape = (int(batch), *mag.shape)
    return PhaseSpectrum(_normal(key, shape, sd), jnp.broadcast_to(jnp.asarray(mag), shape), (h, w))

  return _phase_param(init, standardize=True)


def seed_spectrum(seeds: np.ndarray) -> PhaseSpectrum:
  """Feature accentuation's start: the phase and magnitude of seed images, so that ``to_rgb`` gives them back.

  The inverse of :func:`accentuation`'s ``to_rgb``: a logit (Horama's ``inverse_image_spectrum``: the values
  clipped 1e-3 from 0 and 1 first, as faccent's ``safe_logit`` does), the inverse colour matrix, a real FFT.

  Args:
    seeds: ``[B, h, w, 3]`` in ``[0, 1]``, one photo per unit.

  Returns:
    A batched :class:`PhaseSpectrum` (pass it to ``render(..., init_params=...)``).
  """
  seeds = np.asarray(seeds, np.float32)
  if seeds.ndim != 4 or seeds.shape[-1] != 3:
    raise ValueError(f"Seed images must have shape [B, h, w, 3] in [0, 1]; got {seeds.shape}.")
  x = np.clip(seeds, SEED_LOGIT_EPS, 1.0 - SEED_LOGIT_EPS)
  spectrum = np.fft.rfft2(_decorrelated(np.log(x / (1.0 - x))), axes=(-2, -1))
  return PhaseSpectrum(jnp.asarray(np.angle(spectrum), jnp.float32), jnp.asarray(np.abs(spectrum), jnp.float32),
                       seeds.shape[1:3])


def accentuation() -> ImageParam:
  """Feature accentuation's parameterization (faccent/param.py ``fourrier_phase`` with ``init_img``): the seed's
  own magnitude fixed, its phase optimised, neither standardized.

  (faccent also learns a per-frequency gate on the magnitude, ``sigmoid(mag_alpha)`` starting at
  ``sigmoid(5)``; it is left out, so the magnitude stays exactly the seed's.) There is no random init:
  render from :func:`seed_spectrum`.
  """

  def init(key: jax.Array, batch: int, size: tuple[int, int]) -> PhaseSpectrum:
    raise ValueError("Feature accentuation starts from seed images: pass init_params=param.seed_spectrum(seeds) "
                     "to render.")

  return _phase_param(init, standardize=False)
