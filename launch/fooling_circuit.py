"""Checkout entry point of fvjax.launch.fooling_circuit (installed: ``fvjax-fooling-circuit``)."""
from fvjax.launch import console

if __name__ == "__main__":
  console.fooling_circuit()
