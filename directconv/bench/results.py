"""The outcome of one (problem, implementation, thread count) measurement, and the JSON document that keeps them.

One Result serves both benches: a layer's and a network's differ only in the fields their records name the
problem by, and in the memory a network's implementation is measured to take (memory.py).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from directconv.bench.base import Check
from directconv.tuner.harness import Timing
from directconv.tuner.peak import Peak

FORMAT_VERSION = 1

OK, WRONG, FAILED = "ok", "wrong", "failed"


@dataclass(frozen=True)
class MemoryUsage:
    """Bytes: peak RSS of a process that ran only one implementation, and VmHWM minus VmRSS just before its run."""

    peak_rss: int
    growth: int
    rss_before: int

    def to_dict(self) -> dict[str, int]:
        return {"peak_rss_bytes": self.peak_rss, "growth_bytes": self.growth, "rss_before_bytes": self.rss_before}


@dataclass(frozen=True)
class RooflineTiming:
    """The bandwidth loop (tuner/bandwidth.py) timed in the same interleaved rounds as an implementation: seconds
    per pass in each round, in round order, of a loop moving `bytes`, the problem's minimal traffic. No samples
    and `error` set when the loop failed; no samples and no error when nothing was timed."""

    bytes: int
    samples: tuple[float, ...] = ()
    error: str | None = None

    def bandwidths(self) -> tuple[float, ...]:
        """GB/s of each round."""
        return tuple(self.bytes / s * 1e-9 for s in self.samples)


@dataclass(frozen=True)
class Result:
    """One implementation on one problem at one thread count: a cell or row of the report.

    status: "ok" (checked correct, then timed), "wrong" (checked and found wrong: not timed) or "failed" (raised
    an exception while being set up, checked or timed: `error` says what). checked_against: what the answer was
    compared with. memory_bytes: Prepared.extra_memory_bytes. memory: measured in a process of its own (whole
    networks), or None with `memory_note` saying why. config_source: where directconv took `config` from
    ("tuned", "nearest", "model"). predicted_gflops: the model's estimate of `config` on this host's machine.
    roofline: the bandwidth loop timed beside it, for the memory-bound layers (None elsewhere). peak_rounds: the
    FMA peak (GFLOP/s) of each round, timed in the same rounds; empty if it was not, and then % of peak is read
    against `peak`, measured before the rounds.
    """

    problem: str  # the layer's or the network's name
    impl: str
    threads: int
    status: str
    flops: int  # the work of one call: a layer's, or the convolutions of one inference
    peak: Peak
    check: Check | None = None
    timing: Timing | None = None
    checked_against: str = ""
    memory_bytes: int | None = None
    config: dict[str, Any] | None = None
    note: str = ""
    error: str | None = None
    other_cpus: float | None = None  # CPUs other processes kept busy while this was timed (tuner/load.py)
    memory: MemoryUsage | None = None
    memory_note: str = ""
    config_source: str | None = None
    predicted_gflops: float | None = None
    roofline: RooflineTiming | None = None
    peak_rounds: tuple[float, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == OK and self.timing is not None

    @property
    def gflops(self) -> float | None:
        """GFLOP/s at the median time of one call."""
        if not self.ok:
            return None
        assert self.timing is not None
        return self.flops / self.timing.stats.median * 1e-9

    @property
    def peak_gflops(self) -> float:
        """The FMA peak this result is read against: the median over its rounds, or the one measured before."""
        return statistics.median(self.peak_rounds) if self.peak_rounds else self.peak.gflops

    @property
    def percent_of_peak_rounds(self) -> tuple[float, ...] | None:
        """Per round: GFLOP/s of the call / the FMA peak of the same round, in % (None: not timed in rounds)."""
        if not self.ok or not self.peak_rounds:
            return None
        assert self.timing is not None
        pairs = zip(self.timing.samples, self.peak_rounds, strict=True)
        return tuple(100.0 * self.flops / seconds * 1e-9 / peak for seconds, peak in pairs)

    @property
    def percent_of_peak(self) -> float | None:
        """The median over rounds of percent_of_peak_rounds; without in-round peaks, the median GFLOP/s over the
        peak measured before the rounds."""
        rounds = self.percent_of_peak_rounds
        if rounds is not None:
            return statistics.median(rounds)
        g = self.gflops
        return None if g is None else 100.0 * g / self.peak.gflops

    @property
    def predicted_percent_of_peak(self) -> float | None:
        """The model's estimate against the same measured FMA peak as `percent_of_peak`, so the two compare."""
        p = self.predicted_gflops
        return None if p is None else 100.0 * p / self.peak_gflops

    @property
    def percent_of_bandwidth_roofline_rounds(self) -> tuple[float, ...] | None:
        """Per round: (minimal bytes / seconds per call) / the bandwidth the loop reached in the same round, in %."""
        roof = self.roofline
        if roof is None or not roof.samples or not self.ok:
            return None
        assert self.timing is not None
        # Both come from one interleave: sample r of each is round r.
        pairs = zip(self.timing.samples, roof.bandwidths(), strict=True)
        return tuple(100.0 * (roof.bytes / seconds * 1e-9) / bandwidth for seconds, bandwidth in pairs)

    @property
    def percent_of_bandwidth_roofline(self) -> float | None:
        """The median over rounds of percent_of_bandwidth_roofline_rounds."""
        rounds = self.percent_of_bandwidth_roofline_rounds
        return None if rounds is None else statistics.median(rounds)

    @property
    def percent_of_roofline_rounds(self) -> tuple[float, ...] | None:
        """Per round: the call against the roofline, the lower of the FMA peak and the loop's bandwidth over the
        layer's minimal traffic: the call's time is the larger of the two bounds' times over its own, so the larger
        of percent_of_peak and percent_of_bandwidth_roofline of the round, in %."""
        peak, bandwidth = self.percent_of_peak_rounds, self.percent_of_bandwidth_roofline_rounds
        if peak is None or bandwidth is None:
            return None
        return tuple(max(p, b) for p, b in zip(peak, bandwidth, strict=True))

    @property
    def percent_of_roofline(self) -> float | None:
        """The median over rounds of percent_of_roofline_rounds."""
        rounds = self.percent_of_roofline_rounds
        return None if rounds is None else statistics.median(rounds)

    def roofline_fields(self) -> dict[str, Any]:
        """The bandwidth roofline as record fields, None each where there is none (error says why, if it failed)."""
        roof = self.roofline
        bandwidths = roof.bandwidths() if roof is not None else ()
        rounds = self.percent_of_bandwidth_roofline_rounds
        return {
            "minimal_bytes": roof.bytes if roof is not None else None,
            "bandwidth_gbps": statistics.median(bandwidths) if bandwidths else None,
            "bandwidth_gbps_rounds": list(bandwidths) if roof is not None else None,
            "percent_of_bandwidth_roofline": self.percent_of_bandwidth_roofline,
            "percent_of_bandwidth_roofline_rounds": list(rounds) if rounds is not None else None,
            "percent_of_roofline": self.percent_of_roofline,
            "roofline_error": roof.error if roof is not None else None,
        }

    def measured_fields(self) -> dict[str, Any]:
        """The record fields every bench shares: the check, the speed, the timing and what went wrong."""
        stats = self.timing.stats if self.ok and self.timing is not None else None

        def ms(name: str) -> float | None:
            return getattr(stats, name) * 1e3 if stats else None

        return {
            "status": self.status,
            **check_fields(self.check),
            "gflops": self.gflops,
            "percent_of_peak": self.percent_of_peak,
            "percent_of_peak_rounds": _listed(self.percent_of_peak_rounds),
            "peak_gflops": self.peak_gflops,
            "peak_gflops_rounds": list(self.peak_rounds),
            "peak_in_rounds": bool(self.peak_rounds),
            "median_ms": ms("median"),
            "p10_ms": ms("p10"),
            "p90_ms": ms("p90"),
            "min_ms": ms("minimum"),
            "spread": finite_or_none(stats.spread) if stats else None,
            "rounds": stats.count if stats else 0,
            "calls_per_sample": self.timing.calls_per_sample if self.timing else None,
            "samples_ms": [s * 1e3 for s in self.timing.samples] if self.timing else [],
            "note": self.note,
            "other_cpus": self.other_cpus,
            "error": self.error or (self.check.problem if self.check and not self.check.correct else None),
        }

    def memory_fields(self) -> dict[str, Any]:
        """The measured memory as record fields, None each where not measured (`memory_note` says why)."""
        measured = self.memory.to_dict() if self.memory else dict.fromkeys(MemoryUsage(0, 0, 0).to_dict())
        return {**measured, "memory_note": self.memory_note}


def check_fields(check: Check | None) -> dict[str, Any]:
    return {
        "correct": bool(check is not None and check.correct),
        "max_rel_error": finite_or_none(check.max_rel_error) if check else None,
        "tolerance": check.tolerance if check else None,
    }


def _listed(values: tuple[float, ...] | None) -> list[float] | None:
    return None if values is None else list(values)


def finite_or_none(value: float) -> float | None:
    # JSON has no infinity or NaN; the record's "error" says in words what went wrong instead.
    return value if math.isfinite(value) else None


def document(
    format_name: str,
    metadata: dict[str, Any],
    settings: dict[str, Any],
    peaks: dict[int, Peak],
    missing: dict[str, str],
    records: list[dict[str, Any]],
    sections: dict[str, Any],
) -> dict[str, Any]:
    """The whole JSON document: provenance first, then one record per measurement, then what the bench adds
    (the per-layer summary, the networks run)."""
    return {
        "format": format_name,
        "version": FORMAT_VERSION,
        "metadata": metadata,
        "settings": settings,
        "peaks": {str(t): p.to_dict() for t, p in peaks.items()},
        "not_installed": missing,
        "records": records,
        **sections,
    }
