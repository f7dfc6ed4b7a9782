"""A/B of how threads share a layer: the model's split against the others, same register tile, interleaved.

For each layer, the model's configuration at T threads (predict) runs beside the same tile and cache block with
the output-channel split ("co"), rows of 1 and rows of model.split.ROWS_PER_TASK, in rotating order over the
rounds (harness.schedule); each is timed in a worker process in C. Reported per layer: each split's median GFLOP/s
and the median over rounds of its ratio to the model's split in the same round (ratios carry across the host's
phases, absolute figures do not).

Usage: python benchmarks/split_ab.py [--layer NAME ...] [--threads 2] [--rounds 12] [--json results.json]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from provenance import provenance, write_json

from directconv.core.suite import get_layer, suite
from directconv.machines.host import host
from directconv.model import predict
from directconv.model.split import ROWS_PER_TASK
from directconv.tuner.compile import compile_all
from directconv.tuner.measure import Measurer


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layer", action="append", help="suite layer (default: the whole suite)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--min-time", type=float, default=0.1, help="seconds of timing per configuration per round")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    machine = host().machine
    rows_out = []
    for name in args.layer or [layer.name for layer in suite()]:
        shape = get_layer(name).shape
        model = predict(shape, machine, args.threads).config
        splits = {
            "model": model,
            "co": model.replace(parallel="co", rows=None),
            "rows1": model.replace(parallel="rows", rows=1),
            f"rows{ROWS_PER_TASK}": model.replace(parallel="rows", rows=ROWS_PER_TASK),
        }
        configs = {k: c for k, c in splits.items() if k == "model" or c != model}  # the model's own runs once
        built = compile_all(list(configs.values()), shape)
        with Measurer(min_time=args.min_time, timeout=120) as measurer:
            per_round = measurer.rounds(list(configs.values()), shape, built, args.rounds)
        gflops = {k: [r.get(c, float("nan")) for r in per_round] for k, c in configs.items()}
        row = {
            "layer": name,
            "model": {"parallel": model.parallel, "rows": model.rows, "cob": model.cob, "wob": model.wob},
            "splits": {
                k: {
                    "gflops": round(statistics.median(v), 2),
                    "vs_model": round(statistics.median(a / b for a, b in zip(v, gflops["model"], strict=True)), 3),
                }
                for k, v in gflops.items()
            },
        }
        rows_out.append(row)
        print(
            f"{name:30} model {model.parallel}/{model.rows or 'all'}: "
            + "  ".join(f"{k} {r['gflops']:6.1f} ({r['vs_model']:.3f})" for k, r in row["splits"].items()),
            flush=True,
        )
    if args.json:
        write_json(
            args.json,
            {
                "provenance": provenance(),
                "machine": machine.id,
                "threads": args.threads,
                "rounds": args.rounds,
                "layers": rows_out,
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
