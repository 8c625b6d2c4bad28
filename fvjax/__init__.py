"""fvjax: feature visualization in JAX, and the tests of whether it can be trusted."""

__version__ = "0.1.0"
