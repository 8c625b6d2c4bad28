"""Reference images shown with each trial: one set per trial and condition.

Conditions (shared/paper.md section 6; the study's recipe in
research/facts2.md section 2):

* ``"synthetic"``: 9 feature visualizations of the unit rendered as one batch
  with a diversity term (study: weight 1e2 with Lucid's weighting, 2560
  steps, its milder transforms on a canvas 16 px larger on each side that is
  cropped off afterwards: :data:`TRANSFORM_PRESETS`). One set per unit.
* ``"natural"``: one natural image from each of 9 rank bins below the queries
  (:func:`rank_bins`, :func:`draw_from_bins`): trial k takes element k of
  every (shuffled) bin, so each trial has its own references.
* ``"mixed"``: 5 natural images (from the 5 bins below the queries) and 4
  synthetic ones rendered as their own batch of 4 (the study's 5 + 4 of 9;
  :func:`mixed_split`).
* ``"blurred"``: the trial's natural references blurred, each with its sharp
  patch at the position that maximises the unit (:mod:`fvjax.causal.blur`).
* ``"none"``: no references (the baseline).

Synthetic references of several units render together: one batch in which
image i maximises its unit and the diversity penalty is taken within its
group only (a unit's 9 synthetic references are one group, its 4 for the
mixed condition another), so the same compiled step serves every unit (the
objective's function depends only on the layer and the weight; the units and
groups are its data).
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from fvjax import parallel
from fvjax.models.record import ModelRecord, unknown_name_message
from fvjax.optvis import objectives
from fvjax.optvis import render as render_lib
from fvjax.optvis import transforms as transforms_lib

CONDITIONS = ("synthetic", "natural", "mixed", "blurred", "none")
NUM_REFERENCES = 9
PAPER_DIVERSITY = 1e2
PAPER_STEPS = 2560
# Transform presets of the synthetic references: (transforms, px rendered on
# each side and cropped off afterwards). "study": Zimmermann et al. 2021
# (jitter 16, scale 0.95-1.05, rotate +-5 deg, jitter 8 on a canvas 2 x 16 px
# larger); "lucid": Lucid's standard_transforms on the image itself.
TRANSFORM_PRESETS = {
    "study": (transforms_lib.occlusion_study_transforms(), transforms_lib.OCCLUSION_STUDY_PADDING),
    "lucid": (transforms_lib.standard_transforms(), 0),
}
DEFAULT_PRESET = "study"


def check_conditions(conditions: Sequence[str]) -> tuple[str, ...]:
  """The conditions in order, without repeats.

  Raises:
    ValueError: an unknown or empty condition list, in one sentence.
  """
  out = []
  for c in conditions:
    c = str(c).strip()
    if c not in CONDITIONS:
      raise ValueError(unknown_name_message("condition", c, CONDITIONS))
    if c not in out:
      out.append(c)
  if not out:
    raise ValueError(f"At least one condition is needed; accepted conditions: {', '.join(CONDITIONS)}.")
  return tuple(out)


def check_preset(preset: str) -> str:
  """``preset`` if it names one of :data:`TRANSFORM_PRESETS`, else a one-sentence error."""
  if preset not in TRANSFORM_PRESETS:
    raise ValueError(unknown_name_message("transform preset", str(preset), tuple(TRANSFORM_PRESETS)))
  return preset


def mixed_split(n: int = NUM_REFERENCES) -> tuple[int, int]:
  """``(natural, synthetic)`` references of the mixed condition: the study's 5 + 4 of 9.

  The natural ones are the larger half (``(n + 1) // 2``).

  Raises:
    ValueError: ``n < 2`` (no room for both kinds).
  """
  if n < 2:
    raise ValueError(f"The mixed condition needs num_references >= 2 (natural and synthetic); got {n}.")
  return (n + 1) // 2, n // 2


@functools.lru_cache(maxsize=64)
def _grouped_fn(layer: str, weight: float) -> objectives.ObjectiveFn:
  """``channel(unit_i) - weight * diversity`` within i's group, with Lucid's weighting per group.

  For a group of ``m`` images the values sum to Lucid's scalar
  ``mean_i channel_i - weight * sum_{i != j} <G_i, G_j> / m`` (as
  ``objectives.channel(layer, u) - weight * objectives.diversity(layer)``
  on that group alone).
  """

  def fn(acts, images, data):
    units, groups = data
    t = acts[layer]
    b, c = t.shape[0], t.shape[-1]
    picked = t[jnp.arange(b), ..., units].reshape(b, -1).mean(-1)
    flat = t.reshape(b, -1, c)
    grams = jnp.einsum("bpc,bpd->bcd", flat, flat).reshape(b, -1)
    grams = grams / jnp.sqrt(jnp.maximum(jnp.sum(grams * grams, axis=-1, keepdims=True), 1e-10))
    member = groups[:, None] == groups[None, :]
    size = member.sum(-1)
    sims = jnp.where(member & ~jnp.eye(b, dtype=bool), grams @ grams.T, 0.0)
    return (picked - weight * sims.sum(-1)) / size

  return fn


def synthetic_objective(layer: str, units: Sequence[int], n: int | Sequence[int] = NUM_REFERENCES,
                        diversity: float = PAPER_DIVERSITY, multiple: int = 1) -> objectives.Objective:
  """The batched objective of :func:`synthetic_references`.

  Args:
    layer: layer name.
    units: ``U`` units.
    n: images per unit, or the sizes of several groups per unit (e.g.
      ``(9, 4)``: the synthetic and the mixed condition's references); each
      group has its own diversity term. Unit ``units[i]`` owns images
      ``i*N .. i*N+N-1`` with ``N = sum(n)``, its groups in the order of ``n``.
    diversity: weight of the diversity penalty (Lucid/paper: 1e2).
    multiple: pad the batch to a multiple of this (the device count); padded
      images repeat the last unit, each in a group of its own.

  Returns:
    An Objective over a batch of ``round_up(U * N, multiple)`` images.
  """
  sizes = _group_sizes(n)
  per_unit = sum(sizes)
  units = np.repeat(np.asarray(units, np.int32), per_unit)
  groups = np.repeat(np.arange(len(units) // per_unit * len(sizes), dtype=np.int32),
                     np.tile(np.asarray(sizes), len(units) // per_unit))
  pad = parallel.round_up(len(units), multiple) - len(units)
  units = np.concatenate([units, np.full(pad, units[-1], np.int32)])
  groups = np.concatenate([groups, -1 - np.arange(pad, dtype=np.int32)])
  return objectives.Objective(_grouped_fn(layer, float(diversity)), (units, groups), frozenset({layer}),
                              f"causal_references({layer}, {len(units)})")


def _group_sizes(n: int | Sequence[int]) -> tuple[int, ...]:
  sizes = (int(n),) if np.ndim(n) == 0 else tuple(int(m) for m in n)
  if not sizes or min(sizes) < 1:
    raise ValueError(f"Synthetic references need n >= 1 images per group; got {n}.")
  return sizes


def synthetic_references(model: ModelRecord, layer: str, units: Sequence[int], *, key: jax.Array,
                         n: int | Sequence[int] = NUM_REFERENCES, steps: int = PAPER_STEPS, size: int | None = None,
                         diversity: float = PAPER_DIVERSITY, preset: str = DEFAULT_PRESET,
                         mesh: jax.sharding.Mesh | None = None, progress: bool = True,
                         **render_options) -> np.ndarray:
  """Diverse feature visualizations of each unit, rendered as one batch.

  Args:
    model: the studied model.
    layer: layer name.
    units: unit indices.
    key: PRNG key; the same key gives the same images.
    n: images per unit (paper: 9), or group sizes per unit (see
      :func:`synthetic_objective`; the mixed condition's 4 are a group).
    steps: optimisation steps (paper: 2560).
    size: side of the images returned (default: the model's input size).
    diversity: diversity weight (paper: 1e2).
    preset: ``"study"`` (the 2021 study: its milder transforms on a canvas
      ``2 * 16`` px larger, cropped back to ``size``) or ``"lucid"`` (Lucid's
      standard transforms on a ``size`` canvas); see :data:`TRANSFORM_PRESETS`.
    mesh: 1-D device mesh (default: all devices).
    progress: progress bar.
    **render_options: passed to :func:`fvjax.optvis.render.render`.

  Returns:
    ``[U, sum(n), size, size, 3]`` in ``[0, 1]``.
  """
  units = np.asarray(units, np.int32).reshape(-1)
  render_lib.check_units(model, model.check_layer(layer), units)
  sizes = _group_sizes(n)
  if steps < 1:
    raise ValueError(f"Synthetic references need steps >= 1; got {steps}.")
  transforms, padding = TRANSFORM_PRESETS[check_preset(preset)]
  size = model.input_size[0] if size is None else int(size)
  mesh = mesh or parallel.data_mesh()
  obj = synthetic_objective(layer, units, sizes, diversity, mesh.size)
  render_options = {"transforms": transforms, **render_options}  # a method's own transforms replace the preset's
  result = render_lib.render(model, obj, key=key, batch=len(units) * sum(sizes), size=size + 2 * padding,
                             thresholds=(steps,), mesh=mesh, progress=progress, **render_options)
  images = np.asarray(result.images[-1])[:, padding:padding + size, padding:padding + size]
  return images.reshape(len(units), sum(sizes), *images.shape[1:])


def rank_bins(values: np.ndarray, sources: np.ndarray, queries: Sequence[int], n: int = NUM_REFERENCES,
              width: int | None = None) -> np.ndarray:
  """The study's rank bins below the queries: ``[n, w]`` natural-image indices.

  The images that share no photo with a query are ranked by the unit's
  activation; bin 0 holds the next ``w`` ranks below the queries, bin 1 the
  ``w`` after those, and so on (the study: 20 queries, bins of 20 ranks, the
  natural references from ranks 21-200 and the mixed condition's from ranks
  21-120). With too few images for ``n`` bins of ``width`` the bins shrink
  proportionally to the largest width that fits.

  Args:
    values: ``[N]`` the unit's activation on every natural image.
    sources: ``[N]`` photo id of every image.
    queries: indices of the unit's query images.
    n: number of bins (one reference each).
    width: ranks per bin (default: the number of queries, as the study's
      query bin and reference bins are equally wide).

  Returns:
    ``[n, w]`` indices, bin 0 (highest activations) first, each bin in rank order.

  Raises:
    ValueError: fewer than ``n`` images share no photo with a query.
  """
  queries = np.asarray(queries, np.int64).reshape(-1)
  width = len(queries) if width is None else int(width)
  if width < 1:
    raise ValueError(f"The rank bins' width must be >= 1; got {width}.")
  banned = np.isin(np.asarray(sources), np.asarray(sources)[queries])
  order = [int(i) for i in np.argsort(-np.asarray(values), kind="stable") if not banned[i]]
  if len(order) < n:
    raise ValueError(f"Only {len(order)} natural images share no photo with the {len(queries)} queries, "
                     f"but {n} natural references are needed; use more natural images or a smaller top_k.")
  width = min(width, len(order) // n)
  return np.asarray(order[:n * width], np.int64).reshape(n, width)


def draw_from_bins(bins: np.ndarray, num_trials: int, key: jax.Array) -> np.ndarray:
  """``[num_trials, n]``: trial k's references, element ``k mod w`` of every shuffled bin.

  As in the study, each bin is shuffled once (here by ``key``) and trial k
  takes the k-th element of every bin, so with ``num_trials <= w`` every
  trial has references of its own.
  """
  bins = np.asarray(bins, np.int64)
  rng = np.random.default_rng(np.asarray(jax.random.key_data(key), np.uint32).ravel())
  shuffled = np.stack([b[rng.permutation(len(b))] for b in bins])  # [n, w]
  return shuffled[:, np.arange(num_trials) % bins.shape[1]].T


def natural_references(values: np.ndarray, sources: np.ndarray, queries: Sequence[int], *, key: jax.Array,
                       n: int = NUM_REFERENCES, width: int | None = None) -> np.ndarray:
  """``[len(queries), n]``: every trial's natural references (:func:`rank_bins`, :func:`draw_from_bins`)."""
  return draw_from_bins(rank_bins(values, sources, queries, n, width), len(queries), key)
