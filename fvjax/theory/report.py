"""The classes of paper section 4 and what is measured on each: witnesses, decoder error rates, the table.

:func:`evaluate` builds, for one function class (:func:`function_classes`), the
witness (or notes that none exists), checks it numerically, samples functions of
the class and measures the error rate of every candidate decoder
(:data:`fvjax.theory.core.DECODERS`); :func:`fvjax.experiments.theory.run` does
it for every class and writes ``metrics.json``, ``table.md`` and one figure per class.

"Reliable (measured)" means: no witness was found *and* the best decoder made
no error on the sampled functions. Sampled error rates are averages over
random functions and random grid queries, so they say how often a decoder errs
on typical functions; a witness says that every decoder errs on at least one
of two functions (worst-case error >= 1/2).
"""

from __future__ import annotations

import time
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from fvjax.theory import core
from fvjax.theory import networks
from fvjax.theory import samplers
from fvjax.theory import witnesses

EXACT = {"value_tol": 1e-5, "position_tol": 0.0, "margin": 0.0}


class FunctionClass(NamedTuple):
  """One row of the table.

  Attributes:
    name: file-name-safe identifier.
    title: human-readable name.
    dim: input dimension d.
    paper_reliable: the paper's verdict.
    witness: ``(key, points) -> (Witness or None, info dict)``.
    sample: ``(key, points, num) -> values [num, P]``.
    tolerance: keyword arguments of :func:`fvjax.theory.core.check_witness`.
  """
  name: str
  title: str
  dim: int
  paper_reliable: bool
  witness: Callable
  sample: Callable
  tolerance: dict


def _exact(fn):
  return lambda key, points: (fn(points), {})


def _none(reason):
  return lambda key, points: (None, {"no_witness": reason})


def lipschitz_class(lipschitz_constant: float) -> FunctionClass:
  """L-Lipschitz functions on [0,1] with range 1; witness at the query 0.5 (extremes at 0 and 1)."""
  def witness(key, points):
    del key
    w = witnesses.lipschitz(points, lipschitz_constant, [0.5], [1.0], [0.0])
    return w, {"forced_radius": float(witnesses.forced_radius(1.0, lipschitz_constant))}

  return FunctionClass(f"lipschitz_L{lipschitz_constant:g}", f"{lipschitz_constant:g}-Lipschitz (1-D, range 1)", 1,
                       lipschitz_constant <= 1, witness,
                       lambda key, points, num: samplers.lipschitz_1d(key, points, num, lipschitz_constant), EXACT)


def function_classes(lipschitz: Sequence[float] = (1, 2, 4, 8, 16), num_trained: int = 32,
                     erm_steps: int = 3000) -> list[FunctionClass]:
  """The classes of paper section 4, in the paper's order, one Lipschitz row per L.

  The paper calls L-Lipschitz functions unreliable "except for small L"; with
  range 1 on [0, 1] the smallest possible L is 1, which forces ``f(x) = x`` or
  ``1 - x``, so the paper's verdict is recorded as reliable for L = 1 only.
  """
  return [
      FunctionClass("general", "general black-box", 2, False, _exact(witnesses.general), samplers.general, EXACT),
      FunctionClass("neural_network", "neural networks (hand-set ReLU MLP)", 2, False,
                    _exact(networks.hand_built_witness), networks.sample_random, EXACT),
      FunctionClass("erm_network", "neural networks trained by ERM", 2, False,
                    lambda key, points: networks.erm_witness(key, points, steps=erm_steps),
                    lambda key, points, num: networks.sample_trained(key, points, min(num, num_trained)),
                    networks.ERM_TOLERANCE),
      FunctionClass("piecewise_affine", "piecewise affine", 2, False, _exact(witnesses.piecewise_affine),
                    samplers.piecewise_affine, EXACT),
      FunctionClass("monotonic", "monotonic", 2, False, _exact(witnesses.monotonic), samplers.monotonic, EXACT),
      FunctionClass("convex", "convex", 2, False, _exact(witnesses.convex), samplers.convex, EXACT),
      *[lipschitz_class(float(l)) for l in lipschitz],
      FunctionClass("affine_2d", "affine, 2-D", 2, False, _exact(witnesses.affine_2d), samplers.affine, EXACT),
      FunctionClass("affine_1d", "affine, 1-D", 1, True,
                    _none("the two points (x-, m), (x+, M) determine the line"), samplers.affine, EXACT),
      FunctionClass("constant", "constant", 2, True,
                    _none("the function equals its maximum everywhere"), samplers.constant, EXACT),
  ]


