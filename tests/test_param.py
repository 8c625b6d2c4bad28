"""Image parameterizations against Lucid's formulas, recomputed independently.

The reference below writes Lucid's ``fft_image`` + ``to_valid_rgb`` out by
hand: its own fftfreq, an explicit inverse real DFT (a sum of cosines over
the half spectrum, the way a c2r transform reads it, divided by
``h * output_width`` as TensorFlow's ``irfft2d``), and the colour matrix
applied as ``M @ t`` per pixel; no ``np.fft`` or ``jnp.fft`` involved.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fvjax.optvis import param

LUCID_M = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])


def _fftfreq(n):
  return np.array([k / n if k < (n + 1) // 2 else (k - n) / n for k in range(n)])


def _lucid_scale(h, w, decay_power=1.0):
  fy = _fftfreq(h)
  fx = _fftfreq(w)[: w // 2 + 2] if w % 2 == 1 else _fftfreq(w)[: w // 2 + 1]
  scale = np.empty((h, len(fx)))
  for i in range(h):
    for j in range(len(fx)):
      f = np.sqrt(fy[i] ** 2 + fx[j] ** 2)
      scale[i, j] = np.sqrt(w * h) / max(f, 1.0 / max(w, h)) ** decay_power
  return scale


def _inverse_real_dft(spectrum, h):
  """c2r inverse of a ``[h, n]`` half spectrum: ``[h, 2(n-1)]``, divided by h*2(n-1)."""
  n = spectrum.shape[1]
  width = 2 * (n - 1)
  m = np.arange(h)[:, None, None, None]
  l = np.arange(width)[None, :, None, None]
  ky = np.arange(h)[None, None, :, None]
  kx = np.arange(n)[None, None, None, :]
  weight = np.where((kx == 0) | (kx == width // 2), 1.0, 2.0)  # DC and Nyquist once, the rest twice
  phase = np.exp(2j * np.pi * (ky * m / h + kx * l / width))
  return (weight * (spectrum[None, None] * phase).real).sum((2, 3)) / (h * width)


def _lucid_rgb(coeffs, h, w):
  """Lucid's image for one ``[3, h, n, 2]`` spectrum: ``[h, w, 3]`` in [0, 1]."""
  scale = _lucid_scale(h, w)
  t = np.stack([_inverse_real_dft((coeffs[c, ..., 0] + 1j * coeffs[c, ..., 1]) * scale, h)[:h, :w]
                for c in range(3)], -1) / 4.0
  m = LUCID_M / 0.4619524
  rgb = np.einsum("ij,hwj->hwi", m, t)  # each pixel t -> M_normalized @ t
  return 1.0 / (1.0 + np.exp(-rgb))


def test_lucid_colour_constants():
  assert param.MAX_NORM_SVD_SQRT == pytest.approx(0.4619524, abs=1e-6)
  np.testing.assert_allclose(param.COLOR_CORRELATION_SVD_SQRT, LUCID_M, atol=1e-7)
  np.testing.assert_allclose(np.linalg.norm(param.COLOR_CORRELATION_NORMALIZED, axis=0).max(), 1.0, rtol=1e-6)
  # Colour j of the decorrelated space maps to column j of the normalized matrix.
  np.testing.assert_allclose(param.decorrelate_color(jnp.eye(3)).T, LUCID_M / 0.4619524, rtol=1e-5)


