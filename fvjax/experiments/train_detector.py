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
from fvjax.experiments import config as config_lib
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


option = config_lib.option


@dataclasses.dataclass(frozen=True)
class Config:
  """Settings of :func:`run` (the paper's thresholds, detector size and SGD learning rate; the rest ours); the
  detector flags of ``fvjax.launch.train_detector`` and ``fvjax.launch.fooling_circuit``.

  Training and held-out logits are ``units`` and ``heldout_units``, or random draws (:func:`choose_units`).
  A random 10 % of a ``natural_dir``'s files (at most ``max_heldout_natural``, loaded into memory) is held out;
  the rest are streamed from disk during training; without one, shipped photos are held out (``heldout_photos``
  at random or ``heldout_photo_names``), each with ``heldout_crops`` augmented crops. ``initial_sizes``: the
  render parameterization's step-0 images join the visualizations at these sizes (a render starts from them, and
  a detector that calls them natural lets the first steps optimise the original logits). Hard-negative rounds:
  the fooling circuit built on the current detector is rendered (:func:`hard_negatives`), the snapshots it calls
  natural join the visualizations (half of every visualization batch), and training continues.
  """

  units: tuple[int, ...] = option((), "Logits whose visualizations train the detector (default: --num_units drawn "
                                  "at random).", units="optional")
  num_units: int = option(48, "Random training units when --units is empty.", lower=1)
  heldout_units: tuple[int, ...] = option((), "Logits held out for evaluation (default: --num_heldout_units others "
                                          "drawn at random).", units="optional")
  num_heldout_units: int = option(8, "Random held-out units when --heldout_units is empty.", lower=1)
  thresholds: tuple[int, ...] = option(PAPER_THRESHOLDS, "Render step counts whose snapshots are training "
                                       "visualizations (0: the initial images).")
  render_size: int | None = config_lib.size(None, "Visualization size (default: the model's input size).")
  render_batch: int = option(16, "Units rendered together in one batch when building the visualization pool.",
                             lower=1)
  natural_dir: str | None = option(None, "Image folder of natural images (default: the shipped photos).",
                                   folder=True)
  heldout_photos: int = option(4, "Shipped photos held out at random (no --natural_dir).", lower=1,
                               upper=len(data.SAMPLE_PHOTOS) - 1)
  heldout_photo_names: tuple[str, ...] = option((), "Shipped photos to hold out by name instead "
                                                f"(of {', '.join(data.SAMPLE_PHOTOS)}).")
  detector_size: int = config_lib.size(det.PAPER_SIZE, "Detector input side (paper: 224; its four stride-2 "
                                       "convolutions need 16).", lower=16)
  detector_steps: int = option(1000, "Detector training steps (optimizer updates; checkpointed, resumable).",
                               lower=1)
  detector_batch: int = option(32, "Images per step (half natural).", lower=2, check=lambda b: b % 2 == 0,
                               accepted="an even number of images (half natural, half visualizations)")
  detector_optimizer: str = option("sgd", "Paper: SGD (unverified); momentum 0.9 is our choice.",
                                   choices=training.OPTIMIZERS)
  detector_learning_rate: float = option(training.PAPER_LEARNING_RATE, "Detector learning rate (paper: 0.01, "
                                         "unverified).")
  natural_weight: float = option(training.NATURAL_WEIGHT, "Loss weight of natural images (false alarms change the "
                                 "model's output).", lower=0)
  initial_sizes: tuple[int, ...] | None = option(None, "Sizes at which the renderer's step-0 images join the "
                                                 "visualizations (default: the render size and the model's input "
                                                 "size).", lower=1, example="96,224")
  jpeg_fraction: float = option(0.3, "Natural training images given a JPEG round trip.", lower=0, upper=1)
  hard_negative_rounds: int = option(0, "Rounds of hard-negative mining: the circuit's own visualizations the "
                                     "detector calls natural join its training set.", lower=0)
  hard_negative_units: int = option(16, "Training logits rendered per hard-negative round.", lower=1)
  hard_negative_targets: tuple[str, ...] = option(DEFAULT_HARD_NEGATIVE_TARGETS, "Targets of the hard-negative "
                                                  "circuits: 'permutation' and shipped photo names.")
  hard_negative_thresholds: tuple[int, ...] | None = option(None, "Render step counts of the hard-negative renders "
                                                            "(default: 0, 1, 2, 4, ... up to the largest "
                                                            "--thresholds).")
  hard_negative_steps: int = option(500, "Detector training steps per hard-negative round.", lower=1)
  seed: int = config_lib.seed()
  heldout_crops: int = option(16, "Augmented crops per held-out shipped photo.", lower=0, cli=False)
  max_heldout_natural: int = option(2000, "Cap on held-out folder images (2000 at 224 px is 1.2 GB).", lower=1,
                                    cli=False)
  checkpoint_every: int = option(100, "Training steps between checkpoints.", lower=1, cli=False)

  def __post_init__(self):
    config_lib.validate(self)


