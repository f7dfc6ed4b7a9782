"""The FMA peak of this machine, measured: the 100% against which every benchmark figure is read.

It runs the probe's saturated multiply-add loop (directconv.kernels.fma: K independent chains of full vectors, the
most the registers allow) on T threads at once. The probe documents the traps that loop avoids; here we only
choose how long to run it and summarize.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from directconv.core import checks
from directconv.core.isa import host_isa
from directconv.kernels import fma

DEFAULT_REPEATS = 7
DEFAULT_SECONDS = 0.1


def chains(kernels: fma.Kernels) -> int:
    """Independent chains per thread in the peak loop: the most the registers allow, past saturation on any core."""
    return fma.accumulator_counts(kernels.isa)[-1]


def accumulators(isa_name: str) -> int:
    """Chains the peak loop runs for `isa_name` (see chains)."""
    return chains(fma.load(isa_name))


def gflops(kernels: fma.Kernels, k: int, iters: int, threads: int, seconds: float) -> float:
    """GFLOP/s of `threads` threads that each ran `iters` iterations of the K-chain loop in `seconds`."""
    return 2 * kernels.isa.lanes * fma.fmas_per_iteration(k) * iters * threads / seconds * 1e-9


def calibrate(run: Callable[[int], float], seconds: float) -> int:
    """Iterations that make `run(iters)` (which returns its seconds) take about `seconds`."""
    n = 16
    while True:
        t = run(n)
        if t >= seconds / 8 or n > 1 << 40:
            return max(1, int(n * seconds / t))
        n *= 4


def peak_once(threads: int, seconds: float = DEFAULT_SECONDS, *, isa: str | None = None) -> float:
    """One measurement of the total FMA GFLOP/s of `threads` threads running at once (compiles on first use)."""
    checks.threads(threads)
    checks.positive("seconds", seconds)
    kernels = fma.load(isa or host_isa())
    k = chains(kernels)
    # Short runs, the fastest of several: under load from other processes the fastest short run is the machine's,
    # a long run is the neighbours'.
    iters = calibrate(lambda n: kernels.peak(k, n, 1, ())[0], seconds / 5)
    started = time.perf_counter()
    best = float("inf")
    while time.perf_counter() - started < seconds or best == float("inf"):
        best = min(best, kernels.peak(k, iters, threads, ())[0])
    result = gflops(kernels, k, iters, threads, best)
    if not result > 0:
        raise RuntimeError(f"FMA peak microbenchmark returned {result} for threads={threads}, seconds={seconds}")
    return result


@dataclass(frozen=True)
class PeakLoop:
    """The FMA peak loop as a callable to time beside benchmarked code, in the same interleaved rounds: each call
    runs `threads` threads of the K-chain loop for `iters` iterations at once, `flops` in all. Round r's peak is
    flops / (round r's seconds per call); set against round r of every implementation, it takes the host's phases
    (minutes when everything runs slower) out of their % of peak."""

    threads: int
    iters: int
    flops: float
    call: Callable[[], object]

    def gflops(self, seconds: float) -> float:
        """GFLOP/s of a call that took `seconds`."""
        return self.flops / seconds * 1e-9


def peak_loop(threads: int, seconds: float, *, isa: str | None = None) -> PeakLoop:
    """The peak loop on `threads` threads, with iterations for about `seconds` per call (so that starting the
    threads, which the timing of a whole call includes, costs under a percent at 10 ms or more)."""
    checks.threads(threads)
    checks.positive("seconds", seconds)
    kernels = fma.load(isa or host_isa())
    k = chains(kernels)
    iters = calibrate(lambda n: kernels.peak(k, n, threads, ())[0], seconds)

    def call() -> object:
        return kernels.peak(k, iters, threads, ())

    return PeakLoop(threads, iters, gflops(kernels, k, iters, threads, 1.0) * 1e9, call)


@dataclass(frozen=True)
class Peak:
    """The FMA peak for one thread count: the median of `samples` (GFLOP/s, all threads together)."""

    isa: str
    threads: int
    gflops: float
    samples: tuple[float, ...]
    accumulators: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "isa": self.isa,
            "threads": self.threads,
            "gflops": self.gflops,
            "samples": list(self.samples),
            "accumulators": self.accumulators,
        }


def measure_peaks(
    thread_counts: tuple[int, ...],
    *,
    repeats: int = DEFAULT_REPEATS,
    seconds: float = DEFAULT_SECONDS,
    isa: str | None = None,
) -> dict[int, Peak]:
    """The FMA peak for each thread count, the median of `repeats` runs of `seconds` each.

    Thread counts alternate within each repeat, so a change of clock during the measurement shifts all of them
    alike. Nothing else runs in between: the peak is measured before any benchmark, never during one.
    """
    checks.integer("repeats", repeats, 1)
    isa_name = isa or host_isa()
    samples: dict[int, list[float]] = {t: [] for t in thread_counts}
    for _ in range(repeats):
        for t in thread_counts:
            samples[t].append(peak_once(t, seconds, isa=isa_name))
    k = accumulators(isa_name)
    return {t: Peak(isa_name, t, statistics.median(values), tuple(values), k) for t, values in samples.items()}
