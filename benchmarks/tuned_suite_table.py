"""The markdown table of a tuned suite: `directconv tune ... --json` summaries for 1 and 2 threads, side by side.

Usage: python benchmarks/tuned_suite_table.py --one t1.json --two t2.json > benchmarks/results/tuned-suite-zen3.md
(the heading above the table is written by hand: machine, date, commit, command). The summaries may be
gzip-compressed (names ending in .gz).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from provenance import read_json


def short(config: dict | None) -> str:
    if config is None:
        return "-"
    split = config["parallel"] if config["parallel"] == "co" or config["rows"] is None else f"rows/{config['rows']}"
    return f"{config['cob']}x{config['wob']} cib={config['cib'] or 'all'} u{config['unroll']} {split}"


def num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--one", type=Path, required=True, help="tune --json summary, 1 thread")
    ap.add_argument("--two", type=Path, required=True, help="tune --json summary, 2 threads")
    args = ap.parse_args()
    one = {r["layer"]: r for r in read_json(args.one)["layers"]}
    two = {r["layer"]: r for r in read_json(args.two)["layers"]}
    print(
        "| layer | 1T model config | 1T model GFLOP/s | 1T tuned | 1T GFLOP/s | 1T gain | 1T % peak | "
        "2T model config | "
        "2T tuned | 2T GFLOP/s | 2T gain | 2T % peak |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in one.items():
        t = two.get(name, {})
        print(
            f"| {name} | {short(r['predicted_config'])} | {num(r['predicted_gflops'], '.1f')} | "
            f"{short(r['best_config'])} | {num(r['best_gflops'], '.1f')} | {num(r['gain'], '.2f')} | "
            f"{num(r['percent_of_peak'], '.0f')}% | {short(t.get('predicted_config'))} | "
            f"{short(t.get('best_config'))} | {num(t.get('best_gflops'), '.1f')} | {num(t.get('gain'), '.2f')} | "
            f"{num(t.get('percent_of_peak'), '.0f')}% |"
        )
    print()
    for label, summary in (("1 thread", one), ("2 threads", two)):
        gains = [r["gain"] for r in summary.values() if r.get("gain")]
        if gains:
            print(
                f"{label}: tuned over predicted, geomean {statistics.geometric_mean(gains):.3f} over {len(gains)} "
                f"layers; predicted within 10% of tuned on {sum(g <= 1.1 for g in gains)} of {len(gains)}."
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
