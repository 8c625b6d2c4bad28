"""Checkout entry point of fvjax.launch.sanity_check (installed: ``fvjax-sanity-check``)."""
from fvjax.launch import console

if __name__ == "__main__":
  console.sanity_check()
