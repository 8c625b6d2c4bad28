"""The sanity check of paper section 3: are visualizations processed like natural images?

For every class unit of the last layer: render its visualization FV_c, take
natural images N_c of that class, and at every layer compare (with
:mod:`fvjax.similarity`) FV_c with N_c (S_fv), N_c with itself (S_same) and
N_c with images of other classes (S_diff).

Memory stays bounded: classes are visited in a fixed random order; for class c
only its own images and those of the ``num_other`` classes before it (the
"other class" images of S_diff) are held, as per-layer feature rows already
rank-transformed and normalized on device, so one matrix product gives every
similarity. Work is resumable: visualizations are saved chunk by chunk and
per-class similarities after every class into the workdir's store
(:mod:`fvjax.store`), keyed by the settings that produced them, so a rerun
with the same settings resumes and one with other settings starts afresh.
"""

from __future__ import annotations

import collections
import hashlib
import os
import time
from typing import Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from fvjax import data
from fvjax import io
from fvjax import parallel
from fvjax import plots
from fvjax import similarity
from fvjax import store
from fvjax.models import labels as labels_lib
from fvjax.models.record import ModelRecord, check_images
from fvjax.optvis import render as render_lib


class ClassImages(NamedTuple):
  """Natural images by class: ``classes[i]`` is a logit index; ``load(i)`` gives
  that class's images ``[n,H,W,3]`` in ``[0,1]``; ``names[i]`` a label;
  ``wnids[i]`` its WordNet ID (``""`` where unknown); ``source`` says where the
  images come from and how they were drawn (part of the stored results' settings);
  ``process_local``: ``load(i)`` gives only this process's share
  (:func:`fvjax.parallel.process_share`) of them, in a multi-process run."""

  classes: tuple[int, ...]
  load: Callable[[int], np.ndarray]
  names: tuple[str, ...]
  wnids: tuple[str, ...] = ()
  source: Mapping | None = None
  process_local: bool = False


def embedded_classes(model: ModelRecord, key: jax.Array, crops_per_photo: int = 8,
                     max_classes: int | None = None) -> ClassImages:
  """The shipped photos grouped by the model's own top-1 class, plus crops.

  Each photo joins the class the model assigns it; random resized crops,
  flips and colour jitter of it serve as further images of that class (one
  photo per class ships, and S_same needs at least two).
  """
  size = model.input_size[0]
  photos, names = data.sample_photos(size)
  top1 = parallel.map_batches(jax.jit(lambda p, x: model.apply(p, x)[0].argmax(-1)), model.params, photos, 8)
  groups = collections.OrderedDict()
  for i, c in enumerate(top1):
    groups.setdefault(int(c), []).append(i)
  classes = tuple(groups)[:max_classes]
  crops = np.asarray(data.augmented_crops(key, photos, crops_per_photo, size))

  def load(i):
    idx = groups[classes[i]]
    per = [np.concatenate([photos[j:j + 1], crops[j * crops_per_photo:(j + 1) * crops_per_photo]]) for j in idx]
    return np.concatenate(per)

  label = (lambda c: model.labels[c]) if model.labels else str
  names = tuple(f"{label(c)} ({', '.join(names[j] for j in groups[c])})" for c in classes)
  source = {"images": "embedded photos", "crops_per_photo": crops_per_photo, "key": key, "size": size}
  return ClassImages(classes, load, names, tuple(model.wnids[c] if model.wnids else "" for c in classes), source)


def folder_classes(root: str, model: ModelRecord, per_class: int = 50, num_classes: int | None = None,
                   class_map: str | Mapping[str, int] | None = None) -> ClassImages:
  """An ImageNet-layout folder ``root/<class>/<image>``, each class folder mapped to its logit by name.

  Args:
    root: the folder.
    model: the model whose logits the classes are (its ``wnids`` map
      WordNet-ID folder names such as ``n01440764`` to logits: InceptionV1's
      order is not the sorted one).
    per_class: images per class (the first by file name).
    num_classes: only the first N class folders (sorted by name).
    class_map: for other layouts: a file of ``folder_name logit_index`` lines,
      or a dict; replaces the WordNet-ID lookup.

  Raises:
    ValueError: a folder name that is neither a WordNet ID of the model nor
      in ``class_map`` (one sentence saying how to pass a mapping).
  """
  paths, labels, class_names = data.image_folder(root, per_class=per_class)
  by_class = collections.defaultdict(list)
  for p, l in zip(paths, labels):
    by_class[int(l)].append(p)
  keep = sorted(by_class)[:num_classes]
  folders = [class_names[k] for k in keep]
  logit_of = labels_lib.read_class_map(class_map) if isinstance(class_map, str) else class_map
  logits = data.folder_logits(folders, logit_of if logit_of is not None else model.logit_of_wnid(), model.name,
                              model.num_classes)
  size = model.input_size[0]
  wnids = tuple(model.wnids[c] if model.wnids else "" for c in logits)
  names = tuple(f"{model.labels[c]} ({f})" if model.labels else f for c, f in zip(logits, folders))
  files = [os.path.relpath(p, root) for k in keep for p in by_class[k]]
  source = {"images": os.path.abspath(root), "size": size,
            "files": hashlib.sha256("\n".join(files).encode()).hexdigest()[:16]}

  def load(i):  # this process's share of the class (all of it on one process)
    paths = by_class[keep[i]]
    share = [data.load_image(paths[j], size) for j in parallel.process_share(len(paths))]
    return np.stack(share) if share else np.zeros((0, size, size, 3), np.float32)

  return ClassImages(logits, load, names, wnids, source, process_local=True)


