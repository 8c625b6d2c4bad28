"""Checkout entry point of fvjax.launch.silent_units (installed: ``fvjax-silent-units``)."""
from fvjax.launch import console

if __name__ == "__main__":
  console.silent_units()
