"""NCHW <-> blocked conversions: numpy (kernels/layout.py) against C (kernels/convert.py) on 1 and 2 threads.

With --baseline-build, also the C library as convert.py builds it (the flags of the host's ISA of that many lanes)
against the same C built without ISA flags (SSE2 or NEON only), both called straight into preallocated arrays.

For the input and the output of each chosen suite layer, every implementation converts the same array in rounds
(order rotating every round, bench.harness.interleaved_medians); reported: median ms per conversion and GB/s
(bytes read + bytes written), and C's speedup over numpy, both ways.

Usage: python benchmarks/conversion_ab.py [--layer vgg16:conv1_2 ...] [--rounds 15] [--lanes 8] [--baseline-build]
       [--json results.json]
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from provenance import provenance, write_json

from directconv.core.suite import get_layer
from directconv.kernels import compiler, convert, ffi, layout
from directconv.tuner.harness import interleaved_medians, time_batch

DEFAULT_LAYERS = (
    "vgg16:conv1_2",
    "resnet50:res2_1x1_64to256",
    "resnet50:res4_3x3",
    "resnet50:res5_3x3",
    "alexnet:conv1",
)


def _direct(lib: Any) -> dict[str, Any]:
    """to_blocked and from_blocked straight into preallocated arrays, without convert.py's checks."""

    def to(x: np.ndarray, out: np.ndarray, threads: int) -> None:
        n, c, h, w = x.shape
        lib.dc_to_blocked(convert._pointer(x), convert._pointer(out), n, c, h * w, threads)

    def back(xb: np.ndarray, out: np.ndarray, threads: int) -> None:
        n, c, h, w = out.shape
        lib.dc_from_blocked(convert._pointer(xb), convert._pointer(out), n, c, h * w, threads)

    return {"to": to, "from": back}


def _builds(lanes: int) -> dict[str, dict[str, Any]]:
    """The conversion library as convert.py builds it (with the flags of the host's ISA of `lanes` lanes) and
    built without ISA flags, both called the same way."""
    return {
        "C-flags": _direct(convert._library(lanes)),
        "C-noflags": _direct(
            ffi.load(compiler.build(convert._source(lanes), (), name="layout"), convert._DECLARATIONS)
        ),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layer", action="append")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--lanes", type=int, default=8)
    ap.add_argument("--baseline-build", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    builds = _builds(args.lanes) if args.baseline_build else {}
    for name in args.layer or DEFAULT_LAYERS:
        s = get_layer(name).shape
        for side, (c, h, w) in (("input", (s.ci, s.h, s.w)), ("output", (s.co, s.ho, s.wo))):
            x = rng.standard_normal((1, c, h, w)).astype(np.float32)
            xb = layout.nchw_to_blocked(x, args.lanes)
            nbytes = x.nbytes + xb.nbytes  # read + written
            calls = max(1, int(2e8 // nbytes))  # about 0.05 s per batch
            runs = {
                "to_blocked numpy": partial(layout.nchw_to_blocked, x, args.lanes),
                "to_blocked C 1T": partial(convert.to_blocked, x, args.lanes, threads=1),
                "to_blocked C 2T": partial(convert.to_blocked, x, args.lanes, threads=2),
                "from_blocked numpy": partial(layout.blocked_to_nchw, xb, c),
                "from_blocked C 1T": partial(convert.from_blocked, xb, c, threads=1),
                "from_blocked C 2T": partial(convert.from_blocked, xb, c, threads=2),
            }
            to_out, back_out = np.empty_like(xb), np.empty_like(x)
            for build, calls_of in builds.items():
                for threads in (1, 2):
                    runs[f"to_blocked {build} {threads}T"] = partial(calls_of["to"], x, to_out, threads)
                    runs[f"from_blocked {build} {threads}T"] = partial(calls_of["from"], xb, back_out, threads)
            for fn in runs.values():
                fn()  # build and load the library, touch the pages
            seconds = interleaved_medians({k: partial(time_batch, fn, calls) for k, fn in runs.items()}, args.rounds)
            for impl, t in seconds.items():
                base = seconds[impl.split()[0] + " numpy"]
                rows.append(
                    {
                        "layer": name,
                        "tensor": side,
                        "shape": [1, c, h, w],
                        "impl": impl,
                        "ms": round(t * 1e3, 4),
                        "gb_per_s": round(nbytes / t / 1e9, 2),
                        "speedup_over_numpy": round(base / t, 2),
                    }
                )
                print(
                    f"{name:30} {side:6} {impl:18} {t * 1e3:8.3f} ms {nbytes / t / 1e9:6.1f} GB/s  x{base / t:.2f}",
                    flush=True,
                )
    if args.json:
        data = {
            "provenance": provenance(),
            "lanes": args.lanes,
            "rounds": args.rounds,
            "flags": convert.isa_flags(args.lanes),
        }
        write_json(args.json, {**data, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
