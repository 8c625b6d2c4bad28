"""The causal-understanding benchmark: occlusion trials and a machine observer.

Can an observer predict, from a unit's reference images (feature
visualizations, natural exemplars or none), which of two occlusions of a
natural image changes the unit's activation more? The task of Zimmermann et
al. (NeurIPS 2021; shared/paper.md section 6), with the human replaced by an
image-similarity observer in the manner of Zimmermann, Klindt & Brendel (2024).

* :mod:`~fvjax.causal.occlusion`: the jitted, chunked, device-sharded sweep.
* :mod:`~fvjax.causal.trials`: natural sets, top-k queries, the trials.
* :mod:`~fvjax.causal.references`: reference sets per condition and trial
  (synthetic, natural, mixed, blurred, none), following the 2021 study's recipe.
* :mod:`~fvjax.causal.blur`: the blurred references (blur, sharp patch search).
* :mod:`~fvjax.causal.observer`: the machine observer and its calibration.
* :mod:`~fvjax.causal.benchmark`: ``run`` (the units of one layer): metrics, CIs, files;
  ``combine`` pools layers. The end-to-end run of a config (units of several layers, the observer,
  the natural set) is :mod:`fvjax.experiments.causal_benchmark`.
* :mod:`~fvjax.causal.figures`: trial panels and the bar plot.
"""

from fvjax.causal import benchmark
from fvjax.causal import blur
from fvjax.causal import figures
from fvjax.causal import observer
from fvjax.causal import occlusion
from fvjax.causal import references
from fvjax.causal import trials
from fvjax.causal.benchmark import run
from fvjax.causal.occlusion import brute_force_sweep, grid, reveal_sweep, sweep
from fvjax.causal.references import CONDITIONS

__all__ = ["CONDITIONS", "benchmark", "blur", "brute_force_sweep", "figures", "grid", "observer", "occlusion",
           "references", "reveal_sweep", "run", "sweep", "trials"]
