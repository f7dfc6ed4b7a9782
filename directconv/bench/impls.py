"""The registry of benchmarked implementations, in the order they are reported."""

from __future__ import annotations

from collections.abc import Sequence

from directconv.bench import ours, peers
from directconv.bench.base import Impl

IMPLS: tuple[Impl, ...] = (*ours.IMPLS, *peers.IMPLS)


def names() -> tuple[str, ...]:
    return tuple(impl.name for impl in IMPLS)


def select(wanted: Sequence[str] | None = None) -> tuple[Impl, ...]:
    """The implementations named in `wanted` (all if None or empty), in registry order; ValueError on a typo."""
    if not wanted:
        return IMPLS
    unknown = [name for name in wanted if name not in names()]
    if unknown:
        raise ValueError(f"unknown implementation(s) {', '.join(unknown)}; known: {', '.join(names())}")
    return tuple(impl for impl in IMPLS if impl.name in wanted)


def split_available(impls: Sequence[Impl]) -> tuple[tuple[Impl, ...], dict[str, str]]:
    """(the implementations whose modules import, {name: what is missing} for the others)."""
    available, missing = [], {}
    for impl in impls:
        reason = impl.missing()
        if reason is None:
            available.append(impl)
        else:
            missing[impl.name] = reason
    return tuple(available), missing
