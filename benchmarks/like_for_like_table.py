"""The README's like-for-like table from several runs of `directconv bench --json` on the same layers.

A cell is the median over the runs of each run's like-for-like ratio (itself the median of per-round ratios,
directconv / peer, as the bench's summary reports it), for directconv-nchw / onnxruntime and directconv-blocked /
onnxruntime-nchwc at each thread count, and for directconv-nchw / the best NCHW peer of the layer (the ratio of median
GFLOP/s the summary reports); then the geomean of the cells (with each run's own geomean), and how many layers are at
0.97x or more.

Usage: python benchmarks/like_for_like_table.py RUN.json [RUN.json ...]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

BEST = "best NCHW peer"
PAIRS = (("directconv-nchw", "onnxruntime"), ("directconv-blocked", "onnxruntime-nchwc"), ("directconv-nchw", BEST))
LEVEL = 0.97


def _ratios(run: dict, threads: str, pair: tuple[str, str]) -> dict[str, float]:
    if pair[1] == BEST:
        return {row["layer"]: row["ratio"] for row in run["summary"][threads]["nchw_over_best_peer"]}
    for entry in run["summary"][threads]["like_for_like"]:
        if (entry["ours"], entry["peer"]) == pair:
            return {row["layer"]: row["ratio"] for row in entry["rows"]}
    return {}


def _geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    args = ap.parse_args()
    runs = [json.loads(p.read_text()) for p in args.runs]
    threads = sorted(runs[0]["summary"], key=int)
    columns = [(t, pair) for pair in PAIRS for t in threads]
    per_run = {c: [_ratios(run, c[0], c[1]) for run in runs] for c in columns}
    layers = list(per_run[columns[0]][0])
    heads = [f"{ours.removeprefix('directconv-')} / {peer}, {t} thread(s)" for t, (ours, peer) in columns]
    print("| layer | " + " | ".join(heads) + " |")
    print("|---" * (len(columns) + 1) + "|")
    cells: dict[tuple, list[float]] = {c: [] for c in columns}
    for layer in layers:
        row = []
        for c in columns:
            values = [r[layer] for r in per_run[c] if layer in r]
            if not values:  # a peer that does not run the layer (onnxruntime-nchwc on some grouped layers)
                row.append("n/a")
                continue
            value = statistics.median(values)
            cells[c].append(value)
            row.append(f"{value:.2f}x")
        print(f"| {layer} | " + " | ".join(row) + " |")
    geo = [
        f"{_geomean(cells[c]):.2f}x ({', '.join(f'{_geomean(list(r.values())):.2f}' for r in per_run[c])})"
        for c in columns
    ]
    print("| geomean of the medians (each run's) | " + " | ".join(geo) + " |")
    level = [f"{sum(v >= LEVEL for v in cells[c])} of {len(cells[c])}" for c in columns]
    print(f"| layers at {LEVEL}x or more | " + " | ".join(level) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
