"""Path similarity: Spearman against scipy, and known answers on synthetic data."""

from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from fvjax import similarity


@pytest.mark.parametrize("measure, ref", [
    ("spearman", lambda x, y: scipy.stats.spearmanr(x, y).statistic),
    ("pearson", lambda x, y: scipy.stats.pearsonr(x, y).statistic),
    ("cosine", lambda x, y: x @ y / np.linalg.norm(x) / np.linalg.norm(y)),
])
def test_matrix_matches_reference_with_ties(rng, measure, ref):
  a = rng.normal(size=(5, 40))
  b = rng.normal(size=(3, 40))
  a[:, :15] = 0.0  # ReLU-like ties
  b[:, 5:25] = 0.0
  got = np.asarray(similarity.similarity_matrix(a, b, measure))
  want = np.array([[ref(x, y) for y in b] for x in a])
  np.testing.assert_allclose(got, want, atol=1e-5)


def test_rank_is_average_rank(rng):
  x = np.array([[3.0, 1.0, 1.0, 2.0, 1.0]])
  np.testing.assert_allclose(np.asarray(similarity.rank(x)), scipy.stats.rankdata(x[0])[None] - 1)

# The all-in-memory reference the streamed sanity check is compared with (test-only).
def _class_similarities(fv: jax.Array, natural: jax.Array, labels: np.ndarray, other: jax.Array | None = None,
                       other_labels: np.ndarray | None = None, measure: str = "spearman") -> similarity.ClassSimilarity:
  """S_fv, S_same and S_diff of each class at one layer.

  Args:
    fv: ``[C,D]`` features of each class's visualization.
    natural: ``[N,D]`` features of natural images.
    labels: ``[N]`` class index (0..C-1) of each natural image.
    other: ``[M,D]`` features of the images that S_diff compares against
      (default: ``natural`` itself).
    other_labels: ``[M]`` their classes (default ``labels``); pairs of the
      same class are excluded from S_diff.
    measure: ``"spearman"``, ``"pearson"`` or ``"cosine"``.

  Returns:
    Per-class means ``[C]``; a class with too few images gets NaN.
  """
  labels = np.asarray(labels)
  other, other_labels = (natural, labels) if other is None else (other, np.asarray(other_labels))
  num_classes = fv.shape[0]
  sim_fv = np.asarray(similarity.similarity_matrix(natural, fv, measure))  # [N,C]
  sim_nat = np.asarray(similarity.similarity_matrix(natural, other, measure))  # [N,M]
  onehot = labels[:, None] == np.arange(num_classes)[None]  # [N,C]
  count = onehot.sum(0)
  s_fv = np.where(count > 0, (sim_fv * onehot).sum(0) / np.maximum(count, 1), np.nan)
  same_pair = labels[:, None] == other_labels[None, :]
  if other is natural:
    same_pair &= ~np.eye(len(labels), dtype=bool)  # x != y
  diff_pair = labels[:, None] != other_labels[None, :]
  row_same = np.where(same_pair, sim_nat, 0).sum(1)
  row_diff = np.where(diff_pair, sim_nat, 0).sum(1)
  n_same = onehot.T.astype(np.float64) @ same_pair.sum(1)
  n_diff = onehot.T.astype(np.float64) @ diff_pair.sum(1)
  s_same = np.where(n_same > 0, onehot.T @ row_same / np.maximum(n_same, 1), np.nan)
  s_diff = np.where(n_diff > 0, onehot.T @ row_diff / np.maximum(n_diff, 1), np.nan)
  return similarity.ClassSimilarity(s_fv, s_same, s_diff)


