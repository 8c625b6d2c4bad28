"""Query images and two-choice trials of the causal-understanding task.

A natural image set is ranked by the unit's activation (spatial mean of its
channel in the named layer, any ``layer:unit``; the 2021 study's units are
channels of InceptionV1's pre-ReLU layers, ``mixedX_pre_relu``); the unit's
``top_k`` images are its queries (the study: the top 20). For each query the
occlusion sweep (:mod:`fvjax.causal.occlusion`) gives the activation at every
occluder position, and the trial is the pair of occluded images leaving the
highest activation (the correct choice: the occluder hid what the unit does
not care about) and the lowest (the occluder hid what drives the unit).
Ties go to the first position in row-major order.

A :class:`NaturalSet` carries a ``source`` id per image so that the natural
reference images of a unit can exclude every image made from the same photo as
one of its queries (the embedded set adds random crops of each photo; a crop
of the query itself would make a reference that shows the answer).
"""

from __future__ import annotations

import time
from typing import Callable, NamedTuple, Sequence

import jax
import numpy as np

from fvjax import data
from fvjax import parallel
from fvjax.causal import occlusion
from fvjax.models.record import ModelRecord, check_images
from fvjax.optvis import render as render_lib


class NaturalSet(NamedTuple):
  """Natural images, loaded on demand.

  Attributes:
    size: image side in pixels.
    count: number of images.
    load: ``indices -> [len(indices), size, size, 3]`` float32 in ``[0, 1]``.
    sources: ``[count]`` int id of the photo each image comes from.
    names: a readable name per image.
  """

  size: int
  count: int
  load: Callable[[Sequence[int]], np.ndarray]
  sources: np.ndarray
  names: tuple[str, ...]


def embedded_set(key: jax.Array, size: int = 224, crops_per_photo: int = 8) -> NaturalSet:
  """The photos shipped in scikit-image/scikit-learn plus random crops of each.

  Args:
    key: PRNG key of the crops.
    size: image side.
    crops_per_photo: random resized crops (flips, colour jitter) per photo.

  Returns:
    A :class:`NaturalSet` of ``18 * (1 + crops_per_photo)`` images.
  """
  if crops_per_photo < 0:
    raise ValueError(f"crops_per_photo must be >= 0; got {crops_per_photo}.")
  photos, names = data.sample_photos(size)
  parts, sources, labels = [photos], list(range(len(photos))), list(names)
  if crops_per_photo:
    parts.append(np.asarray(data.augmented_crops(key, photos, crops_per_photo, size)))
    sources += [i for i in range(len(photos)) for _ in range(crops_per_photo)]
    labels += [f"{n} crop {k}" for n in names for k in range(crops_per_photo)]
  images = np.concatenate(parts).astype(np.float32)
  return NaturalSet(size, len(images), lambda idx: images[np.asarray(idx, np.int64)],
                    np.asarray(sources, np.int32), tuple(labels))


def folder_set(root: str, size: int = 224, per_class: int | None = None) -> NaturalSet:
  """An image folder (``root/<class>/<image>``, e.g. ImageNet val), read lazily.

  Args:
    root: the folder.
    size: image side (centre crop, bilinear resize).
    per_class: at most this many images per class.

  Returns:
    A :class:`NaturalSet`; every file is its own source.
  """
  paths, _, _ = data.image_folder(root, per_class=per_class)
  if not paths:
    raise ValueError(f"Image folder {root!r} has no images; accepted suffixes: {', '.join(data.IMAGE_SUFFIXES)}.")
  return NaturalSet(size, len(paths), lambda idx: np.stack([data.load_image(paths[i], size) for i in idx]),
                    np.arange(len(paths), dtype=np.int32), tuple(paths))


