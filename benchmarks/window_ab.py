"""Grouped layers whose groups are not whole vectors: the lane-wise kernel against the grouped-window one.

For each shape, both kernels run the model's configuration for their kind (core.shape.kernel_kind with its limits
WINDOW_MAX_OVERHEAD and WINDOW_MAX_OVERHEAD_FILTER set to 0, then to infinity), timed in C (dc_bench) on blocked
input, the two alternating in every round; reported: the windows' multiply-add overhead on one-vector blocks,
microseconds per call and the median of per-round ratios lane-wise / window. Shapes: ShuffleNet's 4-group 1x1
layers (28, 34, 68 and 136 channels per group), ResNeXt's 8 per group (a 2x overhead on 16 lanes) and two 3x3
layers with 40 and 50 channels per group.

Usage: python benchmarks/window_ab.py [--threads 1] [--rounds 11] [--json results.json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from provenance import provenance, write_json

import directconv as dc
import directconv.core.shape as shape_rules
from directconv.core.shape import ConvShape, kernel_kind, window_overhead
from directconv.machines.host import host
from directconv.model import predict

SHAPES = {
    "shufflenet 136 g4 1x1 28x28": ConvShape.from_args(136, 136, 28, 28, 1, 1, groups=4),
    "shufflenet 112 g4 1x1 28x28": ConvShape.from_args(112, 112, 28, 28, 1, 1, groups=4),
    "shufflenet 272 g4 1x1 14x14": ConvShape.from_args(272, 272, 14, 14, 1, 1, groups=4),
    "shufflenet 544 g4 1x1 7x7": ConvShape.from_args(544, 544, 7, 7, 1, 1, groups=4),
    "resnext 256 g32 3x3 28x28": ConvShape.from_args(256, 256, 28, 28, 3, 3, 1, 1, groups=32),
    "120 g3 3x3 28x28": ConvShape.from_args(120, 120, 28, 28, 3, 3, 1, 1, groups=3),
    "200 g4 3x3 14x14": ConvShape.from_args(200, 200, 14, 14, 3, 3, 1, 1, groups=4),
}


class Runner:
    """One kernel, its packed operands and its configuration, timed in C."""

    def __init__(self, shape: ConvShape, threads: int, rng: np.random.Generator) -> None:
        self.config = predict(shape, host().machine, threads).config
        self.kind = kernel_kind(shape, self.config.lanes)
        x = rng.standard_normal((1, shape.ci, shape.h, shape.w)).astype(np.float32)
        w = rng.standard_normal((shape.co, shape.cig, shape.kh, shape.kw)).astype(np.float32)
        pad = (shape.pt, shape.pb, shape.pl, shape.pr)
        self.packed = dc.pack_weights(
            w, None, input_size=(shape.h, shape.w), stride=(shape.sh, shape.sw), padding=pad,
            groups=shape.groups, config=self.config,
        )  # fmt: skip
        self.x = dc.to_blocked(x)
        self.out = dc.conv2d_blocked(self.x, self.packed)  # loads the kernel

    def seconds(self) -> float:
        c = self.config
        samples = self.packed.kernel.bench(
            self.x.data, self.packed.operands, self.out.data,
            cib=c.cib, rows=c.rows, parallel=c.parallel, threads=c.threads, min_seconds=0.05,
        )  # fmt: skip
        return float(np.median(samples))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    lanes = host().machine.n_vec
    rule = (shape_rules.WINDOW_MAX_OVERHEAD, shape_rules.WINDOW_MAX_OVERHEAD_FILTER)
    rows = []
    for name, shape in SHAPES.items():
        # Each kind is decided when its kernel is generated and its weights packed: build each under its rule.
        shape_rules.WINDOW_MAX_OVERHEAD = shape_rules.WINDOW_MAX_OVERHEAD_FILTER = 0.0
        lane_wise = Runner(shape, args.threads, rng)
        shape_rules.WINDOW_MAX_OVERHEAD = shape_rules.WINDOW_MAX_OVERHEAD_FILTER = float("inf")
        window = Runner(shape, args.threads, rng)
        shape_rules.WINDOW_MAX_OVERHEAD, shape_rules.WINDOW_MAX_OVERHEAD_FILTER = rule
        times: dict[str, list[float]] = {"lane-wise": [], "window": []}
        for _ in range(args.rounds):
            times["lane-wise"].append(lane_wise.seconds())
            times["window"].append(window.seconds())
        ratio = float(np.median(np.array(times["lane-wise"]) / np.array(times["window"])))
        row = {
            "shape": name,
            "describe": shape.describe(),
            "window_overhead": round(window_overhead(shape, lanes, 1), 3),
            "kind_by_rule": kernel_kind(shape, lanes),
            "lane_wise": {"kind": lane_wise.kind, "config": lane_wise.config.to_dict()},
            "window": {"kind": window.kind, "config": window.config.to_dict()},
            "lane_wise_us": round(float(np.median(times["lane-wise"])) * 1e6, 2),
            "window_us": round(float(np.median(times["window"])) * 1e6, 2),
            "lane_wise_over_window": round(ratio, 3),
        }
        rows.append(row)
        print(
            f"{name:30} overhead {row['window_overhead']:.2f}  lane-wise {row['lane_wise_us']:8.1f} us  window "
            f"{row['window_us']:8.1f} us  x{ratio:.2f}  (rule: {row['kind_by_rule']})",
            flush=True,
        )
    if args.json:
        data = {"provenance": provenance(), "lanes": lanes, "threads": args.threads, "rounds": args.rounds}
        limits = {"max_overhead_1x1": rule[0], "max_overhead_filter": rule[1]}
        write_json(args.json, {**data, "rule": limits, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
