"""One layer at one thread count: set every implementation up, check it, time the correct ones together.

Failures are results, not exceptions: an implementation that raises or computes a wrong answer gets a Result
saying so and the others go on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .base import Impl, Prepared, Problem, check_output
from .harness import TimedCallError, interleave
from .load import LoadMeter
from .peak import Peak
from .results import FAILED, OK, WRONG, Result


@dataclass(frozen=True)
class Settings:
    """How hard to measure: rounds per layer, seconds per sample batch, warm-up calls, FMA peak repeats."""

    rounds: int = 7
    min_time: float = 0.025
    warmup_calls: int = 2
    peak_repeats: int = 7
    peak_seconds: float = 0.1

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.warmup_calls < 0 or self.peak_repeats < 1:
            raise ValueError(f"rounds and peak_repeats must be >= 1 and warmup_calls >= 0, got {self}")
        if not (self.min_time > 0 and self.peak_seconds > 0):
            raise ValueError(f"min_time and peak_seconds must be > 0 seconds, got {self}")


QUICK = Settings(rounds=3, min_time=0.01, warmup_calls=1, peak_repeats=3, peak_seconds=0.05)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:300]


def run_layer(
    problem: Problem,
    reference: np.ndarray,
    impls: Sequence[Impl],
    threads: int,
    peak: Peak,
    settings: Settings,
) -> list[Result]:
    """Results of every implementation in `impls` on `problem` at `threads` threads, in the order of `impls`."""
    results: dict[str, Result] = {}
    ready: dict[str, Prepared] = {}
    # Closed last-in first-out, all at the end: an implementation's close restores process-wide settings (BLAS or
    # torch thread counts) as they were before its prepare, which is right only in that order.
    opened: list[Prepared] = []

    def fields(name: str, prepared: Prepared | None) -> dict[str, Any]:
        common: dict[str, Any] = {"layer": problem.layer, "impl": name, "threads": threads, "peak": peak}
        if prepared is not None:
            common.update(extra_memory_bytes=prepared.extra_memory_bytes, config=prepared.config, note=prepared.note)
        return common

    try:
        for impl in impls:
            prepared = None
            try:
                prepared = impl.prepare(problem, threads)
                opened.append(prepared)
                verdict = check_output(prepared.to_nchw(prepared.call()), reference, problem.shape)
            except Exception as exc:  # failures are results (see the module docstring)
                results[impl.name] = Result(status=FAILED, error=_describe(exc), **fields(impl.name, prepared))
                continue
            if verdict.correct:
                ready[impl.name] = prepared
            else:
                # A wrong answer is not timed: a fast wrong kernel must never look like a fast kernel.
                results[impl.name] = Result(status=WRONG, check=verdict, **fields(impl.name, prepared))
                continue
            results[impl.name] = Result(status=OK, check=verdict, **fields(impl.name, prepared))
        timings = {}
        meter = LoadMeter()
        while ready:
            try:
                timings = interleave(
                    {name: p.call for name, p in ready.items()},
                    rounds=settings.rounds,
                    min_time=settings.min_time,
                    warmup_calls=settings.warmup_calls,
                )
                break
            except TimedCallError as exc:
                # Drop the one that raised and time the others again, from the start, so they stay interleaved.
                failed = results[exc.name]
                results[exc.name] = Result(
                    status=FAILED, check=failed.check, error=_describe(exc), **fields(exc.name, ready[exc.name])
                )
                del ready[exc.name]
        other = meter.other_cpus()
        for name, timing in timings.items():
            results[name] = Result(
                status=OK, check=results[name].check, timing=timing, other_cpus=other, **fields(name, ready[name])
            )
    finally:
        for prepared in reversed(opened):
            if prepared.close is not None:
                prepared.close()
    return [results[impl.name] for impl in impls]
