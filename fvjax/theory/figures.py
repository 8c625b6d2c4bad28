"""Figures of the witnesses: heatmaps (2-D) or curves (1-D) of the two functions.

Markers: argmax (white triangle up), argmin (white triangle down), query
(red cross); in 2-D a white contour marks the midpoint level, so the query
lies inside the contour's high side for ``f1`` and outside for ``f2``.
"""

from __future__ import annotations

import os

import jax
import matplotlib.pyplot as plt
import numpy as np

from fvjax import plots
from fvjax.theory import core
from fvjax.theory import samplers

_MARK = {"argmax": dict(marker="^", s=60, c="w", edgecolors="k", zorder=3, clip_on=False),
         "argmin": dict(marker="v", s=60, c="w", edgecolors="k", zorder=3, clip_on=False),
         "query": dict(marker="X", s=70, c="r", edgecolors="w", zorder=4, clip_on=False)}
LEGEND = "white triangles: argmax (up), argmin (down); red cross: query; white line: midpoint level"


def heatmap(ax, points: jax.Array, values: jax.Array, query, title: str, vmin=None, vmax=None) -> None:
  """``values [n*n]`` on the row-major grid, ``x1`` across, ``x2`` up, with extremes, query and mid contour."""
  n = int(round(np.sqrt(values.shape[0])))
  img = np.asarray(values).reshape(n, n).T
  axis = np.linspace(0, 1, n)
  fv = core.feature_visualization(points, values)
  ax.imshow(img, origin="lower", extent=(0, 1, 0, 1), cmap="viridis", vmin=vmin, vmax=vmax)
  ax.contour(axis, axis, img, levels=[float(core.midpoint(fv))], colors="w", linewidths=0.8)
  for name, p in (("argmax", fv.argmax), ("argmin", fv.argmin), ("query", query)):
    ax.scatter([float(p[0])], [float(p[1])], **_MARK[name])
  ax.set_title(title, fontsize=8)
  ax.set_xticks([0, 1])
  ax.set_yticks([0, 1])
  ax.tick_params(labelsize=6)


def curves(ax, points: jax.Array, w: core.Witness, title: str, forced_radius: float | None = None) -> None:
  """``f1`` and ``f2`` of a 1-D witness, the midpoint, the query and the forced intervals."""
  x = np.asarray(points[:, 0])
  q = int(core.nearest_index(points, w.query))
  fv = core.feature_visualization(points, w.f1)
  if forced_radius is not None:
    for c, p in (("tab:green", fv.argmax), ("tab:gray", fv.argmin)):
      ax.axvspan(float(p[0]) - forced_radius, float(p[0]) + forced_radius, color=c, alpha=0.15, lw=0)
  ax.plot(x, np.asarray(w.f1), label="f1", color="tab:blue")
  ax.plot(x, np.asarray(w.f2), label="f2", color="tab:orange", ls="--")
  ax.axhline(float(core.midpoint(fv)), color="k", lw=0.6, ls=":")
  for name, p, v in (("argmax", fv.argmax, fv.max), ("argmin", fv.argmin, fv.min)):
    ax.scatter([float(p[0])], [float(v)], **_MARK[name])
  ax.scatter([x[q], x[q]], [float(w.f1[q]), float(w.f2[q])], **_MARK["query"])
  ax.set_xlim(0, 1)
  ax.set_title(title, fontsize=8)
  ax.tick_params(labelsize=6)


def _verdict(w, detail) -> str:
  c = detail["check"]
  return (f"f1(q)={c['f1_query']:.2f}, f2(q)={c['f2_query']:.2f}, mid={c['mid1']:.2f}"
          + ("" if c["valid"] else " (no witness)"))


def reliable_panel(ax, cls, grid_size: int, detail: dict, num: int = 6) -> None:
  """A reliable class: a few sampled functions (1-D section), solid where ``f > mid``."""
  x = core.grid(grid_size, 1)
  values = (samplers.affine if cls.name == "affine_1d" else samplers.constant)(jax.random.PRNGKey(1), x, num)
  for v in np.asarray(values):
    mid = 0.5 * (v.max() + v.min())
    line, = ax.plot(x[:, 0], np.where(v > mid + 1e-6, v, np.nan), lw=1.5)
    ax.plot(x[:, 0], np.where(v > mid + 1e-6, np.nan, v), lw=0.8, ls="--", color=line.get_color())
    ax.scatter([float(x[v.argmax(), 0])], [v.max()], **{**_MARK["argmax"], "s": 30})
    ax.scatter([float(x[v.argmin(), 0])], [v.min()], **{**_MARK["argmin"], "s": 30})
  best, error = core.best_decoder(detail["decoder_errors"])
  ax.set_title(f"{cls.title}: reliable\n{best} decoder, error {error:.3f} on sampled functions", fontsize=8)
  ax.set_xlim(0, 1)
  ax.tick_params(labelsize=6)


