"""The terminal report: a fixed-width table per layer, and a summary per thread count.

The summary is computed here as plain data (it also goes into the JSON file) and then formatted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from directconv.core.suite import Layer

from directconv.bench.base import INSTALL_HINT, Impl
from directconv.tuner.harness import geomean
from directconv.tuner.peak import Peak
from directconv.bench.results import FAILED, WRONG, Result

OURS = "directconv-blocked"
IM2COL = "numpy-im2col"
NAME_WIDTH = 20
CELL_WIDTH = 33  # " GFLOP/s  %peak  median ms  p10-90" under each thread count
BUSY_WARNING = 0.25  # other load (CPUs) from which the summary calls a thread count's figures unreliable


def _threads(t: int) -> str:
    return f"{t} thread" + ("" if t == 1 else "s")


def legend(impls: Sequence[Impl], missing: dict[str, str], remarks: Sequence[str] = ()) -> str:
    lines = ["Implementations:"]
    lines += [f"  {impl.name:<{NAME_WIDTH}} {impl.legend}" for impl in impls]
    if missing:
        lines.append(f"Not installed: {', '.join(missing)}: {INSTALL_HINT}")
        lines += [f"  {name}: cannot import {reason}" for name, reason in missing.items()]
    lines += [f"Note: {remark}" for remark in remarks]
    lines.append(
        "Cells: GFLOP/s of the median call over interleaved rounds, % of the FMA peak of that thread count, "
        "median ms per call, spread (p90-p10)/median.\n"
        "Other load: CPUs kept busy by other processes (and the hypervisor) while a layer was timed; "
        f"from {BUSY_WARNING} on, the figures of that column may be skewed."
    )
    return "\n".join(lines)


def peak_line(peaks: dict[int, Peak]) -> str:
    some = next(iter(peaks.values()))
    text = ", ".join(f"{_threads(t)} {p.gflops:.1f}" for t, p in peaks.items())
    return f"FMA peak ({some.isa}, {some.accumulators} chains, median of {len(some.samples)} runs): {text} GFLOP/s"


def _cell(result: Result | None) -> str:
    if result is None:
        return f"{'-':^{CELL_WIDTH}}"
    if result.status == WRONG:
        error = f" (error {result.check.max_rel_error:.1e})" if result.check is not None else ""
        return f"{'WRONG' + error:^{CELL_WIDTH}}"
    if result.status == FAILED or result.timing is None:
        return f"{'FAILED (see below)':^{CELL_WIDTH}}"
    stats = result.timing.stats
    return f"{result.gflops:8.1f} {result.percent_of_peak:5.0f}% {stats.median * 1e3:10.3f} {100 * stats.spread:5.1f}%"


def layer_table(layer: Layer, impl_names: Sequence[str], thread_counts: Sequence[int], results: list[Result]) -> str:
    """The table of one layer: one row per implementation, one block of columns per thread count."""
    shape = layer.shape
    by_key = {(r.impl, r.threads): r for r in results}
    title = f"{layer.name}  {shape.describe()}  {shape.flops() * 1e-9:.3f} GFLOP"
    groups = "".join(f" |{_group_title(t, results):^{CELL_WIDTH}}" for t in thread_counts)
    columns = "".join(f" |{'GFLOP/s':>8} {'%peak':>6} {'median ms':>10} {'spread':>6}" for _ in thread_counts)
    lines = [title, f"{'':<{NAME_WIDTH}}{groups}", f"{'implementation':<{NAME_WIDTH}}{columns}  extra memory"]
    notes = []
    for name in impl_names:
        row = [by_key.get((name, t)) for t in thread_counts]
        if all(r is None for r in row):
            continue
        cells = "".join(f" |{_cell(r)}" for r in row)
        extra = next((r.extra_memory_bytes for r in row if r is not None and r.extra_memory_bytes is not None), None)
        lines.append(f"{name:<{NAME_WIDTH}}{cells}  {_mib(extra)}")
        notes += [f"  {name} at {_threads(r.threads)}: {r.error}" for r in row if r is not None and r.error]
    return "\n".join(lines + notes)


def _group_title(threads: int, results: list[Result]) -> str:
    other = next((r.other_cpus for r in results if r.threads == threads and r.other_cpus is not None), None)
    return _threads(threads) + ("" if other is None else f", other load {other:.2f}")


def _mib(nbytes: int | None) -> str:
    if nbytes is None:
        return ""  # not known: a library's internal buffers
    return f"{nbytes / 2**20:.2f} MiB" if nbytes else "none"


def summary(results: list[Result], impls: Sequence[Impl], peaks: dict[int, Peak]) -> dict[str, Any]:
    """Per thread count: geomean GFLOP/s of each implementation over the layers where it ran correctly, the
    directconv-blocked / numpy-im2col geomean ratio over the layers both ran, and per layer the ratio of
    directconv-blocked to the fastest peer."""
    impl_names = [impl.name for impl in impls]
    peer_names = [impl.name for impl in impls if impl.peer]
    out: dict[str, Any] = {}
    for t, peak in peaks.items():
        ok = {(r.layer.name, r.impl): r.gflops for r in results if r.threads == t and r.ok and r.gflops}
        layers = list(dict.fromkeys(r.layer.name for r in results if r.threads == t))
        per_impl = {}
        for name in impl_names:
            values = [ok[(layer, name)] for layer in layers if (layer, name) in ok]
            if values:
                g = geomean(values)
                per_impl[name] = {"gflops": g, "percent_of_peak": 100 * g / peak.gflops, "layers": len(values)}
        common = [layer for layer in layers if (layer, OURS) in ok and (layer, IM2COL) in ok]
        ratio = (
            geomean([ok[(layer, OURS)] for layer in common]) / geomean([ok[(layer, IM2COL)] for layer in common])
            if common
            else None
        )
        per_layer = []
        for layer in layers:
            peers = [(ok[(layer, p)], p) for p in peer_names if (layer, p) in ok]
            if (layer, OURS) in ok and peers:
                best, best_name = max(peers)
                per_layer.append(
                    {
                        "layer": layer,
                        "blocked_gflops": ok[(layer, OURS)],
                        "best_peer": best_name,
                        "best_peer_gflops": best,
                        "ratio": ok[(layer, OURS)] / best,
                    }
                )
        by_layer = {r.layer.name: r.other_cpus for r in results if r.threads == t and r.other_cpus is not None}
        loads = list(by_layer.values())
        out[str(t)] = {
            "threads": t,
            "peak_gflops": peak.gflops,
            "other_load_mean": sum(loads) / len(loads) if loads else None,
            "other_load_max": max(loads) if loads else None,
            "geomean": per_impl,
            "blocked_over_im2col": ratio,
            "blocked_over_im2col_layers": len(common),
            "blocked_over_best_peer": per_layer,
        }
    return out


def summary_text(data: dict[str, Any]) -> str:
    lines = []
    for part in data.values():
        t = part["threads"]
        lines.append(f"Summary, {_threads(t)} (FMA peak {part['peak_gflops']:.1f} GFLOP/s): geomean over layers")
        lines.append(f"  {'implementation':<{NAME_WIDTH}} {'GFLOP/s':>8} {'%peak':>6} {'layers':>6}")
        for name, g in part["geomean"].items():
            lines.append(f"  {name:<{NAME_WIDTH}} {g['gflops']:8.1f} {g['percent_of_peak']:5.0f}% {g['layers']:6d}")
        if part["other_load_mean"] is not None:
            lines.append(
                f"  other processes kept {part['other_load_mean']:.2f} CPUs busy on average during the timing "
                f"(at worst {part['other_load_max']:.2f})"
                + (": figures may be skewed" if part["other_load_max"] >= BUSY_WARNING else "")
            )
        if part["blocked_over_im2col"] is not None:
            lines.append(
                f"  {OURS} / {IM2COL} (geomean over {part['blocked_over_im2col_layers']} layers): "
                f"{part['blocked_over_im2col']:.2f}x"
            )
        if part["blocked_over_best_peer"]:
            lines.append(f"  {OURS} / best peer, per layer:")
            lines.append(f"    {'layer':<30} {'blocked':>8}  {'best peer':<{NAME_WIDTH}} {'GFLOP/s':>8} {'ratio':>6}")
            for row in part["blocked_over_best_peer"]:
                lines.append(
                    f"    {row['layer']:<30} {row['blocked_gflops']:8.1f}  {row['best_peer']:<{NAME_WIDTH}} "
                    f"{row['best_peer_gflops']:8.1f} {row['ratio']:5.2f}x"
                )
        lines.append("")
    return "\n".join(lines)
