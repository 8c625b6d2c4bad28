"""Reference images shown with each trial: one set per unit and condition.

Conditions (shared/paper.md section 6):

* ``"synthetic"``: 9 feature visualizations of the unit rendered as one batch
  with a diversity term (paper: weight 1e2, 2560 steps), from the fvjax engine.
* ``"natural"``: the unit's 9 most strongly activating natural images that are
  not queries and come from none of the queries' photos.
* ``"none"``: no references (the baseline).

Synthetic references of several units render together: one batch of
``units x n`` images in which image i maximises its unit and the diversity
penalty is taken within each unit's group only, so the same compiled step
serves every unit (the objective's function depends only on the layer and the
weight; the units and groups are its data).
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

CONDITIONS = ("synthetic", "natural", "none")
NUM_REFERENCES = 9
PAPER_DIVERSITY = 1e2
PAPER_STEPS = 2560


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


@functools.lru_cache(maxsize=64)
def _grouped_fn(layer: str, weight: float) -> objectives.ObjectiveFn:
  """``channel(unit_i) - weight * diversity within i's group`` for every image i."""

  def fn(acts, images, data):
    units, groups = data
    t = acts[layer]
    b, c = t.shape[0], t.shape[-1]
    picked = t[jnp.arange(b), ..., units].reshape(b, -1).mean(-1)
    flat = t.reshape(b, -1, c)
    grams = jnp.einsum("bpc,bpd->bcd", flat, flat).reshape(b, -1)
    grams = grams / jnp.sqrt(jnp.maximum(jnp.sum(grams * grams, axis=-1, keepdims=True), 1e-10))
    same = (groups[:, None] == groups[None, :]) & ~jnp.eye(b, dtype=bool)
    sims = jnp.where(same, grams @ grams.T, 0.0)
    return picked - weight * sims.sum(-1) / (same.sum(-1) + 1)

  return fn


def synthetic_objective(layer: str, units: Sequence[int], n: int = NUM_REFERENCES,
                        diversity: float = PAPER_DIVERSITY, multiple: int = 1) -> objectives.Objective:
  """The batched objective of :func:`synthetic_references`.

  Args:
    layer: layer name.
    units: ``U`` units; images ``i*n .. i*n+n-1`` belong to unit ``units[i]``.
    n: images per unit.
    diversity: weight of the diversity penalty (Lucid/paper: 1e2).
    multiple: pad the batch to a multiple of this (the device count); padded
      images repeat the last unit, each in a group of its own.

  Returns:
    An Objective over a batch of ``round_up(U * n, multiple)`` images.
  """
  units = np.repeat(np.asarray(units, np.int32), n)
  groups = np.repeat(np.arange(len(units) // n, dtype=np.int32), n)
  pad = parallel.round_up(len(units), multiple) - len(units)
  units = np.concatenate([units, np.full(pad, units[-1], np.int32)])
  groups = np.concatenate([groups, -1 - np.arange(pad, dtype=np.int32)])
  return objectives.Objective(_grouped_fn(layer, float(diversity)), (units, groups), frozenset({layer}),
                              f"causal_references({layer}, {len(units)})")


def synthetic_references(model: ModelRecord, layer: str, units: Sequence[int], *, key: jax.Array,
                         n: int = NUM_REFERENCES, steps: int = PAPER_STEPS, size: int | None = None,
                         diversity: float = PAPER_DIVERSITY, mesh: jax.sharding.Mesh | None = None,
                         progress: bool = True, **render_options) -> np.ndarray:
  """``n`` diverse feature visualizations of each unit, rendered as one batch.

  Args:
    model: the studied model.
    layer: layer name.
    units: unit indices.
    key: PRNG key; the same key gives the same images.
    n: images per unit (paper: 9).
    steps: optimisation steps (paper: 2560).
    size: image side (default: the model's input size).
    diversity: diversity weight (paper: 1e2).
    mesh: 1-D device mesh (default: all devices).
    progress: progress bar.
    **render_options: passed to :func:`fvjax.optvis.render.render`.

  Returns:
    ``[U, n, size, size, 3]`` in ``[0, 1]``.
  """
  units = np.asarray(units, np.int32).reshape(-1)
  render_lib.check_units(model, model.check_layer(layer), units)
  if n < 1 or steps < 1:
    raise ValueError(f"Synthetic references need n >= 1 images and steps >= 1; got n={n}, steps={steps}.")
  mesh = mesh or parallel.data_mesh()
  obj = synthetic_objective(layer, units, n, diversity, mesh.size)
  result = render_lib.render(model, obj, key=key, batch=len(units) * n, size=size, thresholds=(steps,), mesh=mesh,
                             progress=progress, **render_options)
  images = result.images[-1]
  return images.reshape(len(units), n, *images.shape[1:])


def natural_references(values: np.ndarray, sources: np.ndarray, queries: Sequence[int],
                       n: int = NUM_REFERENCES) -> np.ndarray:
  """Indices of the unit's ``n`` top natural images that share no photo with a query.

  Args:
    values: ``[N]`` the unit's activation on every natural image.
    sources: ``[N]`` photo id of every image.
    queries: indices of the unit's query images.
    n: number of references.

  Returns:
    ``[n]`` indices, highest activation first.

  Raises:
    ValueError: fewer than ``n`` images remain once the queries' photos are
      excluded.
  """
  banned = np.isin(np.asarray(sources), np.asarray(sources)[np.asarray(queries, np.int64)])
  order = [int(i) for i in np.argsort(-np.asarray(values), kind="stable") if not banned[i]]
  if len(order) < n:
    raise ValueError(f"Only {len(order)} natural images share no photo with the {len(queries)} queries, "
                     f"but {n} natural references are needed; use more natural images or a smaller top_k.")
  return np.asarray(order[:n], np.int64)
