"""Saving and restoring parameter pytrees and experiment state with orbax.

Orbax writes into a temporary directory and renames it when complete, so a
checkpoint on disk is never half-written; :func:`latest_step` lets a killed
run resume from the last finished step.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


def save(path: str | os.PathLike, tree: Any, *, force: bool = True) -> str:
  """Saves a pytree of arrays to the directory ``path`` (atomically).

  Args:
    path: target directory (created; replaced when ``force``).
    tree: nested dicts/lists of arrays and scalars.
    force: overwrite an existing checkpoint.

  Returns:
    The absolute path written.
  """
  path = os.path.abspath(os.fspath(path))
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(path, jax.tree_util.tree_map(np.asarray, tree), force=force)
  return path


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
  if not os.path.isdir(path):
    raise FileNotFoundError(f"No checkpoint at {path}; accepted: a directory written by fvjax.checkpoint.save.")
  with ocp.StandardCheckpointer() as ckptr:
    if like is None:
      tree = ckptr.restore(path)
    else:
      tree = ckptr.restore(path, jax.tree_util.tree_map(np.asarray, like))
  return jax.tree_util.tree_map(np.asarray, tree)


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