def lipschitz_sweep_panel(ax, lip: list[dict]) -> None:
  """Fraction of queries with a witness against L (1-D, 2-D, and sampled 1-D functions)."""
  ls = [d["L"] for d in lip]
  ax.plot(ls, [d["witness_fraction_1d"] for d in lip], "o-", label="1-D, extremes at 0, 1")
  ax.plot(ls, [np.nan if d["witness_fraction_2d"] is None else d["witness_fraction_2d"] for d in lip], "s-",
          label="2-D, extremes at corners")
  ax.plot(ls, [d["witness_fraction_sampled"] for d in lip], "^--", label="1-D, sampled functions")
  ax.set_xscale("log", base=2)
  ax.set_ylim(-0.02, 1.02)
  ax.set_xlabel("L (range R = 1)", fontsize=7)
  ax.set_title("L-Lipschitz: share of queries not decided", fontsize=8)
  ax.legend(fontsize=6)
  ax.tick_params(labelsize=6)


def class_figure(cls, w: core.Witness | None, detail: dict, grid_size: int, lip: list[dict]) -> plt.Figure:
  """The figure of one class: the witness pair, or sampled functions for a reliable class."""
  if w is None:
    fig, ax = plt.subplots(figsize=(4, 3))
    reliable_panel(ax, cls, grid_size, detail)
    return fig
  if cls.dim == 1:
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    curves(axes[0], w.points, w, f"{cls.title}\n{_verdict(w, detail)}", detail.get("forced_radius"))
    axes[0].legend(fontsize=6)
    lipschitz_sweep_panel(axes[1], lip)
    return fig
  fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.2))
  lo, hi = float(min(w.f1.min(), w.f2.min())), float(max(w.f1.max(), w.f2.max()))
  c = detail["check"]
  heatmap(axes[0], w.points, w.f1, w.query, f"f1: f(q)={c['f1_query']:.2f} > mid={c['mid1']:.2f}", lo, hi)
  heatmap(axes[1], w.points, w.f2, w.query, f"f2: f(q)={c['f2_query']:.2f} < mid={c['mid2']:.2f}", lo, hi)
  fig.suptitle(f"{cls.title}: same argmax, argmin and extremes, opposite answers", fontsize=9)
  fig.text(0.5, -0.02, LEGEND, ha="center", fontsize=7)
  return fig


def combined_figure(classes, found: dict, details: dict, grid_size: int, lip: list[dict]) -> plt.Figure:
  """All classes in one figure: two heatmaps per 2-D witness, then the 1-D rows."""
  two_d = [c for c in classes if c.dim == 2 and found[c.name] is not None]
  rest = [c for c in classes if c not in two_d]
  lip_max = [c for c in rest if c.name.startswith("lipschitz") and found[c.name] is not None][-1:]
  others = [c for c in rest if not c.name.startswith("lipschitz")]
  cols = 8
  rows = -(-len(two_d) // 4) + 1
  fig = plt.figure(figsize=(2.0 * cols, 2.2 * rows))
  gs = fig.add_gridspec(rows, cols)
  for i, cls in enumerate(two_d):
    w, c = found[cls.name], details[cls.name]["check"]
    lo, hi = float(min(w.f1.min(), w.f2.min())), float(max(w.f1.max(), w.f2.max()))
    r, k = divmod(i, 4)
    heatmap(fig.add_subplot(gs[r, 2 * k]), w.points, w.f1, w.query, f"{cls.title}\nf1(q)={c['f1_query']:.2f}", lo, hi)
    heatmap(fig.add_subplot(gs[r, 2 * k + 1]), w.points, w.f2, w.query,
            f"f2(q)={c['f2_query']:.2f}, mid={c['mid2']:.2f}", lo, hi)
  k = len(two_d) % 4
  r = len(two_d) // 4
  slots = []
  if k:
    slots += [(r, 2 * j) for j in range(k, 4)]
  slots += [(rows - 1, 2 * j) for j in range(4)]
  panels = [("lipschitz", c) for c in lip_max] + [("sweep", None)] + [("reliable", c) for c in others]
  for (r, col), (kind, cls) in zip(slots, panels):
    ax = fig.add_subplot(gs[r, col:col + 2])
    if kind == "lipschitz":
      w = found[cls.name]
      curves(ax, w.points, w, f"{cls.title}\n{_verdict(w, details[cls.name])}", details[cls.name].get("forced_radius"))
    elif kind == "sweep":
      lipschitz_sweep_panel(ax, lip)
    else:
      reliable_panel(ax, cls, grid_size, details[cls.name])
  fig.suptitle("Two functions per class, one feature visualization, opposite answers at the query. " + LEGEND,
               fontsize=9)
  fig.tight_layout()
  return fig


def save(fig: plt.Figure, path: str | os.PathLike, dpi: int = 72) -> None:
  """Saves a figure atomically (small PNGs) and closes it."""
  plots.save_figure(fig, path, dpi=dpi)
