"""The outcome of one (network, implementation, thread count) end-to-end measurement, and its JSON document."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from directconv.bench.base import Check
from directconv.bench.chain import ChainProblem
from directconv.tuner.harness import Timing
from directconv.bench.memory import MemoryUsage
from directconv.tuner.peak import Peak
from directconv.bench.results import Timed, finite_or_none, measured_fields

FORMAT = "directconv-bench-network"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ChainResult(Timed):
    """One row of an end-to-end table.

    status: "ok" (checked, then timed), "wrong" (not timed) or "failed" (raised: `error` says what).
    check: against directconv's own NCHW output (`reference` names it), or against the float64 reference when
    directconv itself failed that check. memory: measured in a child process (memory.py), or None with
    `memory_note` saying why. working_memory_bytes: what a call allocates by design (directconv's two buffers),
    None where not known.
    """

    network: str
    impl: str
    threads: int
    status: str
    flops: int
    peak: Peak
    reference: str
    check: Check | None = None
    timing: Timing | None = None
    memory: MemoryUsage | None = None
    memory_note: str = ""
    working_memory_bytes: int | None = None
    note: str = ""
    error: str | None = None
    other_cpus: float | None = None

    def work_flops(self) -> int:
        return self.flops  # the convolutions of a whole inference (Network.flops)

    def to_record(self) -> dict[str, Any]:
        memory: dict[str, int | None] = (
            {**self.memory.to_dict()} if self.memory
            else {"peak_rss_bytes": None, "growth_bytes": None, "rss_before_bytes": None}
        )
        return {
            "network": self.network,
            "impl": self.impl,
            "threads": self.threads,
            "checked_against": self.reference,
            "flops": self.flops,
            **measured_fields(self),
            **memory,
            "memory_note": self.memory_note,
            "working_memory_bytes": self.working_memory_bytes,
        }


def network_record(problem: ChainProblem, float64_check: Check) -> dict[str, Any]:
    """What was run: the definition as cut for this run, its sizes, and directconv's check against float64."""
    n = problem.network
    c, h, w = n.activations()[-1]
    return {
        "network": n.name,
        "note": n.note,
        "spec": problem.spec.to_dict(),
        "input_shape": [1, n.channels, n.size, n.size],
        "output_shape": [1, c, h, w],
        "steps": list(n.names),
        "convolutions": sum(1 for _ in n.conv_shapes()),
        "flops": n.flops(),
        "float64_check": {
            "correct": float64_check.correct,
            "max_rel_error": finite_or_none(float64_check.max_rel_error),
            "tolerance": float64_check.tolerance,
            "problem": float64_check.problem,
        },
    }


def document(
    metadata: dict[str, Any],
    settings: dict[str, Any],
    peaks: dict[int, Peak],
    missing: dict[str, str],
    networks: list[dict[str, Any]],
    results: list[ChainResult],
) -> dict[str, Any]:
    """The whole JSON document: provenance first, then the networks run, then one record per measurement."""
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "metadata": metadata,
        "settings": settings,
        "peaks": {str(t): p.to_dict() for t, p in peaks.items()},
        "not_installed": missing,
        "networks": networks,
        "records": [r.to_record() for r in results],
    }
