"""The registry of implementations run on whole networks (`bench --end-to-end`), in the order they are reported."""

from __future__ import annotations

from directconv.bench import chain, chain_peers
from directconv.bench.base import Impl
from directconv.bench.chain import ChainProblem

IMPLS: tuple[Impl[ChainProblem], ...] = (*chain.IMPLS, *chain_peers.IMPLS)


def names() -> tuple[str, ...]:
    return tuple(impl.name for impl in IMPLS)


def select(wanted: list[str] | None = None) -> tuple[Impl[ChainProblem], ...]:
    """The implementations named in `wanted` (all if None or empty), in registry order; ValueError on a typo."""
    if not wanted:
        return IMPLS
    unknown = [name for name in wanted if name not in names()]
    if unknown:
        raise ValueError(f"unknown end-to-end implementation(s) {', '.join(unknown)}; known: {', '.join(names())}")
    return tuple(impl for impl in IMPLS if impl.name in wanted)
