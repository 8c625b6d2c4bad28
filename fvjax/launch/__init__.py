"""absl entry points, one per experiment: ``fvjax-<name>`` or ``python -m fvjax.launch.<name>``.

(In a checkout, ``python -m launch.<name>`` too.) Every script runs through :func:`run`: a bad
command line ends in one line, ``error: <sentence>``, and exit status 2, before any work is done;
``--flagfile=NAME`` also takes the name of a flagfile shipped in ``fvjax/launch/flags`` (``demo`` or
``demo.flags``); ``--help`` lists the script's flags and the shared ones it uses.
"""

import logging
import os
import re
import shutil
import sys
import textwrap
import types

from absl import app
from absl import flags
from absl import logging as absl_logging
import matplotlib

from fvjax import data
from fvjax.launch import distributed_flags

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


FLAGFILES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "flags")
_FLAGFILE = ("--flagfile", "-flagfile")


def shipped_flagfiles() -> list[str]:
  """Names of the flagfiles shipped with fvjax (``demo``, ``imagenet``, ...), for ``--flagfile=NAME``."""
  return sorted(f.removesuffix(".flags") for f in os.listdir(FLAGFILES) if f.endswith(".flags"))


def flagfile_path(name: str) -> str:
  """``--flagfile``'s value as a path: an existing file, else the shipped flagfile NAME or NAME.flags.

  A value with a folder in it is always a path (so a mistyped path is not silently replaced).
  """
  path = os.path.expanduser(name)
  shipped = os.path.join(FLAGFILES, name.removesuffix(".flags") + ".flags")
  if os.path.isfile(path) or os.path.dirname(name) or not os.path.isfile(shipped):
    return path
  return shipped


def _flagfile_lines(name, stack):
  """The flag lines of a flagfile, nested ``--flagfile=`` lines expanded in place (absl's reading of them).

  Raises:
    ValueError: a file that cannot be read (naming the shipped flagfiles) or that includes itself.
  """
  if not name:  # absl ignores an empty --flagfile=
    return []
  path = flagfile_path(name)
  if os.path.realpath(path) in stack:
    raise ValueError(f"Cannot read --flagfile={name}: it includes itself; accepted: flagfiles without cycles.")
  try:
    with open(path) as f:
      lines = f.readlines()
  except OSError as e:
    reason = e.strerror.lower() if e.strerror else str(e)
    if isinstance(e, FileNotFoundError) and not os.path.dirname(name):
      reason = "no such file, nor a shipped flagfile of that name"
    raise ValueError(f"Cannot read --flagfile={name} ({reason}); accepted: a flagfile path or the name of a "
                     f"shipped flagfile ({', '.join(shipped_flagfiles())}).") from None
  out = []
  for line in lines:
    if not line.strip() or line.startswith(("#", "//")):
      continue
    directive, sep, value = line.strip().partition("=")
    if directive in _FLAGFILE and sep:
      out += _flagfile_lines(value.strip(), stack + [os.path.realpath(path)])
    else:
      out.append(line.strip())
  return out


def expand_flagfiles(args: list[str]) -> list[str]:
  """Command-line arguments with every ``--flagfile=NAME`` (or ``--flagfile NAME``) replaced by its lines.

  What absl does with a flagfile, except that NAME may also name a shipped flagfile (:func:`flagfile_path`),
  here and in ``--flagfile=`` lines inside flagfiles (``tpu.flags`` includes ``imagenet.flags``).

  Raises:
    ValueError: a flagfile that cannot be read.
  """
  out, rest = [], list(args)
  while rest:
    arg = rest.pop(0)
    directive, sep, value = arg.partition("=")
    if directive in _FLAGFILE and (sep or rest):
      out += _flagfile_lines(value if sep else rest.pop(0), [])
    else:
      out.append(arg)
      if arg == "--":  # absl reads no flagfile after it either
        return out + rest
  return out


def _parse_flags(argv):
  """absl's flag parsing, with a bad flag as one ``error:`` line and exit status 2 (absl's own: 1)."""
  try:
    return flags.FLAGS([argv[0], *expand_flagfiles(argv[1:])])
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
  except flags.Error as e:
    print(f"error: {_flag_error(e)}", file=sys.stderr)
  sys.exit(2)


def _describe(main):
  """Makes ``--help`` print the script's docstring and list its flags and the shared flags it uses.

  absl's ``--help`` prints ``__main__``'s docstring and the flags of the module named ``sys.argv[0]``: that is
  the script only when it runs as ``python -m fvjax.launch.<name>``, not from a console script or from the
  checkout's ``launch/`` modules.
  """
  script = sys.modules[main.__module__]
  shared = [m for m in vars(script).values()  # model_flags, detector_flags
            if isinstance(m, types.ModuleType) and re.fullmatch(re.escape(__name__) + r"\.\w+_flags", m.__name__)]
  for module in [script, *shared, distributed_flags]:
    for flag in flags.FLAGS.get_key_flags_for_module(module):
      flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
  note = textwrap.fill(f"--flagfile=NAME reads flags from a file: a path, or the name of a flagfile shipped with "
                       f"fvjax ({', '.join(shipped_flagfiles())}; in {FLAGFILES}).", 100, break_on_hyphens=False)
  sys.modules["__main__"].__doc__ = f"{(script.__doc__ or '').rstrip()}\n\n{note}\n"


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
  workdir it created, so a typo leaves nothing behind. With ``--distributed``
  (:mod:`fvjax.launch.distributed_flags`), ``jax.distributed`` starts first.
  """
  # absl logs INFO to stderr: jax's note that it found no TPU would precede every error line, and orbax
  # reports every step of every checkpoint. Warnings and errors still show; --verbosity=0 brings INFO back.
  logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)

  def guarded(argv):
    if not flags.FLAGS["verbosity"].present:
      absl_logging.set_verbosity(absl_logging.WARNING)
    created = None
    try:
      distributed_flags.initialize()  # --distributed: before any JAX computation
      if "workdir" in flags.FLAGS and flags.FLAGS["workdir"].value:
        created = _prepare_workdir(flags.FLAGS["workdir"].value)
      return main(argv)
    except USER_ERRORS as e:
      _remove(created)
      print(f"error: {_user_message(e)}", file=sys.stderr)
      return 2

  _describe(main)
  app.run(guarded, flags_parser=_parse_flags)
