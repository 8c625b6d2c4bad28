"""The end-to-end experiments, one module each: ``visualize``, ``sanity_check``, ``train_detector``,
``fooling_circuit``, ``silent_units``, ``causal_benchmark`` and ``theory``.

Each has a frozen dataclass ``Config`` (defaults: the paper's or Lucid's numbers; checked when built, one
sentence per bad value), ``run(model, config, workdir) -> metrics`` (``theory``: ``run(config, workdir)``),
which writes ``metrics.json`` and figures into ``workdir``, and ``summary(metrics) -> str``. The launch
scripts (``fvjax.launch``) build the config from their flags, the notebooks (``colabs/``) build it in a
cell; both call the same ``run``::

  config = fvjax.experiments.sanity_check.Config(steps=128, size=160)
  metrics = fvjax.experiments.sanity_check.run(model, config, "workdir/sanity")
  print(fvjax.experiments.sanity_check.summary(metrics))

:mod:`fvjax.experiments.config` makes the config fields (help text, checks) the scripts turn into flags.
"""

import importlib

_EXPERIMENTS = ("sanity_check", "visualize", "train_detector", "fooling_circuit", "silent_units", "causal_benchmark",
                "theory")
__all__ = [*_EXPERIMENTS, "config"]


def __getattr__(name):
  if name not in __all__:
    raise AttributeError(f"fvjax.experiments has no experiment {name!r}; experiments: {', '.join(_EXPERIMENTS)}.")
  return importlib.import_module(f"fvjax.experiments.{name}")