def feature_fn(model: ModelRecord, layers: Sequence[str], measure: str, reduction: str):
  """A jitted ``images -> {layer: prepared rows [B, D]}`` (rank/centre/normalize on device)."""

  @jax.jit
  def fn(params, images):
    logits, acts = model.apply(params, images)
    acts = dict(acts, logits=logits)
    return {l: similarity.prepare(similarity.features(acts[l], reduction), measure) for l in layers}

  return fn


def run(model: ModelRecord, classes: ClassImages, workdir: str, *, key: jax.Array, layers: Sequence[str] | None = None,
        steps: int = 512, size: int | None = None, render_batch: int = 32, measure: str = "spearman",
        reduction: str = "flatten", num_other: int = 1, batch_size: int = 16, num_bootstrap: int = 1000,
        progress: bool = True, **render_options) -> dict:
  """Renders class visualizations and computes the layerwise path similarity.

  Args:
    model: the model record.
    classes: natural images by class (:func:`embedded_classes`, :func:`folder_classes`).
    workdir: output folder; rerunning with the same workdir resumes.
    key: PRNG key (visualizations and the class order).
    layers: layers to compare (default: all of the model's).
    steps: optimisation steps per visualization.
    size: visualization size (default: the model's input size).
    render_batch: class units rendered together (one image each).
    measure: ``spearman``, ``pearson`` or ``cosine``.
    reduction: ``flatten`` (whole activation) or ``channel_mean``.
    num_other: classes whose images S_diff compares each class with.
    batch_size: images per forward pass.
    num_bootstrap: bootstrap resamples (over classes) for the CIs.
    progress: progress bars.
    **render_options: passed to :func:`fvjax.optvis.render.render`.

  Returns:
    The metrics dict (also written to ``metrics.json``).
  """
  layers = tuple(layers or model.layers)
  for l in layers:
    model.check_layer(l)
  if len(classes.classes) < 2:
    raise ValueError(f"The sanity check needs at least 2 classes (S_diff compares a class with others); got "
                     f"{len(classes.classes)}.")
  if num_bootstrap < 1:
    raise ValueError(f"num_bootstrap must be at least 1 (the confidence intervals resample classes); got {num_bootstrap}.")
  os.makedirs(workdir, exist_ok=True)
  start = time.time()
  render_settings = {**store.model_settings(model), "steps": steps, "size": size, "render_batch": render_batch,
                     "key": key, "render_options": render_options}
  visualizations = _render_all(model, classes, workdir, key, render_settings, progress)

  num = len(classes.classes)
  num_other = max(1, min(num_other, num - 1))
  order = np.random.default_rng(int(jax.random.randint(key, (), 0, 2**31 - 1))).permutation(num)
  settings = {**render_settings, "classes": classes.classes, "class_names": classes.names,
              "images": classes.source, "layers": layers, "measure": measure, "reduction": reduction,
              "num_other": num_other}
  done = store.load_arrays(workdir, "similarity", settings) or {}
  sims = {k: done.get(k, np.full((num, len(layers)), np.nan)) for k in ("fv", "same", "diff")}
  fn = feature_fn(model, layers, measure, reduction)
  params = parallel.replicate(model.params, parallel.data_mesh())  # once, not per class
  # Visualizations rendered on a smaller canvas are compared at the model's
  # input size, like the natural images (bilinear upsampling, as lucent does).
  h, w = model.input_size
  if visualizations.shape[1:3] != (h, w):
    visualizations = np.asarray(jax.image.resize(visualizations, (len(visualizations), h, w, 3), "bilinear"))
  fv_feats = parallel.map_batches(fn, params, visualizations, batch_size)
  cache: collections.OrderedDict = collections.OrderedDict()

  def class_features(i):
    if i not in cache:
      cache[i] = parallel.map_batches(fn, params, check_images(model, classes.load(i)), batch_size,
                                      process_local=classes.process_local)
      while len(cache) > num_other + 1:
        cache.popitem(last=False)
    return cache[i]

  todo = [pos for pos in range(num) if np.isnan(sims["fv"][order[pos]]).any()]  # resume: skip done classes
  for pos in tqdm(todo, desc="path similarity", disable=not progress):
    c = order[pos]
    own = class_features(c)
    others = [class_features(order[(pos - k) % num]) for k in range(1, num_other + 1)]
    for j, l in enumerate(layers):
      other = np.concatenate([o[l] for o in others])
      sims["fv"][c, j], sims["same"][c, j], sims["diff"][c, j] = similarity.class_scores(own[l], fv_feats[l][c], other)
    store.save_arrays(workdir, "similarity", settings, sims)

  per_layer = {}
  for j, l in enumerate(layers):
    per_class = similarity.ClassSimilarity(sims["fv"][:, j], sims["same"][:, j], sims["diff"][:, j])
    per_layer[l] = similarity.summarise(per_class, num_bootstrap=num_bootstrap)
  metrics = {
      "model": model.name, "weights": model.weights, "measure": measure, "reduction": reduction, "steps": steps,
      "num_classes": num, "classes": [int(c) for c in classes.classes], "class_wnids": list(classes.wnids),
      "class_names": list(classes.names),
      "num_other_classes": num_other, "seconds": time.time() - start, "layers": list(layers),
      "per_layer": per_layer,
  }
  io.write_json(os.path.join(workdir, "metrics.json"), metrics)
  plots.save_figure(plot_path_similarity(metrics), os.path.join(workdir, "path_similarity.png"))
  titles = [n[:28] for n in classes.names]
  plots.save_figure(plots.labelled_grid(visualizations, titles), os.path.join(workdir, "visualizations.png"))
  return metrics


