"""The console scripts ``fvjax-<name>`` (setup.cfg): each runs the script ``fvjax.launch.<name>``.

A script's module is imported only when its command runs: absl flags are global, and several scripts
define flags of the same name (--steps, --workdir).
"""

import importlib

from fvjax import launch


def _script(name):
  def command():
    launch.run(importlib.import_module(f"fvjax.launch.{name}").main)

  command.__name__ = command.__qualname__ = name
  command.__doc__ = f"``fvjax-{name.replace('_', '-')}``: runs ``python -m fvjax.launch.{name}``."
  return command


classify = _script("classify")
visualize = _script("visualize")
sanity_check = _script("sanity_check")
train_detector = _script("train_detector")
fooling_circuit = _script("fooling_circuit")
silent_units = _script("silent_units")
theory = _script("theory")
causal_benchmark = _script("causal_benchmark")
