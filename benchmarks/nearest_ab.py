"""Whole ONNX models with the "nearest" configuration source as it was (any valid neighbour the model predicts no
slower) against the rule that keeps neighbours within 2x (tuner/select.py, NEAREST_MAX_RATIO).

Both models are loaded in one process from the same file and config store, one with each rule, and run in
alternating batches (the process settles before each, so no thread pool left spinning competes); reported: the
convolutions whose configuration differs and the median of per-round ratios old / new (above 1: the new rule is
faster).

Usage: python benchmarks/nearest_ab.py [--models mobilenetv2,squeezenet] [--threads 1,2] [--rounds 8] [--json F]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
from provenance import provenance, write_json

import directconv as dc
from directconv.bench.corpus import corpus_bytes
from directconv.graph.model import Model
from directconv.tuner import select
from directconv.tuner.harness import settle


def load_with_any_neighbour(data: bytes, threads: int) -> Model:
    """The model as the rule before NEAREST_MAX_RATIO loaded it: every shape counts as near enough."""
    rule = select.near_enough
    select.near_enough = lambda a, b: True
    try:
        return dc.load_onnx(data, threads=threads)
    finally:
        select.near_enough = rule


def median_batch(run: Callable[[], object], calls: int = 10) -> float:
    settle()
    run()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="mobilenetv2,squeezenet,inception_v2,densenet121")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    warnings.simplefilter("ignore", dc.UntunedWarning)
    rows = []
    for name in args.models.split(","):
        data = corpus_bytes(name)
        for threads in (int(t) for t in args.threads.split(",")):
            old, new = load_with_any_neighbour(data, threads), dc.load_onnx(data, threads=threads)
            configs = [[conv.config for _, conv in m.convolutions()] for m in (old, new)]
            changed = sum(a != b for a, b in zip(*configs, strict=True))
            rng = np.random.default_rng(0)
            feeds = {n: rng.random((1, *dims), dtype=np.float32) for n, dims in old.input_dims.items()}
            run_old, run_new = partial(old.run, feeds), partial(new.run, feeds)
            ratios = [median_batch(run_old) / median_batch(run_new) for _ in range(args.rounds)]
            ratio = float(np.median(ratios))
            rows.append({"model": name, "threads": threads, "steps_changed": changed, "old_over_new": round(ratio, 3)})
            print(f"{name:14} {threads}T  {changed:3d} steps changed  old/new x{ratio:.3f}", flush=True)
    if args.json:
        write_json(args.json, {"provenance": provenance(), "rounds": args.rounds, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
