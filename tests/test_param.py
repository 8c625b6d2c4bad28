"""Image parameterizations against Lucid's formulas, recomputed independently."""

import jax
import numpy as np
import pytest

from fvjax.optvis import param


def _lucid_fft_image(coeffs, h, w, decay_power=1.0):
  """Lucid's fft_image for one image, written out with numpy loops."""
  fy = np.fft.fftfreq(h)[:, None]
  fx = np.fft.fftfreq(w)[: w // 2 + 2] if w % 2 == 1 else np.fft.fftfreq(w)[: w // 2 + 1]
  freqs = np.sqrt(fx * fx + fy * fy)
  scale = 1.0 / np.maximum(freqs, 1.0 / max(h, w)) ** decay_power * np.sqrt(w * h)
  channels = []
  for c in range(coeffs.shape[0]):
    spectrum = (coeffs[c, ..., 0] + 1j * coeffs[c, ..., 1]) * scale
    full_w = 2 * (spectrum.shape[1] - 1)
    img = np.fft.irfft2(spectrum, s=(h, full_w))  # numpy's irfft2 divides by h*full_w, as TF's
    channels.append(img[:h, :w])
  return np.stack(channels, -1) / 4.0


def test_lucid_colour_constants():
  assert param.MAX_NORM_SVD_SQRT == pytest.approx(0.4619524, abs=1e-6)
  norms = np.linalg.norm(param.COLOR_CORRELATION_NORMALIZED, axis=0)
  assert norms.max() == pytest.approx(1.0)


@pytest.mark.parametrize("size", [(32, 32), (24, 31), (17, 20)])
def test_fourier_image_matches_lucid(size):
  h, w = size
  p = param.image()
  params = p.init(jax.random.PRNGKey(3), 2, size)
  coeffs = np.asarray(params.coeffs)
  assert coeffs.shape == (2, 3, h, w // 2 + (2 if w % 2 else 1), 2)
  got = np.asarray(p.to_rgb(params))
  assert got.shape == (2, h, w, 3)
  for b in range(2):
    t = _lucid_fft_image(coeffs[b], h, w)
    m = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]]) / 0.4619524
    rgb = 1 / (1 + np.exp(-(t.reshape(-1, 3) @ m.T).reshape(t.shape)))
    np.testing.assert_allclose(got[b], rgb, atol=1e-5)


def test_fourier_init_sd_and_range():
  params = param.image().init(jax.random.PRNGKey(0), 4, (64, 64))
  assert np.std(np.asarray(params.coeffs)) == pytest.approx(0.01, rel=0.05)
  # A large random spectrum still maps into [0, 1].
  big = params.replace(coeffs=params.coeffs * 1e4)
  images = np.asarray(param.image().to_rgb(big))
  assert images.min() >= 0.0 and images.max() <= 1.0


def test_pixel_and_no_sigmoid_variants():
  key = jax.random.PRNGKey(1)
  px = param.pixel()
  pp = px.init(key, 2, (8, 9))
  assert np.asarray(px.to_rgb(pp)).shape == (2, 8, 9, 3)
  clip = param.image(fft=False, sigmoid=False)
  out = np.asarray(clip.to_rgb(clip.init(key, 1, (8, 8))))
  # Without the sigmoid Lucid adds the ImageNet colour mean after decorrelation.
  np.testing.assert_allclose(out.reshape(-1, 3).mean(0), param.COLOR_MEAN, atol=0.02)


def test_same_key_same_params():
  a = param.image().init(jax.random.PRNGKey(5), 1, (16, 16)).coeffs
  b = param.image().init(jax.random.PRNGKey(5), 1, (16, 16)).coeffs
  np.testing.assert_array_equal(a, b)
