"""Training the natural-vs-visualization detector (paper 2.1) with optax.

Each step sees a balanced batch: natural images (label 0) and feature
visualizations (label 1), both augmented on device. Natural images get random
resized crops (down to a quarter of the side: textures such as grass and
gravel), flips, colour jitter, grey, blur and noise, and on the host JPEG round
trips (:func:`with_jpeg`), so that what a camera and a codec do to a photo is
never mistaken for a visualization; visualizations get milder crops and, for
half of them, the render transforms (pad, jitter, scale, rotate), because
during a render the model (and so the detector) sees transformed images.

The loop is resumable: the training state is checkpointed with orbax every
``checkpoint_every`` steps and picked up again by the next call.
"""

from __future__ import annotations

import os
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from fvjax import checkpoint
from fvjax import data
from fvjax import parallel
from fvjax.fooling import detector as det
from fvjax.optvis import transforms as transforms_lib

# Paper (unverified in its text): SGD, learning rate 0.01. Momentum is our choice.
PAPER_LEARNING_RATE = 0.01
OPTIMIZERS = ("sgd", "adam")
NATURAL_WEIGHT = 4.0  # our choice (see make_step); the paper does not say

# host rng, n, rows -> [len(rows),H,W,3] images in [0,1]: the given rows of n draws (rows None: all n). Every
# call draws all n from the rng alike, whatever the rows, and loads only the rows: each process of a multi-process
# run loads the rows its devices hold and the rng stays in step with a single run's.
Sampler = Callable[[np.random.Generator, int, np.ndarray | None], np.ndarray]


class TrainState(NamedTuple):
  """The detector's training state: variables, optimizer state and step (what orbax checkpoints)."""

  variables: Any
  opt_state: Any
  step: jax.Array


def optimizer(name: str = "sgd", learning_rate: float = PAPER_LEARNING_RATE,
              momentum: float = 0.9) -> optax.GradientTransformation:
  """The detector's optimiser: ``"sgd"`` (with momentum) or ``"adam"``."""
  if name not in OPTIMIZERS:
    raise ValueError(f"Unknown optimizer {name!r}; accepted: {', '.join(OPTIMIZERS)}.")
  return optax.sgd(learning_rate, momentum=momentum) if name == "sgd" else optax.adam(learning_rate)


def pool_sampler(pool: np.ndarray) -> Sampler:
  """Draws images (with replacement) from an in-memory pool ``[N,H,W,3]``."""
  pool = np.asarray(pool)
  if pool.ndim != 4 or not len(pool):
    raise ValueError(f"An image pool must be a non-empty [N,H,W,3] array; got shape {pool.shape}.")
  return lambda rng, n, rows=None: pool[_rows(rng.integers(0, len(pool), n), rows)]