def _layerwise(fv_acts: Mapping[str, jax.Array], natural_acts: Mapping[str, jax.Array], labels: np.ndarray,
              layers: Sequence[str], measure: str = "spearman", reduction: str = "flatten",
              num_bootstrap: int = 1000, seed: int = 0) -> dict[str, dict[str, float]]:
  """The path similarity at every layer (all activations in memory).

  Args:
    fv_acts: layer -> ``[C,...]`` activations of the class visualizations.
    natural_acts: layer -> ``[N,...]`` activations of natural images.
    labels: ``[N]`` class of each natural image.
    layers: which layers, in depth order.
    measure: similarity measure.
    reduction: ``"flatten"`` or ``"channel_mean"``.
    num_bootstrap: bootstrap resamples for the confidence intervals.
    seed: bootstrap seed.

  Returns:
    layer -> :func:`summarise` output.
  """
  out = {}
  for layer in layers:
    per_class = _class_similarities(similarity.features(jnp.asarray(fv_acts[layer]), reduction),
                                   similarity.features(jnp.asarray(natural_acts[layer]), reduction), labels, measure=measure)
    out[layer] = similarity.summarise(per_class, num_bootstrap=num_bootstrap, seed=seed)
  return out



def _classes(rng, num_classes=6, per_class=5, dim=64, noise=0.3):
  centres = rng.normal(size=(num_classes, dim))
  labels = np.repeat(np.arange(num_classes), per_class)
  natural = centres[labels] + noise * rng.normal(size=(len(labels), dim))
  return centres, labels, natural


def _summary(fv, natural, labels):
  per_class = _class_similarities(fv, natural, labels)
  return similarity.summarise(per_class, num_bootstrap=200)


def test_same_class_like_visualizations_score_one(rng):
  centres, labels, natural = _classes(rng)
  fv = centres + 0.3 * rng.normal(size=centres.shape)  # one more natural-like image per class
  s = _summary(fv, natural, labels)
  assert s["normalized"] == pytest.approx(1.0, abs=0.15)
  assert s["normalized_ci"][0] <= s["normalized"] <= s["normalized_ci"][1]


def test_other_class_like_visualizations_score_zero(rng):
  centres, labels, natural = _classes(rng)
  fv = np.roll(centres, 1, axis=0) + 0.3 * rng.normal(size=centres.shape)  # looks like the next class
  s = _summary(fv, natural, labels)
  assert s["normalized"] == pytest.approx(0.0, abs=0.15)


def test_identical_activations_score_one(rng):
  centres, labels, _ = _classes(rng, noise=0.0)
  natural = centres[labels]
  per_class = _class_similarities(centres, natural, labels)
  np.testing.assert_allclose(per_class.fv, 1.0, atol=1e-5)
  np.testing.assert_allclose(per_class.same, 1.0, atol=1e-5)
  s = similarity.summarise(per_class, num_bootstrap=50)
  assert s["s_fv"] == pytest.approx(1.0, abs=1e-5)


def test_layerwise_and_reductions(rng):
  labels = np.repeat(np.arange(3), 4)
  natural = {"conv": rng.normal(size=(12, 4, 4, 8)), "logits": rng.normal(size=(12, 10))}
  fv = {"conv": rng.normal(size=(3, 4, 4, 8)), "logits": rng.normal(size=(3, 10))}
  for reduction in similarity.REDUCTIONS:
    out = _layerwise(fv, natural, labels, ["conv", "logits"], reduction=reduction, num_bootstrap=20)
    assert set(out) == {"conv", "logits"} and np.isfinite(out["conv"]["s_fv"])
  with pytest.raises(ValueError, match="accepted: flatten, channel_mean"):
    similarity.features(natural["conv"], "mean")
  with pytest.raises(ValueError, match="accepted: spearman, pearson, cosine"):
    similarity.prepare(natural["logits"], "kendall")


def test_streamed_class_scores_agree_with_the_batched_form(rng):
  centres, labels, natural = _classes(rng, num_classes=2, per_class=6)
  fv = centres + 0.5 * rng.normal(size=centres.shape)
  batched = _class_similarities(fv, natural, labels)
  prep = lambda x: np.asarray(similarity.prepare(x))
  own, other = prep(natural[labels == 0]), prep(natural[labels == 1])
  s_fv, s_same, s_diff = similarity.class_scores(own, prep(fv)[0], other)
  np.testing.assert_allclose([s_fv, s_same, s_diff], [batched.fv[0], batched.same[0], batched.diff[0]], atol=1e-5)
