"""Saving and restoring parameter pytrees and experiment state with orbax.

Orbax writes into a temporary directory and renames it when complete, so a
checkpoint on disk is never half-written; :func:`latest_step` lets a killed
run resume from the last finished step.

In a multi-process run (``jax.distributed``) every process calls these
functions with the same tree: orbax's multi-host saving has process 0 write
the (host) arrays and the others wait for it, and only process 0 renames
folders. Restoring reads the files on every process, so the checkpoints of a
multi-process run must lie on a disk all processes share.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
import orbax.checkpoint as ocp

from fvjax import parallel


def save(path: str | os.PathLike, tree: Any, *, force: bool = True) -> str:
  """Saves a pytree of arrays to the directory ``path`` (atomically).

  Replacing a checkpoint keeps the previous one until the new one is complete:
  the new one is written beside it, then swapped in by two renames; a kill
  between them is repaired by the next :func:`save` or :func:`restore`.

  Args:
    path: target directory (created; replaced when ``force``).
    tree: nested dicts/lists of arrays and scalars.
    force: overwrite an existing checkpoint.

  Returns:
    The absolute path written.
  """
  path = os.path.abspath(os.fspath(path))
  _recover(path)
  if _on_process_0(os.path.exists(path)) and not force:
    raise FileExistsError(f"A checkpoint exists at {path}; pass force=True to replace it.")
  new, old = path + ".new", path + ".old"
  writer = parallel.is_writer()
  if writer:
    shutil.rmtree(new, ignore_errors=True)
  _barrier("save")
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(new, parallel.to_host(tree))
  if writer:
    if os.path.exists(path):
      shutil.rmtree(old, ignore_errors=True)
      os.replace(path, old)
    os.replace(new, path)
    shutil.rmtree(old, ignore_errors=True)
  _barrier("saved")
  return path


def _recover(path: str) -> None:
  """Brings back the previous checkpoint when a kill fell between :func:`save`'s two renames."""
  if parallel.is_writer() and not os.path.exists(path) and os.path.isdir(path + ".old"):
    os.replace(path + ".old", path)
  _barrier("recover")


def _on_process_0(value: bool) -> bool:
  """Process 0's ``value`` on every process (so that all take the same branch)."""
  if not parallel.is_distributed():
    return value
  return bool(multihost_utils.broadcast_one_to_all(np.int32(value)))


def _barrier(name: str) -> None:
  """Waits for every process (a multi-process run only)."""
  if parallel.is_distributed():
    multihost_utils.sync_global_devices(f"fvjax.checkpoint.{name}")


def restore(path: str | os.PathLike, like: Any | None = None) -> Any:
  """Restores a pytree saved by :func:`save`.

  Args:
    path: the checkpoint directory.
    like: optional pytree of the same structure (shapes/dtypes are checked).

  Returns:
    The pytree, with numpy arrays.

  Raises:
    FileNotFoundError: ``path`` holds no checkpoint.
  """
  path = os.path.abspath(os.fspath(path))
  _recover(path)
  if not os.path.isdir(path):
    raise FileNotFoundError(f"No checkpoint at {path}; accepted: a directory written by fvjax.checkpoint.save.")
  with ocp.StandardCheckpointer() as ckptr:
    if like is None:
      tree = ckptr.restore(path)
    else:
      tree = ckptr.restore(path, jax.tree_util.tree_map(np.asarray, like))
  return jax.tree_util.tree_map(np.asarray, tree)


def save_step(directory: str | os.PathLike, step: int, tree: Any, log: Any = None) -> None:
  """Saves ``tree`` (and a JSON-able ``log``, e.g. a training history) as step ``step`` of a
  resumable run; the previous step is kept until this one is complete."""
  with manager(directory) as mngr:
    mngr.save(step, args=ocp.args.Composite(tree=ocp.args.StandardSave(parallel.to_host(tree)),
                                            log=ocp.args.JsonSave({"log": log})))
    mngr.wait_until_finished()


def restore_latest(directory: str | os.PathLike, like: Any) -> tuple[int, Any, Any] | None:
  """``(step, tree, log)`` of the last completed :func:`save_step`, or ``None``."""
  if not os.path.isdir(directory):
    return None
  with manager(directory) as mngr:
    step = mngr.latest_step()
    if step is None:
      return None
    out = mngr.restore(step, args=ocp.args.Composite(
        tree=ocp.args.StandardRestore(jax.tree_util.tree_map(np.asarray, like)), log=ocp.args.JsonRestore()))
  return step, jax.tree_util.tree_map(np.asarray, out["tree"]), out["log"]["log"]


def manager(directory: str | os.PathLike, max_to_keep: int = 2) -> ocp.CheckpointManager:
  """A step-numbered checkpoint manager for resumable runs."""
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
  return ocp.CheckpointManager(os.path.abspath(os.fspath(directory)), options=options)


def latest_step(directory: str | os.PathLike) -> int | None:
  """The last completed step in a manager directory, or None."""
  if not os.path.isdir(directory):
    return None
  with manager(directory) as mngr:
    return mngr.latest_step()
