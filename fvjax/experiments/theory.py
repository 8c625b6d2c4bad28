"""Paper section 4 end to end: every function class's witness, decoder error rates, the table and figures.

Writes into ``workdir``: ``metrics.json`` (``rows``: the table; ``details`` per class; ``lipschitz``: the
sweep over L; ``config``), ``table.md`` and ``<class>.png``. The building blocks are in :mod:`fvjax.theory`
(:mod:`~fvjax.theory.report` evaluates one class).
"""

from __future__ import annotations

import dataclasses
import os

import jax

from fvjax import io
from fvjax.experiments import config as config_lib
from fvjax.theory import core
from fvjax.theory import figures
from fvjax.theory import report

option = config_lib.option


@dataclasses.dataclass(frozen=True)
class Config:
  """Settings of :func:`run`; the flags of ``fvjax.launch.theory``."""

  seed: int = config_lib.seed()
  grid: int = option(65, "Grid points per axis on [0,1]^d.", lower=3)
  # A function with range 1 on [0,1] has no smaller Lipschitz constant than 1.
  lipschitz: tuple[float, ...] = option((1, 2, 4, 8, 16), "Lipschitz constants to sweep (>= 1).", lower=1,
                                        example="1,2,4")
  num_samples: int = option(1000, "Sampled functions per class (32 queries each).", lower=1)
  num_trained: int = option(32, "Networks trained by ERM for the sampled error rate.", lower=1)
  erm_steps: int = option(3000, "Adam steps per network of the ERM witness.", lower=1)
  figure: tuple[str, ...] = option((), "Extra paths for the combined figure of all classes.")

  def __post_init__(self):
    config_lib.validate(self)


def run(config: Config, workdir: str) -> dict:
  """Evaluates every class and writes ``metrics.json``, ``table.md`` and ``<class>.png`` into ``workdir``
  (and the combined figure into every path of ``config.figure``).

  Returns:
    The metrics written to ``metrics.json``: ``rows`` (the table), ``details`` per class, ``lipschitz`` (per
    L), ``config``.
  """
  key, grid_size, lipschitz, num_samples = jax.random.PRNGKey(config.seed), config.grid, config.lipschitz, \
      config.num_samples
  os.makedirs(workdir, exist_ok=True)
  rows, details, pairs = [], {}, {}
  classes = report.function_classes(lipschitz, config.num_trained, config.erm_steps)
  for cls, k in zip(classes, jax.random.split(key, len(classes))):
    row, w, detail = report.evaluate(cls, k, grid_size, num_samples)
    rows.append(row)
    details[cls.name] = detail
    pairs[cls.name] = w
  p1, p2 = core.grid(grid_size, 1), core.grid(grid_size, 2)
  lip = [report.lipschitz_details(k, p1, p2, float(l), num_samples)
         for l, k in zip(lipschitz, jax.random.split(jax.random.fold_in(key, 1), max(len(lipschitz), 1)))]
  metrics = {"rows": rows, "details": details, "lipschitz": lip,
             "config": {"grid": grid_size, "lipschitz": list(lipschitz), "num_samples": num_samples,
                        "num_trained": config.num_trained, "erm_steps": config.erm_steps, "queries_per_function": 32,
                        "decoders": list(core.DECODERS)}}
  io.write_json(os.path.join(workdir, "metrics.json"), metrics)
  with io.atomic_path(os.path.join(workdir, "table.md")) as tmp:
    with open(tmp, "w") as f:
      f.write(report.markdown_table(rows))
  for cls in classes:
    figures.save(figures.class_figure(cls, pairs[cls.name], details[cls.name], grid_size, lip),
                 os.path.join(workdir, f"{cls.name}.png"))
  for path in config.figure:
    figures.save(figures.combined_figure(classes, pairs, details, grid_size, lip), path)
  return metrics


def summary(metrics: dict) -> str:
  """The table (markdown) and how many classes' measured verdicts agree with the paper's."""
  rows = metrics["rows"]
  agree = sum(r["reliable"] == r["paper_reliable"] for r in rows)
  return f"{report.markdown_table(rows)}measured verdict agrees with the paper for {agree} of {len(rows)} classes"
