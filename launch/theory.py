"""Checkout entry point of fvjax.launch.theory (installed: ``fvjax-theory``)."""
from fvjax.launch import console

if __name__ == "__main__":
  console.theory()