def _rows(drawn: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
  """The ``rows`` of ``n`` draws (all of them for ``None``)."""
  return drawn if rows is None else drawn[np.asarray(rows, np.int64)]


def mixture(samplers: Sequence[Sampler]) -> Sampler:
  """Draws each image from one of ``samplers`` chosen uniformly at random."""

  def draw(rng, n, rows=None):
    rows = np.arange(n) if rows is None else np.asarray(rows, np.int64)
    which = rng.integers(0, len(samplers), n)
    out = None
    for i, sampler in enumerate(samplers):
      idx = np.flatnonzero(which == i)
      if len(idx):  # the sampler draws all its images, even where none of them is among the rows
        mine = np.flatnonzero(which[rows] == i)  # the rows' positions it fills
        images = sampler(rng, len(idx), np.searchsorted(idx, rows[mine]))
        out = np.empty((len(rows), *images.shape[1:]), np.float32) if out is None else out
        out[mine] = images
    return out

  return draw


def files_sampler(paths: list[str], size: int) -> Sampler:
  """Draws image files (with replacement) and reads them at ``size`` (memory stays bounded)."""
  if not paths:
    raise ValueError("The list of natural image files is empty; accepted: at least one image file.")

  def draw(rng, n, rows=None):
    chosen = _rows(rng.integers(0, len(paths), n), rows)
    return np.stack([data.load_image(paths[i], size) for i in chosen]) if len(chosen) else np.zeros(
        (0, size, size, 3), np.float32)

  return draw


def with_jpeg(sampler: Sampler, fraction: float = 0.3, quality: tuple[int, int] = (30, 95)) -> Sampler:
  """``sampler`` with a JPEG round trip (random quality) applied to ``fraction`` of the images it draws."""

  def draw(rng, n, rows=None):
    rows = np.arange(n) if rows is None else np.asarray(rows, np.int64)
    images = np.array(sampler(rng, n, rows), np.float32)
    where = {int(r): j for j, r in enumerate(rows)}
    for i in np.flatnonzero(rng.random(n) < fraction):
      q = int(rng.integers(quality[0], quality[1] + 1))  # drawn for every image, so that the rng stays in step
      if i in where:
        images[where[i]] = data.jpeg_round_trip(images[where[i]], q)
    return images

  return draw


def blur_and_noise(key: jax.Array, images: jax.Array, fraction: float = 0.25, max_sigma: float = 1.5,
                   max_noise: float = 0.04) -> jax.Array:
  """Gaussian blur (sigma up to ``max_sigma`` px) on ``fraction`` of the images and Gaussian noise
  (sd up to ``max_noise``) on another ``fraction``: what defocus and sensors do to photos."""
  kb, ks, kn, ka = jax.random.split(key, 4)
  n = len(images)
  sigma = jax.random.uniform(ks, (n,), minval=0.3, maxval=max_sigma)
  taps = jnp.arange(-3, 4, dtype=jnp.float32)
  kernels = jnp.exp(-0.5 * (taps[None] / sigma[:, None]) ** 2)
  kernels /= kernels.sum(1, keepdims=True)

  def blur(image, k):  # separable, reflect-padded, per channel
    padded = jnp.pad(image, ((3, 3), (3, 3), (0, 0)), mode="reflect")
    rows = sum(k[i] * padded[i:i + image.shape[0]] for i in range(7))
    return sum(k[i] * rows[:, i:i + image.shape[1]] for i in range(7))

  blurred = jax.vmap(blur)(images, kernels)
  noisy = images + jax.random.uniform(ka, (n, 1, 1, 1), maxval=max_noise) * jax.random.normal(kn, images.shape)
  choice = jax.random.uniform(kb, (n, 1, 1, 1))
  out = jnp.where(choice < fraction, blurred, jnp.where(choice < 2 * fraction, noisy, images))
  return jnp.clip(out, 0.0, 1.0)


def augment(key: jax.Array, natural: jax.Array, visualizations: jax.Array, size: int,
            render_transforms: Callable[[jax.Array, jax.Array], jax.Array],
            natural_min_scale: float = 0.25) -> tuple[jax.Array, jax.Array]:
  """Augmented ``[b1+b2, size, size, 3]`` images and their labels (0 natural, 1 visualization)."""
  kn, kv, kt, kc, kw, kg, kb = jax.random.split(key, 7)
  nat = data.augmented_crops(kn, natural, 1, size, min_scale=natural_min_scale, jitter=0.2)
  gray = jax.random.bernoulli(kg, 0.2, (len(natural), 1, 1, 1))  # many natural photos are grayscale
  nat = jnp.where(gray, jnp.broadcast_to(nat @ jnp.array([0.299, 0.587, 0.114])[:, None], nat.shape), nat)
  nat = blur_and_noise(kb, nat)
  plain = data.augmented_crops(kv, visualizations, 1, size, min_scale=0.8, jitter=0.05)
  moved = data.augmented_crops(kc, render_transforms(kt, visualizations), 1, size, min_scale=0.8, jitter=0.05)
  use = jax.random.bernoulli(kw, 0.5, (len(visualizations), 1, 1, 1))
  images = jnp.concatenate([nat, jnp.where(use, moved, plain)])
  labels = jnp.concatenate([jnp.zeros(len(natural)), jnp.ones(len(visualizations))])
  return images, labels


def make_step(config: det.DetectorConfig, tx: optax.GradientTransformation,
              render_transforms: Callable[[jax.Array, jax.Array], jax.Array], natural_weight: float = 1.0):
  """A jitted ``step(state, natural, visualizations, key) -> (state, loss, accuracy)``.

  ``natural_weight`` scales the loss of natural images: a false "visualization"
  on a natural image changes the manipulated model's output, a false "natural"
  on a visualization only delays the fooling, so the default leans natural.
  """
  net = det.DetectorNet(config)

  @jax.jit
  def step(state, natural, visualizations, key):
    ka, kd = jax.random.split(jax.random.fold_in(key, state.step))
    images, labels = augment(ka, natural, visualizations, config.size, render_transforms)

    def loss_fn(variables):
      z = net.apply(variables, images, train=True, rngs={"dropout": kd})
      weights = jnp.where(labels > 0.5, 1.0, natural_weight)
      return jnp.sum(weights * optax.sigmoid_binary_cross_entropy(z, labels)) / jnp.sum(weights), z

    (loss, z), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.variables)
    updates, opt_state = tx.update(grads, state.opt_state, state.variables)
    accuracy = jnp.mean((z > 0) == (labels > 0.5))
    return TrainState(optax.apply_updates(state.variables, updates), opt_state, state.step + 1), loss, accuracy

  return step


