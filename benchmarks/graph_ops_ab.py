"""The graph operators' C library built as before (16-byte vectors, no ISA flags) against the build the graph uses
(kernels/graph_ops.py: the host ISA's flags and a whole block per vector where the host has an ISA of that width).

ShuffleNet's operators on its own shapes (the first max-pool, a stride-2 average-pool, channel shuffles, a fused
residual add, a ReLU and the global average pool), one thread, in rounds that alternate the two builds (the graph
calls whichever library is installed); reported: microseconds per call (a batch of 50 calls per round, median
over rounds) and the median of per-round ratios old / new.

Usage: python benchmarks/graph_ops_ab.py [--lanes 16] [--rounds 11] [--json results.json]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from provenance import provenance, write_json

from directconv.graph import ops
from directconv.kernels import codegen, compiler, ffi, graph_ops
from directconv.tuner.harness import time_batch


def build(lanes: int, chunk: int, flags: tuple[str, ...]) -> Any:
    source = (
        f"#define DC_LANES {lanes}\n#define DC_CHUNK {chunk}\n"
        + codegen.vector_prelude(chunk, None)
        + codegen.c_text("dc_epilogue.h")
        + codegen.c_text("dc_window.h")
        + codegen.c_text("dc_graph.c")
    )
    return ffi.load(compiler.build(source, flags, name="graph_ops"), graph_ops._DECLARATIONS)


def cases(lanes: int) -> dict[str, Callable[[], None]]:
    rng = np.random.default_rng(0)

    def blocked(c: int, h: int) -> np.ndarray:
        return rng.standard_normal((1, -(-c // lanes), h, h, lanes)).astype(np.float32)

    pool_in, pool_out = blocked(24, 112), blocked(24, 56)
    avg_in, avg_out = blocked(136, 28), blocked(136, 14)
    mid, mid_out = blocked(272, 14), blocked(272, 14)
    wide, wide_out = blocked(112, 56), blocked(112, 56)
    return {
        "max_pool 24ch 112x112 k3 s2": lambda: ops.max_pool(
            pool_in, pool_out, kernel=(3, 3), stride=(2, 2), pads=(1, 1, 1, 1)
        ),
        "average_pool 136ch 28x28 k3 s2": lambda: ops.average_pool(
            avg_in, avg_out, kernel=(3, 3), stride=(2, 2), pads=(1, 1, 1, 1), count_include_pad=False
        ),
        "channel_shuffle 272ch 14x14 g4": lambda: ops.channel_shuffle(mid, mid_out, channels=272, groups=4),
        "channel_shuffle 112ch 56x56 g4": lambda: ops.channel_shuffle(wide, wide_out, channels=112, groups=4),
        "add+relu 272ch 14x14": lambda: ops.add(mid, mid, mid_out, act="relu"),
        "relu 112ch 56x56": lambda: ops.activation(wide, wide_out, "relu", 0.0, 0.0),
        "global_average_pool 272ch 14x14": lambda: ops.global_average_pool(mid, mid_out[:, :, :1, :1]),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lanes", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    lanes = args.lanes
    builds = {
        "old": build(lanes, 4 if lanes % 4 == 0 else 1, graph_ops._FLAGS),
        "new": build(lanes, graph_ops._chunk(lanes), graph_ops._flags(lanes)),
    }
    seconds: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for name, fn in cases(lanes).items():
            for which, lib in builds.items():
                graph_ops._libraries[lanes] = lib  # the library every graph operator of `lanes` calls
                fn()
                seconds.setdefault((name, which), []).append(time_batch(fn, 50))
    rows = []
    for name in cases(lanes):
        old, new = np.array(seconds[(name, "old")]), np.array(seconds[(name, "new")])
        ratio = float(np.median(old / new))
        rows.append({"op": name, "old_us": np.median(old) * 1e6, "new_us": np.median(new) * 1e6, "old_over_new": ratio})
        print(f"{name:34} old {np.median(old) * 1e6:8.1f} us  new {np.median(new) * 1e6:8.1f} us  x{ratio:.2f}")
    if args.json:
        flags = {"old": list(graph_ops._FLAGS), "new": list(graph_ops._flags(lanes))}
        data = {"provenance": provenance(), "lanes": lanes, "rounds": args.rounds, "flags": flags, "rows": rows}
        write_json(args.json, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
