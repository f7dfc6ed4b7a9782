"""The per-layer bench's summary per thread count: geomeans over the layers, directconv against its peers, and the
model's estimate of directconv-blocked's configuration against its measured speed.

Computed as plain data (it also goes into the JSON file), then formatted.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from directconv.bench.base import Impl
from directconv.bench.report import BUSY_WARNING, NAME_WIDTH, threads_label
from directconv.bench.results import Result
from directconv.tuner.harness import geomean
from directconv.tuner.peak import Peak

OURS = "directconv-blocked"  # the kernel the model's estimate is about
# The peers take NCHW in and give NCHW out: directconv's NCHW row is the one set against them (like for like).
LIKE_FOR_LIKE = "directconv-nchw"
IM2COL = "numpy-im2col"


def summary(results: Sequence[Result], impls: Sequence[Impl[Any]], peaks: dict[int, Peak]) -> dict[str, Any]:
    """Per thread count: geomean GFLOP/s of each implementation over the layers where it ran correctly, the
    directconv-nchw / numpy-im2col geomean ratio over the layers both ran, per layer the ratio of directconv-nchw to
    the fastest peer (NCHW in and out on both sides), and per layer the model's error on directconv-blocked."""
    out: dict[str, Any] = {}
    for t, peak in peaks.items():
        ok = {(r.problem, r.impl): r.gflops for r in results if r.threads == t and r.ok and r.gflops}
        layers = list(dict.fromkeys(r.problem for r in results if r.threads == t))
        by_layer = {r.problem: r.other_cpus for r in results if r.threads == t and r.other_cpus is not None}
        loads = list(by_layer.values())
        common = [layer for layer in layers if (layer, LIKE_FOR_LIKE) in ok and (layer, IM2COL) in ok]
        out[str(t)] = {
            "threads": t,
            "peak_gflops": peak.gflops,
            "other_load_mean": sum(loads) / len(loads) if loads else None,
            "other_load_max": max(loads) if loads else None,
            "geomean": _geomeans(ok, layers, impls, peak),
            "nchw_over_im2col": _ratio(ok, common, LIKE_FOR_LIKE, IM2COL),
            "nchw_over_im2col_layers": len(common),
            "nchw_over_best_peer": _over_best_peer(ok, layers, [impl.name for impl in impls if impl.peer]),
            "model_error": _model_error([r for r in results if r.threads == t and r.impl == OURS]),
        }
    return out


def _model_error(results: Sequence[Result]) -> dict[str, Any]:
    """Per layer measured and predicted % of peak and error = predicted / measured - 1, and the median |error|."""
    rows, errors = [], []
    for r in results:
        measured, predicted = r.percent_of_peak, r.predicted_percent_of_peak
        if measured and predicted is not None:
            errors.append(predicted / measured - 1)
            rows.append(
                {
                    "layer": r.problem,
                    "config_source": r.config_source,
                    "measured_percent_of_peak": measured,
                    "predicted_percent_of_peak": predicted,
                    "error": errors[-1],
                }
            )
    median = statistics.median(abs(e) for e in errors) if errors else None
    return {"rows": rows, "median_abs_error": median}


Speeds = dict[tuple[str, str], float]  # (layer, implementation) -> GFLOP/s, for those that ran correctly


def _geomeans(ok: Speeds, layers: list[str], impls: Sequence[Impl[Any]], peak: Peak) -> dict[str, Any]:
    per_impl = {}
    for impl in impls:
        values = [ok[(layer, impl.name)] for layer in layers if (layer, impl.name) in ok]
        if values:
            g = geomean(values)
            per_impl[impl.name] = {"gflops": g, "percent_of_peak": 100 * g / peak.gflops, "layers": len(values)}
    return per_impl


def _ratio(ok: Speeds, layers: list[str], top: str, bottom: str) -> float | None:
    if not layers:
        return None
    return geomean([ok[(layer, top)] for layer in layers]) / geomean([ok[(layer, bottom)] for layer in layers])


def _over_best_peer(ok: Speeds, layers: list[str], peer_names: list[str]) -> list[dict[str, Any]]:
    rows = []
    for layer in layers:
        peers = [(ok[(layer, p)], p) for p in peer_names if (layer, p) in ok]
        if (layer, LIKE_FOR_LIKE) in ok and peers:
            best, best_name = max(peers)
            rows.append(
                {
                    "layer": layer,
                    "nchw_gflops": ok[(layer, LIKE_FOR_LIKE)],
                    "best_peer": best_name,
                    "best_peer_gflops": best,
                    "ratio": ok[(layer, LIKE_FOR_LIKE)] / best,
                }
            )
    return rows


def summary_text(data: dict[str, Any]) -> str:
    lines = []
    for part in data.values():
        lines.append(
            f"Summary, {threads_label(part['threads'])} (FMA peak {part['peak_gflops']:.1f} GFLOP/s): "
            "geomean over layers"
        )
        lines.append(f"  {'implementation':<{NAME_WIDTH}} {'GFLOP/s':>8} {'%peak':>6} {'layers':>6}")
        for name, g in part["geomean"].items():
            lines.append(f"  {name:<{NAME_WIDTH}} {g['gflops']:8.1f} {g['percent_of_peak']:5.0f}% {g['layers']:6d}")
        if part["other_load_mean"] is not None:
            lines.append(
                f"  other processes kept {part['other_load_mean']:.2f} CPUs busy on average during the timing "
                f"(at worst {part['other_load_max']:.2f})"
                + (": figures may be skewed" if part["other_load_max"] >= BUSY_WARNING else "")
            )
        if part["nchw_over_im2col"] is not None:
            lines.append(
                f"  {LIKE_FOR_LIKE} / {IM2COL} (geomean over {part['nchw_over_im2col_layers']} layers): "
                f"{part['nchw_over_im2col']:.2f}x"
            )
        if part["nchw_over_best_peer"]:
            lines.append(f"  {LIKE_FOR_LIKE} / best peer, per layer (NCHW in and out on both sides):")
            lines.append(f"    {'layer':<30} {'nchw':>8}  {'best peer':<{NAME_WIDTH}} {'GFLOP/s':>8} {'ratio':>6}")
            for row in part["nchw_over_best_peer"]:
                lines.append(
                    f"    {row['layer']:<30} {row['nchw_gflops']:8.1f}  {row['best_peer']:<{NAME_WIDTH}} "
                    f"{row['best_peer_gflops']:8.1f} {row['ratio']:5.2f}x"
                )
        lines.append("")
    lines += _model_error_text(data)
    return "\n".join(lines)


def _model_error_text(data: dict[str, Any]) -> list[str]:
    lines = []
    for part in data.values():
        fidelity = part.get("model_error") or {}
        if not fidelity.get("rows"):
            continue
        lines.append(
            f"Model error, {threads_label(part['threads'])}: {OURS} against the model's estimate of its config"
        )
        lines.append("  (both as % of the FMA peak; error = predicted / measured - 1)")
        lines.append(f"    {'layer':<30} {'source':<8} {'measured':>8} {'predicted':>9} {'error':>7}")
        for row in fidelity["rows"]:
            lines.append(
                f"    {row['layer']:<30} {row['config_source'] or '':<8} {row['measured_percent_of_peak']:7.1f}% "
                f"{row['predicted_percent_of_peak']:8.1f}% {100 * row['error']:+6.1f}%"
            )
        lines.append(f"  median |error| over {len(fidelity['rows'])} layers: {100 * fidelity['median_abs_error']:.1f}%")
        lines.append("")
    return lines
