"""The causal-understanding benchmark end to end (Zimmermann et al., NeurIPS 2021, with a machine observer).

:func:`run` reads the units (``layer:unit`` items: each layer is one run of
:func:`fvjax.causal.benchmark.run` into ``workdir/<layer>``, pooled by
:func:`fvjax.causal.benchmark.combine`), chooses the observer (:func:`observer_for`) and the natural set
(:func:`natural_set`), and writes what :mod:`fvjax.causal.benchmark` writes: ``metrics.json`` (accuracy and
calibrated score per condition with 95 % CIs over units), ``accuracy.png``, per unit ``unit_<u>.json``, trial
panels and reference grids. The building blocks live in :mod:`fvjax.causal`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Sequence

import jax

from fvjax import models
from fvjax.causal import benchmark
from fvjax.causal import observer as observer_lib
from fvjax.causal import occlusion
from fvjax.causal import references
from fvjax.causal import trials
from fvjax.experiments import config as config_lib
from fvjax.models.record import ModelRecord

option = config_lib.option


def layer_units(items: Sequence, default_layer: str) -> dict[str, list[int]]:
  """``["mixed3a:64", "mixed4a:192-193", "5"]`` -> ``{"mixed3a": [64], "mixed4a": [192, 193], default_layer: [5]}``.

  Raises:
    ValueError: an item whose unit part is not an index or an increasing range.
  """
  by_layer = {}
  for item in items:
    layer, _, unit = str(item).rpartition(":")
    by_layer.setdefault(layer or default_layer, []).extend(config_lib.parse_units([unit]))
  return by_layer


def _all_units(items):
  return sum(layer_units(items, "").values(), [])


@dataclasses.dataclass(frozen=True)
class Config(config_lib.MethodConfig):
  """Settings of :func:`run` (defaults: the 2021 study's occluder, queries, references and steps); the flags of
  ``fvjax.launch.causal_benchmark``. ``--method`` renders the synthetic references (see
  :func:`fvjax.causal.benchmark.run`'s ``method``)."""

  layer: str = option("block9", "Layer of the units; a unit's activation is the spatial mean of its channel there "
                      "(the 2021 study: InceptionV1's pre-ReLU layers, e.g. mixed4a_pre_relu).")
  units: tuple[str, ...] = option(("0-5",), "Unit indices or ranges a-b of --layer, or layer:unit items (units of "
                                  "several layers, e.g. mixed3a:64,mixed4a:192; each layer runs into "
                                  "--workdir/<layer> and metrics.json pools them).", units="required",
                                  parse=_all_units)
  observer_model: str | None = option(None, "Observer's feature model (default: efficientnet_lite0, the embedded "
                                      "ImageNet model; a model other than the studied one unless Lite0 itself is "
                                      "studied).")
  observer_weights: str | None = option(None, "Weight file for the observer model.")
  observer_mode: str = option("image", "image: the choice more similar to the references; patch: the choice whose "
                              "occluder hides the patch less similar to them (both are recorded).",
                              choices=observer_lib.MODES)
  observer_layer: str | None = option(None, "Observer's feature layer (default: penultimate).")
  occluder_fraction: float = option(occlusion.PAPER_FRACTION, "Occluder side / image side (paper: 0.4).")
  stride: int = option(occlusion.PAPER_STRIDE, "Occluder stride in px (paper: 2).", lower=1)
  size: int | None = config_lib.size(None, "Query image side in px (default: the model's input size; paper: 224).",
                                     lower=2)
  top_k: int = option(20, "Queries per unit: its top-k activating natural images (paper: 20).", lower=1)
  conditions: tuple[str, ...] = option(references.CONDITIONS, "Reference conditions, any of: "
                                       f"{', '.join(references.CONDITIONS)}.")
  num_references: int = option(references.NUM_REFERENCES, "References per condition (paper: 9; mixed: 5 natural + "
                               "4 synthetic of 9).", lower=1)
  bin_width: int | None = option(None, "Ranks per bin of the natural references (default: --top_k, as in the "
                                 "study: 20 queries, bins of 20 ranks below them; shrinks to fit a small natural "
                                 "set).", lower=1)
  transforms: str = option(references.DEFAULT_PRESET, "Transforms of the synthetic references: study (the 2021 "
                           "study's jitter 16, scale 0.95-1.05, rotate +-5, jitter 8 on a canvas 2x16 px larger, "
                           "cropped) or lucid (Lucid's standard_transforms).")
  blur_stride: int | None = option(None, "Stride of the blurred references' sharp-patch search (default: --stride, "
                                   "as in the study).", lower=1)
  steps: int = option(references.PAPER_STEPS, "Steps per synthetic reference (paper: 2560).", lower=1)
  render_size: int | None = config_lib.size(None, "Synthetic reference side (default: the model's input size).")
  diversity: float = option(references.PAPER_DIVERSITY, "Diversity weight (paper: 1e2).")
  render_units: int = option(16, "Units whose synthetic references render in one batch.", lower=1)
  temperature: float | None = option(None, "Observer's fixed temperature (default: fitted per unit on the other "
                                     "units, never on the reported trials).")
  natural_dir: str | None = option(None, "Image folder root/<class>/<image> of natural images (default: the "
                                   "embedded photos plus --crops_per_photo crops each).", folder=True)
  per_class: int | None = option(None, "Image folder: at most this many images per class.", lower=1)
  crops_per_photo: int = option(8, "Embedded photos: random crops per photo.", lower=0)
  chunk: int = option(128, "Occluded images per forward pass (bounds memory).", lower=1)
  seed: int = config_lib.seed()

  def __post_init__(self):
    config_lib.validate(self)
    object.__setattr__(self, "conditions", references.check_conditions(self.conditions))
    references.check_preset(self.transforms)
    if "mixed" in self.conditions:
      references.mixed_split(self.num_references)


def observer_for(model: ModelRecord, config: Config, studied_weights: str | None = None) -> ModelRecord:
  """The observer ``config`` names: ``model`` itself when it names the studied model with the same weights
  argument (``studied_weights``: the one ``model`` was loaded with; None: its default), else a newly loaded one."""
  name = config.observer_model or observer_lib.default_observer(model.name)
  if name == model.name and config.observer_weights == studied_weights:
    return model
  return models.load(name, **({} if config.observer_weights is None else {"weights": config.observer_weights}))


def natural_set(model: ModelRecord, config: Config) -> trials.NaturalSet:
  """The natural images of the queries and references: ``config.natural_dir``, else the shipped photos with crops."""
  size = config.size or model.input_size[0]
  if config.natural_dir:
    return trials.folder_set(config.natural_dir, size, config.per_class)
  return trials.embedded_set(jax.random.fold_in(jax.random.PRNGKey(config.seed), 1), size, config.crops_per_photo)


def run(model: ModelRecord, config: Config, workdir: str, *, observer: ModelRecord | None = None,
        studied_weights: str | None = None, natural: trials.NaturalSet | None = None,
        mesh: jax.sharding.Mesh | None = None, progress: bool = True) -> dict:
  """Runs the benchmark on every unit of ``config.units`` and writes its files (see the module docstring).

  Args:
    model: the studied model.
    config: the settings.
    workdir: output folder; rerunning with the same settings resumes.
    observer: the observer model (default: :func:`observer_for` with ``studied_weights``).
    studied_weights: the ``weights`` argument ``model`` was loaded with (None: its default).
    natural: the natural image set (default: :func:`natural_set`).
    mesh: 1-D device mesh (default: all devices).
    progress: progress bars.

  Returns:
    The metrics written to ``workdir/metrics.json`` (pooled over layers when the units span several).
  """
  size = config.size or model.input_size[0]
  occlusion.grid(size, config.occluder_fraction, config.stride)  # bad input fails before any loading
  if config.blur_stride is not None:
    occlusion.grid(size, config.occluder_fraction, config.blur_stride)
  observer = observer_for(model, config, studied_weights) if observer is None else observer
  natural = natural_set(model, config) if natural is None else natural
  options = dict(key=jax.random.PRNGKey(config.seed), natural=natural, observer=observer,
                 observer_layer=config.observer_layer, conditions=config.conditions,
                 fraction=config.occluder_fraction, stride=config.stride, top_k=config.top_k,
                 num_references=config.num_references, bin_width=config.bin_width, steps=config.steps,
                 render_size=config.render_size, diversity=config.diversity, transforms=config.transforms,
                 blur_stride=config.blur_stride, render_units=config.render_units, temperature=config.temperature,
                 observer_mode=config.observer_mode, chunk=config.chunk, mesh=mesh, progress=progress,
                 method=config.method_settings())
  by_layer = layer_units(config.units, config.layer)
  if len(by_layer) == 1:
    (layer, units), = by_layer.items()
    return benchmark.run(model, layer, units, workdir, **options)
  runs = [benchmark.run(model, layer, units, os.path.join(workdir, layer), **options)
          for layer, units in by_layer.items()]
  return benchmark.combine(runs, workdir)


def summary(metrics: dict) -> str:
  """Units, trials, observer and occluder in one line; then accuracy and calibrated score per condition (with
  95 % CIs) for each observer mode; then the sweep's speed."""
  lines = [f"{metrics['num_units']} units, {metrics['num_trials']} trials; weights {metrics['weights']}; observer "
           f"{metrics['observer']['model']} ({metrics['observer']['layer']}); "
           f"{metrics['occluder']['positions']} occlusions per query",
           f"{'condition':>10} {'accuracy':>9} {'95% CI':>15} {'calibrated':>11} {'95% CI':>15}"]
  fmt = lambda ci: "n/a" if ci[0] is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"
  modes = {metrics["observer"]["mode"]: metrics["conditions"], **metrics["other_observer_modes"]}
  for mode, conds in modes.items():
    lines.append(f"observer mode {mode}{' (reported)' if mode == metrics['observer']['mode'] else ''}:")
    for c, m in conds.items():
      lines.append(f"{c:>10} {m['accuracy']:>9.3f} {fmt(m['accuracy_ci95']):>15} {m['calibrated']:>11.3f} "
                   f"{fmt(m['calibrated_ci95']):>15}")
  if metrics["occlusions_per_s"]:
    lines.append(f"sweep: {metrics['occlusions_per_s']:.1f} occlusions/s on {metrics['devices']}")
  return "\n".join(lines)
