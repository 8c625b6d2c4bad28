"""Class names and WordNet IDs for the models' logits (package data).

Two logit orders exist for ImageNet models: the standard one (torchvision,
Keras, timm; sorted WordNet IDs, tench n01440764 first) and Lucid's
InceptionV1 (inception5h: 1008 outputs, 0 a dummy, 1 kit fox n02119789,
tench at 449, the last 7 no class). Image folders are matched to logits by
WordNet ID through these tables, never by position.
"""

from __future__ import annotations

import functools
from importlib import resources


def _lines(name: str) -> tuple[str, ...]:
  text = resources.files("fvjax").joinpath(f"data/{name}").read_text()
  return tuple(line.strip() for line in text.splitlines())


@functools.cache
def imagenet() -> tuple[str, ...]:
  """The 1000 ImageNet-1k class names, indexed like torchvision/Keras logits."""
  names = tuple(n for n in _lines("imagenet_labels.txt") if n)
  assert len(names) == 1000, len(names)
  return names


@functools.cache
def imagenet_wnids() -> tuple[str, ...]:
  """The 1000 ImageNet-1k WordNet IDs in the standard logit order (sorted)."""
  wnids = tuple(w for w in _lines("imagenet_wnids.txt") if w)
  assert len(wnids) == 1000 and list(wnids) == sorted(wnids), len(wnids)
  return wnids


@functools.cache
def inception_v1_wnids() -> tuple[str, ...]:
  """The WordNet ID of each of InceptionV1's 1008 logits (``""`` for the dummy 0 and logits 1001..1007)."""
  wnids = _lines("inception_v1_wnids.txt")
  assert len(wnids) == 1008 and sorted(w for w in wnids if w) == list(imagenet_wnids()), len(wnids)
  return wnids


@functools.cache
def inception_v1() -> tuple[str, ...]:
  """Class names of InceptionV1's 1008 logits (lucent's labels; placeholders where a logit has no class)."""
  names = _lines("inception_v1_labels.txt")
  assert len(names) == 1008, len(names)
  return tuple(n or f"(no class, output {i})" for i, n in enumerate(names))


def read_class_map(path: str) -> dict[str, int]:
  """Reads a ``--class_map`` file: one ``<folder name> <logit index>`` pair per line (``#`` comments).

  Raises:
    FileNotFoundError: no such file.
    ValueError: a line that is not ``name index`` (names the line).
  """
  mapping = {}
  try:
    with open(path) as f:
      lines = f.read().splitlines()
  except FileNotFoundError:
    raise FileNotFoundError(f"No class map at {path!r}; accepted: a text file of 'folder_name logit_index' lines.") from None
  for number, line in enumerate(lines, 1):
    line = line.split("#", 1)[0].strip()
    if not line:
      continue
    parts = line.split()
    if len(parts) != 2 or not parts[1].isdigit():
      raise ValueError(f"Line {number} of class map {path!r} is {line!r}; accepted: 'folder_name logit_index', "
                       "e.g. 'n01440764 449'.")
    mapping[parts[0]] = int(parts[1])
  return mapping
