"""absl entry points, one per experiment: ``python -m launch.<name> --flagfile=...``."""

import sys

from absl import app
import matplotlib

matplotlib.use("Agg")  # the scripts write figures to files; never open a window

# What a user's bad input raises inside fvjax: each carries one sentence saying
# what is wrong and what is accepted.
USER_ERRORS = (KeyError, ValueError, TypeError, FileNotFoundError)


def parse_units(items):
  """``["3", "10-12"]`` -> ``[3, 10, 11, 12]`` (flag lists of unit indices and ranges)."""
  units = []
  for item in items:
    lo, _, hi = str(item).partition("-")
    try:
      units += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
    except ValueError:
      raise ValueError(f"Cannot read unit {item!r}; accepted: integers and ranges such as 3 or 10-12.") from None
  return units


def run(main):
  """``app.run(main)``, printing a user error as its one sentence instead of a traceback."""

  def guarded(argv):
    try:
      return main(argv)
    except USER_ERRORS as e:
      message = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
      print(f"error: {message}", file=sys.stderr)
      return 2

  app.run(guarded)
