"""Experiment configs: frozen dataclasses whose fields carry their help text and what they accept.

Every experiment of :mod:`fvjax.experiments` takes one ``Config`` (defaults: the paper's or Lucid's numbers).
Its fields are made with :func:`option`, so that one definition serves three readers: the notebook or library
user (``Config(steps=64)``, checked in ``__post_init__`` by :func:`validate`, one sentence per bad value), the
launch script (``fvjax.launch.define_flags`` makes an absl flag of every field, same name, default, help text
and bounds) and the tests.

  @dataclasses.dataclass(frozen=True)
  class Config:
    steps: int = config.option(512, "Optimisation steps (Lucid: 512).", lower=1)
    units: tuple[int, ...] = config.option((1, 2), "Unit indices (or ranges a-b).", units="required")

    def __post_init__(self):
      config.validate(self)
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Callable, Sequence

from fvjax.optvis import methods

# Largest image side a size option takes: a float32 render batch grows with
# the square of it, and 100000 px asks numpy for terabytes (a MemoryError).
MAX_SIZE = 4096
UNITS_ACCEPTED = "unit indices and ranges a-b with a <= b, such as 3 or 10-12"


def parse_units(items: Sequence, flag: str = "units") -> list[int]:
  """``["3", "10-12"]`` -> ``[3, 10, 11, 12]`` (lists of unit indices and ranges; ints pass through).

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


def option(default: Any, help: str, *, lower: float | None = None, upper: float | None = None,  # pylint: disable=redefined-builtin
           choices: Sequence[str] | None = None, units: str | None = None, parse: Callable | None = None,
           folder: bool = False, example: str | None = None, check: Callable[[Any], bool] | None = None,
           accepted: str | None = None, cli: bool = True) -> Any:
  """A config field.

  Args:
    default: its default (a list becomes a tuple).
    help: one sentence for ``--help`` and the docs.
    lower, upper: bounds of a number, or of every item of a tuple of numbers.
    choices: the accepted strings.
    units: ``"required"`` or ``"optional"``: a tuple of unit indices, given as ints or strings
      such as ``"10-12"`` (:func:`parse_units`); read as ints.
    parse: for ``units``: ``items -> units`` instead of :func:`parse_units` (the items stay as given).
    folder: an image folder (the launch scripts check it when flags are parsed).
    example: for tuples of numbers: an example for the error sentence (e.g. ``"64,128"``).
    check: ``value -> bool`` for a value that is not None; false: the sentence ``accepted``.
    accepted: what ``check`` accepts, in words.
    cli: whether the launch script makes it a flag.
  """
  meta = {"help": help, "cli": cli, "folder": folder}
  for name, value in dict(lower=lower, upper=upper, choices=choices, units=units, parse=parse, example=example,
                          check=check, accepted=accepted).items():
    if value is not None:
      meta[name] = tuple(value) if name == "choices" else value
  return dataclasses.field(default=tuple(default) if isinstance(default, list) else default, metadata=meta)


def field_type(annotation) -> tuple[type, type | None, bool]:
  """``(type, item type of a tuple or None, optional)`` of a field's annotation (``tuple[int, ...] | None``)."""
  args = typing.get_args(annotation)
  optional = typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args
  if optional:
    (annotation,) = [a for a in args if a is not type(None)]
  if typing.get_origin(annotation) is tuple:
    return tuple, typing.get_args(annotation)[0], optional
  return annotation, None, optional


def fields(cls) -> list[tuple[dataclasses.Field, type, type | None, bool]]:
  """``(field, type, item type, optional)`` for every field of a config class."""
  hints = typing.get_type_hints(cls)
  return [(f, *field_type(hints[f.name])) for f in dataclasses.fields(cls)]


def _number(kind: type) -> str:
  return "an integer" if kind is int else "a number"


def _bounds(kind: type, lower, upper) -> str:
  if lower is not None and upper is not None:
    return f"{_number(kind)} in [{lower}, {upper}]"
  return f"{_number(kind)} >= {lower}" if lower is not None else f"{_number(kind)} <= {upper}"


def _check_number(name: str, value, kind: type, meta: dict) -> None:
  lower, upper = meta.get("lower"), meta.get("upper")
  if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
    raise ValueError(f"Invalid {name}={value!r}; accepted: {_number(kind)}.")
  if (lower is not None and not value >= lower) or (upper is not None and not value <= upper) or (
      kind is float and math.isnan(value)):
    raise ValueError(f"Invalid {name}={value!r}; accepted: {_bounds(kind, lower, upper)}.")


