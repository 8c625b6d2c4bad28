"""The causal-understanding benchmark end to end: trials, references, observer, metrics.

For every unit: rank the natural set by the unit's activation, sweep the
occluder over each of its ``top_k`` queries (one trial per query), build the
reference set of every condition for every trial (the study's recipe,
:mod:`fvjax.causal.references`), and let the machine observer answer each
trial. Accuracy (hard answers) and the calibrated score (mean probability of
a correct answer) are averaged per unit, then over units with a 95 %
t-interval (units are the independent samples, as in the paper).

Writes into ``workdir``: per unit ``unit_<u>.json`` (trials, activations,
occluder positions, the references of every trial, observer gaps) and images
(``trials/unit_<u>_q<i>.png``, ``references/unit_<u>_synthetic.png`` and
``references/unit_<u>_q<i>_<condition>.png`` for the conditions whose
references change from trial to trial); ``metrics.json``; ``accuracy.png``.
Each unit's results and the natural set's activations are entries of the
workdir's store (:mod:`fvjax.store`), keyed by the settings that produced
them: a killed run resumes, and a rerun with other settings recomputes.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any, Mapping, Sequence

import jax
import numpy as np
from scipy import stats
from tqdm.auto import tqdm

from fvjax import io
from fvjax import parallel
from fvjax import plots
from fvjax import store
from fvjax.causal import blur as blur_lib
from fvjax.causal import figures
from fvjax.causal import observer as observer_lib
from fvjax.causal import occlusion
from fvjax.causal import references as references_lib
from fvjax.causal import trials as trials_lib
from fvjax.models.record import ModelRecord
from fvjax.optvis import methods
from fvjax.optvis import render as render_lib


def ci95(values: Sequence[float]) -> tuple[float, list]:
  """Mean and 95 % t-interval (clipped to ``[0, 1]``) of per-unit values; ``[None, None]`` for one unit."""
  v = np.asarray(values, np.float64)
  mean = float(v.mean())
  if len(v) < 2:
    return mean, [None, None]
  half = float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
  return mean, [max(0.0, mean - half), min(1.0, mean + half)]


def _natural_values(model: ModelRecord, layer: str, natural: trials_lib.NaturalSet, workdir: str,
                    settings: dict, progress: bool) -> np.ndarray:
  """The natural set's unit activations (a store entry)."""
  keys = ("model", "weights", "options", "params", "input_range", "layer", "size", "natural_count", "natural_names")
  settings = {k: settings[k] for k in keys}
  saved = store.load_arrays(workdir, "natural_values", settings)
  if saved is None:
    saved = {"values": trials_lib.unit_values(model, layer, natural)}
    store.save_arrays(workdir, "natural_values", settings, saved)
  return saved["values"]


def _aggregate(units: Sequence[int], results: Mapping[int, dict], conditions: Sequence[str],
               temperature: float | None, mode: str = "image") -> dict:
  out = {}
  field = "gaps" if mode == "image" else f"gaps_{mode}"
  for cond in conditions:
    gaps = [np.asarray([t[field][cond] for t in results[u]["trials"]]) for u in units]
    temps = observer_lib.crossfit_temperatures(gaps, temperature)
    acc = [float(observer_lib.answers(g).mean()) for g in gaps]
    cal = [float(observer_lib.probabilities(g, t).mean()) for g, t in zip(gaps, temps)]
    acc_mean, acc_ci = ci95(acc)
    cal_mean, cal_ci = ci95(cal)
    out[cond] = {
        "accuracy": acc_mean, "accuracy_ci95": acc_ci, "calibrated": cal_mean, "calibrated_ci95": cal_ci,
        "num_units": len(units), "num_trials": int(sum(len(g) for g in gaps)),
        "temperature": "fixed" if temperature is not None else ("default" if len(units) < 2 else
                                                                "leave-one-unit-out fit"),
        "per_unit": {str(u): {"accuracy": a, "calibrated": c, "temperature": t}
                     for u, a, c, t in zip(units, acc, cal, temps)},
    }
  return out


