"""Numerical demonstrations of paper section 4: what a feature visualization cannot tell.

A feature visualization of ``f`` on ``[0,1]^d`` shows its argmax, its argmin
and their values; the question is whether a query point is a strong activator
(``f(x) > (max + min) / 2``). For each class of functions the paper names,
:mod:`~fvjax.theory.witnesses` and :mod:`~fvjax.theory.networks` build two
functions of the class with the same feature visualization and opposite
answers (so every decoder errs on one of them), and
:mod:`~fvjax.theory.report` measures candidate decoders on sampled functions
(:mod:`fvjax.experiments.theory` runs every class and writes the report).
Only constant functions and affine functions of one variable are decided.

  core        grid, feature visualization, decoders, witness checks
  witnesses   analytic witnesses (general, piecewise affine, monotonic,
              convex, affine 2-D, L-Lipschitz) and the R/(2L) radius
  samplers    random functions of each class
  networks    ReLU MLPs: hand-set witness, witness trained by ERM (optax)
  report      the classes, one class's evaluation, the table
"""

from fvjax.theory.core import DECODERS
from fvjax.theory.core import FeatureVis
from fvjax.theory.core import Witness
from fvjax.theory.core import check_witness
from fvjax.theory.core import decoder_errors
from fvjax.theory.core import feature_visualization
from fvjax.theory.core import grid
from fvjax.theory.core import strong_activator
