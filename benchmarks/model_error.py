"""The model's estimate against C-timed measurements of the same configurations, from `directconv tune --json` runs.

For every layer of the given tuning runs: the tuned best configuration's measured % of peak (timed in C by the
tuner, confirmed in interleaved rounds; `percent_of_peak` of the run) beside the model's estimate of that
configuration on this host's machine description, as % of the description's peak, under two compositions of the
estimate's terms (model/roofline.py):
  ecm:  in-core time plus transfers, floored at the FMA peak's time (the model's);
  max:  the largest of in-core time, transfers and the FMA peak's time (the model's before).
The probed fixed cost of an API call (Machine.call_us) is left out: the C timing makes no such call.
Error = predicted / measured - 1. Prints the table and the median |error| per kernel kind and composition. Nothing is
timed: run it on the machine the tuning ran on (its description supplies the peak and the bandwidths).

Usage: python benchmarks/model_error.py TUNE.json [TUNE.json ...] [--json F]
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
from pathlib import Path
from typing import Any

from provenance import provenance, read_json, write_json

from directconv.core.config import KernelConfig
from directconv.core.shape import kernel_kind
from directconv.core.suite import get_layer
from directconv.machines.host import host

# predict() is also the package's function name: the module is what holds the timing helpers.
predict_module = importlib.import_module("directconv.model.predict")


def row(layer: str, threads: int, config: dict[str, Any], measured: float) -> dict[str, Any]:
    machine = host().machine
    view = get_layer(layer).shape.kernel_view()
    cfg = KernelConfig.from_dict(config)
    t = predict_module._timing(view, machine, predict_module.kernel_model(view, machine), cfg)
    peak = view.flops() / (machine.peak(threads) * 1e9)  # seconds at the description's peak
    ecm = 100 * peak / max(t.compute + t.memory.seconds, t.peak)
    old = 100 * peak / max(t.compute, t.memory.seconds, t.peak)
    return {
        "layer": layer,
        "threads": threads,
        "kind": kernel_kind(view, machine.n_vec),
        "measured_percent": measured,
        "ecm_percent": ecm,
        "max_percent": old,
        "ecm_error": ecm / measured - 1,
        "max_error": old / measured - 1,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = []
    for path in args.runs:
        for entry in read_json(path)["layers"]:
            if entry.get("best_config") and entry.get("percent_of_peak"):
                threads = entry["best_config"]["threads"]
                rows.append(row(entry["layer"], threads, entry["best_config"], entry["percent_of_peak"]))
    print(f"{'layer':34s} {'T':>2s} {'kind':15s} {'measured':>8s} {'ecm':>6s} {'error':>7s} {'max':>6s} {'error':>7s}")
    for r in rows:
        print(
            f"{r['layer']:34s} {r['threads']:2d} {r['kind']:15s} {r['measured_percent']:7.1f}% "
            f"{r['ecm_percent']:5.1f}% {r['ecm_error']:+7.1%} {r['max_percent']:5.1f}% {r['max_error']:+7.1%}"
        )
    summary = {}
    for kinds in (("depthwise",), ("grouped-packed",), ("plain", "grouped", "grouped-window")):
        chosen = [r for r in rows if r["kind"] in kinds]
        if chosen:
            name = "/".join(kinds)
            summary[name] = {c: statistics.median(abs(r[f"{c}_error"]) for r in chosen) for c in ("ecm", "max")}
            print(
                f"median |error|, {name} ({len(chosen)} layer-thread pairs): ecm {summary[name]['ecm']:.1%}, "
                f"max {summary[name]['max']:.1%}"
            )
    if args.json:
        note = "benchmarks/model_error.py " + " ".join(p.name for p in args.runs)
        write_json(args.json, {"provenance": provenance(note), "rows": rows, "median_abs_error": summary})
    return 0


if __name__ == "__main__":
    sys.exit(main())
