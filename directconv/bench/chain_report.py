"""The terminal report of `bench --end-to-end`: a legend, then one table per network and thread count."""

from __future__ import annotations

from collections.abc import Sequence

from directconv.bench.base import INSTALL_HINT, Check, Impl
from directconv.bench.chain import ChainProblem
from directconv.bench.chain_results import ChainResult
from directconv.tuner.peak import Peak
from directconv.bench.results import FAILED, WRONG

NAME_WIDTH = 20


def _threads(t: int) -> str:
    return f"{t} thread" + ("" if t == 1 else "s")


def legend(impls: Sequence[Impl[ChainProblem]], missing: dict[str, str]) -> str:
    lines = ["End to end: the whole chained network per call, batch 1. Implementations:"]
    lines += [f"  {impl.name:<{NAME_WIDTH}} {impl.legend}" for impl in impls]
    if missing:
        lines.append(f"Skipped, not installed: {', '.join(missing)}: {INSTALL_HINT}")
        lines += [f"  {name}: cannot import {reason}" for name, reason in missing.items()]
    lines.append(
        "Columns: median ms per inference over interleaved rounds, spread (p90-p10)/median, GFLOP/s of the "
        "convolutions and % of the FMA peak at that thread count, max relative error against directconv's "
        "output, peak RSS of a process that runs only that implementation, and its growth during one "
        "inference after a warm-up (working memory), measured from /proc (n/a elsewhere)."
    )
    return "\n".join(lines)


def _mib(nbytes: int | None) -> str:
    return "n/a" if nbytes is None else f"{nbytes / 2**20:.1f} MiB"


def header(problem: ChainProblem, threads: int, peak: Peak, float64_check: Check, other_cpus: float | None) -> str:
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
    return "\n".join([
        f"{n.name} end to end{' (' + ', '.join(cut) + ')' if cut else ''}, {_threads(threads)}: {convs} "
        f"convolutions + {pools} max-pool{'' if pools == 1 else 's'}, 1x{n.channels}x{n.size}x{n.size} -> "
        f"1x{c}x{h}x{w}, {n.flops() * 1e-9:.2f} GFLOP in the convolutions; FMA peak {peak.gflops:.1f} GFLOP/s"
        f"{load}",
        *([f"  ({n.note})"] if n.note else []),
        f"directconv against the float64 step-by-step reference: max relative error "
        f"{float64_check.max_rel_error:.1e} (tolerance {float64_check.tolerance:.1e}): {verdict}",
    ])


def _row(r: ChainResult) -> str:
    memory = f"{_mib(r.memory.peak_rss) if r.memory else 'n/a':>11} {_mib(r.memory.growth) if r.memory else 'n/a':>11}"
    error = f"{r.check.max_rel_error:11.1e}" if r.check is not None else f"{'-':>11}"
    if r.status == WRONG:
        middle = f"{'WRONG: not timed':^40}"
    elif r.status == FAILED or r.timing is None:
        middle = f"{'FAILED (see below)':^40}"
    else:
        stats = r.timing.stats
        middle = (f"{stats.median * 1e3:10.2f} {100 * stats.spread:6.1f}% {r.gflops:9.1f} "
                  f"{r.percent_of_peak:5.0f}%")
    return f"{r.impl:<{NAME_WIDTH}} {middle} {error} {memory}"


def table(results: Sequence[ChainResult]) -> str:
    """The rows of one network at one thread count, then the notes (configurations, errors, memory n/a)."""
    lines = [
        f"{'implementation':<{NAME_WIDTH}} {'median ms':>10} {'spread':>7} {'GFLOP/s':>9} {'%peak':>6} "
        f"{'max rel err':>11} {'peak RSS':>11} {'growth':>11}"
    ]
    notes = []
    for r in results:
        lines.append(_row(r))
        if r.note:
            notes.append(f"  {r.impl}: {r.note}")
        if r.error:
            notes.append(f"  {r.impl}: {r.error}")
        elif r.check is not None and not r.check.correct:
            notes.append(f"  {r.impl}: {r.check.problem} (against {r.reference})")
        if r.memory is None and r.memory_note:
            notes.append(f"  {r.impl}: memory n/a: {r.memory_note}")
    return "\n".join(lines + notes)
