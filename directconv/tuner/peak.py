"""The FMA peak of this machine, measured: the 100% against which every benchmark figure is read.

It runs the probe's saturated multiply-add loop (directconv.kernels.fma: K independent chains of full vectors, the
most the registers allow) on T threads at once. The probe documents the traps that loop avoids; here we only
choose how long to run it and summarize.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

from directconv.core.isa import host_isa
from directconv.kernels import fma

DEFAULT_REPEATS = 7
DEFAULT_SECONDS = 0.1


def accumulators(isa_name: str) -> int:
    """Chains the peak loop runs: the largest K the probe's sweep uses for this ISA."""
    return fma.accumulator_counts(fma.load(isa_name).isa)[-1]


def peak_once(threads: int, seconds: float = DEFAULT_SECONDS, *, isa: str | None = None) -> float:
    """One measurement of the total FMA GFLOP/s of `threads` threads running at once (compiles on first use)."""
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    if not seconds > 0:
        raise ValueError(f"seconds must be > 0, got {seconds!r}")
    kernels = fma.load(isa or host_isa())
    k = fma.accumulator_counts(kernels.isa)[-1]
    # Calibrate on one thread, then run long enough for `seconds` (short runs: under load from other processes
    # the fastest of several short runs is the machine's, a long run is the neighbours').
    iters = 1024
    while (t := kernels.peak(k, iters, 1, ())[0]) < seconds / 20:
        iters *= 4
    iters = max(1, int(iters * (seconds / 5) / t))
    started = time.perf_counter()
    best = float("inf")
    while time.perf_counter() - started < seconds or best == float("inf"):
        best = min(best, kernels.peak(k, iters, threads, ())[0])
    result = 2 * kernels.isa.lanes * fma.fmas_per_iteration(k) * iters * threads / best * 1e-9
    if not result > 0:
        raise RuntimeError(f"FMA peak microbenchmark returned {result} for threads={threads}, seconds={seconds}")
    return result


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
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    isa_name = isa or host_isa()
    samples: dict[int, list[float]] = {t: [] for t in thread_counts}
    for _ in range(repeats):
        for t in thread_counts:
            samples[t].append(peak_once(t, seconds, isa=isa_name))
    k = accumulators(isa_name)
    return {t: Peak(isa_name, t, statistics.median(values), tuple(values), k) for t, values in samples.items()}