def _method_options(model, method, natural, values, units, top_k, n, render_size, preset) -> dict:
  """``render`` options of the synthetic references' method (see :func:`run`'s ``method``)."""
  if not method or method.get("method") == "lucid":
    return {}
  settings = dict(method)
  name = settings.pop("method")
  canvas = (render_size or model.input_size[0]) + 2 * references_lib.TRANSFORM_PRESETS[preset][1]
  seeds = None
  if methods.needs_seeds(name):  # n seeds a unit: the images ranked just below its queries (wrapping round)
    ranked = [np.resize(np.argsort(-values[:, u], kind="stable")[top_k:], n) for u in units]
    seeds = np.concatenate([natural.load(r) for r in ranked])
  spectrum = natural.load(range(min(natural.count, 64))) if name == "maco" else None
  return methods.render_options(name, model, size=canvas, spectrum_images=spectrum, seeds=seeds, **settings)


def run(model: ModelRecord, layer: str, units: Sequence[int], workdir: str, *, key: jax.Array,
        natural: trials_lib.NaturalSet, observer: ModelRecord, observer_layer: str | None = None,
        conditions: Sequence[str] = references_lib.CONDITIONS, fraction: float = occlusion.PAPER_FRACTION,
        stride: int = occlusion.PAPER_STRIDE, top_k: int = 20, num_references: int = references_lib.NUM_REFERENCES,
        bin_width: int | None = None, steps: int = references_lib.PAPER_STEPS, render_size: int | None = None,
        diversity: float = references_lib.PAPER_DIVERSITY, transforms: str = references_lib.DEFAULT_PRESET,
        blur_stride: int | None = None, render_units: int = 16, temperature: float | None = None,
        observer_mode: str = "image", chunk: int = 128, mesh: jax.sharding.Mesh | None = None,
        progress: bool = True, method: Mapping[str, Any] | None = None) -> dict:
  """Runs the benchmark and writes its files (see the module docstring).

  Args:
    model: the studied model.
    layer: its layer (the paper's setting: InceptionV1 ``mixedX_pre_relu``).
    units: unit indices.
    workdir: output folder; rerunning with the same settings resumes.
    key: PRNG key (synthetic references, the draws from the rank bins).
    natural: the natural image set (queries and natural references).
    observer: the observer model (:mod:`fvjax.causal.observer`).
    observer_layer: its feature layer (default: penultimate).
    conditions: any of :data:`fvjax.causal.references.CONDITIONS`.
    fraction: occluder side / image side, in ``(0, 1)`` (paper: 0.4).
    stride: occluder stride in pixels (paper: 2).
    top_k: queries per unit (paper: 20).
    num_references: references per condition (paper: 9; mixed: 5 natural + 4 synthetic).
    bin_width: ranks per bin of the natural references (default ``top_k``:
      the study's bins are as wide as its query bin, 20; they shrink to fit
      a small natural set).
    steps: optimisation steps of the synthetic references (paper: 2560).
    render_size: side of the synthetic references (default: the model's).
    diversity: diversity weight of the synthetic references (paper: 1e2).
    transforms: transform preset of the synthetic references, ``"study"``
      (the 2021 study's milder set, padding cropped off) or ``"lucid"``.
    blur_stride: stride of the blurred references' patch search (default:
      ``stride``, as in the study).
    render_units: units whose synthetic references render in one batch.
    temperature: the observer's fixed temperature; ``None`` fits it per unit
      on the other units.
    observer_mode: ``"image"`` or ``"patch"`` (:mod:`fvjax.causal.observer`):
      the mode whose results are ``metrics["conditions"]``; the other mode's
      are reported under ``"other_observer_modes"``.
    chunk: occluded images per forward pass.
    mesh: 1-D device mesh (default: all devices).
    progress: progress bars.
    method: the synthetic references' feature-visualization method: ``{"method": name, ...}`` with the
      keywords of :func:`fvjax.optvis.methods.render_options` (``MethodConfig.method_settings()``); empty or
      None: Lucid's recipe. MACO's spectrum is that of the natural set (its first 64 images); accentuation
      starts the references of a unit from the natural images ranked just below its queries (ranks
      ``top_k + 1`` on), and its crops replace the preset's transforms (the preset's padding stays).

  Returns:
    The metrics dict written to ``metrics.json``.
  """
  conditions = references_lib.check_conditions(conditions)
  references_lib.check_preset(transforms)
  observer_lib.check_mode(observer_mode)
  g = occlusion.grid(natural.size, fraction, stride)
  blur_stride = stride if blur_stride is None else blur_stride
  blur_grid = occlusion.grid(natural.size, fraction, blur_stride)
  mixed_natural, mixed_synthetic = references_lib.mixed_split(num_references) if "mixed" in conditions else (0, 0)
  units = [int(u) for u in units]
  if not units:
    raise ValueError("At least one unit is needed; pass unit indices such as 3 or 10-12.")
  render_lib.check_units(model, model.check_layer(layer), np.asarray(units))
  if not 1 <= top_k <= natural.count:
    raise ValueError(f"top_k must be between 1 and the number of natural images ({natural.count}); got {top_k}.")
  if num_references < 1:
    raise ValueError(f"num_references must be >= 1; got {num_references}.")
  observer_layer = observer.check_layer(observer_layer or observer_lib.penultimate(observer))
  settings = {**store.model_settings(model), "layer": layer, "size": natural.size,
              "fraction": fraction, "stride": stride, "top_k": top_k, "num_references": num_references,
              "bin_width": bin_width, "steps": steps, "render_size": render_size, "diversity": diversity,
              "transforms": transforms, "blur_stride": blur_stride, "conditions": list(conditions),
              "observer": store.model_settings(observer), "observer_layer": observer_layer,
              "natural_count": natural.count,
              "natural_names": hashlib.sha1("\n".join(natural.names).encode()).hexdigest()[:16],
              "key": np.asarray(jax.random.key_data(key)).ravel().tolist(), **(method or {})}
  os.makedirs(workdir, exist_ok=True)
  start = time.time()
  values = _natural_values(model, layer, natural, workdir, settings, progress)
  mesh = mesh or parallel.data_mesh()
  params = parallel.replicate(model.params, mesh)
  embed = observer_lib.feature_fn(observer, observer_layer)
  sweep_options = dict(chunk=chunk, mesh=mesh, params=params)
  windows: dict[int, np.ndarray] = {}  # natural index -> best sharp-patch position per unit (blurred)
  results, sweep_times = {}, []
  for u in units:
    saved = store.load_json(workdir, f"unit_{u}", settings)
    if saved is not None:
      results[u] = saved
  pending = [u for u in units if u not in results]
  groups = ([num_references] if "synthetic" in conditions else []) + ([mixed_synthetic] if mixed_synthetic else [])
  bar = tqdm(total=len(pending), desc=f"causal {model.name} {layer}", disable=not progress)
  for group_start in range(0, len(pending), render_units):
    group = pending[group_start:group_start + render_units]
    synthetic = {}
    if groups:
      rendered = references_lib.synthetic_references(
          model, layer, group, key=jax.random.fold_in(key, group[0]), n=groups, steps=steps,
          size=render_size, diversity=diversity, preset=transforms, mesh=mesh, progress=progress,
          **_method_options(model, method, natural, values, group, top_k, sum(groups), render_size, transforms))
      for u, images in zip(group, rendered):
        parts = np.split(images, np.cumsum(groups)[:-1])
        synthetic[u] = {"synthetic": parts[0] if "synthetic" in conditions else None,
                        "mixed": parts[-1] if mixed_synthetic else None}
    for u in group:
      records, images, times = trials_lib.unit_trials(model, layer, u, natural, values[:, u], top_k,
                                                      fraction=fraction, stride=stride, **sweep_options)
      sweep_times += times
      refs, bins = _trial_references(model, layer, u, natural, values[:, u], records, conditions,
                                     synthetic.get(u, {}), key, num_references, mixed_natural, bin_width,
                                     blur_grid, windows, sweep_options)
      _score(records, images, refs, embed)
      _write_images(workdir, f"{model.name} {layer}", u, images, records, refs)
      results[u] = _jsonish({"unit": u, "settings": store.canonical(settings), "trials": records, "bins": bins,
                             "sweep_seconds": float(sum(times)), "occlusions": len(records) * g.count})
      store.save_json(workdir, f"unit_{u}", settings, results[u])
      bar.update(1)
  bar.close()
  per_mode = {m: _aggregate(units, results, conditions, temperature, m) for m in observer_lib.MODES}
  # The first sweep of a run includes compilation: leave it out of the throughput.
  timed = sweep_times[1:] if len(sweep_times) > 1 else sweep_times
  padding = references_lib.TRANSFORM_PRESETS[transforms][1]
  widths = {c: sorted({len(results[u]["bins"][c][0]) for u in units}) for c in ("natural", "mixed")
            if all(c in results[u].get("bins", {}) for u in units)}
  metrics = {
      "model": model.name, "weights": model.weights, "layer": layer, "units": units,
      "conditions": per_mode[observer_mode],
      "other_observer_modes": {m: per_mode[m] for m in observer_lib.MODES if m != observer_mode},
      "num_units": len(units), "num_trials": int(sum(len(results[u]["trials"]) for u in units)),
      "observer": {"model": observer.name, "weights": observer.weights, "layer": observer_layer,
                   "mode": observer_mode, "same_as_studied": observer.name == model.name,
                   "temperature": temperature},
      "occluder": {"size": g.size, "side": g.side, "stride": g.stride, "positions": g.count},
      "references": {
          "synthetic": {"method": (method or {}).get("method", "lucid"), "steps": steps, "diversity": diversity,
                        "transforms": transforms,
                        "canvas": (render_size or model.input_size[0]) + 2 * padding, "cropped_px": padding,
                        "size": render_size or model.input_size[0]},
          "natural": {"bins": num_references, "bin_width": bin_width or top_k,
                      "bin_width_used": widths.get("natural"),
                      "draw": "trial k: element k of every shuffled bin below the queries"},
          "mixed": {"natural": mixed_natural, "synthetic": mixed_synthetic, "bin_width_used": widths.get("mixed")},
          "blurred": {"kernel": blur_lib.kernel_size(natural.size),
                      "sigma": blur_lib.opencv_sigma(blur_lib.kernel_size(natural.size)),
                      "patch": blur_grid.side, "stride": blur_grid.stride, "positions": blur_grid.count},
      },
      "settings": settings,
      "occlusions_per_s": (g.count * len(timed) / sum(timed)) if timed else None,
      "human_accuracy": {c: {"mean": m, "plus_minus": pm} for c, (m, pm) in figures.HUMAN_ACCURACY.items()},
      "seconds": time.time() - start,
      "devices": f"{mesh.size} x {jax.devices()[0].device_kind}",
  }
  for u in units:  # published: this run's per-unit results
    io.write_json(os.path.join(workdir, f"unit_{u}.json"), results[u])
  io.write_json(os.path.join(workdir, "metrics.json"), metrics)
  plots.save_figure(figures.bar_plot(metrics), os.path.join(workdir, "accuracy.png"))
  return metrics


