"""The "blurred" references of the causal-understanding study (Zimmermann et al., NeurIPS 2021).

Each natural reference of a trial is blurred as a whole, and its sharp patch
is pasted back at the position that maximises the unit's activation on the
image "blurred everywhere except that patch": the reference shows where in
the image the unit looks, and only there.

What the study did (its ``8_blur_...`` notebook): ``cv2.GaussianBlur(img,
(21, 21), 0)`` on 224 px images, a 21 x 21 kernel whose sigma OpenCV derives
from the size (``0.3 * ((21 - 1) / 2 - 1) + 0.8 = 3.5``); a 90 px patch (its
40 % occluder, the only size it blurred for) on the occluder's stride-2 grid
(68 x 68 positions).

What the facts leave open, and what is chosen here:

* Other image sizes: the kernel scales with the side (``2 * round(10 * S /
  224) + 1`` taps, 21 at 224 px) and sigma follows OpenCV's rule for that
  kernel (3.5 at 224 px).
* Borders: OpenCV's default, ``BORDER_REFLECT_101`` (``d c b | a b c d | c b a``).
* Precision: the blur runs on float images in ``[0, 1]`` (the study's were
  8-bit; rounding differs by at most 1/255).
* The patch is the trial's occluder (its side follows ``fraction``) and the
  grid's stride is the benchmark's ``blur_stride`` (default: the occlusion
  stride, as in the study).
* The activation is the one the trials use (the spatial mean of the unit's
  channel); ties go to the first position in row-major order.
"""

from __future__ import annotations

import jax
import numpy as np
from scipy import ndimage

from fvjax.causal import occlusion
from fvjax.models.record import ModelRecord

STUDY_SIZE = 224
STUDY_KERNEL = 21  # cv2.GaussianBlur(img, (21, 21), 0) at 224 px


def kernel_size(size: int) -> int:
  """Taps of the blur kernel for ``size`` px images: the study's 21 at 224 px, scaled, odd, >= 3."""
  radius = max(1, int(round((STUDY_KERNEL - 1) / 2 * size / STUDY_SIZE)))
  return 2 * radius + 1


def opencv_sigma(ksize: int) -> float:
  """OpenCV's sigma for a Gaussian kernel of ``ksize`` taps asked for with sigma 0."""
  return 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8


def gaussian_kernel(ksize: int, sigma: float | None = None) -> np.ndarray:
  """``[ksize]`` normalized 1-D Gaussian taps (``sigma=None``: :func:`opencv_sigma`)."""
  sigma = opencv_sigma(ksize) if sigma is None else float(sigma)
  x = np.arange(ksize, dtype=np.float64) - (ksize - 1) / 2
  taps = np.exp(-x * x / (2 * sigma * sigma))
  return taps / taps.sum()


def gaussian_blur(images: np.ndarray, ksize: int | None = None, sigma: float | None = None) -> np.ndarray:
  """Separable Gaussian blur of ``[..., S, S, 3]`` images, borders reflected as OpenCV's default.

  Args:
    images: ``[..., H, W, C]`` floats.
    ksize: kernel taps (default :func:`kernel_size` of ``H``).
    sigma: kernel sigma (default :func:`opencv_sigma` of ``ksize``).

  Returns:
    The blurred images, float32, same shape.
  """
  images = np.asarray(images, np.float32)
  h = images.shape[-3]
  taps = gaussian_kernel(kernel_size(h) if ksize is None else int(ksize), sigma)
  out = ndimage.correlate1d(images, taps, axis=-3, mode="mirror")  # scipy's "mirror" is reflect-101
  return ndimage.correlate1d(out, taps, axis=-2, mode="mirror").astype(np.float32)


def window_positions(model: ModelRecord, layer: str, image: np.ndarray, *, fraction: float, stride: int,
                     chunk: int = 128, mesh: jax.sharding.Mesh | None = None, params=None) -> np.ndarray:
  """``[C]``: per unit of ``layer``, the flat grid index where the sharp patch maximises it.

  One sweep serves every unit of the layer (see
  :func:`fvjax.causal.occlusion.reveal_sweep`), so a natural image that is a
  reference of several units is searched once.
  """
  return occlusion.reveal_sweep(model, image, gaussian_blur(image), layer, fraction=fraction, stride=stride,
                                chunk=chunk, mesh=mesh, params=params)


def blurred_reference(image: np.ndarray, flat_index: int, g: occlusion.Grid) -> np.ndarray:
  """``[S, S, 3]``: ``image`` blurred, with its sharp patch at grid position ``flat_index``."""
  image = np.asarray(image, np.float32)
  out = gaussian_blur(image)
  r, c = g.corner(flat_index)
  out[r:r + g.side, c:c + g.side] = image[r:r + g.side, c:c + g.side]
  return out
