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
from typing import Callable

from absl import app
from absl import flags
from absl import logging as absl_logging
from absl.flags import _helpers as flags_helpers
import matplotlib

from fvjax import data
from fvjax.launch import distributed_flags
from fvjax.experiments import config as config_lib
from fvjax.experiments.config import UNITS_ACCEPTED, parse_units  # pylint: disable=unused-import

matplotlib.use("Agg")  # the scripts write figures to files; never open a window

# What a user's bad input raises inside fvjax: each carries one sentence saying
# what is wrong and what is accepted. The OSErrors are the ones a bad path
# gives (a file where a folder belongs, no permission).
USER_ERRORS = (KeyError, ValueError, TypeError, FileNotFoundError, PermissionError, NotADirectoryError,
               FileExistsError, IsADirectoryError)

MAX_SIZE = config_lib.MAX_SIZE  # largest image side the --size flags take


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


def _caller_module(depth: int) -> str:
  """The name absl gives the module ``depth`` frames up (a ``__main__`` script: ``sys.argv[0]``)."""
  return flags_helpers.get_module_object_and_name(sys._getframe(depth + 1).f_globals).module_name  # pylint: disable=protected-access


def define_flags(cls, *, skip: tuple[str, ...] = (), depth: int = 1) -> dict:
  """Defines an absl flag for every field of the config class ``cls`` (:mod:`fvjax.experiments.config`).

  Each flag has the field's name, default and help text, its bounds (``lower``/``upper``), choices, unit or
  step-count checks, image-folder check and ``check``, all applied when flags are parsed; it belongs to the
  calling module (``depth`` frames up: the script), so ``--help`` lists it. Fields with ``cli=False``, nested
  configs and ``skip`` get no flag.

  Returns:
    ``{field name: flag holder}`` for :func:`config_from_flags`.
  """
  module = _caller_module(depth)
  holders = {}
  for f, kind, item, _ in config_lib.fields(cls):
    meta = f.metadata
    if not meta.get("cli", False) or f.name in skip:
      continue
    name, default, text = f.name, f.default, meta["help"]
    bounds = dict(lower_bound=meta.get("lower"), upper_bound=meta.get("upper"), module_name=module)
    if kind is tuple:
      holder = flags.DEFINE_list(name, None if default is None else [str(v) for v in default], text,
                                 module_name=module)
    elif "choices" in meta:
      holder = flags.DEFINE_enum(name, default, list(meta["choices"]), text, module_name=module)
    elif kind is bool:
      holder = flags.DEFINE_bool(name, default, text, module_name=module)
    elif kind is int:
      holder = flags.DEFINE_integer(name, default, text, **bounds)
    elif kind is float:
      holder = flags.DEFINE_float(name, default, text, **bounds)
    else:
      holder = flags.DEFINE_string(name, default, text, module_name=module)
    if meta.get("units"):
      check_units(holder, required=meta["units"] == "required", parse=meta.get("parse"))
    elif kind is tuple and item in (int, float):
      check_counts(holder, lower=meta.get("lower", 0), example=meta.get("example", "64,128"), number=item)
    if meta["folder"]:
      check_image_folder(holder)
    if "check" in meta:
      flags.register_validator(holder, lambda v, check=meta["check"]: v is None or check(v),
                               message=f"Invalid --{name}; accepted: {meta['accepted']}.")
    holders[name] = holder
  return holders


def config_from_flags(cls, holders: dict, **values):
  """The config ``cls`` from the parsed flags of :func:`define_flags` (plus ``values`` for other fields)."""
  return cls(**{name: holder.value for name, holder in holders.items()}, **values)


def experiment_script(name: str, experiment: types.ModuleType, workdir: str, workdir_help: str, *,
                      model: types.ModuleType | None = None, holders: dict | None = None,
                      extra: Callable[[], dict] = dict, options: Callable[[], dict] = dict) -> Callable:
  """A launch script of one experiment: defines its flags and returns its ``main``; runs it when ``name`` (the
  script's ``__name__``) is ``"__main__"``.

  ``main`` builds the experiment's config from the flags, calls ``experiment.run([model,] config, workdir)``
  and prints ``experiment.summary(metrics)`` and where it wrote.

  Args:
    name: the script's ``__name__``.
    experiment: a module of :mod:`fvjax.experiments` (its ``Config``, ``run`` and ``summary``).
    workdir, workdir_help: the default and help text of ``--workdir``.
    model: :mod:`fvjax.launch.model_flags` for an experiment on a model (``run(model, config, workdir)``).
    holders: the flags of the config's fields (default: :func:`define_flags` of ``experiment.Config`` here).
    extra: ``() -> {field: value}``: config fields that are not flags of ``holders`` (read after parsing).
    options: ``() -> {name: value}``: keyword arguments of ``run`` (read after parsing).
  """
  module = _caller_module(1)
  holders = define_flags(experiment.Config, depth=2) if holders is None else holders
  flags.DEFINE_string("workdir", workdir, workdir_help, module_name=module)

  def main(argv):
    del argv
    config = config_from_flags(experiment.Config, holders, **extra())
    where = flags.FLAGS.workdir
    metrics = experiment.run(*([model.load()] if model else []), config, where, **options())
    print(f"{experiment.summary(metrics)}\nwrote {where}")

  main.__module__ = name
  if name == "__main__":
    run(main)
  return main


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
  sys.modules["__main__"].__doc__ = f"{(script.__doc__ or '').rstrip()}\n\n{flagfile_note()}\n"


def flagfile_note() -> str:
  """``--help``'s paragraph on ``--flagfile=NAME``: the shipped names and their folder (never split, to copy)."""
  return textwrap.fill(f"--flagfile=NAME reads flags from a file: a path, or the name of a flagfile shipped with "
                       f"fvjax ({', '.join(shipped_flagfiles())}; in {FLAGFILES}).", 100, break_on_hyphens=False,
                       break_long_words=False)


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