def _trial_references(model: ModelRecord, layer: str, unit: int, natural: trials_lib.NaturalSet,
                      values: np.ndarray, records: list[dict], conditions: Sequence[str], synthetic: Mapping,
                      key: jax.Array, n: int, mixed_natural: int, bin_width: int | None,
                      blur_grid: occlusion.Grid, windows: dict, sweep_options: dict) -> tuple[list[dict], dict]:
  """Every trial's reference images per condition; adds what they are to each record.

  Returns:
    ``(refs, bins)``: ``refs[i]`` maps condition -> ``[n_c, s, s, 3]`` for
    trial i; ``bins`` the rank bins drawn from (natural-set indices).
  """
  queries = [r["query"] for r in records]
  unit_key = jax.random.fold_in(jax.random.fold_in(key, 0x0b1a5), unit)
  bins, draws = {}, {}
  if {"natural", "blurred"} & set(conditions):
    bins["natural"] = references_lib.rank_bins(values, natural.sources, queries, n, bin_width)
    draws["natural"] = references_lib.draw_from_bins(bins["natural"], len(records), jax.random.fold_in(unit_key, 1))
  if "mixed" in conditions:
    bins["mixed"] = references_lib.rank_bins(values, natural.sources, queries, mixed_natural, bin_width)
    draws["mixed"] = references_lib.draw_from_bins(bins["mixed"], len(records), jax.random.fold_in(unit_key, 2))
  size = natural.size
  mixed_synthetic = synthetic.get("mixed")
  if mixed_synthetic is not None and mixed_synthetic.shape[1] != size:  # shown beside natural images
    mixed_synthetic = np.asarray(jax.image.resize(mixed_synthetic, (len(mixed_synthetic), size, size, 3), "linear",
                                                  antialias=True))
  refs = []
  for i, record in enumerate(records):
    trial = {}
    for c in conditions:
      if c == "synthetic":
        trial[c] = synthetic["synthetic"]
      elif c == "natural":
        trial[c] = natural.load(draws["natural"][i])
      elif c == "mixed":  # the study's order: synthetic first, then natural
        trial[c] = np.concatenate([np.clip(mixed_synthetic, 0, 1), natural.load(draws["mixed"][i])])
      elif c == "blurred":  # the trial's natural references, blurred but for the patch that drives the unit
        blurred = []
        for idx in map(int, draws["natural"][i]):
          image = natural.load([idx])[0]
          if idx not in windows:  # one search serves every unit of the layer
            windows[idx] = blur_lib.window_positions(model, layer, image, fraction=blur_grid.side / size,
                                                     stride=blur_grid.stride, **sweep_options)
          blurred.append((blur_lib.blurred_reference(image, int(windows[idx][unit]), blur_grid),
                          list(blur_grid.corner(int(windows[idx][unit])))))
        trial[c] = np.stack([b for b, _ in blurred])
        record.setdefault("references", {})["blurred_corners"] = [corner for _, corner in blurred]
      else:
        trial[c] = np.zeros((0, size, size, 3), np.float32)
    for c, drawn in draws.items():
      record.setdefault("references", {})[c] = [int(j) for j in drawn[i]]
    refs.append(trial)
  return refs, {c: b.tolist() for c, b in bins.items()}


