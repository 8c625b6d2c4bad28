"""Train the natural-vs-visualization detector of the fooling circuit.

Visualizations of many units are rendered on the fly, in batches, and their
snapshots at several thresholds (4 to 512 steps by default) become the
"visualization" class; natural images (the shipped photos with augmentation,
or an image folder) are the other class. Units and photos are split into a
training part and a held-out part; metrics.json reports the held-out accuracy
on each kind.

Everything is resumable from ``workdir``: rendered chunks, the training state
(orbax) and the trained detector are entries of the workdir's store
(:mod:`fvjax.store`), keyed by the settings that produced them, so a rerun
with the same settings resumes and one with other settings (thresholds, render
size, steps, ...) trains afresh. The detector of the last run is published as
``detector/`` (with ``heldout.json``).
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Sequence

import jax
import numpy as np
import optax
from tqdm.auto import tqdm

from fvjax import data
from fvjax import io
from fvjax import store
from fvjax.fooling import circuit as circuit_lib
from fvjax.fooling import detector as det
from fvjax.fooling import training
from fvjax.models.record import ModelRecord
from fvjax.optvis import render as render_lib

PAPER_THRESHOLDS = (4, 8, 16, 32, 64, 128, 256, 512)
DEFAULT_HARD_NEGATIVE_TARGETS = ("permutation", "coffee", "rocket")  # ours: the paper trains on 1.28 M photos instead
HELDOUT_FILE = "heldout.json"  # beside the detector: the natural images it never saw


def split_photos(key: jax.Array, size: int, num_heldout: int = 4,
                 heldout_names: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
  """The shipped photos split into ``(train, heldout, heldout_names)``: the
  named ones held out, or ``num_heldout`` drawn at random."""
  photos, names = data.sample_photos(size)
  if heldout_names:
    data.sample_photos(8, heldout_names)  # validates the names
    held = [names.index(n) for n in heldout_names]
  else:
    if not 0 < num_heldout < len(photos):
      raise ValueError(f"num_heldout must be between 1 and {len(photos) - 1} of the {len(photos)} shipped photos; got {num_heldout}.")
    held = list(np.asarray(jax.random.permutation(key, len(photos)))[:num_heldout])
  train = [i for i in range(len(photos)) if i not in held]
  return photos[train], photos[held], [names[i] for i in held]


def choose_units(num_classes: int, units: Sequence[int] = (), num_units: int = 48, heldout: Sequence[int] = (),
                 num_heldout: int = 8, seed: int = 0) -> tuple[list[int], list[int]]:
  """Training and held-out logits: the given lists, or disjoint random draws.

  Args:
    num_classes: number of logits.
    units: training logits (empty: ``num_units`` drawn at random among the non-held-out ones).
    num_units: how many to draw.
    heldout: held-out logits (empty: ``num_heldout`` drawn at random).
    num_heldout: how many to draw.
    seed: numpy seed of the draws.

  Returns:
    ``(train_units, heldout_units)``.

  Raises:
    ValueError: a unit in both given lists (the held-out accuracy would leak).
  """
  leaked = sorted(set(map(int, units)) & set(map(int, heldout)))
  if leaked:
    raise ValueError(f"Held-out units must not be training units; both lists hold {leaked[:5]}; accepted: "
                     "disjoint --units and --heldout_units.")
  rng = np.random.default_rng(seed)
  heldout = list(heldout) or list(rng.choice(num_classes, num_heldout, replace=False))
  rest = np.setdiff1d(np.arange(num_classes), heldout)
  units = list(units) or list(rng.choice(rest, min(num_units, len(rest)), replace=False))
  return [int(u) for u in units], [int(u) for u in heldout]


def render_pool(model: ModelRecord, units: Sequence[int], workdir: str, *, key: jax.Array, prefix: str,
                thresholds: Sequence[int] = PAPER_THRESHOLDS, size: int | None = None, render_batch: int = 16,
                progress: bool = True, **render_options) -> np.ndarray:
  """Visualizations of ``units`` of the logits at every threshold, ``[U*T, S, S, 3]``.

  Rendered ``render_batch`` units at a time; each batch is a store entry
  ``<prefix>`` (uint8) reused by a rerun with the same settings.
  """
  units = [int(u) for u in units]
  out = []
  starts = range(0, len(units), render_batch)
  base = {**store.model_settings(model), "thresholds": thresholds, "size": size, "render_options": render_options}
  for start in tqdm(starts, desc=f"render {prefix}", disable=not progress, leave=False):
    chunk = units[start:start + render_batch]
    chunk_key = jax.random.fold_in(key, start)
    settings = {**base, "units": chunk, "key": chunk_key}
    saved = store.load_arrays(workdir, prefix, settings)
    if saved is None:
      result = render_lib.render(model, chunk, layer="logits", key=chunk_key, thresholds=thresholds, size=size,
                                 progress=False, **render_options)
      saved = {"images": io.to_uint8(result.images)}
      store.save_arrays(workdir, prefix, settings, saved)
    out.append(saved["images"].reshape(-1, *saved["images"].shape[-3:]))
  return np.concatenate(out).astype(np.float32) / 255.0


def initial_images(key: jax.Array, n: int, sizes: Sequence[int], out_size: int) -> np.ndarray:
  """``[n*len(sizes), out_size, out_size, 3]``: the render parameterization's starting images at each
  of ``sizes`` (what a visualization looks like at step 0), resized to ``out_size``."""
  param = render_lib.DEFAULT_PARAM
  out = []
  for i, s in enumerate(sizes):
    images = param.to_rgb(param.init(jax.random.fold_in(key, i), n, (s, s)))
    out.append(np.asarray(jax.image.resize(images, (n, out_size, out_size, 3), "linear")))
  return np.concatenate(out).clip(0, 1)


def hard_negatives(model: ModelRecord, detector: det.Detector, units: Sequence[int], targets: Sequence[str], *,
                   key: jax.Array, thresholds: Sequence[int], size: int | None, render_batch: int = 16,
                   **render_options) -> tuple[np.ndarray, int]:
  """Visualizations of the circuit built on ``detector`` that ``detector`` calls natural.

  Each target (``"permutation"`` or a shipped photo's name) gets its fooling
  circuit; ``units`` of its logits are rendered at every threshold, and the
  snapshots the detector misses are returned: exactly the images on which the
  manipulated model would show its original logits instead of the target.

  Returns:
    ``(missed [M,S,S,3], number rendered)``.
  """
  in_size = model.input_size[0]
  missed, total = [], 0
  for i, name in enumerate(targets):
    if name == "permutation":
      target = circuit_lib.permutation()
    else:
      target = circuit_lib.image_target(data.sample_photos(size or in_size, [name])[0][0])
    manipulated = circuit_lib.circuit(model, detector, target)
    for start in range(0, len(units), render_batch):
      result = render_lib.render(manipulated, list(units[start:start + render_batch]), layer="logits",
                                 key=jax.random.fold_in(jax.random.fold_in(key, i), start), thresholds=thresholds,
                                 size=size, progress=False, **render_options)
      images = result.images.reshape(-1, *result.images.shape[-3:])
      calls = training.predictions(detector, images)
      missed.append(images[calls == 0])
      total += len(images)
  return np.concatenate(missed), total


def run(model: ModelRecord, workdir: str, *, key: jax.Array, train_units: Sequence[int], heldout_units: Sequence[int],
        thresholds: Sequence[int] = PAPER_THRESHOLDS, size: int | None = None, render_batch: int = 16,
        natural_dir: str | None = None, num_heldout_photos: int = 4, heldout_photos: Sequence[str] | None = None,
        heldout_crops: int = 16, max_heldout_natural: int = 2000,
        config: det.DetectorConfig = det.DetectorConfig(), steps: int = 1000, batch_size: int = 32,
        optimizer: str = "sgd", learning_rate: float = training.PAPER_LEARNING_RATE,
        tx: optax.GradientTransformation | None = None, natural_weight: float = training.NATURAL_WEIGHT,
        checkpoint_every: int = 100, initial_sizes: Sequence[int] | None = None, jpeg_fraction: float = 0.3,
        hard_negative_rounds: int = 0, hard_negative_units: int = 16,
        hard_negative_targets: Sequence[str] = DEFAULT_HARD_NEGATIVE_TARGETS,
        hard_negative_thresholds: Sequence[int] | None = None, hard_negative_steps: int = 500,
        progress: bool = True, **render_options) -> dict:
  """Renders the visualization pools, trains the detector, evaluates it.

  Args:
    model: the model whose class-logit visualizations the detector learns.
    workdir: output folder; rerunning with the same workdir resumes.
    key: PRNG key.
    train_units, heldout_units: logits rendered for training / evaluation.
    thresholds: render step counts kept as visualizations.
    size: render size (default the model's input size).
    render_batch: units rendered per batch.
    natural_dir: an image folder (``root/<class>/<image>``) of natural images;
      default the shipped photos with augmentation. A random 10 % of the files
      (at most ``max_heldout_natural``, loaded into memory) is held out; the
      rest are streamed from disk during training.
    num_heldout_photos: shipped photos held out at random (when ``natural_dir`` is None).
    heldout_photos: names of the shipped photos to hold out instead.
    heldout_crops: augmented crops per held-out photo added to the held-out set.
    max_heldout_natural: cap on held-out folder images (2000 at 224 px is 1.2 GB).
    config: detector architecture settings.
    steps, batch_size, natural_weight, checkpoint_every: training settings
      (:func:`fvjax.fooling.training.train`).
    optimizer, learning_rate: the optimiser (:func:`fvjax.fooling.training.optimizer`).
    tx: a custom optax optimiser instead (a rerun in a new process does not
      resume its training: an optax transformation has no stable identity).
    initial_sizes: sizes at which the render parameterization's step-0 images
      join the visualizations (one per training unit and size; default: the
      render size and the model's input size). A render starts from them, and
      a detector that calls them natural lets the first steps optimise the
      original logits.
    jpeg_fraction: natural images given a JPEG round trip.
    hard_negative_rounds: rounds of hard-negative mining after training: the
      fooling circuit built on the current detector is rendered
      (:func:`hard_negatives`), the snapshots it calls natural join the
      visualizations (half of every visualization batch is drawn from them),
      and training continues for ``hard_negative_steps``; after the last
      round one more rendering measures what the final detector still misses.
    hard_negative_units: training logits rendered per round.
    hard_negative_targets: the circuits' targets: ``"permutation"`` and names of
      shipped photos.
    hard_negative_thresholds: render step counts of those renders (default:
      0, 1, 2, 4, ... up to the largest of ``thresholds``).
    hard_negative_steps: training steps per round.
    progress: progress bars.
    **render_options: passed to :func:`fvjax.optvis.render.render`.

  Returns:
    The metrics written to ``metrics.json``; the detector is in ``workdir/detector``.
  """
  os.makedirs(workdir, exist_ok=True)
  start = time.time()
  k_split, k_crops, k_render, k_held, k_train, k_init = jax.random.split(key, 6)
  in_size = model.input_size[0]
  if natural_dir:
    paths, _, _ = data.image_folder(natural_dir)
    order = np.asarray(jax.random.permutation(k_split, len(paths)))
    n_held = max(1, min(len(paths) // 10, max_heldout_natural))
    natural = training.files_sampler([paths[i] for i in order[n_held:]], in_size)
    heldout_natural = np.stack([data.load_image(paths[i], in_size) for i in order[:n_held]])
    heldout_names = [paths[i] for i in order[:n_held]]
  else:
    train_photos, held, heldout_names = split_photos(k_split, in_size, num_heldout_photos, heldout_photos)
    natural = training.pool_sampler(train_photos)
    crops = np.asarray(data.augmented_crops(k_crops, held, heldout_crops, in_size))
    heldout_natural = np.concatenate([held, crops])

  natural = training.with_jpeg(natural, jpeg_fraction) if jpeg_fraction > 0 else natural
  opts = dict(thresholds=thresholds, size=size, render_batch=render_batch, progress=progress, **render_options)
  train_fvs = render_pool(model, train_units, workdir, key=k_render, prefix="visualizations_train", **opts)
  heldout_fvs = render_pool(model, heldout_units, workdir, key=k_held, prefix="visualizations_heldout", **opts)
  render_size = size or in_size
  initial_sizes = tuple(initial_sizes if initial_sizes is not None else sorted({render_size, in_size}))
  k_initial, k_initial_held, k_hard = jax.random.split(jax.random.fold_in(key, 7), 3)
  if initial_sizes:
    train_fvs = np.concatenate([train_fvs, initial_images(k_initial, len(train_units), initial_sizes, render_size)])
  heldout_initial = initial_images(k_initial_held, max(8, len(heldout_units)), sorted({render_size, in_size}),
                                   render_size)
  if hard_negative_thresholds is None:
    top = max(thresholds)
    hard_negative_thresholds = [0] + [2**i for i in range(int(np.log2(max(top, 1))) + 1)]

  settings = {**store.model_settings(model), "key": key, "train_units": train_units, "thresholds": thresholds,
              "size": size, "render_batch": render_batch, "render_options": render_options,
              "natural": {"dir": os.path.abspath(natural_dir), "files": len(paths)} if natural_dir else
                         {"train_photos": len(train_photos), "heldout": heldout_names},
              "config": dataclasses.asdict(config), "steps": steps, "batch_size": batch_size,
              "optimizer": {"name": optimizer, "learning_rate": learning_rate} if tx is None else repr(tx),
              "natural_weight": natural_weight, "checkpoint_every": checkpoint_every,
              "initial_sizes": initial_sizes, "jpeg_fraction": jpeg_fraction,
              "hard_negatives": {"rounds": hard_negative_rounds, "units": hard_negative_units,
                                 "targets": hard_negative_targets, "thresholds": hard_negative_thresholds,
                                 "steps": hard_negative_steps} if hard_negative_rounds else None}
  entry = store.directory(workdir, "detector", settings)
  finished = os.path.join(entry, "detector")
  train_options = dict(batch_size=batch_size, natural_weight=natural_weight, checkpoint_every=checkpoint_every,
                       progress=progress)
  make_tx = lambda: tx or training.optimizer(optimizer, learning_rate)
  if os.path.isfile(os.path.join(finished, "detector.json")):
    detector, log = det.load(finished), io.read_json(os.path.join(entry, "log.json"))
  else:
    detector, history = training.train(det.init(k_init, config), natural, training.pool_sampler(train_fvs),
                                       key=k_train, steps=steps, tx=make_tx(), state_dir=entry, **train_options)
    log = {"history": history, "hard_negative_rounds": []}
    mined = np.zeros((0, *train_fvs.shape[1:]), np.float32)
    hn_units = [int(u) for u in np.asarray(train_units)[:hard_negative_units]]
    for r in range(hard_negative_rounds + 1 if hard_negative_rounds else 0):
      where = os.path.join(entry, f"hard_negatives_{r}.npz")
      if not os.path.exists(where):
        found, total = hard_negatives(model, detector, hn_units, hard_negative_targets, key=jax.random.fold_in(k_hard, r),
                                      thresholds=hard_negative_thresholds, size=size, render_batch=render_batch,
                                      **render_options)
        with io.atomic_path(where) as tmp:
          np.savez(tmp, images=io.to_uint8(found) if len(found) else np.zeros((0, *train_fvs.shape[1:]), np.uint8),
                   total=total)
      with np.load(where) as z:
        found, total = z["images"].astype(np.float32) / 255.0, int(z["total"])
      log["hard_negative_rounds"].append({"round": r, "rendered": total, "called_natural": int(len(found))})
      if r == hard_negative_rounds or not len(found):
        break
      mined = np.concatenate([mined, found])
      visualizations = training.mixture([training.pool_sampler(train_fvs), training.pool_sampler(mined)])
      detector, history = training.train(detector, natural, visualizations, key=jax.random.fold_in(k_train, r + 1),
                                         steps=hard_negative_steps, tx=make_tx(),
                                         state_dir=os.path.join(entry, f"round_{r}"), **train_options)
      log["history"] += [dict(h, round=r) for h in history]
    io.write_json(os.path.join(entry, "log.json"), log)
    det.save(finished, detector)  # detector.json last: its presence marks a finished detector
  out_dir = os.path.join(workdir, "detector")  # the published copy: this run's detector
  det.save(out_dir, detector)
  io.write_json(os.path.join(out_dir, HELDOUT_FILE), {"natural": heldout_names})

  metrics = {
      "model": model.name,
      "weights": model.weights,
      "detector": os.path.abspath(out_dir),
      "config": dataclasses.asdict(detector.config),
      "thresholds": sorted(int(t) for t in thresholds),
      "num_train_units": len(train_units),
      "num_heldout_units": len(heldout_units),
      "heldout_units": [int(u) for u in heldout_units],
      "num_train_visualizations": int(len(train_fvs)),
      "heldout_natural": heldout_names,
      "num_heldout_natural": int(len(heldout_natural)),
      "num_heldout_visualizations": int(len(heldout_fvs)),
      "accuracy_natural": training.accuracy(detector, heldout_natural, 0),
      "accuracy_visualization": training.accuracy(detector, heldout_fvs, 1),
      "train_accuracy_visualization": training.accuracy(detector, train_fvs, 1),
      "accuracy_initial_images": training.accuracy(detector, heldout_initial, 1),
      "initial_sizes": list(initial_sizes),
      "hard_negative_rounds": log["hard_negative_rounds"],
      "history": log["history"],
      "seconds": time.time() - start,
  }
  io.write_json(os.path.join(workdir, "metrics.json"), metrics)
  return metrics
