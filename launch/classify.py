"""Checkout entry point of fvjax.launch.classify (installed: ``fvjax-classify``)."""
from fvjax.launch import console

if __name__ == "__main__":
  console.classify()
