"""absl entry points, one per experiment: ``python -m launch.<name> --flagfile=...``.

Every script runs through :func:`run`: a bad command line ends in one line,
``error: <sentence>``, and exit status 2, before any work is done.
"""

import logging
import os
import re
import shutil
import sys

from absl import app
from absl import flags
from absl import logging as absl_logging
import matplotlib

from fvjax import data

matplotlib.use("Agg")  # the scripts write figures to files; never open a window

# What a user's bad input raises inside fvjax: each carries one sentence saying
# what is wrong and what is accepted. The OSErrors are the ones a bad path
# gives (a file where a folder belongs, no permission).
USER_ERRORS = (KeyError, ValueError, TypeError, FileNotFoundError, PermissionError, NotADirectoryError,
               FileExistsError, IsADirectoryError)

# Largest image side the --size flags take: a float32 render batch grows with
# the square of it, and 100000 px asks numpy for terabytes (a MemoryError).
MAX_SIZE = 4096

UNITS_ACCEPTED = "unit indices and ranges a-b with a <= b, such as 3 or 10-12"


def parse_units(items, flag="units"):
  """``["3", "10-12"]`` -> ``[3, 10, 11, 12]`` (flag lists of unit indices and ranges).

  Raises:
    ValueError: an item that is not an index or an increasing range.
  """
  units = []
  for item in items:
    lo, _, hi = str(item).partition("-")
    try:
      lo, hi = int(lo), int(hi) if hi else int(lo)
    except ValueError:
      lo = hi = None
    if lo is None or hi < lo:  # a reversed range would silently be empty
      raise ValueError(f"Cannot read --{flag} item {item!r}; accepted: {UNITS_ACCEPTED}.")
    units += range(lo, hi + 1)
  return units


def check_units(holder, required=True, parse=None):
  """Validates a units list flag when flags are parsed.

  Args:
    holder: the flag.
    required: whether it must name at least one unit.
    parse: ``items -> units`` (default: :func:`parse_units`); raises ValueError.
  """

  def check(items):
    try:
      units = parse(items) if parse else parse_units(items, holder.name)
    except ValueError as e:
      raise flags.ValidationError(str(e)) from None
    if required and not units:
      raise flags.ValidationError(f"--{holder.name} is empty; accepted: {UNITS_ACCEPTED}.")
    return True

  flags.register_validator(holder, check)


def check_counts(holder, lower=0, example="64,128", number=int):
  """Validates a list flag of numbers >= ``lower`` (default: step counts, 0 the initial images) at flag parsing."""

  def check(items):
    for item in items or ():
      try:
        ok = number(item) >= lower
      except ValueError:
        ok = False
      if not ok:
        kind = "integers" if number is int else "numbers"
        raise flags.ValidationError(f"Cannot read --{holder.name} item {item!r}; accepted: {kind} >= {lower} "
                                    f"such as {example}.")
    return True

  flags.register_validator(holder, check)


def check_image_folder(holder):
  """Validates an image-folder flag when flags are parsed: every class folder holds a readable image."""

  def check(root):
    if root:
      try:
        data.image_folder(root)
      except (ValueError, OSError) as e:
        raise flags.ValidationError(str(e)) from None
    return True

  flags.register_validator(holder, check)


def _flag_error(e: flags.Error) -> str:
  """absl's flag error as one sentence naming what the flag accepts."""
  message = (str(e).splitlines() or [type(e).__name__])[0].removeprefix("ERROR:: ")
  if isinstance(e, flags.UnrecognizedFlagError) and e.flagname:
    close = re.search(r"Did you mean: (.*?) ?\?", message)
    hint = f" (did you mean --{', --'.join(close.group(1).split(', '))}?)" if close else ""
    return f"Unknown flag --{e.flagname}{hint}; accepted: the flags listed by --helpfull."
  match = re.fullmatch(r"flag --(\w+)=(.*?): (.*)", message)
  if not match:  # a missing value, an unreadable --flagfile
    return f"{message}; accepted: the flags and values listed by --helpfull."
  name, value, detail = match.groups()
  if "accepted" in detail:  # a validator of ours: already the sentence
    return detail
  parser = flags.FLAGS[name].parser if name in flags.FLAGS else None
  if getattr(parser, "enum_values", None):
    accepted = "one of " + ", ".join(parser.enum_values)
  else:
    accepted = getattr(parser, "syntactic_help", "") or "see --helpfull"
    if accepted.startswith(("integer", "number")):  # absl's "integer >= 3"
      accepted = ("an " if accepted[0] == "i" else "a ") + accepted
  return f"Invalid --{name}={value}; accepted: {accepted}."


def _parse_flags(argv):
  """absl's flag parsing, with a bad flag as one ``error:`` line and exit status 2 (absl's own: 1)."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    print(f"error: {_flag_error(e)}", file=sys.stderr)
    sys.exit(2)


def _prepare_workdir(workdir):
  """Creates ``workdir``; returns the outermost folder this created (None: it existed).

  Raises:
    ValueError: one sentence naming the workdir and why it cannot be used.
  """
  path = os.path.abspath(workdir)
  created = None
  top = path
  while not os.path.lexists(top) and os.path.dirname(top) != top:
    created, top = top, os.path.dirname(top)
  accepted = "accepted: a folder path this user can create and write in"
  if os.path.lexists(top) and not os.path.isdir(top):
    what = "it is a file" if top == path else f"{top!r} is a file, not a folder"
    raise ValueError(f"Cannot use --workdir={workdir!r}: {what}; {accepted}.")
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    _remove(created)
    raise ValueError(f"Cannot create --workdir={workdir!r} ({e.strerror.lower() if e.strerror else e}); "
                     f"{accepted}.") from None
  if not os.access(path, os.W_OK | os.X_OK):
    _remove(created)
    raise ValueError(f"Cannot write in --workdir={workdir!r} (permission denied); {accepted}.")
  return created


def _remove(created):
  if created and os.path.isdir(created):
    shutil.rmtree(created, ignore_errors=True)


def _user_message(e: Exception) -> str:
  if isinstance(e, KeyError) and e.args:
    return str(e.args[0])
  if isinstance(e, OSError) and e.strerror and e.filename:  # the OS's own, not one of fvjax's sentences
    return f"Cannot use {e.filename!r} ({e.strerror.lower()}); accepted: readable inputs and writable outputs."
  return str(e)


def run(main):
  """``app.run(main)`` for a launch script: bad flags and user errors become one line and exit status 2.

  Flags are parsed and validated first (absl bounds and validators); then the
  script's ``--workdir`` (when it has one) is created and checked, before
  ``main`` loads anything. A run that fails on a user error removes the
  workdir it created, so a typo leaves nothing behind.
  """
  # absl logs INFO to stderr: jax's note that it found no TPU would precede every error line, and orbax
  # reports every step of every checkpoint. Warnings and errors still show; --verbosity=0 brings INFO back.
  logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)

  def guarded(argv):
    if not flags.FLAGS["verbosity"].present:
      absl_logging.set_verbosity(absl_logging.WARNING)
    created = None
    try:
      if "workdir" in flags.FLAGS and flags.FLAGS["workdir"].value:
        created = _prepare_workdir(flags.FLAGS["workdir"].value)
      return main(argv)
    except USER_ERRORS as e:
      _remove(created)
      print(f"error: {_user_message(e)}", file=sys.stderr)
      return 2

  app.run(guarded, flags_parser=_parse_flags)
