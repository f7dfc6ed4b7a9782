"""The flow of `directconv bench`, the same per layer and end to end: check the request, print the legend,
measure the FMA peaks, run the bench's groups of cases (a layer at every thread count, a network at one) and
print a table after each, rewrite the JSON file after each, and end with the bench's summary.

Exit status: 0 when every directconv implementation computed correct answers, 1 when one did not (peers that are
wrong or fail are reported but do not change the status); bad requests raise ValueError (exit 2 in the command).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import directconv
from directconv.bench import environment
from directconv.bench.base import Impl
from directconv.bench.kind import Kind, Request
from directconv.bench.report import legend, peak_line
from directconv.bench.results import OK, Result, document
from directconv.core.files import write_json
from directconv.core.isa import host_isa
from directconv.tuner.peak import measure_peaks


def run(kind: Kind, request: Request) -> int:
    """The bench of `kind` for `request` (see the module docstring); returns the exit status."""
    started = time.monotonic()
    _check(request)
    options = kind.options(request)
    available, missing = kind.registry.available(request.impls)
    _warn_if_oversubscribed(request.threads)
    print(legend(kind.report, available, missing, kind.remarks(available)), flush=True)
    s = request.settings
    peaks = measure_peaks(request.threads, repeats=s.peak_repeats, seconds=s.peak_seconds, isa=host_isa())
    if kind.show_peaks:
        print(peak_line(peaks), flush=True)

    metadata = environment.metadata()
    options |= _options(request, available)
    records: list[dict[str, Any]] = []
    results: list[Result] = []
    failures: list[str] = []
    sections: dict[str, Any] = dict.fromkeys(kind.sections)

    def save() -> None:
        if request.json is not None:
            write_json(request.json, document(kind.format, metadata, options, peaks, missing, records, sections))

    ours = {impl.name for impl in available if not impl.peer}
    for group in kind.groups(request, available, peaks):
        results += group.results
        records += group.records
        sections.update(group.sections)
        failures += group.failures
        failures += [
            f"{r.impl} on {r.problem} at {r.threads} thread(s): {r.status}"
            for r in group.results
            if r.impl in ours and r.status != OK
        ]
        print(flush=True)
        print(group.text, flush=True)
        save()  # after every table: an interrupted run leaves a valid file with what it measured
    text, final = kind.finish(results, available, peaks)
    sections.update(final)
    if text is not None:
        print(flush=True)
        print(text, flush=True)
    if request.json is not None:
        metadata["thread_pools"] = environment.blas_info()
        metadata["duration_seconds"] = round(time.monotonic() - started, 1)
        save()
        print(f"wrote {len(records)} records to {request.json}", flush=True)
    for line in failures:
        print(f"directconv bench: {line}", file=sys.stderr)
    return 1 if failures else 0


def _check(request: Request) -> None:
    if not request.threads:
        raise ValueError("--threads needs at least one thread count, e.g. --threads 1,2")
    json = request.json
    if json is not None and not (json.parent if str(json.parent) else Path(".")).is_dir():
        raise ValueError(f"--json {json}: directory {json.parent} does not exist")


def _warn_if_oversubscribed(threads: Sequence[int]) -> None:
    cpus = directconv.available_threads()
    if max(threads) > cpus:
        print(
            f"warning: {max(threads)} threads requested, {cpus} CPUs available: threads will share cores",
            file=sys.stderr,
        )


def _options(request: Request, available: Sequence[Impl[Any]]) -> dict[str, Any]:
    s = request.settings
    return {
        "threads": list(request.threads),
        "impls": [impl.name for impl in available],
        "rounds": s.rounds,
        "min_time": s.min_time,
        "warmup_calls": s.warmup_calls,
        "peak_repeats": s.peak_repeats,
        "peak_seconds": s.peak_seconds,
        "quick": request.quick,
        "seed": request.seed,
    }