def _render_all(model, classes, workdir, key, settings, progress):
  """Class-unit visualizations ``[C,h,w,3]``, stored per chunk of ``render_batch`` units (resumable)."""
  out = []
  units = list(classes.classes)
  for start in range(0, len(units), settings["render_batch"]):
    chunk = units[start:start + settings["render_batch"]]
    chunk_settings = {**settings, "units": chunk}
    saved = store.load_arrays(workdir, "visualizations", chunk_settings)
    if saved is None:
      result = render_lib.render(model, chunk, layer="logits", key=jax.random.fold_in(key, start),
                                 thresholds=(settings["steps"],), size=settings["size"], progress=progress,
                                 **settings["render_options"])
      saved = {"images": result.images[-1]}
      store.save_arrays(workdir, "visualizations", chunk_settings, saved)
    out.append(saved["images"])
  return np.concatenate(out)


def plot_path_similarity(metrics: dict):
  """Layer depth vs S_fv, S_same, S_diff (with 95% bands) and the normalized similarity."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  layers = metrics["layers"]
  x = np.arange(len(layers))
  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.2))
  styles = (("s_same", "natural, same class", "tab:green"), ("s_fv", "visualization vs natural (same class)", "tab:red"),
            ("s_diff", "natural, other class", "tab:blue"))
  for name, label, colour in styles:
    y = np.array([metrics["per_layer"][l][name] for l in layers])
    ci = np.array([metrics["per_layer"][l][f"{name}_ci"] for l in layers])
    ax1.plot(x, y, "-o", ms=3, color=colour, label=label)
    ax1.fill_between(x, ci[:, 0], ci[:, 1], color=colour, alpha=0.2)
  ax1.set_ylabel(f"{metrics['measure']} similarity")
  ax1.legend(fontsize=8)
  y = np.array([metrics["per_layer"][l]["normalized"] for l in layers])
  ci = np.array([metrics["per_layer"][l]["normalized_ci"] for l in layers])
  ax2.plot(x, y, "-o", ms=3, color="black")
  ax2.fill_between(x, ci[:, 0], ci[:, 1], color="gray", alpha=0.3)
  ax2.axhline(1.0, color="tab:green", ls="--", lw=1, label="like same-class natural images")
  ax2.axhline(0.0, color="tab:blue", ls="--", lw=1, label="like other-class natural images")
  ax2.set_ylabel("normalized path similarity")
  ax2.legend(fontsize=8)
  for ax in (ax1, ax2):
    ax.set_xticks(x)
    ax.set_xticklabels(layers, rotation=70, fontsize=7)
    ax.set_xlabel("layer (depth)")
  fig.suptitle(f"{metrics['model']}: {metrics['num_classes']} classes, {metrics['steps']} steps")
  fig.tight_layout()
  return fig
