"""Checkout entry point of fvjax.launch.causal_benchmark (installed: ``fvjax-causal-benchmark``)."""
from fvjax.launch import console

if __name__ == "__main__":
  console.causal_benchmark()