def train(detector: det.Detector, natural: Sampler, visualizations: Sampler, *, key: jax.Array, steps: int,
          batch_size: int = 32, tx: optax.GradientTransformation | None = None,
          render_transforms: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
          natural_weight: float = NATURAL_WEIGHT, state_dir: str | None = None, checkpoint_every: int = 100,
          progress: bool = True) -> tuple[det.Detector, list[dict]]:
  """Trains ``detector`` for ``steps`` balanced batches (resuming from ``state_dir``).

  Args:
    detector: the starting detector (e.g. :func:`fvjax.fooling.detector.init`).
    natural: sampler of natural images (label 0).
    visualizations: sampler of feature visualizations (label 1).
    key: PRNG key (augmentation and dropout); host sampling is seeded from it.
    steps: total optimisation steps.
    batch_size: images per step, half of each kind.
    tx: optax optimiser (default :func:`optimizer`).
    render_transforms: transforms applied to half the visualizations
      (default Lucid's standard transforms).
    natural_weight: loss weight of natural images relative to visualizations.
    state_dir: if given, the training state is checkpointed there and a rerun
      resumes from the last checkpoint.
    checkpoint_every: steps between checkpoints.
    progress: progress bar.

  Returns:
    ``(trained detector, history)``; history holds ``{step, loss, accuracy}``
    every ``checkpoint_every`` steps, those before a resume included.
  """
  if batch_size < 2 or batch_size % 2:
    raise ValueError(f"batch_size must be an even number >= 2 (half natural, half visualizations); got {batch_size}.")
  tx = tx or optimizer()
  render_transforms = render_transforms or transforms_lib.standard_transforms()
  state = TrainState(detector.variables, tx.init(detector.variables), jnp.int32(0))
  path = os.path.join(state_dir, "train_state") if state_dir else None
  history = []
  saved = checkpoint.restore_latest(path, like=tuple(state)) if path else None
  if saved:
    _, tree, history = saved
    state = TrainState(*tree)
  # Data parallel over every device (of every process): the state replicated, each batch split over the mesh.
  mesh = parallel.data_mesh()
  state = parallel.replicate(state, mesh)
  step_fn = make_step(detector.config, tx, render_transforms, natural_weight)
  start = int(parallel.to_host(state.step))
  seed = _key_ints(key)
  half = batch_size // 2
  with tqdm(total=steps, initial=min(start, steps), desc="train detector", disable=not progress, leave=False) as bar:
    for i in range(start, steps):
      rng = np.random.default_rng([*seed, i])  # per step, so a resumed run draws what the full run drew
      # Each process loads only the rows of the batch its devices hold (every process draws all of them).
      batch = parallel.shard_loaded(lambda rows, rng=rng: (natural(rng, half, rows), visualizations(rng, half, rows)),
                                    half, mesh)
      state, loss, acc = step_fn(state, *batch, key)
      bar.update(1)
      if (i + 1) % checkpoint_every == 0 or i + 1 == steps:
        loss, acc = parallel.to_host((loss, acc))
        history.append({"step": i + 1, "loss": float(loss), "accuracy": float(acc)})
        bar.set_postfix(loss=f"{float(loss):.3f}")
        if path:
          checkpoint.save_step(path, i + 1, parallel.to_host(tuple(state)), history)
  return det.Detector(parallel.to_host(state.variables), detector.config), history


def _key_ints(key: jax.Array) -> list[int]:
  raw = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
  return np.asarray(raw).ravel().tolist()


def predictions(detector: det.Detector, images: Any, batch_size: int = 32) -> np.ndarray:
  """``[N]`` hard decisions of the detector (1: visualization), batched over the devices."""
  fn = jax.jit(lambda v, x: det.is_visualization(detector.config, v, x))
  return parallel.map_batches(fn, detector.variables, images, batch_size)


def accuracy(detector: det.Detector, images: np.ndarray, label: int, batch_size: int = 32) -> float:
  """Fraction of ``images`` the hard-thresholded detector gives ``label`` (0 natural, 1 visualization)."""
  return float(np.mean(predictions(detector, images, batch_size) == label))
