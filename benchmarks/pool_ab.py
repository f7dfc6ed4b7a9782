"""Max-pooling on blocked data: numpy (MaxPool2d's reference) against C (what MaxPool2d runs:
kernels/graph_ops.max_pool) on 1 and 2 threads.

Every distinct max-pool of the networks' chains (directconv/nn/networks.yaml), on the activation it pools, runs
in rounds, the order rotating every round (bench.harness.interleaved_medians); reported: median ms per pool and
C's speedup over numpy.

Usage: python benchmarks/pool_ab.py [--rounds 15] [--json results.json]
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

import numpy as np
from provenance import provenance, write_json

import directconv as dc
from directconv.kernels import layout
from directconv.nn.networks import PoolStep, get_network
from directconv.tuner.harness import interleaved_medians, time_batch

LANES = 8


def chain_pools() -> dict[tuple[int, int, int, int, int], str]:
    """(channels, size, kernel, stride, padding) -> the first network:step that pools that way."""
    found: dict[tuple[int, int, int, int, int], str] = {}
    for name in ("alexnet", "vgg16", "resnet50", "googlenet"):
        network = get_network(name)
        for step, (c, h, _) in zip(network.steps, network.activations()[:-1], strict=True):
            if isinstance(step, PoolStep):
                found.setdefault((c, h, step.kernel, step.stride, step.pad), f"{name}:{step.name}")
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for (c, h, k, s, p), where in chain_pools().items():
        x = dc.BlockedTensor(layout.nchw_to_blocked(rng.standard_normal((1, c, h, h)).astype(np.float32), LANES), c)
        pool = dc.MaxPool2d(k, s, p)
        out = pool(x)  # builds and loads the library
        calls = max(1, int(2e7 // x.data.nbytes))
        runs = {
            "numpy": partial(pool._pool, x.data, out.data),
            "C 1T": partial(pool, x, out=out, threads=1),
            "C 2T": partial(pool, x, out=out, threads=2),
        }
        seconds = interleaved_medians({name: partial(time_batch, fn, calls) for name, fn in runs.items()}, args.rounds)
        base = seconds["numpy"]
        for impl, t in seconds.items():
            rows.append(
                {
                    "pool": where,
                    "channels": c,
                    "size": h,
                    "kernel": k,
                    "stride": s,
                    "padding": p,
                    "impl": impl,
                    "ms": round(t * 1e3, 4),
                    "speedup_over_numpy": round(base / t, 2),
                }
            )
            print(
                f"{where:22} {c:4}x{h:3}x{h:<3} k{k} s{s} p{p}  {impl:6} {t * 1e3:8.3f} ms  x{base / t:.2f}", flush=True
            )
    if args.json:
        write_json(args.json, {"provenance": provenance(), "lanes": LANES, "rounds": args.rounds, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
