"""The per-layer bench's summary per thread count: geomeans over the layers, directconv against its peers, and the
model's estimate of directconv-blocked's configuration against its measured speed.

The two like-for-like comparisons are the medians over rounds of per-round speed ratios (both sides timed in the
same interleaved rounds, so a slow phase of the host touches both): directconv-nchw against onnxruntime's NCHW
session (NCHW in and out on both sides), and directconv-blocked against onnxruntime's NCHWc kernel on blocked input
(kernel against kernel).

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
# (ours, peer): the pairs that are like for like, NCHW against NCHW and blocked kernel against blocked kernel.
PAIRS = (("directconv-nchw", "onnxruntime"), ("directconv-blocked", "onnxruntime-nchwc"))
LEVEL = 0.97  # "level with the peer", allowing for noise


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
        in_rounds = [g for r in results if r.threads == t for g in r.peak_rounds]
        out[str(t)] = {
            "threads": t,
            "peak_gflops": statistics.median(in_rounds) if in_rounds else peak.gflops,
            "peak_in_rounds": bool(in_rounds),
            "other_load_mean": sum(loads) / len(loads) if loads else None,
            "other_load_max": max(loads) if loads else None,
            "geomean": _geomeans([r for r in results if r.threads == t], layers, impls),
            "like_for_like": [_pair([r for r in results if r.threads == t], ours, peer) for ours, peer in PAIRS],
            "nchw_over_im2col": _ratio(ok, common, LIKE_FOR_LIKE, IM2COL),
            "nchw_over_im2col_layers": len(common),
            "nchw_over_best_peer": _over_best_peer(ok, layers, [i.name for i in impls if i.peer and i.nchw]),
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


def _geomeans(results: Sequence[Result], layers: list[str], impls: Sequence[Impl[Any]]) -> dict[str, Any]:
    """Per implementation, geomeans over the layers it ran correctly of GFLOP/s and of % of peak (each layer's
    median over rounds of its per-round % of the same round's peak)."""
    per_impl = {}
    for impl in impls:
        ran = [r for r in results if r.impl == impl.name and r.ok and r.gflops and r.percent_of_peak]
        if ran:
            per_impl[impl.name] = {
                "gflops": geomean([r.gflops for r in ran if r.gflops]),
                "percent_of_peak": geomean([r.percent_of_peak for r in ran if r.percent_of_peak]),
                "layers": len(ran),
            }
    return per_impl


def round_ratio(ours: Result, peer: Result) -> float:
    """ours' speed over peer's: the median over rounds of peer's seconds / ours' in the same round."""
    assert ours.timing is not None and peer.timing is not None
    pairs = zip(peer.timing.samples, ours.timing.samples, strict=True)
    return statistics.median(theirs / mine for theirs, mine in pairs)


def _pair(results: Sequence[Result], ours: str, peer: str) -> dict[str, Any]:
    """`ours` against `peer` per layer (median of per-round ratios) and over the layers both ran correctly."""
    by = {(r.problem, r.impl): r for r in results if r.ok}
    layers = [
        layer for layer in dict.fromkeys(r.problem for r in results) if (layer, ours) in by and (layer, peer) in by
    ]
    ratios = [round_ratio(by[(layer, ours)], by[(layer, peer)]) for layer in layers]
    rows = [
        {
            "layer": layer,
            "ours_gflops": by[(layer, ours)].gflops,
            "peer_gflops": by[(layer, peer)].gflops,
            "ratio": ratio,
        }
        for layer, ratio in zip(layers, ratios, strict=True)
    ]
    return {
        "ours": ours,
        "peer": peer,
        "rows": rows,
        "geomean": geomean(ratios) if ratios else None,
        "layers": len(rows),
        "level_layers": sum(1 for x in ratios if x >= LEVEL),
        "worst": min(ratios) if ratios else None,
    }


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
        where = "median over the rounds" if part.get("peak_in_rounds") else "measured before the rounds"
        lines.append(
            f"Summary, {threads_label(part['threads'])} (FMA peak {part['peak_gflops']:.1f} GFLOP/s, {where}): "
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
        lines += _pairs_text(part["like_for_like"])
        if part["nchw_over_best_peer"]:
            lines.append(f"  {LIKE_FOR_LIKE} / best NCHW peer, per layer (NCHW in and out on both sides):")
            lines.append(f"    {'layer':<30} {'nchw':>8}  {'best peer':<{NAME_WIDTH}} {'GFLOP/s':>8} {'ratio':>6}")
            for row in part["nchw_over_best_peer"]:
                lines.append(
                    f"    {row['layer']:<30} {row['nchw_gflops']:8.1f}  {row['best_peer']:<{NAME_WIDTH}} "
                    f"{row['best_peer_gflops']:8.1f} {row['ratio']:5.2f}x"
                )
        lines.append("")
    lines += _model_error_text(data)
    return "\n".join(lines)


def _pairs_text(pairs: Sequence[dict[str, Any]]) -> list[str]:
    lines = []
    for pair in pairs:
        if not pair["rows"]:
            continue
        lines.append(
            f"  {pair['ours']} / {pair['peer']} (like for like; median of per-round ratios): geomean "
            f"{pair['geomean']:.2f}x over {pair['layers']} layers, {pair['level_layers']} at {LEVEL}x or more, "
            f"worst {pair['worst']:.2f}x"
        )
        lines.append(f"    {'layer':<30} {'ours':>8} {'peer':>8} {'ratio':>6}")
        for row in pair["rows"]:
            lines.append(
                f"    {row['layer']:<30} {row['ours_gflops']:8.1f} {row['peer_gflops']:8.1f} {row['ratio']:5.2f}x"
            )
    return lines


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