@pytest.mark.parametrize("size", [(8, 8), (6, 7), (7, 10), (5, 5)])
def test_frequencies_and_scale(size):
  h, w = size
  freqs = param.rfft2d_freqs(h, w)
  assert freqs.shape == (h, w // 2 + 1 + w % 2)
  np.testing.assert_allclose(param.spectrum_scale(h, w), _lucid_scale(h, w), rtol=1e-6)
  assert param.spectrum_scale(h, w)[0, 0] == pytest.approx(max(h, w) * np.sqrt(h * w), rel=1e-6)


@pytest.mark.parametrize("size", [(8, 8), (6, 7), (7, 10), (9, 5)])
def test_fourier_image_matches_lucid(size):
  h, w = size
  p = param.fourier()
  params = p.init(jax.random.PRNGKey(3), 2, size)
  # Larger than the init so that the comparison is not dominated by sigmoid(0).
  params = params.replace(coeffs=params.coeffs * 30.0)
  coeffs = np.asarray(params.coeffs, np.float64)
  assert coeffs.shape == (2, 3, h, w // 2 + (2 if w % 2 else 1), 2)
  got = np.asarray(jax.jit(p.to_rgb)(params))
  assert got.shape == (2, h, w, 3)
  assert got.std() > 0.01
  for b in range(2):
    np.testing.assert_allclose(got[b], _lucid_rgb(coeffs[b], h, w), atol=2e-5)


def test_image_is_the_fourier_default():
  key = jax.random.PRNGKey(0)
  a, b = param.image(), param.fourier()
  np.testing.assert_array_equal(a.to_rgb(a.init(key, 1, (8, 8))), b.to_rgb(b.init(key, 1, (8, 8))))


def test_init_sd_shapes_and_range():
  key = jax.random.PRNGKey(0)
  spectrum = param.image().init(key, 4, (64, 64))
  assert spectrum.coeffs.shape == (4, 3, 64, 33, 2) and spectrum.size == (64, 64)
  assert np.std(np.asarray(spectrum.coeffs)) == pytest.approx(0.01, rel=0.05)
  assert abs(np.mean(np.asarray(spectrum.coeffs))) < 1e-3
  pixels = param.pixel(sd=0.02).init(key, 2, (32, 31))["pixels"]
  assert pixels.shape == (2, 32, 31, 3)
  assert np.std(np.asarray(pixels)) == pytest.approx(0.02, rel=0.05)
  # Any spectrum, however large, maps into [0, 1].
  big = spectrum.replace(coeffs=spectrum.coeffs * 1e4)
  images = np.asarray(jax.jit(param.image().to_rgb)(big))
  assert images.shape == (4, 64, 64, 3) and images.min() >= 0.0 and images.max() <= 1.0


def test_same_key_same_image():
  p = param.image()
  a = p.to_rgb(p.init(jax.random.PRNGKey(5), 1, (16, 15)))
  b = p.to_rgb(p.init(jax.random.PRNGKey(5), 1, (16, 15)))
  c = p.to_rgb(p.init(jax.random.PRNGKey(6), 1, (16, 15)))
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)


def test_pixel_variants():
  key = jax.random.PRNGKey(1)
  pixels = param.pixel().init(key, 2, (8, 9))["pixels"] * 50.0
  want = 1.0 / (1.0 + np.exp(-np.einsum("ij,bhwj->bhwi", LUCID_M / 0.4619524, np.asarray(pixels))))
  np.testing.assert_allclose(param.pixel().to_rgb({"pixels": pixels}), want, atol=1e-5)
  plain = param.pixel(decorrelate=False).to_rgb({"pixels": pixels})
  np.testing.assert_allclose(plain, 1.0 / (1.0 + np.exp(-np.asarray(pixels))), atol=1e-6)


def test_clipped_variant_adds_colour_mean_and_keeps_inward_gradients():
  clip = param.image(fft=False, sigmoid=False)
  out = np.asarray(clip.to_rgb(clip.init(jax.random.PRNGKey(1), 1, (8, 8))))
  # Without the sigmoid Lucid adds the ImageNet colour mean after decorrelation.
  np.testing.assert_allclose(out.reshape(-1, 3).mean(0), param.COLOR_MEAN, atol=0.02)
  # A saturated value gets the gradient that moves it back inside, not the one
  # that pushes it further out.
  t = jnp.array([2.0, -1.0, 0.5])
  up = jax.grad(lambda t: param.to_valid_rgb(t[None], False, False).sum())(t)  # descent lowers values
  np.testing.assert_allclose(up, [1.0, 0.0, 1.0])
  down = jax.grad(lambda t: -param.to_valid_rgb(t[None], False, False).sum())(t)
  np.testing.assert_allclose(down, [0.0, -1.0, -1.0])


def test_vmapped_init_and_finite_gradients():
  p = param.image()
  params = jax.vmap(lambda k: p.init(k, 1, (12, 11)))(jax.random.split(jax.random.PRNGKey(0), 3))
  params = jax.tree_util.tree_map(lambda a: a.reshape(3, *a.shape[2:]), params)
  g = jax.jit(jax.grad(lambda q: p.to_rgb(q)[..., 0].mean()))(params)
  assert g.coeffs.shape == (3, 3, 12, 7, 2) and np.isfinite(np.asarray(g.coeffs)).all()


@pytest.mark.parametrize("size", [(0, 4), (4,), "ab"])
def test_bad_size_is_a_clear_error(size):
  with pytest.raises(ValueError, match="pair \\(height, width\\)"):
    param.image().init(jax.random.PRNGKey(0), 1, size)
