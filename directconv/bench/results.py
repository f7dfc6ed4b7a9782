"""The outcome of one (layer, implementation, thread count) measurement, and the JSON file that keeps them."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from directconv.core.suite import Layer

from directconv.bench.base import Check
from directconv.tuner.harness import Timing
from directconv.tuner.peak import Peak

FORMAT = "directconv-bench"
FORMAT_VERSION = 1

OK, WRONG, FAILED = "ok", "wrong", "failed"


class Timed:
    """Speed of a checked-and-timed result; subclasses have status, timing, peak and say their work in work_flops()."""

    status: str
    timing: Timing | None
    peak: Peak

    def work_flops(self) -> int:
        raise NotImplementedError

    @property
    def ok(self) -> bool:
        return self.status == OK and self.timing is not None

    @property
    def gflops(self) -> float | None:
        """GFLOP/s at the median time of one call."""
        if not self.ok:
            return None
        assert self.timing is not None
        return self.work_flops() / self.timing.stats.median * 1e-9

    @property
    def percent_of_peak(self) -> float | None:
        g = self.gflops
        return None if g is None else 100.0 * g / self.peak.gflops


@dataclass(frozen=True)
class Result(Timed):
    """One cell of the report.

    status: "ok" (checked correct, then timed), "wrong" (checked and found wrong: not timed) or "failed"
    (raised an exception while being set up, checked or timed: `error` says what).
    """

    layer: Layer
    impl: str
    threads: int
    status: str
    peak: Peak
    check: Check | None = None
    timing: Timing | None = None
    extra_memory_bytes: int | None = None
    config: dict[str, Any] | None = None
    note: str = ""
    error: str | None = None
    other_cpus: float | None = None  # CPUs other processes kept busy while this layer was timed (see load.py)

    def work_flops(self) -> int:
        return self.layer.shape.flops()  # batch 1

    def to_record(self) -> dict[str, Any]:
        return {
            "layer": self.layer.name,
            "shape": self.layer.shape.to_dict(),
            "flops": self.layer.shape.flops(),
            "impl": self.impl,
            "threads": self.threads,
            **measured_fields(self),
            "extra_memory_bytes": self.extra_memory_bytes,
            "config": self.config,
        }


def measured_fields(r: Any) -> dict[str, Any]:
    """The record fields every bench result shares (a layer's Result, a network's ChainResult): status, check,
    speed, the timing's statistics and samples, and what went wrong."""
    stats = r.timing.stats if r.ok and r.timing is not None else None

    def ms(field: str) -> float | None:
        return getattr(stats, field) * 1e3 if stats else None

    return {
        "status": r.status,
        "correct": bool(r.check is not None and r.check.correct),
        "max_rel_error": finite_or_none(r.check.max_rel_error) if r.check else None,
        "tolerance": r.check.tolerance if r.check else None,
        "gflops": r.gflops,
        "percent_of_peak": r.percent_of_peak,
        "peak_gflops": r.peak.gflops,
        "median_ms": ms("median"),
        "p10_ms": ms("p10"),
        "p90_ms": ms("p90"),
        "min_ms": ms("minimum"),
        "spread": finite_or_none(stats.spread) if stats else None,
        "rounds": stats.count if stats else 0,
        "calls_per_sample": r.timing.calls_per_sample if r.timing else None,
        "samples_ms": [s * 1e3 for s in r.timing.samples] if r.timing else [],
        "note": r.note,
        "other_cpus": r.other_cpus,
        "error": r.error or (r.check.problem if r.check and not r.check.correct else None),
    }


def finite_or_none(value: float) -> float | None:
    # JSON has no infinity or NaN; the record's "error" says in words what went wrong instead.
    return value if math.isfinite(value) else None


def document(
    metadata: dict[str, Any],
    settings: dict[str, Any],
    peaks: dict[int, Peak],
    missing: dict[str, str],
    results: list[Result],
    summary: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole JSON document: provenance first, then one record per measurement."""
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "metadata": metadata,
        "settings": settings,
        "peaks": {str(t): p.to_dict() for t, p in peaks.items()},
        "not_installed": missing,
        "records": [r.to_record() for r in results],
        "summary": summary,
    }