def validate(config) -> None:
  """Checks every field of a frozen config against its :func:`option` (call it in ``__post_init__``).

  Tuples given as lists are stored as tuples, their items converted to the item type (``"64"`` -> 64), unit
  lists parsed (``"10-12"`` -> 10, 11, 12).

  Raises:
    ValueError: one sentence naming the field, the value and what it accepts.
  """
  for f, kind, item, optional in fields(type(config)):
    value, meta, name = getattr(config, f.name), f.metadata, f.name
    if value is None:
      if optional:
        continue
      raise ValueError(f"{name} is missing; accepted: {meta.get('accepted') or 'a value'}.")
    if kind is tuple:
      if isinstance(value, str):
        raise ValueError(f"Invalid {name}={value!r}; accepted: a list of items, such as {meta.get('example') or '[1, 2]'}.")
      if meta.get("units"):
        units = meta["parse"](value) if "parse" in meta else parse_units(value, name)
        value = tuple(value) if "parse" in meta else tuple(units)
        if meta["units"] == "required" and not units:
          raise ValueError(f"{name} is empty; accepted: {UNITS_ACCEPTED}.")
      else:
        try:  # "64" -> 64; 2 -> 2.0 where numbers are floats
          value = tuple(item(v) if (item is int and isinstance(v, str)) or (
              item is float and isinstance(v, (str, int)) and not isinstance(v, bool)) else v for v in value)
        except ValueError:
          raise ValueError(f"Cannot read {name}={list(value)!r}; accepted: "
                           f"{'integers' if item is int else 'numbers'} such as {meta.get('example', '64,128')}.") from None
        if item in (int, float):
          for v in value:
            _check_number(name, v, item, meta)
      object.__setattr__(config, name, value)
    elif kind in (int, float):
      if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
        object.__setattr__(config, name, value)
      _check_number(name, value, kind, meta)
    if "choices" in meta and value not in meta["choices"]:
      raise ValueError(f"Invalid {name}={value!r}; accepted: one of {', '.join(meta['choices'])}.")
    if "check" in meta and not meta["check"](value):
      raise ValueError(f"Invalid {name}={value!r}; accepted: {meta['accepted']}.")


def size(default: int | None, help: str, lower: int = 1) -> Any:  # pylint: disable=redefined-builtin
  """An image side in px, at most :data:`MAX_SIZE`."""
  return option(default, help, lower=lower, upper=MAX_SIZE)


def seed() -> Any:
  """The PRNG seed option every experiment has."""
  return option(0, "PRNG seed: the same seed gives the same images and results.")


@dataclasses.dataclass(frozen=True)
class MethodConfig:
  """The feature-visualization method of an experiment (a base of its ``Config``: the flags ``--method``,
  ``--crops``, ``--accent_layer``, ``--accent_weight``); see :mod:`fvjax.optvis.methods`."""

  method: str = option("lucid", "Feature-visualization method: lucid (Lucid's recipe), maco (Fel et al. 2023: fixed "
                       "natural magnitude spectrum, phase optimised, random crops), accentuation (Hamblin et al. "
                       "2024: from a natural seed image, kept close to it in the model's latent space) or pixel "
                       "(Lucid's recipe on pixels).", choices=methods.METHODS)
  crops: int | None = option(None, "maco and accentuation: random crops per step (default: Horama's 6 for maco, "
                             "faccent's 16 for accentuation); lucid and pixel draw Lucid's one transform a step.",
                             lower=1)
  accent_layer: str | None = option(None, "accentuation: layer of the seed-distance regulariser (default: the "
                                    "layer a quarter of the way into the model; InceptionV1's mixed3a).")
  accent_weight: float = option(1.0, "accentuation: weight of the seed-distance regulariser (faccent: 1).", lower=0)

  def method_settings(self) -> dict:
    """The method's fields, for the store keys of rendered images (empty for Lucid's recipe, whose stored
    results predate the field)."""
    if self.method == "lucid":
      return {}
    return {"method": self.method, "crops": self.crops, "accent_layer": self.accent_layer,
            "accent_weight": self.accent_weight}

  def render_options(self, model, size: int | None = None, spectrum_images=None, seeds=None) -> dict:
    """``render`` keyword arguments of the method (:func:`fvjax.optvis.methods.render_options`)."""
    return methods.render_options(self.method, model, size=size, spectrum_images=spectrum_images, seeds=seeds,
                                  accent_layer=self.accent_layer, accent_weight=self.accent_weight,
                                  crops=self.crops)
