"""Interleaved timing and the statistics of its samples.

Implementations are timed in rounds: in every round each implementation runs one batch of calls, in an order
that rotates from round to round. A change of machine state (clock, a neighbour's load, the cache of a shared
core) then lands on every implementation alike instead of on whichever happened to run at the time, and the
median over rounds shrugs off a round that went wrong. Nothing here knows what is being timed.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

Clock = Callable[[], float]

# A thread pool does not sleep as soon as its work is done: OpenBLAS workers spin for about 0.1 s, onnxruntime's
# for tens of ms, OpenMP runtimes for a few ms. On a machine with T cores such a spinning pool takes a core from
# whatever runs next. Before each batch the process waits until its own threads are idle.
SETTLE_WINDOW = 0.005  # seconds per observation of the process's CPU time
SETTLE_IDLE_FRACTION = 0.1  # of one core, over a window: the process counts as idle below this
SETTLE_MAX_WAIT = 0.25  # a pool that never sleeps (OMP_WAIT_POLICY=active) must not stall the benchmark


@dataclass(frozen=True)
class Stats:
    """Order statistics of one measured quantity over rounds (per-call seconds, GHz, GFLOP/s...)."""

    median: float
    p10: float
    p90: float
    minimum: float
    maximum: float
    count: int

    @property
    def spread(self) -> float:
        """(p90 - p10) / median: how much to trust the median; 0.05 means the middle 80% lie within 5%."""
        return (self.p90 - self.p10) / self.median if self.median > 0 else math.inf

    def __str__(self) -> str:
        def show(x: float) -> str:
            return f"{x:.3g}" if abs(x) >= 100 else f"{x:.2f}"

        return f"{show(self.median)} [p10-p90 {show(self.p10)}-{show(self.p90)}]"


def summarize(samples: Sequence[float]) -> Stats:
    """Order statistics of `samples` (linear interpolation between order statistics for p10/p90)."""
    if len(samples) == 0:
        raise ValueError("summarize needs at least one sample, got none")
    a = np.asarray(samples, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"samples must be finite, got {list(samples)}")
    p10, median, p90 = np.percentile(a, [10, 50, 90])
    return Stats(float(median), float(p10), float(p90), float(a.min()), float(a.max()), int(a.size))


def geomean(values: Sequence[float]) -> float:
    """Geometric mean of positive values (the mean that treats a 2x gain on any layer alike)."""
    if len(values) == 0:
        raise ValueError("geomean needs at least one value, got none")
    if any(not v > 0 for v in values):
        raise ValueError(f"geomean needs positive values, got {list(values)}")
    return math.exp(sum(math.log(v) for v in values) / len(values))


T = TypeVar("T")


def rotation(names: Sequence[T], round_index: int) -> list[T]:
    """The order of round `round_index`: `names` rotated left by round_index, so each name leads in turn."""
    if not names:
        return []
    k = round_index % len(names)
    return [*names[k:], *names[:k]]


def schedule(names: Sequence[T], rounds: int) -> list[list[T]]:
    """The order of every round (see rotation)."""
    return [rotation(names, r) for r in range(rounds)]


def interleaved_medians(runs: Mapping[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    """The median over `rounds` of what each run returns (seconds), the runs called in rotated order every round
    (see rotation), so that the machine's drift hits every run alike."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for order in schedule(list(runs), rounds):
        for name in order:
            times[name].append(runs[name]())
    return {name: statistics.median(t) for name, t in times.items()}


def settle(
    window: float = SETTLE_WINDOW, idle_fraction: float = SETTLE_IDLE_FRACTION, max_wait: float = SETTLE_MAX_WAIT
) -> float:
    """Sleep until this process's threads (all of them, thread pools included) use less than `idle_fraction` of
    a core over `window` seconds, or `max_wait` seconds have passed. Returns the seconds waited."""
    start = time.perf_counter()
    while True:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        time.sleep(window)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        waited = time.perf_counter() - start
        if cpu < idle_fraction * wall or waited >= max_wait:
            return waited


def time_batch(call: Callable[[], object], calls: int, clock: Clock = time.perf_counter) -> float:
    """Seconds per call over `calls` back-to-back calls.

    The garbage collector is paused for the batch: a collection triggered by one implementation's allocations
    would otherwise be billed to whichever call happened to run at the time.
    """
    if calls < 1:
        raise ValueError(f"calls must be >= 1, got {calls}")
    enabled = gc.isenabled()
    gc.disable()
    try:
        start = clock()
        for _ in range(calls):
            call()
        stop = clock()
    finally:
        if enabled:
            gc.enable()
    return (stop - start) / calls


def warm_up(call: Callable[[], object], min_time: float, min_calls: int, clock: Clock = time.perf_counter) -> float:
    """Call `call` at least `min_calls` times and for at least `min_time` seconds; return the fastest call's time.

    First calls pay for lazy set-up (a JIT, a primitive cache, page faults on fresh buffers); the fastest of the
    warm-up calls estimates the steady state, from which the batch size is chosen.
    """
    best = math.inf
    start = clock()
    done = 0
    while done < max(1, min_calls) or clock() - start < min_time:
        best = min(best, time_batch(call, 1, clock))
        done += 1
    return best


def calls_per_batch(seconds_per_call: float, min_time: float, max_calls: int = 1_000_000) -> int:
    """Calls so that a batch lasts about `min_time` (at least one call: a slow call is its own batch)."""
    if not seconds_per_call > 0:
        return max_calls
    return max(1, min(max_calls, math.ceil(min_time / seconds_per_call)))


class TimedCallError(RuntimeError):
    """A callable raised while being warmed up or timed; `name` says which (the exception is the __cause__)."""

    def __init__(self, name: str, exc: BaseException) -> None:
        super().__init__(f"{name} raised {type(exc).__name__}: {exc}")
        self.name = name


@dataclass(frozen=True)
class Timing:
    """What interleave measured for one implementation: per-call seconds of each round, in round order."""

    samples: tuple[float, ...]
    calls_per_sample: int

    @property
    def stats(self) -> Stats:
        return summarize(self.samples)


def interleave(
    calls: Mapping[str, Callable[[], object]],
    *,
    rounds: int,
    min_time: float,
    warmup_calls: int = 2,
    clock: Clock = time.perf_counter,
    pause: Callable[[], object] = settle,
) -> dict[str, Timing]:
    """Time every callable in `calls` over `rounds` interleaved rounds (see the module docstring).

    Each callable is first warmed up (at least `warmup_calls` calls and `min_time` seconds) and given a batch
    size so that one batch lasts about `min_time`; then round r runs one batch of each, in the order
    rotation(names, r). `pause` runs before every warm-up and batch (default: settle, so that no thread pool
    left spinning by the previous batch competes with the next). Returns one Timing per name, samples in round
    order. An exception from a callable ends the measurement as TimedCallError naming it.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    if not min_time > 0:
        raise ValueError(f"min_time must be > 0 seconds, got {min_time}")
    names = list(calls)
    batch: dict[str, int] = {}
    samples: dict[str, list[float]] = {name: [] for name in names}
    name = ""
    try:
        for name in names:
            pause()
            batch[name] = calls_per_batch(warm_up(calls[name], min_time, warmup_calls, clock), min_time)
        for order in schedule(names, rounds):
            for name in order:
                pause()
                samples[name].append(time_batch(calls[name], batch[name], clock))
    except Exception as exc:  # any failure of the code under test is reported, with its name
        raise TimedCallError(name, exc) from exc
    return {name: Timing(tuple(samples[name]), batch[name]) for name in names}