def unit_values(model: ModelRecord, layer: str, natural: NaturalSet, batch_size: int = 32) -> np.ndarray:
  """``[count, C]``: every unit's activation (spatial mean) on every natural image, loaded batch by batch.

  Under ``jax.distributed`` each process loads only its share of the images
  (:func:`fvjax.parallel.process_share`); every process gets every image's values.
  """
  share = _Loaded(model, natural, parallel.process_share(natural.count))
  return render_lib.unit_values(model, layer, share, batch_size, process_local=True)


class _Loaded:
  """Images ``indices`` of a natural set as a sequence that loads (and checks) only the slice asked for."""

  def __init__(self, model: ModelRecord, natural: NaturalSet, indices: range):
    self._model, self._natural, self._indices = model, natural, indices

  def __len__(self) -> int:
    return len(self._indices)

  def __getitem__(self, items: slice) -> np.ndarray:
    return check_images(self._model, self._natural.load(list(self._indices[items])))


def top_queries(values: np.ndarray, top_k: int) -> np.ndarray:
  """Indices of the ``top_k`` highest values, highest first (``values``: ``[N]``)."""
  if not 1 <= top_k <= len(values):
    raise ValueError(f"top_k must be between 1 and the number of natural images ({len(values)}); got {top_k}.")
  return np.argsort(-np.asarray(values), kind="stable")[:top_k]


def make_trial(image: np.ndarray, act_map: np.ndarray, g: occlusion.Grid, unoccluded: float) -> dict:
  """One two-choice trial from a query's occlusion map.

  Args:
    image: ``[S, S, 3]`` the query.
    act_map: ``[n, n]`` activations from :func:`fvjax.causal.occlusion.sweep`.
    g: the grid of ``act_map``.
    unoccluded: the unit's activation on the query itself.

  Returns:
    A dict with ``"record"`` (JSON-ready: activations and occluder corners of
    the correct ``max`` and wrong ``min`` choice) and ``"images"``
    (``[3, S, S, 3]``: query, correct choice, wrong choice).
  """
  flat = np.asarray(act_map).reshape(-1)
  best, worst = int(np.argmax(flat)), int(np.argmin(flat))
  pair = occlusion.occluded_images(image, g, [best, worst])
  record = {
      "unoccluded": float(unoccluded),
      "max": {"activation": float(flat[best]), "corner": list(g.corner(best))},
      "min": {"activation": float(flat[worst]), "corner": list(g.corner(worst))},
      "occluder_side": g.side,
      "map_mean": float(flat.mean()),
  }
  return {"record": record, "images": np.concatenate([np.asarray(image)[None], pair])}


def unit_trials(model: ModelRecord, layer: str, unit: int, natural: NaturalSet, values: np.ndarray, top_k: int, *,
                fraction: float = occlusion.PAPER_FRACTION, stride: int = occlusion.PAPER_STRIDE, chunk: int = 128,
                mesh: jax.sharding.Mesh | None = None, params=None) -> tuple[list[dict], np.ndarray, list[float]]:
  """The unit's trials: one per top-``top_k`` query.

  Args:
    model: the studied model.
    layer: its layer.
    unit: the unit.
    natural: the natural set.
    values: ``[count]`` the unit's activation on every natural image.
    top_k: number of queries.
    fraction, stride, chunk, mesh, params: passed to the sweep.

  Returns:
    ``(records, images [top_k, 3, S, S, 3], seconds of each sweep)``; record
    i also names its query (index, source, name).
  """
  g = occlusion.grid(natural.size, fraction, stride)
  queries = top_queries(values, top_k)
  records, images, seconds = [], [], []
  for q in queries:
    image = natural.load([int(q)])[0]
    start = time.perf_counter()
    act_map = occlusion.sweep(model, image, layer, unit, fraction=fraction, stride=stride, chunk=chunk,
                              mesh=mesh, params=params)
    seconds.append(time.perf_counter() - start)
    trial = make_trial(image, act_map, g, values[q])
    trial["record"].update(query=int(q), source=int(natural.sources[q]), name=natural.names[q])
    records.append(trial["record"])
    images.append(trial["images"])
  return records, np.stack(images), seconds
