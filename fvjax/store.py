"""The one resumable result store: every entry records the settings that made it.

An experiment saves a piece of work (rendered visualizations, similarity
progress, a training state, a unit's trials) under a name and the settings
that produced it: a plain dict of everything the result depends on (the
model's weights and options, seed, steps, sizes, ...). The entry's file name
carries a fingerprint of those settings, so

* a rerun with the same settings finds the entry and resumes from it;
* a rerun with other settings finds nothing and recomputes into a fresh entry.

Results made under different settings are never mixed, and nothing has to be
deleted by hand. Entries live in ``<workdir>/store/``; each is written
atomically (:mod:`fvjax.io`) and keeps its settings beside its data, so a
fingerprint collision or a hand-edited file is caught on load.

In a multi-process run (``jax.distributed``) process 0 alone writes entries
(:mod:`fvjax.io`) and reads them, sending what it read to the other processes
(:func:`fvjax.parallel.broadcast_bytes`): every process resumes from the same
results, and only process 0's disk has to hold them. Loading is then a
collective: every process loads the same entries in the same order.
"""

from __future__ import annotations

import hashlib
import io as io_lib
import json
import os
from typing import Any, BinaryIO, Mapping

import jax
import numpy as np

from fvjax import io
from fvjax import parallel

STORE = "store"  # subfolder of the workdir; everything outside it is published output
_SETTINGS = "__settings__"


def canonical(settings: Any) -> Any:
  """``settings`` as plain JSON values: PRNG keys as their raw ints, arrays as lists, callables by name."""
  if isinstance(settings, Mapping):
    return {str(k): canonical(v) for k, v in settings.items()}
  if isinstance(settings, (list, tuple)):
    return [canonical(v) for v in settings]
  if isinstance(settings, jax.Array) and jax.dtypes.issubdtype(settings.dtype, jax.dtypes.prng_key):
    settings = jax.random.key_data(settings)
  if isinstance(settings, (np.ndarray, np.generic, jax.Array)):
    return canonical(np.asarray(settings).tolist())
  if isinstance(settings, float) and settings.is_integer():
    return int(settings) if abs(settings) < 2**53 else settings
  if settings is None or isinstance(settings, (bool, int, float, str)):
    return settings
  if callable(settings) and hasattr(settings, "__qualname__"):
    return f"{getattr(settings, '__module__', '')}.{settings.__qualname__}"
  return repr(settings)


def fingerprint(settings: Mapping[str, Any]) -> str:
  """A short hash of the canonical settings (key order does not matter)."""
  text = json.dumps(canonical(settings), sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def path(workdir: str, name: str, settings: Mapping[str, Any], suffix: str = "") -> str:
  """Where the entry ``name`` made with ``settings`` lives."""
  return os.path.join(workdir, STORE, f"{name}-{fingerprint(settings)}{suffix}")


def _check(found: Any, settings: Mapping[str, Any], where: str) -> None:
  if json.loads(json.dumps(canonical(settings))) != found:
    raise ValueError(f"The stored entry {where} was made with other settings than its name says; delete it.")


def _open(where: str) -> BinaryIO | None:
  """The file ``where`` opened for reading (``None``: no such file); in a multi-process run, process 0's copy."""
  if not parallel.is_distributed():
    return open(where, "rb") if os.path.exists(where) else None
  data = None
  if parallel.is_writer() and os.path.exists(where):
    with open(where, "rb") as f:
      data = f.read()
  data = parallel.broadcast_bytes(data)
  return None if data is None else io_lib.BytesIO(data)


def load_arrays(workdir: str, name: str, settings: Mapping[str, Any]) -> dict[str, np.ndarray] | None:
  """The arrays saved under ``name`` with these settings, or ``None``."""
  where = path(workdir, name, settings, ".npz")
  f = _open(where)
  if f is None:
    return None
  with f, np.load(f, allow_pickle=False) as z:
    arrays = {k: z[k] for k in z.files}
  _check(json.loads(str(arrays.pop(_SETTINGS))), settings, where)
  return arrays


def save_arrays(workdir: str, name: str, settings: Mapping[str, Any], arrays: Mapping[str, Any]) -> str:
  """Saves ``arrays`` as the entry ``name`` made with ``settings`` (atomically); returns its path."""
  where = path(workdir, name, settings, ".npz")
  with io.atomic_path(where) as tmp:
    with open(tmp, "wb") as f:
      np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()},
               **{_SETTINGS: np.asarray(json.dumps(canonical(settings)))})
  return where


def load_json(workdir: str, name: str, settings: Mapping[str, Any]) -> Any | None:
  """The JSON value saved under ``name`` with these settings, or ``None``."""
  where = path(workdir, name, settings, ".json")
  f = _open(where)
  if f is None:
    return None
  with f:
    entry = json.load(f)
  _check(entry["settings"], settings, where)
  return entry["value"]


def save_json(workdir: str, name: str, settings: Mapping[str, Any], value: Any) -> str:
  """Saves a JSON value as the entry ``name`` made with ``settings`` (atomically); returns its path."""
  where = path(workdir, name, settings, ".json")
  io.write_json(where, {"settings": canonical(settings), "value": value})
  return where


def directory(workdir: str, name: str, settings: Mapping[str, Any]) -> str:
  """A folder for the entry ``name`` made with ``settings`` (e.g. orbax checkpoints); created, with
  ``settings.json`` inside."""
  where = path(workdir, name, settings)
  record = os.path.join(where, "settings.json")
  if os.path.exists(record):
    _check(io.read_json(record), settings, where)
  else:
    io.write_json(record, canonical(settings))
  return where


def model_settings(model) -> dict[str, Any]:
  """What a model contributes to a result's settings: name, weights, build options and a digest of
  the parameters (so other weights at the same path, or another random draw, never match)."""
  digest = hashlib.sha256()
  for leaf in jax.tree_util.tree_leaves(model.params):
    leaf = np.asarray(leaf)
    digest.update(f"{leaf.dtype}{leaf.shape}".encode())
    digest.update(np.ascontiguousarray(leaf).tobytes())
  return {"model": model.name, "weights": model.weights, "options": canonical(dict(model.options or {})),
          "params": digest.hexdigest()[:16], "input_range": model.input_range}