def lipschitz_details(key: jax.Array, points_1d: jax.Array, points_2d: jax.Array, lipschitz_constant: float,
                      num: int) -> dict:
  """How much of the domain the L-Lipschitz feature visualization decides.

  Returns:
    ``forced_radius`` R/(2L) for R = 1; ``witness_fraction_1d``: fraction of
    the 1-D grid where a witness exists for extremes at 0 and 1 (``1 - 1/L``);
    ``witness_fraction_2d``: the same in 2-D for extremes at (0, 0) and (1, 1)
    (None if L < 1/sqrt 2, where no such function exists);
    ``witness_fraction_sampled``: mean over sampled functions' own feature
    visualizations; ``error_in_forced_region``: nearest-extreme error on the
    sampled functions at queries within R/(2L) of an extreme (0 by the bound).
  """
  fv1 = core.FeatureVis(jnp.ones(1), jnp.zeros(1), jnp.ones(()), jnp.zeros(()))
  out = {"L": lipschitz_constant, "forced_radius": float(witnesses.forced_radius(1.0, lipschitz_constant)),
         "witness_fraction_1d": float(witnesses.lipschitz_witness_region(points_1d, fv1, lipschitz_constant).mean())}
  if lipschitz_constant * np.sqrt(2) >= 1:
    fv2 = core.FeatureVis(jnp.ones(2), jnp.zeros(2), jnp.ones(()), jnp.zeros(()))
    out["witness_fraction_2d"] = float(witnesses.lipschitz_witness_region(points_2d, fv2, lipschitz_constant).mean())
  else:
    out["witness_fraction_2d"] = None
  values = samplers.lipschitz_1d(key, points_1d, num, lipschitz_constant)
  fv = core.feature_visualization(points_1d, values)
  region = jax.vmap(lambda f: witnesses.lipschitz_witness_region(points_1d, f, lipschitz_constant))(fv)
  out["witness_fraction_sampled"] = float(region.mean())
  idx = jnp.broadcast_to(jnp.arange(points_1d.shape[0]), values.shape)
  truth = core.strong_activator(points_1d, values, idx)
  fv_q = core.FeatureVis(fv.argmax[:, None], fv.argmin[:, None], fv.max[:, None], fv.min[:, None])
  wrong = core.nearest_extreme(fv_q, points_1d[idx]) != truth
  out["error_in_forced_region"] = float(jnp.sum(wrong & ~region) / jnp.maximum(jnp.sum(~region), 1))
  return out


def evaluate(cls: FunctionClass, key: jax.Array, grid_size: int, num_samples: int,
             num_queries: int = 32) -> tuple[dict, core.Witness | None, dict]:
  """One row of the table, the witness and its check for one class."""
  points = core.grid(grid_size, cls.dim)
  kw, ks, kq = jax.random.split(key, 3)
  start = time.time()
  w, info = cls.witness(kw, points)
  check = core.check_witness(w, **cls.tolerance) if w is not None else None
  errors = core.decoder_errors(kq, points, cls.sample(ks, points, num_samples), num_queries)
  best, best_error = core.best_decoder(errors)
  found = bool(check and check["valid"])
  row = {"class": cls.name, "title": cls.title, "dim": cls.dim, "paper_reliable": cls.paper_reliable,
         "reliable": (not found) and best_error == 0.0, "witness_found": found, "best_decoder": best,
         "error": best_error,
         "pair_error": min(core.pair_errors(w).values()) if found else None,
         "seconds": round(time.time() - start, 2)}
  return row, w, {"check": check, "decoder_errors": errors, **jax.tree.map(np.asarray, info)}


def markdown_table(rows: Sequence[dict]) -> str:
  """The rows as a markdown table."""
  yes = lambda b: "yes" if b else "no"
  lines = ["| class | d | reliable (paper) | reliable (measured) | witness found | best decoder | "
           "error, sampled functions | error, witness pair |",
           "|---|---|---|---|---|---|---|---|"]
  for r in rows:
    pair = "-" if r["pair_error"] is None else f"{r['pair_error']:.2f}"
    lines.append(f"| {r['title']} | {r['dim']} | {yes(r['paper_reliable'])} | {yes(r['reliable'])} | "
                 f"{yes(r['witness_found'])} | {r['best_decoder']} | {r['error']:.3f} | {pair} |")
  return "\n".join(lines) + "\n"
