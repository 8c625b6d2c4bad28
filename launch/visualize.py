"""Checkout entry point of fvjax.launch.visualize (installed: ``fvjax-visualize``)."""
from fvjax.launch import console

if __name__ == "__main__":
  console.visualize()
