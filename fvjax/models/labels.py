"""Class names for the models' logits."""

from __future__ import annotations

import functools
from importlib import resources


@functools.cache
def imagenet() -> tuple[str, ...]:
  """The 1000 ImageNet-1k class names, indexed like torchvision/Keras logits."""
  text = resources.files("fvjax").joinpath("data/imagenet_labels.txt").read_text()
  names = tuple(line.strip() for line in text.splitlines() if line.strip())
  assert len(names) == 1000, len(names)
  return names
