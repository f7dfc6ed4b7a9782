"""The model's prediction against the tuned store, C-timed side by side: is the predicted configuration within 5% of
the tuned best on every suite layer (issue: model fidelity)?

For every suite layer with a tuned entry for this host at --threads, the configuration the model predicts for this
host's description (directconv.model.predict) and the store's entry are compiled and timed in C by the tuner's
measuring workers in interleaved rounds, the order rotating every round (tuner.measure.Measurer.rounds, as
benchmarks/store_ab.py does). Reported per layer: each one's median GFLOP/s and the median over rounds of predicted /
tuned; a layer whose prediction is the tuned configuration itself is 1.0 untimed. The tuning run's own figures are
not used: they come from another hour of a shared host.

Usage: python benchmarks/prediction_vs_tuned.py [--threads 1] [--rounds 9] [--layer NAME ...] [--json F]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

from provenance import provenance, write_json
from side_by_side import compare

from directconv.core.suite import get_layer, suite
from directconv.machines.host import host
from directconv.model import predict
from directconv.tuner import store
from directconv.tuner.measure import Measurer

GOOD = 0.95  # the goal: the prediction at least this fraction of the tuned best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--min-time", type=float, default=0.1, help="seconds of timing per configuration per round")
    ap.add_argument("--layer", action="append", help="suite layers (default: every one with a tuned entry)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    h = host()
    layers = [get_layer(n) for n in args.layer] if args.layer else list(suite())
    rows = []
    with Measurer(min_time=args.min_time, timeout=120) as measurer:
        for layer in layers:
            found = store.lookup(layer.shape, args.threads, h.fingerprint_id)
            if found is None:
                continue
            configs = {"predicted": predict(layer.shape, h.machine, args.threads).config, "tuned": found.entry.config}
            rows.append(compare(measurer, layer.name, layer.shape, configs, args.rounds, "predicted_over_tuned"))
    ratios = [r["predicted_over_tuned"] for r in rows]
    good = sum(r >= GOOD for r in ratios)
    geomean = math.exp(statistics.fmean(math.log(r) for r in ratios)) if ratios else float("nan")
    print(
        f"{good} of {len(rows)} layers at {GOOD:.0%} of the tuned best or more; geomean predicted/tuned {geomean:.3f}"
    )
    if args.json:
        write_json(
            args.json,
            {
                "provenance": provenance(),
                "threads": args.threads,
                "rounds": args.rounds,
                "layers_at_goal": good,
                "geomean_predicted_over_tuned": round(geomean, 3),
                "layers": rows,
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