def _pool(runs: Sequence[dict], conditions_of) -> dict:
  """Per-condition results of several runs pooled over all their units (the conditions every run has)."""
  out = {}
  for cond in [c for c in conditions_of(runs[0]) if all(c in conditions_of(r) for r in runs)]:
    per_unit = {f"{r['layer']}:{u}": m for r in runs for u, m in conditions_of(r)[cond]["per_unit"].items()}
    acc_mean, acc_ci = ci95([m["accuracy"] for m in per_unit.values()])
    cal_mean, cal_ci = ci95([m["calibrated"] for m in per_unit.values()])
    out[cond] = {"accuracy": acc_mean, "accuracy_ci95": acc_ci, "calibrated": cal_mean, "calibrated_ci95": cal_ci,
                 "num_units": len(per_unit), "num_trials": int(sum(conditions_of(r)[cond]["num_trials"] for r in runs)),
                 "temperature": conditions_of(runs[0])[cond]["temperature"] + ", within each layer",
                 "per_unit": per_unit}
  return out


def combine(runs: Sequence[dict], workdir: str) -> dict:
  """Pools the metrics of :func:`run` over several layers (the paper's units span nine).

  Accuracy and calibrated score are averaged over all units of all runs, with
  95 % t-intervals over units; each unit keeps the temperature fitted within
  its own layer's run. Writes ``metrics.json`` and ``accuracy.png`` into
  ``workdir``.

  Args:
    runs: metrics dicts returned by :func:`run`, one per layer, same settings
      otherwise (conditions that not every run has are left out).
    workdir: output folder.

  Returns:
    The pooled metrics (``layer`` joins the layers with ``+``; ``per_layer``
    keeps each run's own metrics).
  """
  if not runs:
    raise ValueError("combine needs the metrics of at least one run.")
  modes = list(runs[0]["other_observer_modes"])
  timed = [r["occlusions_per_s"] for r in runs if r["occlusions_per_s"]]
  metrics = dict(
      runs[0],
      layer="+".join(r["layer"] for r in runs),
      units=[f"{r['layer']}:{u}" for r in runs for u in r["units"]],
      conditions=_pool(runs, lambda r: r["conditions"]),
      other_observer_modes={m: _pool(runs, lambda r, m=m: r["other_observer_modes"][m]) for m in modes},
      num_units=int(sum(r["num_units"] for r in runs)),
      num_trials=int(sum(r["num_trials"] for r in runs)),
      occlusions_per_s=float(np.mean(timed)) if timed else None,
      seconds=float(sum(r["seconds"] for r in runs)),
      per_layer={r["layer"]: r for r in runs},
  )
  os.makedirs(workdir, exist_ok=True)
  io.write_json(os.path.join(workdir, "metrics.json"), metrics)
  plots.save_figure(figures.bar_plot(metrics), os.path.join(workdir, "accuracy.png"))
  return metrics


