"""Result files written atomically: a temporary name in the same folder, then
``os.replace``, so a killed run never leaves a half-written file behind.

Every file fvjax writes goes through :func:`atomic_path`; in a multi-process
run (``jax.distributed``) only process 0 writes (:func:`fvjax.parallel.is_writer`),
the others write into a private temporary folder that is then deleted."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from typing import Any, Iterator

import numpy as np
from PIL import Image

from fvjax import parallel


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
  """Yields a temporary path next to ``path``; renames it to ``path`` on success.

  On a process other than process 0 of a multi-process run, the path is in a private temporary folder, deleted
  afterwards: the caller runs the same code on every process, and the file is written once.
  """
  path = os.fspath(path)
  if not parallel.is_writer():
    with tempfile.TemporaryDirectory(prefix="fvjax-not-written-") as folder:
      yield os.path.join(folder, os.path.basename(path))
    return
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  base, ext = os.path.splitext(os.path.basename(path))
  fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=f".tmp{ext}", dir=os.path.dirname(os.path.abspath(path)))
  os.close(fd)
  try:
    yield tmp
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; results are ordinary files
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def _jsonable(x: Any) -> Any:
  """Plain JSON values; NaN and infinities become ``null`` (standard JSON has no NaN)."""
  if isinstance(x, dict):
    return {str(k): _jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  if isinstance(x, (np.ndarray, np.generic)) or hasattr(x, "__array__"):
    arr = np.asarray(x)
    return _jsonable(arr.tolist()) if arr.ndim else _jsonable(arr.item())
  if isinstance(x, float) and not math.isfinite(x):
    return None
  return x


def write_json(path: str | os.PathLike, obj: Any) -> None:
  """Writes ``obj`` (numpy arrays allowed) as indented JSON, atomically."""
  with atomic_path(path) as tmp:
    with open(tmp, "w") as f:
      json.dump(_jsonable(obj), f, indent=2, sort_keys=False, allow_nan=False)
      f.write("\n")


def read_json(path: str | os.PathLike) -> Any:
  """The JSON value stored at ``path``."""
  with open(path) as f:
    return json.load(f)


def to_uint8(image: np.ndarray) -> np.ndarray:
  """``[H,W,3]`` floats in ``[0,1]`` to uint8."""
  return (np.clip(np.asarray(image, np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
  """Writes one ``[H,W,3]`` image in ``[0,1]`` as PNG, atomically."""
  with atomic_path(path) as tmp:
    Image.fromarray(to_uint8(image)).save(tmp, format="PNG")
