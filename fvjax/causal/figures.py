"""Figures of the causal benchmark: a trial panel and the accuracy bar plot."""

from __future__ import annotations

from typing import Mapping

import matplotlib.patches as mpatches
import numpy as np

from fvjax import plots
from fvjax.plots import plt

# Human accuracy in the NeurIPS 2021 causal task (shared/paper.md section 6):
# mean and the +- the paper reports; natural, mixed and blurred are "the
# others", 66-67 % +- 3 % (our notes do not say which is which: 66.5 each).
HUMAN_ACCURACY = {"synthetic": (0.68, 0.04), "natural": (0.665, 0.03), "mixed": (0.665, 0.03),
                  "blurred": (0.665, 0.03), "none": (0.60, 0.03)}
LABELS = {"synthetic": "synthetic\n(visualizations)", "natural": "natural\n(exemplars)",
          "mixed": "mixed\n(5 natural, 4 synth.)", "blurred": "blurred\n(sharp patch)", "none": "none"}
COLOURS = {"synthetic": "tab:orange", "natural": "tab:blue", "mixed": "tab:green", "blurred": "tab:cyan",
           "none": "tab:gray"}


def trial_panel(images: np.ndarray, record: Mapping, references: Mapping[str, np.ndarray],
                gaps: Mapping[str, float], title: str = "") -> plt.Figure:
  """One trial: the query, the two choices and the references of each condition.

  Args:
    images: ``[3, S, S, 3]`` query, correct choice (occlusion leaving the
      highest activation), wrong choice (the lowest).
    record: the trial record of :func:`fvjax.causal.trials.make_trial`.
    references: condition -> ``[n, s, s, 3]`` reference images (may be empty).
    gaps: condition -> the observer's score gap (correct minus wrong).
    title: figure title.

  Returns:
    The figure.
  """
  rows = [c for c, r in references.items() if len(r)]
  fig = plt.figure(figsize=(7.5, 2.6 + 0.95 * len(rows)))
  grid = fig.add_gridspec(1 + len(rows), 3, height_ratios=[2.4] + [1.0] * len(rows))
  side = record["occluder_side"]
  captions = (f"query\nactivation {record['unoccluded']:.3g}",
              f"choice A (correct)\nactivation {record['max']['activation']:.3g}",
              f"choice B (wrong)\nactivation {record['min']['activation']:.3g}")
  for k in range(3):
    ax = fig.add_subplot(grid[0, k])
    ax.imshow(np.clip(images[k], 0, 1))
    ax.set_title(captions[k], fontsize=8)
    ax.axis("off")
    if k:
      r, c = record["max" if k == 1 else "min"]["corner"]
      ax.add_patch(mpatches.Rectangle((c - 0.5, r - 0.5), side, side, fill=False, lw=1.5,
                                      ec="tab:green" if k == 1 else "tab:red"))
  for i, cond in enumerate(rows):
    ax = fig.add_subplot(grid[1 + i, :])
    ax.imshow(np.clip(plots.grid(references[cond], cols=len(references[cond])), 0, 1))
    gap = gaps.get(cond)
    verdict = "" if gap is None else f"; observer gap {gap:+.4f} -> {'A' if gap > 0 else 'B' if gap < 0 else 'tie'}"
    ax.set_title(f"{cond} references{verdict}", fontsize=8)
    ax.axis("off")
  if "none" in gaps and "none" not in rows:
    fig.text(0.5, 0.01, "none: no references (observer at chance by construction)", ha="center", fontsize=7)
  fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  return fig


def bar_plot(metrics: Mapping) -> plt.Figure:
  """Observer accuracy per condition with 95 % CIs over units, and the humans' marks.

  Args:
    metrics: the dict written to ``metrics.json`` by
      :func:`fvjax.causal.benchmark.run`.

  Returns:
    The figure.
  """
  conds = list(metrics["conditions"])
  x = np.arange(len(conds))
  main = metrics["observer"].get("mode", "image")
  fig, ax = plt.subplots(figsize=(3.4 + 1.5 * len(conds), 3.6))
  for i, c in enumerate(conds):
    m = metrics["conditions"][c]
    acc, ci = m["accuracy"], m["accuracy_ci95"]
    err = None if ci[0] is None else [[acc - ci[0]], [ci[1] - acc]]
    ax.bar(i - 0.17, acc, 0.32, yerr=err, capsize=3, color=COLOURS.get(c, "tab:purple"),
           label=f"accuracy, {main} observer" if i == 0 else None)
    cal, cci = m["calibrated"], m["calibrated_ci95"]
    err = None if cci[0] is None else [[cal - cci[0]], [cci[1] - cal]]
    ax.bar(i + 0.17, cal, 0.32, yerr=err, capsize=3, color=COLOURS.get(c, "tab:purple"), alpha=0.45,
           hatch="//", label=f"calibrated score, {main} observer" if i == 0 else None)
    for k, (mode, other) in enumerate(metrics.get("other_observer_modes", {}).items()):
      ax.plot(i - 0.17, other[c]["accuracy"], "o", mfc="white", mec="black", ms=6,
              label=f"accuracy, {mode} observer" if i == 0 else None, zorder=3 + k)
    if c in HUMAN_ACCURACY:
      h, pm = HUMAN_ACCURACY[c]
      ax.errorbar(i, h, yerr=pm, fmt="D", color="black", ms=5, capsize=4,
                  label="humans, Zimmermann et al. 2021" if i == 0 else None)
  ax.axhline(0.5, color="black", ls="--", lw=0.8)
  ax.text(len(conds) - 0.5, 0.505, "chance", ha="right", va="bottom", fontsize=7)
  ax.set_xticks(x, [LABELS.get(c, c) for c in conds], fontsize=8)
  ax.set_ylim(0.0, 1.05)
  ax.set_ylabel("proportion correct")
  n_units, n_trials = metrics["num_units"], metrics["num_trials"]
  ax.set_title(f"{metrics['model']} {metrics['layer']}: {n_units} units, {n_trials} trials\n"
               f"observer: {metrics['observer']['model']} {metrics['observer']['layer']}, "
               f"{metrics['observer'].get('mode', 'image')} mode", fontsize=8)
  ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
  fig.tight_layout()
  return fig