def run(model: ModelRecord, config: Config, workdir: str, *, tx: optax.GradientTransformation | None = None,
        progress: bool = True, **render_options) -> dict:
  """Renders the visualization pools, trains the detector, evaluates it.

  Args:
    model: the model whose class-logit visualizations the detector learns.
    config: the settings.
    workdir: output folder; rerunning with the same workdir resumes.
    tx: a custom optax optimiser instead of ``config.detector_optimizer`` (a rerun in a new process does not
      resume its training: an optax transformation has no stable identity).
    progress: progress bars.
    **render_options: passed to :func:`fvjax.optvis.render.render`.

  Returns:
    The metrics written to ``metrics.json``; the detector is in ``workdir/detector``.
  """
  train_units, heldout_units = choose_units(model.num_classes, config.units, config.num_units, config.heldout_units,
                                            config.num_heldout_units, config.seed)
  key = jax.random.PRNGKey(config.seed)
  thresholds, size, render_batch, natural_dir = config.thresholds, config.render_size, config.render_batch, \
      config.natural_dir
  num_heldout_photos, heldout_photos = config.heldout_photos, config.heldout_photo_names or None
  heldout_crops, max_heldout_natural = config.heldout_crops, config.max_heldout_natural
  detector_config = det.DetectorConfig(size=config.detector_size)
  steps, batch_size, natural_weight = config.detector_steps, config.detector_batch, config.natural_weight
  optimizer, learning_rate = config.detector_optimizer, config.detector_learning_rate
  checkpoint_every, initial_sizes, jpeg_fraction = config.checkpoint_every, config.initial_sizes, config.jpeg_fraction
  hard_negative_rounds, hard_negative_units = config.hard_negative_rounds, config.hard_negative_units
  hard_negative_targets, hard_negative_thresholds = config.hard_negative_targets, config.hard_negative_thresholds
  hard_negative_steps = config.hard_negative_steps
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
              "config": dataclasses.asdict(detector_config), "steps": steps, "batch_size": batch_size,
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
    detector, history = training.train(det.init(k_init, detector_config), natural, training.pool_sampler(train_fvs),
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


def summary(metrics: dict) -> str:
  """The trained detector's held-out accuracy in one line (and what each hard-negative round found)."""
  rounds = "; ".join(f"round {r['round']}: {r['called_natural']} of {r['rendered']} circuit snapshots called natural"
                     for r in metrics["hard_negative_rounds"])
  return (f"held-out accuracy: natural {metrics['accuracy_natural']:.3f} ({metrics['num_heldout_natural']} images), "
          f"visualizations {metrics['accuracy_visualization']:.3f} ({metrics['num_heldout_visualizations']} images), "
          f"step-0 images {metrics['accuracy_initial_images']:.3f}" + (f"; {rounds}" if rounds else ""))
