"""A machine observer for the two-choice causal task (no human participants).

In the manner of Zimmermann, Klindt & Brendel (2024, "Measuring per-unit
interpretability at scale without humans"), an image-similarity model stands
in for the human: each choice (the two occluded queries) is embedded in a
feature space, its score is its mean cosine similarity to the unit's
reference images, and the observer picks the choice with the higher score.

* Feature space: the spatial mean of the penultimate layer of an observer
  model (by default EfficientNet-Lite0, the zoo's embedded ImageNet model;
  a model other than the studied one when the studied one is not Lite0).
* Hard answer: 1 when the correct choice scores higher, 0 when lower, 0.5 on a
  tie. With no references (condition ``"none"``) every score is 0, so the
  observer has no information and answers 0.5 (chance) by construction; the
  paper's humans reached 60 % there by using their own priors.
* Calibrated score: ``P(correct) = sigmoid(gap / T)`` with ``gap`` the
  correct choice's score minus the wrong one's, averaged over trials like the
  2024 paper's MIS. The 2024 paper fits its temperature to human answers;
  with no humans here, ``T`` maximises the likelihood of the observer's own
  correct answers (Platt scaling without a bias) on *other* units: each unit's
  probabilities use a ``T`` fitted with that unit left out (leave-one-unit-out),
  never on the trials being reported. A fixed ``T`` can be given instead.

Two observer modes (:data:`MODES`) read the same references:

* ``"image"`` (the default): the choice whose whole image is more similar to
  the references is taken to be the one the unit responds to more.
* ``"patch"``: the observer looks at what each occluder *hides* (the query's
  patch under it, resized to the observer's input) and picks the choice whose
  hidden patch is *less* similar to the references: hiding what the
  references show should lower the activation. This is the reasoning the
  task invites; the benchmark records both modes' gaps for every trial.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from fvjax.models.record import ModelRecord
from fvjax import parallel
from fvjax.optvis import objectives

DEFAULT_OBSERVER = "efficientnet_lite0"
MODES = ("image", "patch")
# Used only when T cannot be fitted on held-out units (a single unit, or held-out
# gaps that are all zero): the order of the score gaps measured in the demo.
DEFAULT_TEMPERATURE = 0.01
TEMPERATURE_GRID = np.logspace(-5, 1, 241)


def default_observer(studied: str) -> str:
  """The observer model name for a studied model.

  EfficientNet-Lite0 is the only zoo model with embedded ImageNet weights, so
  it is the observer for every other studied model; when Lite0 itself is
  studied it observes itself unless the user names another model (e.g.
  ``resnet50`` with its weights).
  """
  del studied
  return DEFAULT_OBSERVER


def penultimate(model: ModelRecord) -> str:
  """The layer before the logits."""
  return model.layers[-2]


def feature_fn(observer: ModelRecord, layer: str | None = None,
               batch_size: int = 16) -> Callable[[np.ndarray], np.ndarray]:
  """``images [B, S, S, 3] -> features [B, D]`` in the observer's feature space.

  Images of any side are resized (bilinear, antialiased) to the observer's
  input size; a convolutional layer is averaged over positions.

  Args:
    observer: the observer model.
    layer: feature layer (default: the penultimate one).
    batch_size: images per forward pass (the last batch is padded).
  """
  layer = observer.check_layer(layer or penultimate(observer))
  h, w = observer.input_size

  @jax.jit
  def fn(params, images):
    if images.shape[1:3] != (h, w):
      images = jax.image.resize(images, (images.shape[0], h, w, 3), "linear", antialias=True)
    return objectives.unit_values(observer.apply(params, jnp.clip(images, 0.0, 1.0)), layer)

  def features(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images, np.float32)
    if not len(images):
      return np.zeros((0, 0), np.float32)
    return parallel.map_batches(fn, observer.params, images, batch_size)

  return features


def _normalize(x: np.ndarray) -> np.ndarray:
  x = np.asarray(x, np.float64)
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def similarity_gaps(choices: np.ndarray, references: np.ndarray) -> np.ndarray:
  """Score of the correct choice minus score of the wrong one, per trial.

  Args:
    choices: ``[T, 2, D]`` features of (correct, wrong) choices.
    references: ``[R, D]`` features of the references (``R = 0``: none).

  Returns:
    ``[T]`` gaps of mean cosine similarity; all zero when ``R = 0``.
  """
  choices = np.asarray(choices)
  if references is None or len(references) == 0:
    return np.zeros(len(choices))
  sims = _normalize(choices) @ _normalize(references).T  # [T, 2, R]
  scores = sims.mean(-1)
  return scores[:, 0] - scores[:, 1]


def answers(gaps: np.ndarray) -> np.ndarray:
  """Hard answers: 1 correct, 0 wrong, 0.5 for a tie (no information)."""
  gaps = np.asarray(gaps, np.float64)
  return np.where(gaps > 0, 1.0, np.where(gaps < 0, 0.0, 0.5))


def probabilities(gaps: np.ndarray, temperature: float) -> np.ndarray:
  """``sigmoid(gap / temperature)``: calibrated probability of a correct answer."""
  if not temperature > 0:
    raise ValueError(f"The observer's temperature must be > 0; got {temperature!r}.")
  z = np.asarray(gaps, np.float64) / temperature
  return 0.5 * (1.0 + np.tanh(0.5 * z))


def fit_temperature(gaps: np.ndarray, grid: np.ndarray = TEMPERATURE_GRID) -> float:
  """The ``T`` of ``grid`` maximising the likelihood of correct answers.

  Args:
    gaps: ``[T]`` held-out gaps (correct minus wrong).
    grid: candidate temperatures.

  Returns:
    The fitted temperature; :data:`DEFAULT_TEMPERATURE` when every gap is 0.
  """
  gaps = np.asarray(gaps, np.float64).reshape(-1)
  if not gaps.size or not np.any(gaps):
    return DEFAULT_TEMPERATURE
  z = gaps[None, :] / np.asarray(grid)[:, None]
  loglik = -np.logaddexp(0.0, -z).sum(-1)
  return float(grid[int(np.argmax(loglik))])


def crossfit_temperatures(gaps_by_unit: Sequence[np.ndarray], temperature: float | None = None) -> list[float]:
  """One temperature per unit, never fitted on that unit's trials.

  Args:
    gaps_by_unit: per unit, its ``[T_u]`` gaps.
    temperature: a fixed temperature for all units; ``None`` fits each
      unit's on all the other units (leave-one-unit-out), or uses
      :data:`DEFAULT_TEMPERATURE` when there is only one unit.
  """
  if temperature is not None:
    if not temperature > 0:
      raise ValueError(f"The observer's temperature must be > 0 (or unset to fit it); got {temperature!r}.")
    return [float(temperature)] * len(gaps_by_unit)
  if len(gaps_by_unit) < 2:
    return [DEFAULT_TEMPERATURE] * len(gaps_by_unit)
  return [fit_temperature(np.concatenate([np.ravel(g) for j, g in enumerate(gaps_by_unit) if j != i]))
          for i in range(len(gaps_by_unit))]


def check_mode(mode: str) -> str:
  """``mode`` if it is one of :data:`MODES`, else a one-sentence error."""
  if mode not in MODES:
    raise ValueError(f"Unknown observer mode {mode!r}; accepted: {', '.join(MODES)}.")
  return mode


def hidden_patches(image: np.ndarray, record: dict) -> np.ndarray:
  """``[2, side, side, 3]``: the query's patches under the correct and the wrong occluder.

  Args:
    image: ``[S, S, 3]`` the query.
    record: a trial record of :func:`fvjax.causal.trials.make_trial`.
  """
  side = record["occluder_side"]
  return np.stack([image[r:r + side, c:c + side] for r, c in (record["max"]["corner"], record["min"]["corner"])])
