"""Detector flags shared by fvjax.launch.train_detector and fvjax.launch.fooling_circuit: the fields of
:class:`fvjax.experiments.train_detector.Config`."""

from fvjax import launch
from fvjax.experiments import train_detector

CONFIG = launch.define_flags(train_detector.Config)


def config() -> train_detector.Config:
  """The detector training config the flags give."""
  return launch.config_from_flags(train_detector.Config, CONFIG)
