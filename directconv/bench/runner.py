"""Set every implementation up on a problem, check it, time the correct ones together in interleaved rounds, and
say how fast each was against the FMA peak: the same for one layer and for a whole network. The FMA peak loop is
timed in the same rounds (tuner/peak.py), so that % of peak is per round: the host has phases of minutes when
everything runs slower, and a peak measured before the rounds would not share them. A memory-bound layer also
times the bandwidth loop of its minimal traffic in the same rounds (tuner/bandwidth.py).

Failures are results, not exceptions: an implementation that raises or computes a wrong answer gets a Result
saying so and the others go on.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic

from directconv.bench.base import Check, Impl, P, Prepared
from directconv.bench.results import FAILED, OK, WRONG, Result, RooflineTiming
from directconv.core.isa import host_isa
from directconv.tuner.harness import TimedCallError, Timing, interleave
from directconv.tuner.load import LoadMeter
from directconv.tuner.peak import Peak, PeakLoop, peak_loop

if TYPE_CHECKING:  # the memory child imports this module: only what it runs counts in what it measures
    from directconv.tuner.bandwidth import StreamLoop


@dataclass(frozen=True)
class Settings:
    """How hard to measure: rounds per problem, seconds per sample batch, warm-up calls, FMA peak repeats."""

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


DEFAULT = Settings()
QUICK = Settings(rounds=3, min_time=0.01, warmup_calls=1, peak_repeats=3, peak_seconds=0.05)


def settings_for(quick: bool, rounds: int | None = None, min_time: float | None = None) -> Settings:
    """DEFAULT or QUICK, with the rounds and batch duration given on the command line."""
    base = QUICK if quick else DEFAULT
    return Settings(
        rounds=rounds or base.rounds,
        min_time=min_time or base.min_time,
        warmup_calls=base.warmup_calls,
        peak_repeats=base.peak_repeats,
        peak_seconds=base.peak_seconds,
    )


@dataclass(frozen=True)
class Case(Generic[P]):
    """A problem ready to run: its name and work for the results, and the judge of an implementation's answer."""

    name: str
    flops: int
    problem: P
    check: Callable[[Any], Check]  # gets prepared.to_nchw(prepared.call())
    checked_against: str  # what `check` compares with, in words


def describe_error(exc: BaseException) -> str:
    """An exception as one short line for a report: its type and the first line of its message."""
    return f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:300]


@dataclass(frozen=True)
class Outcome:
    """What `measure` found for one implementation: status (OK, WRONG or FAILED), the check, the timing (for
    OK), the error (for FAILED), the other load while timed, and the Prepared it set up (closed by now)."""

    status: str
    prepared: Prepared | None = None
    check: Check | None = None
    timing: Timing | None = None
    error: str | None = None
    other_cpus: float | None = None


def measure(
    impls: Sequence[Impl[Any]],
    prepare: Callable[[Impl[Any]], Prepared],
    check: Callable[[Any], Check],
    settings: Settings,
    yardsticks: Mapping[str, Callable[[], object]] | None = None,
) -> dict[str, Outcome]:
    """Set up every implementation, check its answer (`check` gets prepared.to_nchw(prepared.call())), time the
    correct ones together (harness.interleave), and close them all. One Outcome per implementation name.

    `yardsticks` (name -> call) are timed in the same rounds as the correct implementations, never checked (a
    bandwidth loop, whose round r saw the machine as round r of every implementation did); each gets an Outcome
    under its name: OK with its timing, or FAILED if it raised. None is timed when no implementation is.
    """
    extra = dict(yardsticks or {})
    clash = sorted(set(extra) & {impl.name for impl in impls})
    if clash:
        raise ValueError(f"yardstick names must differ from implementation names, got {', '.join(clash)} in both")
    outcomes: dict[str, Outcome] = {}
    ready: dict[str, Prepared] = {}
    # Closed last-in first-out, all at the end: an implementation's close restores process-wide settings (BLAS or
    # torch thread counts) as they were before its prepare, which is right only in that order.
    opened: list[Prepared] = []
    try:
        for impl in impls:
            prepared = None
            try:
                prepared = prepare(impl)
                opened.append(prepared)
                verdict = check(prepared.to_nchw(prepared.call()))
            except Exception as exc:  # failures are results (see the module docstring)
                outcomes[impl.name] = Outcome(FAILED, prepared, error=describe_error(exc))
                continue
            if verdict.correct:
                ready[impl.name] = prepared
                outcomes[impl.name] = Outcome(OK, prepared, verdict)
            else:
                # A wrong answer is not timed: a fast wrong kernel must never look like a fast kernel.
                outcomes[impl.name] = Outcome(WRONG, prepared, verdict)
        timings = {}
        meter = LoadMeter()
        while ready:
            try:
                timings = interleave(
                    {**{name: p.call for name, p in ready.items()}, **extra},
                    rounds=settings.rounds,
                    min_time=settings.min_time,
                    warmup_calls=settings.warmup_calls,
                )
                break
            except TimedCallError as exc:
                # Drop the one that raised and time the others again, from the start, so they stay interleaved.
                if exc.name in extra:
                    outcomes[exc.name] = Outcome(FAILED, error=describe_error(exc))
                    del extra[exc.name]
                    continue
                failed = outcomes[exc.name]
                outcomes[exc.name] = Outcome(FAILED, failed.prepared, failed.check, error=describe_error(exc))
                del ready[exc.name]
        other = meter.other_cpus()
        for name, timing in timings.items():
            if name in extra:
                outcomes[name] = Outcome(OK, timing=timing, other_cpus=other)
            else:
                outcomes[name] = Outcome(OK, ready[name], outcomes[name].check, timing, other_cpus=other)
    finally:
        for prepared in reversed(opened):
            if prepared.close is not None:
                prepared.close()
    return outcomes


