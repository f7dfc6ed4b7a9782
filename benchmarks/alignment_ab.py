"""A/B of buffer alignment: the same kernels on 64-byte-aligned buffers against numpy's default placement.

directconv allocates every buffer a kernel reads or writes on a cache line (kernels.layout.empty_aligned).
numpy's own allocations start 16 bytes past a 64-byte boundary, so every other 32-byte weight load straddles two
lines. For each layer, the configuration production picks runs on both kinds of buffers (same kernel, same data),
timed in C in alternating rounds (harness.interleaved_medians); reports the median GFLOP/s of each, the ratio
aligned / numpy default, and the geomean ratio.

Usage: python benchmarks/alignment_ab.py [--layer NAME ...] [--rounds 11] [--json results.json]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from functools import partial
from pathlib import Path

import numpy as np
from provenance import provenance, write_json

import directconv as dc
from directconv.core.suite import get_layer
from directconv.kernels import layout, runtime
from directconv.tuner.harness import geomean, interleaved_medians

DEFAULT_LAYERS = (
    "vgg16:conv1_2",
    "vgg16:conv3_2",
    "vgg16:conv5_2",
    "resnet50:res2_3x3",
    "resnet50:res4_3x3",
    "resnet50:res5_3x3",
    "resnet50:res4_1x1_1024to256",
    "resnet50:res5_1x1_512to2048",
    "googlenet:3a_3x3",
    "alexnet:conv3",
)


def numpy_default(a: np.ndarray) -> np.ndarray:
    """A copy of `a` placed where numpy puts it by itself (16 bytes past a line for arrays this size)."""
    return np.array(a, dtype=np.float32, copy=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layer", action="append")
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--min-time", type=float, default=0.15)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for name in args.layer or DEFAULT_LAYERS:
        s = get_layer(name).shape
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cfg = dc.choose_config(s, 1).config
        k = runtime.load(cfg, s)
        x = rng.standard_normal((1, s.ci, s.h, s.w)).astype(np.float32)
        w = rng.standard_normal((s.co, s.ci, s.kh, s.kw)).astype(np.float32)
        aligned = (
            layout.nchw_to_blocked(x, cfg.lanes),
            layout.pack_weights(w, cfg.lanes, cfg.cob),
            layout.pack_bias(None, s, cfg.lanes, cfg.cob),
            layout.empty_aligned(k.output_shape(1)),
        )
        variants = {"aligned": aligned, "numpy": tuple(numpy_default(a) for a in aligned)}
        offsets = {label: [a.ctypes.data % 64 for a in bufs] for label, bufs in variants.items()}

        def run(xb, wp, bias, out, k=k, cfg=cfg) -> float:
            return float(
                np.median(
                    k.bench(
                        xb,
                        k.operands(wp, bias),
                        out,
                        cib=cfg.cib,
                        rows=cfg.rows,
                        parallel=cfg.parallel,
                        threads=1,
                        min_seconds=args.min_time,
                    )
                )
            )

        seconds = interleaved_medians({label: partial(run, *bufs) for label, bufs in variants.items()}, args.rounds)
        g = {label: s.flops() / t / 1e9 for label, t in seconds.items()}
        row = {
            "layer": name,
            "config": cfg.to_dict(),
            "offsets_mod_64": offsets,
            "aligned_gflops": round(g["aligned"], 2),
            "numpy_gflops": round(g["numpy"], 2),
            "ratio": round(g["aligned"] / g["numpy"], 3),
        }
        rows.append(row)
        print(
            f"{name:30} {cfg.cob}x{cfg.wob}  aligned {g['aligned']:6.1f}  numpy default {g['numpy']:6.1f} "
            f"(offsets {offsets['numpy']})  ratio {row['ratio']:.3f}",
            flush=True,
        )
    geo = geomean([r["ratio"] for r in rows])
    print(f"geomean ratio aligned / numpy default: {geo:.3f} over {len(rows)} layers")
    if args.json:
        write_json(
            args.json,
            {"provenance": provenance(), "rounds": args.rounds, "layers": rows, "geomean_ratio": round(geo, 4)},
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
