"""Measure the clock, FMA latency and throughput, and the multi-core FMA peak, from the loops in `fma`.

The method, for machines without a readable cycle counter (virtual machines among them):
- clock: a chain of 1-cycle integer adds, so GHz = adds / ns;
- L_fma = (ns per FMA of the dependent chain) * GHz;
- N_fma = (FMAs per ns at saturation, K independent chains) / GHz, saturation being the best K of the sweep;
- L*N = (ns per dependent FMA) / (ns per FMA at saturation), which needs no clock at all and checks the other two.

Shared, noisy machines move all of these by tens of percent from one moment to the next, so every quantity is the
median over rounds of short bursts, and each round's ratios use the clock measured in that same round: a slow
moment slows the clock and the FMAs alike and their ratio survives it. Within a round each burst is the fastest of a
few back-to-back repeats: another process taking the core for a while can only make a loop slower, never faster,
so the fastest repeat is the one it did not hit.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from directconv.kernels import fma
from directconv.machines.probe.describe import Performance
from directconv.tuner.harness import Stats, summarize
from directconv.tuner.peak import calibrate, chains, gflops


@dataclass(frozen=True)
class Budget:
    """How long to measure: `rounds` rounds, each timing every loop (and the peak at every thread count) for about
    `burst_s` seconds, split into `repeats` back-to-back runs of which the fastest counts."""

    burst_s: float
    rounds: int
    repeats: int = 3


# Runs of about a millisecond: shorter than a scheduler time slice, so that on a busy machine some repeats run
# unpreempted (the fastest repeat is kept). Many rounds then give the medians their precision.
DEFAULT = Budget(burst_s=0.005, rounds=101, repeats=5)  # about 7 s on 2 cores, 10 s on 64
QUICK = Budget(burst_s=0.003, rounds=11, repeats=3)  # under a second once compiled


@dataclass(frozen=True)
class FmaProbe:
    """What the microbenchmarks measured on this host, for one ISA (all fp32, per core unless stated)."""

    isa: str
    lanes: int
    clock_ghz: Stats  # integer add chain alone
    clock_fma_ghz: Stats  # the add chain beside 24 FMAs per 32 adds: the clock with the FMA units busy
    l_fma: Stats  # cycles, dependent FMA chain
    n_fma: Stats  # FMAs per cycle at best_k independent chains
    ln: Stats  # clock-free L_fma * N_fma
    best_k: int
    sweep: dict[int, Stats]  # K independent chains -> FMAs per cycle
    peak_k: int  # chains per thread in the peak loop: the most the registers allow, past saturation on any core
    peak_gflops: dict[int, Stats]  # threads running at once -> GFLOP/s of all of them together
    pinned: bool  # whether the peak threads ran pinned, one per physical core
    seconds: float  # wall time of the measurement, compilation excluded
    warnings: tuple[str, ...] = field(default=())

    @property
    def freq_ghz(self) -> float:
        """The sustained clock under FMA load when the mixed loop could show it, else the plain add-chain clock.

        The mixed loop is paced by its add chain only while the 24 FMAs fit in the 32 adds' cycles (N_fma > 0.75).
        """
        if self.n_fma.median * fma.ADDS_PER_ITER > 1.1 * fma.MIX_FMAS_PER_ITER:
            return self.clock_fma_ghz.median
        return self.clock_ghz.median

    def performance(self) -> Performance:
        """The per-core facts a machine description takes, with the measurement in words for its notes."""
        peaks = "; ".join(
            f"{t} thread{'s' if t > 1 else ''} {s.median:.1f} [p10-p90 {s.p10:.1f}-{s.p90:.1f}]"
            for t, s in self.peak_gflops.items()
        )
        note = (
            f"Measured by `directconv probe` ({self.isa}, medians over {self.clock_ghz.count} interleaved rounds): "
            f"L_fma {self.l_fma} cycles; N_fma {self.n_fma} FMA/cycle at K={self.best_k} chains; "
            f"L*N {self.ln} (clock-free); clock {self.clock_ghz} GHz from an add chain, {self.clock_fma_ghz} GHz "
            f"beside FMAs; peak GFLOP/s {peaks}"
            f"{'' if self.pinned else ' (threads could not be pinned to cores)'}."
        )
        if self.warnings:
            note += " Warnings: " + "; ".join(self.warnings) + "."
        return Performance(
            l_fma=self.l_fma.median,
            n_fma=self.n_fma.median,
            freq_ghz=self.freq_ghz,
            peak_gflops={t: s.median for t, s in self.peak_gflops.items()},
            note=note,
        )


def thread_counts(cores: int) -> tuple[int, ...]:
    """Thread counts for the peak: every count up to 8 cores, then powers of two and the total (time budget)."""
    if cores < 1:
        raise ValueError(f"cores must be >= 1, got {cores}")
    if cores <= 8:
        return tuple(range(1, cores + 1))
    counts = [1]
    while counts[-1] * 2 < cores:
        counts.append(counts[-1] * 2)
    return (*counts, cores)


def measure(isa: str, cpus: Sequence[int], budget: Budget = DEFAULT) -> FmaProbe:
    """Run the microbenchmarks for `isa` on this host and return their medians.

    `cpus` lists one logical CPU per physical core this process may use (its length is the core count the peak
    goes up to); the peak threads are pinned to them. The calling thread runs the single-thread loops unpinned.
    Compiles the loops on first use. Not thread-safe: it times the machine, so run nothing else meanwhile.

    Each round times, back to back: the add chain, the add chain beside FMAs, the K sweep, the peak at each thread
    count, the add chain again. Load from other processes then lands on all quantities alike instead of on
    whichever phase it happened to meet.
    """
    if not cpus:
        raise ValueError("measure needs at least one CPU to run on, got an empty cpus list")
    kernels = fma.load(isa)
    ks = fma.accumulator_counts(kernels.isa)
    started = time.perf_counter()

    # Wake the core up to its working clock before anything is timed.
    warm_until = time.perf_counter() + max(0.1, 5 * budget.burst_s)
    while time.perf_counter() < warm_until:
        kernels.fma(ks[-1], 1000)

    run_s = budget.burst_s / budget.repeats
    n_add = calibrate(kernels.add, run_s)
    n_mix = calibrate(kernels.add_fma, run_s)
    n_k = {k: calibrate(functools.partial(kernels.fma, k), run_s) for k in ks}
    peak_k = chains(kernels)
    peak_cpus = tuple(cpus)
    counts = thread_counts(len(peak_cpus))

    def fastest(run: Callable[[int], float], iters: int) -> float:
        return min(run(iters) for _ in range(budget.repeats))

    clock: list[float] = []
    clock_fma: list[float] = []
    per_cycle: dict[int, list[float]] = {k: [] for k in ks}
    ns_per_fma: dict[int, list[float]] = {k: [] for k in ks}
    peak_samples: dict[int, list[float]] = {t: [] for t in counts}
    pinned = True
    for _ in range(budget.rounds):
        before = fastest(kernels.add, n_add)
        mix = fastest(kernels.add_fma, n_mix)
        times = {k: fastest(functools.partial(kernels.fma, k), n_k[k]) for k in ks}
        for threads in counts:
            runs = [kernels.peak(peak_k, n_k[peak_k], threads, peak_cpus) for _ in range(budget.repeats)]
            pinned = pinned and all(all_pinned for _, all_pinned in runs)
            seconds = min(seconds for seconds, _ in runs)
            peak_samples[threads].append(gflops(kernels, peak_k, n_k[peak_k], threads, seconds))
        after = fastest(kernels.add, n_add)
        ghz = fma.ADDS_PER_ITER * n_add / ((before + after) / 2) * 1e-9
        clock.append(ghz)
        clock_fma.append(fma.ADDS_PER_ITER * n_mix / mix * 1e-9)
        for k, t in times.items():
            fmas = fma.fmas_per_iteration(k) * n_k[k]
            ns_per_fma[k].append(t / fmas * 1e9)
            per_cycle[k].append(fmas / t * 1e-9 / ghz)

    sweep = {k: summarize(v) for k, v in per_cycle.items()}
    best_k = max(ks, key=lambda k: sweep[k].median)
    l_fma = summarize([ns * ghz for ns, ghz in zip(ns_per_fma[1], clock, strict=True)])
    ln = summarize([dep / sat for dep, sat in zip(ns_per_fma[1], ns_per_fma[best_k], strict=True)])

    warnings: list[str] = []
    if best_k == ks[-1] and len(ks) > 1 and sweep[ks[-2]].median < 0.95 * sweep[best_k].median:
        warnings.append(f"FMA throughput still rising at K={best_k}, the most accumulators the registers allow")
    peaks = {t: summarize(v) for t, v in peak_samples.items()}
    for threads, stat in peaks.items():
        if stat.median < 0.75 * threads * peaks[1].median:
            warnings.append(
                f"the {threads}-thread peak is {stat.median / peaks[1].median:.2f}x the 1-thread peak, not about "
                f"{threads}x: other processes are using these cores, or cores share FMA units"
            )

    return FmaProbe(
        isa=isa,
        lanes=kernels.isa.lanes,
        clock_ghz=summarize(clock),
        clock_fma_ghz=summarize(clock_fma),
        l_fma=l_fma,
        n_fma=sweep[best_k],
        ln=ln,
        best_k=best_k,
        sweep=sweep,
        peak_k=peak_k,
        peak_gflops=peaks,
        pinned=pinned,
        seconds=time.perf_counter() - started,
        warnings=tuple(warnings),
    )
