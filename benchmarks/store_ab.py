"""A/B of two tuned stores: each layer's configuration from one against the other's, interleaved.

A re-tune measures its candidates in another hour than the store it would replace, and on a shared host the same
kernel runs faster or slower from one hour to the next, so the two stores' GFLOP/s figures do not compare. Here
both configurations of every layer both stores hold (at --threads) run side by side in C, in rotating order over
the rounds (harness.schedule); reported per layer: the median GFLOP/s of each and the median
over rounds of the ratio new / old, then the geomean of those ratios.

Usage: python benchmarks/store_ab.py --old OLD.yaml --new NEW.yaml [--threads 2] [--rounds 12] [--json out.json]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

from provenance import provenance, write_json
from side_by_side import compare

from directconv.tuner.measure import Measurer
from directconv.tuner.store import read_store


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", type=Path, required=True, help="store file (YAML)")
    ap.add_argument("--new", type=Path, required=True, help="store file (YAML) of the same machine")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--min-time", type=float, default=0.1, help="seconds of timing per configuration per round")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    old, new = read_store(args.old), read_store(args.new)
    if old.fingerprint_id != new.fingerprint_id:
        ap.error(f"the stores describe different machines: {old.fingerprint_id} and {new.fingerprint_id}")
    before = {(e.shape, e.threads): e for e in old.entries if e.threads == args.threads}
    rows = []
    with Measurer(min_time=args.min_time, timeout=120) as measurer:
        for entry in (e for e in new.entries if (e.shape, e.threads) in before):
            configs = {"new": entry.config, "old": before[(entry.shape, entry.threads)].config}
            rows.append(compare(measurer, entry.layer, entry.shape, configs, args.rounds, "new_over_old"))
    geomean = math.exp(statistics.fmean(math.log(r["new_over_old"]) for r in rows)) if rows else float("nan")
    print(f"geomean new/old over {len(rows)} layers: {geomean:.3f}")
    if args.json:
        write_json(
            args.json,
            {
                "provenance": provenance(),
                "old": args.old.name,
                "new": args.new.name,
                "threads": args.threads,
                "rounds": args.rounds,
                "geomean_new_over_old": round(geomean, 3),
                "layers": rows,
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
