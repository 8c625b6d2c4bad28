"""Checkout entry point of fvjax.launch.train_detector (installed: ``fvjax-train-detector``)."""
from fvjax.launch import console

if __name__ == "__main__":
  console.train_detector()
