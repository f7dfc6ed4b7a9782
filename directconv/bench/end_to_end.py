"""`directconv bench --network NAME --end-to-end`: whole networks, directconv against torch and onnxruntime.

For each network and thread count: build the problem (networks.he_weights, one input), check directconv's NCHW
output against the float64 step-by-step reference, judge every implementation against that output, time the
correct ones in interleaved rounds (runner.run), then measure each one's memory in a process of its own
(memory.py) after the timing, so that no child competes with it. One table per network and thread count: ms per
inference first, then GFLOP/s and % of peak, the error, and the memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

from directconv.bench import network_ours, network_peers, report
from directconv.bench.base import Check, Impl, Registry
from directconv.bench.kind import Group, Kind, Request
from directconv.bench.memory import measure_memory
from directconv.bench.network import NetworkProblem, NetworkSpec, make_case
from directconv.bench.results import FAILED, Result, check_fields
from directconv.bench.runner import run
from directconv.nn.networks import get_network, networks
from directconv.tuner.peak import Peak

FORMAT = "directconv-bench-network"
REGISTRY: Registry[NetworkProblem] = Registry((*network_ours.IMPLS, *network_peers.IMPLS), "end-to-end implementation")


def _mib(nbytes: int | None) -> str:
    return "n/a" if nbytes is None else f"{nbytes / 2**20:.1f} MiB"


def _error(row: Sequence[Result]) -> str:
    check = row[0].check
    return "-" if check is None else f"{check.max_rel_error:.1e}"


def _notes(r: Result) -> list[str]:
    notes = [f"  {r.impl}: {r.note}"] if r.note else []
    if r.error:
        notes.append(f"  {r.impl}: {r.error}")
    elif r.check is not None and not r.check.correct:
        notes.append(f"  {r.impl}: {r.check.problem} (against {r.checked_against})")
    if r.memory is None and r.memory_note:
        notes.append(f"  {r.impl}: memory n/a: {r.memory_note}")
    return notes


REPORT = report.Report(
    title="End to end: the whole chained network per call, batch 1. Implementations:",
    missing_label="Skipped, not installed",
    explanation=(
        "Columns: median ms per inference over interleaved rounds, spread (p90-p10)/median, GFLOP/s of the "
        "convolutions and % of the FMA peak at that thread count, max relative error against directconv's "
        "output, peak RSS of a process that runs only that implementation, and its growth during one "
        "inference after a warm-up (working memory), measured from /proc (n/a elsewhere)."
    ),
    timed=(report.median_column(2), report.spread_column(7), report.gflops_column(9), report.percent_column()),
    trailing=(
        report.Column("max rel err", 11, _error),
        report.Column("peak RSS", 11, lambda row: _mib(row[0].memory.peak_rss if row[0].memory else None)),
        report.Column("growth", 11, lambda row: _mib(row[0].memory.growth if row[0].memory else None)),
    ),
    wrong=lambda r: "WRONG: not timed",
    notes=_notes,
    by_threads=False,
)


def header(problem: NetworkProblem, threads: int, peak: str, float64_check: Check, other_cpus: float | None) -> str:
    """The lines above a table: the chain, its work, the FMA peak (report.peak_text), the load of other processes and
    directconv's check against the float64 reference."""
    n = problem.network
    c, h, w = n.activations()[-1]
    convs = sum(1 for _ in n.conv_shapes())
    pools = len(n.steps) - convs
    cut = []
    if problem.spec.input_size is not None:
        cut.append(f"input size {n.size}")
    if problem.spec.steps is not None:
        cut.append(f"first {len(n.steps)} steps")
    load = "" if other_cpus is None else f", other load {other_cpus:.2f} CPUs"
    verdict = "ok" if float64_check.correct else f"WRONG: {float64_check.problem}"
    return "\n".join(
        [
            f"{n.name} end to end{' (' + ', '.join(cut) + ')' if cut else ''}, {report.threads_label(threads)}: "
            f"{convs} "
            f"convolutions + {pools} max-pool{'' if pools == 1 else 's'}, 1x{n.channels}x{n.size}x{n.size} -> "
            f"1x{c}x{h}x{w}, {n.flops() * 1e-9:.2f} GFLOP in the convolutions; {peak}{load}",
            *([f"  ({n.note})"] if n.note else []),
            f"directconv against the float64 step-by-step reference: max relative error "
            f"{float64_check.max_rel_error:.1e} (tolerance {float64_check.tolerance:.1e}): {verdict}",
        ]
    )


def record(r: Result) -> dict[str, Any]:
    return {
        "network": r.problem,
        "impl": r.impl,
        "threads": r.threads,
        "checked_against": r.checked_against,
        "flops": r.flops,
        **r.measured_fields(),
        **r.memory_fields(),
        "working_memory_bytes": r.memory_bytes,
    }


def network_record(problem: NetworkProblem, float64_check: Check) -> dict[str, Any]:
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
        "float64_check": {**check_fields(float64_check), "problem": float64_check.problem},
    }


def with_memory(spec: NetworkSpec, r: Result) -> Result:
    """`r` with the memory of its implementation, measured in a child process (or why not)."""
    memory = measure_memory(spec, r.impl) if r.status != FAILED else "not measured: the implementation failed"
    if isinstance(memory, str):
        return replace(r, memory_note=memory)
    return replace(r, memory=memory)


def _names(request: Request) -> list[str]:
    return list(dict.fromkeys(request.networks))


def _options(request: Request) -> dict[str, Any]:
    if request.layers:
        raise ValueError("--end-to-end runs whole networks: give --network NAME, not --layer")
    if request.source != "store":
        raise ValueError("--source model measures single layers: it does not apply to --end-to-end")
    if not request.networks:
        raise ValueError(f"--end-to-end needs --network NAME (one of {', '.join(networks())})")
    for name in request.networks:
        get_network(name).with_input(request.input_size, request.steps)  # a bad cut fails now, before any timing
    return {"end_to_end": True, "networks": _names(request), "input_size": request.input_size, "steps": request.steps}


def _groups(request: Request, impls: Sequence[Impl[NetworkProblem]], peaks: dict[int, Peak]) -> Iterator[Group]:
    names = [impl.name for impl in impls]
    runs: list[dict[str, Any]] = []
    for name in _names(request):
        for t in request.threads:
            spec = NetworkSpec(name, t, request.seed, request.input_size, request.steps)
            case, verified = make_case(spec)
            results = [with_memory(spec, r) for r in run(case, impls, t, peaks[t], request.settings)]
            runs.append({**network_record(case.problem, verified), "threads": t})
            other = next((r.other_cpus for r in results if r.other_cpus is not None), None)
            peak = report.peak_text(peaks[t], results)
            text = header(case.problem, t, peak, verified, other) + "\n" + report.table(REPORT, names, [t], results)
            del case  # its model and reference: not kept beside the next one's
            failures = (
                []
                if verified.correct
                else [f"directconv on {name} at {t} thread(s) fails the float64 check: {verified.problem}"]
            )
            yield Group(results, [record(r) for r in results], text, failures, {"networks": list(runs)})


KIND = Kind(
    format=FORMAT,
    registry=REGISTRY,
    report=REPORT,
    options=_options,
    groups=_groups,
    sections=("networks",),
)
