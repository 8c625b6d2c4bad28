"""Paper section 2.1 end to end: build the fooling circuit, compare visualizations
and natural behaviour before and after.

Writes into ``workdir``: ``comparison.png`` (per unit: original visualization |
manipulated visualization | target), ``trajectory.png`` (the manipulated
visualizations at every threshold) and ``metrics.json``:

- ``natural_top1_agreement``: fraction of natural images whose top-1 class is
  the same for the manipulated and the original model;
- ``natural_max_abs_logit_diff``: largest ``|A - shift - F|`` over natural
  images and logits (the constant shift removed);
- ``margin``: the circuit's precondition on those natural images (largest
  ``F + shift`` and ``D + shift`` against ``k``, :func:`circuit.margin`);
- ``detector_accuracy_natural`` / ``detector_accuracy_visualization``: the
  detector on those natural images / on the original model's visualizations
  of the shown units at every threshold;
- ``target_similarity_manipulated`` / ``target_similarity_original``: mean
  Pearson correlation of each visualization with its target (resized to the
  same size), at the last threshold; per threshold under ``..._by_threshold``;
- ``target_similarity_ceiling``: the same for the target unit D rendered
  alone (same key, size and steps): the most the manipulated units can reach
  (a permutation's targets are D's own renders, so 1);
- ``accuracy``: top-1/top-5 of the original and the manipulated model on the
  natural images whose class is known (``labels``; the paper: 69.146 % ->
  68.744 % top-1 on ImageNet val), ``None`` without labels.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Sequence

import jax
import numpy as np

from fvjax import data
from fvjax import io
from fvjax import parallel
from fvjax import plots
from fvjax import similarity
from fvjax.experiments import config as config_lib
from fvjax.experiments import train_detector
from fvjax.fooling import circuit as circuit_lib
from fvjax.fooling import detector as det
from fvjax.fooling import training
from fvjax.models.record import ModelRecord, check_images
from fvjax.optvis import render as render_lib

PAPER_THRESHOLDS = (2, 4, 8, 16, 32)  # the paper shows the image target after short runs


option = config_lib.option


@dataclasses.dataclass(frozen=True)
class Config:
  """Settings of :func:`run` (the paper's k and short render thresholds); the flags of
  ``fvjax.launch.fooling_circuit``. The target is exactly one of ``target_image``, ``target_photo`` and
  ``offset``; the detector is ``detector`` or one trained with ``training`` (whose ``seed`` is the run's)."""

  detector: str | None = option(None, "Detector directory from fvjax.launch.train_detector (default: train one "
                                "into --workdir/detector_training).")
  target_image: str | None = option(None, "Image file every manipulated unit should show.")
  target_photo: str | None = option(None, "A shipped photo as the target (e.g. astronaut).")
  offset: int | None = option(None, "Permutation target: unit i shows unit (i + offset) mod n (paper: 100).")
  target_scale: str = option(circuit_lib.AUTO, "Image target: D's scale s in D = s<pre(x),t>/(h*w); 'auto' (0.9 of "
                             "the largest that keeps natural logits exact) or a number (the paper's notebook: 1).")
  show_units: tuple[int, ...] = option((1, 94, 281, 417, 530, 967), "Logits to visualize in the comparison figure "
                                       "(original vs manipulated).", units="required")
  manipulate_units: tuple[int, ...] = option((), "Logits given the circuit (default: all).", units="optional")
  steps: tuple[int, ...] = option(PAPER_THRESHOLDS, "Render step counts at which the trajectory figure and metrics "
                                  "are recorded.")
  size: int | None = config_lib.size(None, "Visualization size (default: the model's input size).")
  k: float = option(circuit_lib.PAPER_K, "Gate strength k of A = ReLU(F'-kE) + ReLU(D'+kE-k) (paper: 250).")
  natural_crops: int = option(16, "Augmented crops per held-out photo for the natural metrics (0: the photos "
                              "alone).", lower=0)
  training: train_detector.Config = dataclasses.field(default_factory=train_detector.Config,
                                                      metadata={"help": "The detector's training.", "cli": False,
                                                                "folder": False})

  def __post_init__(self):
    config_lib.validate(self)
    if sum(x is not None for x in (self.target_image, self.target_photo, self.offset)) != 1:
      raise ValueError("Give exactly one target: --target_image=PATH, --target_photo=NAME or --offset=N.")
    if self.target_scale != circuit_lib.AUTO:
      try:
        float(self.target_scale)
      except ValueError:
        raise ValueError(f"The target scale must be a positive number or 'auto'; got {self.target_scale!r}.") from None


def target_from(model: ModelRecord, config: Config) -> circuit_lib.Target:
  """The one target ``config`` asks for: an image file, a shipped photo, or a permutation ``offset``."""
  if config.offset is not None:
    return circuit_lib.permutation(config.offset)
  scale = config.target_scale if config.target_scale == circuit_lib.AUTO else float(config.target_scale)
  size = config.size or model.input_size[0]
  image = (data.load_image(config.target_image, size) if config.target_image
           else data.sample_photos(size, [config.target_photo])[0][0])
  return circuit_lib.image_target(image, scale)


def run(model: ModelRecord, config: Config, workdir: str, *, progress: bool = True, **render_options) -> dict:
  """The fooling circuit end to end: the detector (``config.detector``, else trained into
  ``workdir/detector_training``, resumable), the target, the natural images the detector never saw (with
  ``natural_crops`` crops each), then :func:`compare`.

  Returns:
    The metrics written to ``metrics.json``.
  """
  target = target_from(model, config)
  detector_dir = config.detector or train_detector.run(model, config.training,
                                                       os.path.join(workdir, "detector_training"),
                                                       progress=progress)["detector"]
  key = jax.random.PRNGKey(config.training.seed)
  natural, names = heldout_natural(detector_dir, model.input_size[0], config.natural_crops, key)
  return compare(model, det.load(detector_dir), target, workdir, key=key, units=config.show_units,
                 natural_images=natural, natural_labels=labels_of_files(model, names), natural_names=names,
                 manipulate=config.manipulate_units or None, thresholds=config.steps, size=config.size, k=config.k,
                 progress=progress, **render_options)


def summary(metrics: dict) -> str:
  """What a run found, in a few lines (printed by the launch script, shown by the notebook)."""
  natural_names = metrics.get("natural_names") or ()
  names = ", ".join(os.path.basename(n) for n in natural_names[:6]) + ("..." if len(natural_names) > 6 else "")
  lines = [f"natural images ({metrics['num_natural_images']}{', from ' + names if names else ''}): top-1 agreement "
           f"{metrics['natural_top1_agreement']:.3f}, max |logit diff| {metrics['natural_max_abs_logit_diff']:.2e}"]
  if metrics.get("accuracy"):
    a = metrics["accuracy"]
    lines.append(f"accuracy on {a['original']['num_images']} labelled images: top-1 {a['original']['top1']:.3%} -> "
                 f"{a['manipulated']['top1']:.3%}, top-5 {a['original']['top5']:.3%} -> {a['manipulated']['top5']:.3%}")
  m = metrics["margin"]
  if not m["ok"]:
    lines.append(f"warning: the circuit's precondition fails on natural images: max F+shift {m['max_f_shifted']:.1f}, "
                 f"max D+shift {m['max_d_shifted']:.1f}, k {m['k']:g}; natural logits change (raise --k).")
  lines.append(f"detector accuracy: natural {metrics['detector_accuracy_natural']:.3f}, "
               f"visualizations {metrics['detector_accuracy_visualization']:.3f}")
  lines.append(f"target similarity: manipulated {metrics['target_similarity_manipulated']:.3f}, original "
               f"{metrics['target_similarity_original']:.3f}, D alone (ceiling) {metrics['target_similarity_ceiling']:.3f}")
  return "\n".join(lines)


def logits_of(model: ModelRecord, images: np.ndarray, batch_size: int = 16) -> np.ndarray:
  """``[N,K]`` logits of ``images``."""
  return parallel.map_batches(jax.jit(lambda p, x: model.apply(p, x)[0]), model.params, images, batch_size)


def heldout_natural(detector_dir: str, size: int, crops: int, key: jax.Array) -> tuple[np.ndarray, list[str]]:
  """Natural images the detector never saw: from its ``heldout.json``, else all shipped photos.

  Shipped photos come with ``crops`` augmented crops each; image files
  (a detector trained on a folder) are loaded as they are.

  Returns:
    ``(images [N,size,size,3], names)``.
  """
  path = os.path.join(detector_dir, train_detector.HELDOUT_FILE)
  names = io.read_json(path)["natural"] if os.path.isfile(path) else list(data.SAMPLE_PHOTOS)
  if all(n in data.SAMPLE_PHOTOS for n in names):
    photos, _ = data.sample_photos(size, names)
    return np.concatenate([photos, np.asarray(data.augmented_crops(key, photos, crops, size))]), names
  return np.stack([data.load_image(p, size) for p in names]), names


def labels_of_files(model: ModelRecord, paths: Sequence[str]) -> np.ndarray | None:
  """The logit of each image file from its class folder's WordNet ID (``-1`` where the folder is not one);
  ``None`` when no file's folder names a class of the model."""
  logit_of = model.logit_of_wnid()
  labels = np.asarray([logit_of.get(os.path.basename(os.path.dirname(p)), -1) for p in paths], np.int64)
  return labels if (labels >= 0).any() else None


def topk_accuracy(logits: np.ndarray, labels: np.ndarray) -> dict:
  """Top-1 and top-5 accuracy over the images with a label (``labels >= 0``)."""
  known = labels >= 0
  top5 = np.argsort(-logits[known], axis=-1)[:, :5]
  return {"top1": float(np.mean(top5[:, 0] == labels[known])),
          "top5": float(np.mean((top5 == labels[known][:, None]).any(-1))), "num_images": int(known.sum())}


def natural_metrics(original: ModelRecord, manipulated: ModelRecord, detector: det.Detector,
                    images: np.ndarray, labels: np.ndarray | None = None,
                    shift: float = circuit_lib.PAPER_SHIFT) -> dict:
  """How much the manipulation changes behaviour on natural ``images`` (``labels``: their logits, or None)."""
  f, a = logits_of(original, images), logits_of(manipulated, images)
  return {
      "num_natural_images": int(len(images)),
      "natural_top1_agreement": float(np.mean(f.argmax(-1) == a.argmax(-1))),
      "natural_max_abs_logit_diff": float(np.abs(a - shift - f).max()),
      "detector_accuracy_natural": training.accuracy(detector, images, 0),
      "accuracy": None if labels is None else {"original": topk_accuracy(f, labels),
                                               "manipulated": topk_accuracy(a, labels)},
  }


def compare(model: ModelRecord, detector: det.Detector, target: circuit_lib.Target, workdir: str, *, key: jax.Array,
            units: Sequence[int], natural_images: np.ndarray, natural_labels: np.ndarray | None = None,
            natural_names: Sequence[str] = (), manipulate: Sequence[int] | None = None,
            thresholds: Sequence[int] = PAPER_THRESHOLDS, size: int | None = None, k: float = circuit_lib.PAPER_K,
            progress: bool = True, **render_options) -> dict:
  """Manipulates ``model``, renders ``units`` before and after, writes figures and metrics.

  Args:
    model: the original record.
    detector: the natural-vs-visualization detector.
    target: :func:`fvjax.fooling.circuit.permutation` or ``image_target``.
    workdir: output folder.
    key: PRNG key; original and manipulated renders share it, so a unit's
      two visualizations start from the same image.
    units: logits to visualize.
    natural_images: ``[N,H,W,3]`` in ``[0,1]`` for the behaviour metrics
      (images the detector was not trained on).
    natural_labels: ``[N]`` their logits (``-1`` unknown) for the top-1/top-5 accuracy, or None.
    natural_names: where they come from (file paths or shipped photo names; recorded in the metrics).
    manipulate: logits given the circuit (default all).
    thresholds: render step counts.
    size: render size (default the model's input size).
    k: gate strength.
    progress: progress bars.
    **render_options: passed to :func:`fvjax.optvis.render.render`.

  Returns:
    The metrics written to ``metrics.json``.
  """
  start = time.time()
  natural_images = check_images(model, natural_images)
  units = [int(u) for u in units]
  manipulated = circuit_lib.circuit(model, detector, target, units=manipulate, k=k)
  opts = dict(layer="logits", key=key, thresholds=thresholds, size=size, progress=progress, **render_options)
  after = render_lib.render(manipulated, units, **opts)
  before = render_lib.render(model, units, **opts)
  if target.kind == "permutation":
    # The target of unit u is the original visualization of the unit it shows
    # (class u + offset among the model's classes), rendered from the same starting image.
    source = circuit_lib.source_logits(model, target.offset)
    shown = [int(source[u]) for u in units]
    targets = render_lib.render(model, shown, **opts).images
    ceiling = targets  # D is the shown logit itself
  else:
    shown = None
    targets = np.broadcast_to(target.image, (len(thresholds), len(units), *target.image.shape))
    ceiling = render_lib.render(circuit_lib.target_unit(model, target, k), [0] * len(units), **opts).images
  sim_after = [similarity.image_pearson(after.images[t], targets[t]) for t in range(len(thresholds))]
  sim_before = [similarity.image_pearson(before.images[t], targets[t]) for t in range(len(thresholds))]
  sim_ceiling = [similarity.image_pearson(ceiling[t], targets[t]) for t in range(len(thresholds))]
  fvs = before.images.reshape(-1, *before.images.shape[-3:])

  metrics = {
      "model": model.name,
      "weights": model.weights,
      "target": target.kind if target.kind == "image" else f"permutation (offset {target.offset})",
      "units": units,
      "shown_units": shown,  # permutation: the logit whose visualization each unit shows
      "num_manipulated_units": model.num_classes if manipulate is None else len(set(manipulate)),
      "k": k,
      "thresholds": list(after.thresholds),
      "target_scale": circuit_lib.target_scale(model, target, k),
      **natural_metrics(model, manipulated, detector, natural_images, natural_labels),
      "natural_names": list(natural_names),
      "margin": circuit_lib.margin(model, target, natural_images, k=k),
      "detector_accuracy_visualization": training.accuracy(detector, fvs, 1),
      "target_similarity_manipulated": float(np.mean(sim_after[-1])),
      "target_similarity_original": float(np.mean(sim_before[-1])),
      "target_similarity_ceiling": float(np.mean(sim_ceiling[-1])),
      "target_similarity_manipulated_by_threshold": [float(np.mean(s)) for s in sim_after],
      "target_similarity_original_by_threshold": [float(np.mean(s)) for s in sim_before],
      "target_similarity_ceiling_by_threshold": [float(np.mean(s)) for s in sim_ceiling],
      "target_similarity_per_unit": {str(u): {"manipulated": float(sim_after[-1][i]), "original": float(sim_before[-1][i]),
                                              "ceiling": float(sim_ceiling[-1][i])} for i, u in enumerate(units)},
      "seconds": time.time() - start,
  }
  _figures(model, units, before, after, targets, workdir)
  io.write_json(os.path.join(workdir, "metrics.json"), metrics)
  return metrics


def _figures(model, units, before, after, targets, workdir):
  name = (lambda u: f"{u} {model.labels[u][:14]}") if model.labels else str
  last = len(after.thresholds) - 1
  rows = [im for i in range(len(units)) for im in (before.images[last, i], after.images[last, i], targets[last, i])]
  titles = [t for u in units for t in (f"original {name(u)}", f"manipulated {u}", "target")]
  plots.save_figure(plots.labelled_grid(np.stack(rows), titles, cols=3), os.path.join(workdir, "comparison.png"))
  traj = after.images.transpose(1, 0, 2, 3, 4).reshape(-1, *after.images.shape[-3:])
  titles = [f"unit {u}, {t} steps" for u in units for t in after.thresholds]
  plots.save_figure(plots.labelled_grid(traj, titles, cols=len(after.thresholds)),
                    os.path.join(workdir, "trajectory.png"))
