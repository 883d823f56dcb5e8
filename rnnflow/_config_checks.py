"""The checks every run config (``TrainConfig``, ``CharLMConfig``) runs on its fields: the
allowed range of each number (:class:`Range`) and the type of each value (the annotation).

Torch-free and shared: ``rnnflow.training.config`` and ``rnnflow.text.config`` both use them
(text never imports training), and both re-export what their users import.
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import dataclass, fields
from typing import Any, Literal

__all__ = [
    "FINITE",
    "LEARNING_RATE",
    "NON_NEGATIVE",
    "POSITIVE",
    "PROBABILITY",
    "SEED",
    "THREADS",
    "Range",
    "check_field_type",
    "check_range",
    "check_ranges",
]

INT64_MAX = 2**63 - 1  # torch seeds, counters and sizes are int64
MAX_THREADS = 1024


@dataclass(frozen=True)
class Range:
    """The allowed values of a numeric config field: ``low``/``high`` bounds (None: unbounded,
    except that every int must fit in int64), open or closed, and an optional note for the
    message. Floats must be finite whatever the bounds."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    note: str = ""

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"in {left}{self.low}, {self.high}{right}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low}"
        if self.high is not None:
            return f"{'<' if self.high_open else '<='} {self.high}"
        return "finite"


POSITIVE = Range(low=0, low_open=True)
NON_NEGATIVE = Range(low=0)
PROBABILITY = Range(low=0, high=1, high_open=True)  # drop / smoothing probabilities: [0, 1)
FINITE = Range()
SEED = Range(low=0, high=2**63 - 2)  # the augmentation generator is seeded with seed + 1
# Adam's first step size, lr / (1 - beta1) = 10 lr, must be a float32 (torch raises otherwise).
LEARNING_RATE = Range(low=0, high=1e37, low_open=True)
THREADS = Range(low=0, high=MAX_THREADS, note=" (0: PyTorch's default)")


def check_ranges(owner: str, config: Any, ranges: dict[str, Range]) -> None:
    """Raise ``ValueError`` naming ``owner``, the field, the allowed range and the value for
    the first numeric field of ``config`` outside its :class:`Range` (NaN and inf never pass).
    Every int or float field must have an entry in ``ranges`` (a new field cannot be forgotten).
    """
    for f in fields(config):
        value = getattr(config, f.name)
        if value is None or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if f.name not in ranges:
            raise TypeError(f"{owner}: field {f.name} has no range (add it to its ranges table)")
        check_range(owner, f.name, value, ranges[f.name])


def check_range(owner: str, name: str, value: float, allowed: Range) -> None:
    """Raise ``ValueError`` if ``value`` (int or float) is non-finite or outside ``allowed``."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{owner}: {name} must be a finite number, got {value}")
    low, high = allowed.low, allowed.high
    too_low = low is not None and (value <= low if allowed.low_open else value < low)
    too_high = high is not None and (value >= high if allowed.high_open else value > high)
    if too_low or too_high:
        raise ValueError(f"{owner}: {name} must be {allowed.describe()}{allowed.note}, got {value}")
    if isinstance(value, int) and not -INT64_MAX - 1 <= value <= INT64_MAX:
        raise ValueError(f"{owner}: {name} must fit in a 64-bit integer, got {value}")


def check_field_type(owner: str, name: str, value: Any, tp: Any) -> None:
    """Raise if ``value`` does not fit the annotation ``tp`` of field ``name`` of ``owner``:
    ``Literal`` (ValueError, the allowed values), ``X | None``, ``tuple[str, ...]``,
    ``tuple[float, ...]`` (finite), bool, int, float (an int is accepted) and str (TypeError).
    Booleans are not ints here."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ValueError(
                f"{owner}: {name} must be one of {list(typing.get_args(tp))}, got {value!r}"
            )
        return
    if origin is tuple:
        item = typing.get_args(tp)[0]  # tuple[str, ...] or tuple[float, ...]
        if not isinstance(value, tuple) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            if item is float
            else isinstance(v, item)
            for v in value
        ):
            raise TypeError(f"{owner}: {name} must be a tuple of {item.__name__}, got {value!r}")
        return
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return
        (tp,) = [a for a in args if a is not type(None)]
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool),
        str: isinstance(value, str),
    }[tp]
    if not ok:
        raise TypeError(f"{owner}: {name} must be {tp.__name__}, got {value!r}")
