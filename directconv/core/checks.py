"""Checks of scalar arguments, with one wording for every error: what must hold, and what was given.

A wrong type raises TypeError, a value out of range ValueError (as Python's own functions do); bool is refused
where an int is asked for, since `True` passed as a count or a size is always a mistake.
"""

from __future__ import annotations

import math
from typing import Any


def is_int(value: Any) -> bool:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def bounds(low: float | None, high: float | None) -> str:
    """The range in words: ">= 1", "<= 8", "in [1, 8]"."""
    if low is not None and high is not None:
        return f"in [{low}, {high}]"
    return f">= {low}" if low is not None else f"<= {high}"


def integer(name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    """`value` if it is an int (not a bool) within [low, high] (either end open when None)."""
    if not is_int(value):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be {bounds(low, high)}, got {value}")
    return int(value)


def number(name: str, value: Any, low: float | None = None, high: float | None = None) -> float:
    """`value` as a float if it is a finite real number (not a bool) within [low, high]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be {bounds(low, high)}, got {value}")
    return float(value)


def positive(name: str, value: Any) -> float:
    """`value` as a float if it is a finite number > 0."""
    result = number(name, value)
    if not result > 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return result


def threads(value: Any, name: str = "threads") -> int:
    """A thread count: an int >= 1."""
    return integer(name, value, 1)


def optional_threads(value: Any, name: str = "threads") -> int | None:
    """A thread count or None (None: the caller's default)."""
    return None if value is None else threads(value, name)