def _score(records: list[dict], images: np.ndarray, refs: Sequence[Mapping[str, np.ndarray]], embed) -> None:
  """Adds the observer's gaps of every mode and condition to each trial record.

  ``"gaps"`` (image mode): the correct choice should look more like the
  references; ``"gaps_patch"``: the correct occluder should hide a patch that
  looks less like them. Gaps are the correct choice's score minus the wrong one's.
  Each reference set (one array, e.g. a unit's synthetic set) is embedded once.
  """
  n = len(records)
  choices = embed(images[:, 1:].reshape(-1, *images.shape[2:])).reshape(n, 2, -1)
  patches = np.concatenate([observer_lib.hidden_patches(im[0], r) for im, r in zip(images, records)])
  hidden = embed(patches).reshape(n, 2, -1)
  cache = {}
  for i, r in enumerate(records):
    for c, ref_images in refs[i].items():
      if not len(ref_images):
        features = None
      else:
        if id(ref_images) not in cache:
          cache[id(ref_images)] = (ref_images, embed(ref_images))  # keep the array alive: ids stay unique
        features = cache[id(ref_images)][1]
      gaps = {"gaps": observer_lib.similarity_gaps(choices[i:i + 1], features)[0],
              "gaps_patch": -observer_lib.similarity_gaps(hidden[i:i + 1], features)[0]}
      for field, value in gaps.items():
        r.setdefault(field, {})[c] = float(value) + 0.0  # + 0.0: no -0.0 in the json


def _write_images(workdir: str, name: str, unit: int, images: np.ndarray, records: list[dict],
                  refs: Sequence[Mapping[str, np.ndarray]]) -> None:
  """The unit's reference grids (per unit where they are the same for all trials) and one panel per trial."""
  for c, ref_images in refs[0].items():
    if not len(ref_images):
      continue
    if all(r[c] is ref_images for r in refs):
      io.write_png(os.path.join(workdir, "references", f"unit_{unit}_{c}.png"), plots.grid(ref_images, cols=3))
    else:
      for i, r in enumerate(refs):
        io.write_png(os.path.join(workdir, "references", f"unit_{unit}_q{i}_{c}.png"), plots.grid(r[c], cols=3))
  for i, r in enumerate(records):
    fig = figures.trial_panel(images[i], r, refs[i], r["gaps"], title=f"{name}:{unit}, query {i}")
    plots.save_figure(fig, os.path.join(workdir, "trials", f"unit_{unit}_q{i}.png"), dpi=80)


def _jsonish(obj):
  """``obj`` as it reads back from JSON (so saved settings compare equal)."""
  return json.loads(json.dumps(obj))
