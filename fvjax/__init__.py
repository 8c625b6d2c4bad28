"""fvjax: feature visualization in JAX, and the tests of whether it can be trusted.

The public surface, imported on first use (``import fvjax`` stays cheap)::

  model = fvjax.load("efficientnet_lite0")                 # a ModelRecord
  result = fvjax.render(model, [1, 281], layer="logits", key=jax.random.PRNGKey(0))
  obj = fvjax.objectives.channel("conv2", 3) - 1e2 * fvjax.objectives.diversity("conv2")
  metrics = fvjax.experiments.sanity_check.run(model, fvjax.experiments.sanity_check.Config(), "workdir")

Sub-packages: ``models``, ``optvis`` (``param``, ``transforms``, ``objectives``,
``render``), ``fooling``, ``causal``, ``theory``, ``experiments``; modules
``similarity``, ``parallel``, ``store``, ``checkpoint``, ``data``, ``io``.
``fvjax.launch`` holds the command-line scripts (``fvjax-<name>``), not a library API.
"""

import importlib

__version__ = "0.1.0"

# name -> (module, attribute or None for the module itself)
_PUBLIC = {
    "load": ("fvjax.models", "load"),
    "ModelRecord": ("fvjax.models", "ModelRecord"),
    "render": ("fvjax.optvis.render", "render"),
    "objectives": ("fvjax.optvis.objectives", None),
    "param": ("fvjax.optvis.param", None),
    "transforms": ("fvjax.optvis.transforms", None),
    **{name: (f"fvjax.{name}", None) for name in (
        "models", "optvis", "fooling", "causal", "theory", "experiments", "similarity", "parallel", "store",
        "checkpoint", "data", "io", "classify")},
}
__all__ = sorted(_PUBLIC)


def __getattr__(name):
  if name not in _PUBLIC:
    raise AttributeError(f"module 'fvjax' has no attribute {name!r}; public names: {', '.join(__all__)}.")
  module, attr = _PUBLIC[name]
  value = importlib.import_module(module)
  return value if attr is None else getattr(value, attr)


def __dir__():
  return __all__ + ["__version__"]
