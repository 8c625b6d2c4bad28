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
import dataclasses
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
from fvjax.experiments import config as config_lib
from fvjax.models import labels as labels_lib
from fvjax.models.record import ModelRecord, check_images
from fvjax.optvis import methods
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


option = config_lib.option


@dataclasses.dataclass(frozen=True)
class Config(config_lib.MethodConfig):
  """Settings of :func:`run` (Lucid's 512 steps; the paper's 50 images per class); the flags of
  ``fvjax.launch.sanity_check``.

  ``--method=accentuation`` starts each class unit from the class's first natural image (in embedded mode
  the photo itself; that image is also one of the class's natural images N_c the visualization is compared
  with). MACO's spectrum is the mean over the first natural image of up to 64 classes spread over the list.
  """

  imagenet_dir: str | None = option(
      None, "ImageNet-layout folder (one subfolder per class, named by WordNet ID, mapped to the model's logits "
      "by that ID); default: the embedded photos grouped by the model's own top-1 class.", folder=True)
  class_map: str | None = option(None, "For folders not named by WordNet ID: a file of 'folder_name logit_index' "
                                 "lines.")
  per_class: int = option(50, "Natural images per class (image folder).", lower=1)
  num_classes: int | None = option(None, "Use only the first N classes (default: all).", lower=1)
  crops_per_photo: int = option(8, "Embedded mode: augmented crops per photo (same-class images; S_same needs at "
                                "least one).", lower=1)
  steps: int = option(render_lib.LUCID_STEPS, "Optimisation steps per visualization (Lucid: 512).", lower=1)
  size: int | None = config_lib.size(None, "Visualization size in px (default: the model's input size).")
  render_batch: int = option(32, "Class units rendered together (sharded over devices).", lower=1)
  layers: tuple[str, ...] = option((), "Layers to compare (default: all of the model's).")
  measure: str = option("spearman", "Similarity.", choices=("spearman", "pearson", "cosine"))
  reduction: str = option("flatten", "Compare whole activations or per-channel spatial means (paper: unverified).",
                          choices=("flatten", "channel_mean"))
  num_other: int = option(1, "Other classes each class is compared with for S_diff.", lower=1)
  num_bootstrap: int = option(1000, "Bootstrap resamples over classes for the CIs.", lower=1)
  seed: int = config_lib.seed()
  batch_size: int = option(16, "Images per forward pass.", lower=1, cli=False)

  def __post_init__(self):
    config_lib.validate(self)


def classes_from(model: ModelRecord, config: Config) -> ClassImages:
  """The natural images ``config`` names: its ``imagenet_dir``, else the shipped photos with crops."""
  if config.imagenet_dir:
    return folder_classes(config.imagenet_dir, model, config.per_class, config.num_classes, config.class_map)
  return embedded_classes(model, jax.random.PRNGKey(config.seed), config.crops_per_photo, config.num_classes)


def run(model: ModelRecord, config: Config, workdir: str, *, classes: ClassImages | None = None,
        progress: bool = True, **render_options) -> dict:
  """Renders class visualizations and computes the layerwise path similarity.

  Args:
    model: the model record.
    config: the settings.
    workdir: output folder; rerunning with the same workdir resumes.
    classes: natural images by class (default: :func:`classes_from`).
    progress: progress bars.
    **render_options: passed to :func:`fvjax.optvis.render.render`.

  Returns:
    The metrics dict (also written to ``metrics.json``).
  """
  classes = classes_from(model, config) if classes is None else classes
  key = jax.random.PRNGKey(config.seed)
  steps, size, render_batch, measure = config.steps, config.size, config.render_batch, config.measure
  reduction, num_other, batch_size, num_bootstrap = (config.reduction, config.num_other, config.batch_size,
                                                     config.num_bootstrap)
  layers = tuple(config.layers or model.layers)
  for l in layers:
    model.check_layer(l)
  if len(classes.classes) < 2:
    raise ValueError(f"The sanity check needs at least 2 classes (S_diff compares a class with others); got "
                     f"{len(classes.classes)}.")
  os.makedirs(workdir, exist_ok=True)
  start = time.time()
  render_settings = {**store.model_settings(model), "steps": steps, "size": size, "render_batch": render_batch,
                     "key": key, "render_options": render_options, **config.method_settings()}
  visualizations = _render_all(model, classes, workdir, key, render_settings, _method_options(model, config, classes),
                               progress)

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
      "model": model.name, "weights": model.weights, "method": config.method, "measure": measure, "reduction": reduction, "steps": steps,
      "num_classes": num, "classes": [int(c) for c in classes.classes], "class_wnids": list(classes.wnids),
      "class_names": list(classes.names),
      "num_other_classes": num_other, "seconds": time.time() - start, "layers": list(layers),
      "per_layer": per_layer,
  }
  io.write_json(os.path.join(workdir, "metrics.json"), metrics)
  plots.save_figure(plots.path_similarity(metrics), os.path.join(workdir, "path_similarity.png"))
  titles = [n[:28] for n in classes.names]
  plots.save_figure(plots.labelled_grid(visualizations, titles), os.path.join(workdir, "visualizations.png"))
  return metrics


def _method_options(model: ModelRecord, config: Config, classes: ClassImages) -> Callable[[range], dict]:
  """``class positions -> render options`` of ``config.method`` (MACO's spectrum computed once)."""
  # The class's first image: process 0's (its share comes first), the same seed and spectrum on every process.
  first = lambda i: parallel.from_first_process(check_images(model, classes.load(i))[:1])
  if config.method == "maco":
    picks = range(0, len(classes.classes), max(1, len(classes.classes) // 64))
    spectrum = np.concatenate([first(i) for i in picks])
    options = config.render_options(model, config.size, spectrum_images=spectrum)
    return lambda positions: options
  if methods.needs_seeds(config.method):
    return lambda positions: config.render_options(model, config.size,
                                                   seeds=np.concatenate([first(i) for i in positions]))
  options = config.render_options(model, config.size)
  return lambda positions: options


def _render_all(model, classes, workdir, key, settings, method_options, progress):
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
                                 **method_options(range(start, start + len(chunk))), **settings["render_options"])
      saved = {"images": result.images[-1]}
      store.save_arrays(workdir, "visualizations", chunk_settings, saved)
    out.append(saved["images"])
  return np.concatenate(out)


def summary(metrics: dict) -> str:
  """The path similarity per layer as a table (S_fv, S_same, S_diff, normalized with its 95% CI)."""
  lines = [f"{'layer':>10} {'S_fv':>7} {'S_same':>7} {'S_diff':>7} {'normalized':>10}  95% CI"]
  for layer in metrics["layers"]:
    m = metrics["per_layer"][layer]
    lo, hi = m["normalized_ci"]
    lines.append(f"{layer:>10} {m['s_fv']:7.3f} {m['s_same']:7.3f} {m['s_diff']:7.3f} {m['normalized']:10.2f}  "
                 f"[{lo:.2f}, {hi:.2f}]")
  return "\n".join(lines + [f"{metrics['num_classes']} classes in {metrics['seconds']:.0f} s"])
