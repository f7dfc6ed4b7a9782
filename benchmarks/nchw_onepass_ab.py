"""NCHW in and out on grouped, depthwise, narrow-group and plain 1x1 stride-1 layers: one pass (dc_conv_nchw) against
three (convert, run, convert).

For each chosen suite layer, the configuration production would run is timed both ways on the same packed weights,
in C for the kernel and through the same Python calls for both, in interleaved rounds (order rotating every round):
  three passes: to_blocked into a kept buffer, conv2d_blocked into a kept buffer, from_blocked (a new array);
  one pass:     conv2d_nchw, whose tasks convert their own channel blocks in a per-thread scratch (a plain 1x1
                layer's: a matrix product on the NCHW planes, nothing converted; kernels/codegen_pointwise.py).
Both return a new NCHW array, as a peer's NCHW session does. Reports median ms of each and the one-pass speedup
(median of per-round ratios), and checks both against the reference.

Usage: python benchmarks/nchw_onepass_ab.py [--layer NAME ...] [--threads 1] [--rounds 15] [--json F]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable
from functools import partial

import numpy as np
from provenance import provenance, write_json

import directconv as dc
from directconv.core.suite import get_layer
from directconv.kernels import convert, layout
from directconv.kernels.reference import reference_for, tolerance
from directconv.tuner.harness import geomean, interleave

DEFAULT_LAYERS = (
    "mobilenetv2:dw3x3_32",
    "mobilenetv2:dw3x3s2_96",
    "mobilenetv2:dw3x3_144",
    "mobilenetv2:dw3x3_192",
    "mobilenetv2:dw3x3_384",
    "mobilenetv2:dw3x3_960",
    "efficientnetb0:dw5x5_240",
    "efficientnetb0:dw5x5s2_672",
    "resnext50:res2_3x3g32",
    "resnext50:res3_3x3g32",
    "resnext50:res4_3x3g32",
    "resnext50:res5_3x3g32",
    "alexnet-grouped:conv2",
)


def three_passes(x: np.ndarray, packed: dc.PackedWeights, threads: int) -> Callable[[], np.ndarray]:
    kernel, s = packed.kernel, packed.shape
    xb = dc.BlockedTensor(layout.empty_aligned(kernel.input_shape(x.shape[0])), s.ci)
    yb = dc.BlockedTensor(layout.empty_aligned(kernel.output_shape(x.shape[0])), s.co)

    def call() -> np.ndarray:
        convert.to_blocked(x, kernel.lanes, threads=threads, out=xb.data)
        dc.conv2d_blocked(xb, packed, threads=threads, out=yb)
        return convert.from_blocked(yb.data, s.co, threads=threads)

    return call


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layer", action="append")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--json")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for name in args.layer or DEFAULT_LAYERS:
        s = get_layer(name).shape
        x = rng.standard_normal((1, s.ci, s.h, s.w)).astype(np.float32)
        w = rng.standard_normal((s.co, s.cig, s.kh, s.kw)).astype(np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an untuned layer runs the model's plan; the row says which config
            packed = dc.pack_weights(w, input_size=(s.h, s.w), threads=args.threads, **s.conv_arguments())
        runs = {
            "three passes": three_passes(x, packed, args.threads),
            "one pass": partial(dc.conv2d_nchw, x, packed, threads=args.threads),
        }
        ref = reference_for(s, x, w)
        for label, fn in runs.items():
            err = float(np.abs(fn() - ref).max() / np.abs(ref).max())
            if err > tolerance(s.cig, s.kh, s.kw):
                raise SystemExit(f"{name}: {label} is wrong (relative error {err:.3g})")
        timings = interleave(runs, rounds=args.rounds, min_time=0.05)
        three, one = timings["three passes"].samples, timings["one pass"].samples
        seconds = {"three passes": float(np.median(three)), "one pass": float(np.median(one))}
        ratios = [a / b for a, b in zip(three, one, strict=True)]
        rows.append(
            {
                "layer": name,
                "shape": s.describe(),
                "config": packed.config.to_dict(),
                "ms_three_passes": round(seconds["three passes"] * 1e3, 4),
                "ms_one_pass": round(seconds["one pass"] * 1e3, 4),
                "speedup_one_pass": round(float(np.median(ratios)), 3),
            }
        )
        print(
            f"{name:28} three passes {seconds['three passes'] * 1e3:7.3f} ms  one pass "
            f"{seconds['one pass'] * 1e3:7.3f} ms  x{np.median(ratios):.2f}",
            flush=True,
        )
    print(f"geomean speedup of one pass: x{geomean([r['speedup_one_pass'] for r in rows]):.2f}")
    if args.json:
        write_json(
            args.json, {"provenance": provenance(), "threads": args.threads, "rounds": args.rounds, "rows": rows}
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