ROOFLINE = "bandwidth roofline"  # the bandwidth loop's name among the callables of one interleave
PEAK = "FMA peak"  # the FMA peak loop's


@functools.cache
def _peak_loop(threads: int, seconds: float, isa: str) -> PeakLoop:
    # Calibrated once per thread count and batch duration in a process, like the implementations' batch sizes.
    return peak_loop(threads, seconds, isa=isa)


def _yardsticks(threads: int, settings: Settings, roofline: StreamLoop | None) -> dict[str, Any]:
    """The loops timed beside the implementations: the FMA peak's, in this host's ISA (the loop that measured the
    peak before the rounds), and the bandwidth loop, if any."""
    yardsticks: dict[str, Any] = {PEAK: _peak_loop(threads, settings.min_time, host_isa())}
    if roofline is not None:
        yardsticks[ROOFLINE] = roofline
    return yardsticks


def run(
    case: Case[P],
    impls: Sequence[Impl[P]],
    threads: int,
    peak: Peak,
    settings: Settings,
    roofline: StreamLoop | None = None,
) -> list[Result]:
    """Results of every implementation in `impls` on `case` at `threads` threads, in the order of `impls`.

    Every result carries the FMA peak of each round (`peak` is the fallback, measured before the rounds). With
    `roofline` (the bandwidth loop of the problem's minimal traffic, on `threads` threads), that loop is timed in
    the same rounds too and every result carries its RooflineTiming (tuner/bandwidth.py says how it is read)."""
    loops = _yardsticks(threads, settings, roofline)
    calls = {name: loop.call for name, loop in loops.items()}
    outcomes = measure(impls, lambda impl: impl.prepare(case.problem, threads), case.check, settings, calls)
    peak_rounds: tuple[float, ...] = ()
    timed_peak = outcomes.get(PEAK)
    if timed_peak is not None and timed_peak.timing is not None:
        peak_rounds = tuple(loops[PEAK].gflops(s) for s in timed_peak.timing.samples)
    roof = None
    if roofline is not None:
        timed = outcomes.get(ROOFLINE)
        samples = timed.timing.samples if timed is not None and timed.timing is not None else ()
        roof = RooflineTiming(roofline.traffic.bytes, samples, None if timed is None else timed.error)
    results = []
    for impl in impls:
        o = outcomes[impl.name]
        p = o.prepared
        results.append(
            Result(
                problem=case.name,
                impl=impl.name,
                threads=threads,
                status=o.status,
                flops=case.flops,
                peak=peak,
                check=o.check,
                timing=o.timing,
                checked_against=case.checked_against,
                memory_bytes=None if p is None else p.extra_memory_bytes,
                config=None if p is None else p.config,
                config_source=None if p is None else p.config_source,
                note="" if p is None else p.note,
                error=o.error,
                other_cpus=o.other_cpus,
                roofline=roof,
                peak_rounds=peak_rounds,
            )
        )
    return results
