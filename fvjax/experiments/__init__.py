"""One function per experiment (``run``), called by the launch scripts and the notebooks:
``sanity_check``, ``visualize``, ``train_detector``, ``fooling_circuit``, ``silent_units``; the causal
benchmark's run is :mod:`fvjax.causal.benchmark` and the theory report's :mod:`fvjax.theory.report`."""

import importlib

_EXPERIMENTS = ("sanity_check", "visualize", "train_detector", "fooling_circuit", "silent_units")
__all__ = list(_EXPERIMENTS)


def __getattr__(name):
  if name not in _EXPERIMENTS:
    raise AttributeError(f"fvjax.experiments has no experiment {name!r}; experiments: {', '.join(_EXPERIMENTS)}.")
  return importlib.import_module(f"fvjax.experiments.{name}")
