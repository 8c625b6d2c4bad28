"""absl entry points, one per experiment: ``python -m launch.<name> --flagfile=...``."""

import sys

from absl import app

# What a user's bad input raises inside fvjax: each carries one sentence saying
# what is wrong and what is accepted.
USER_ERRORS = (KeyError, ValueError, TypeError, FileNotFoundError)


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
