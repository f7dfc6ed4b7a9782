"""Depthwise layers against the bandwidth roofline, every term timed in C.

For each depthwise suite layer and thread count: the configuration directconv runs (tuner.select.choose_config: the
bundled tuned entry for this host), its kernel timed in C (dc_bench: back-to-back calls, no interpreter between
them), the copy loop over the layer's minimal traffic timed in C (tuner/bandwidth.py: input and weights read once,
output written once; dc_stream_seconds) and the FMA peak loop, in the same rounds, in rotating order. Per round:
  %peak  the kernel's GFLOP/s over the round's peak, FLOPs counted as the bench counts them (padding included);
  %exec  the same over the multiply-adds the kernel runs (ConvShape.executed_flops: the padding's taps skipped);
  %bw    the loop's seconds per pass over the kernel's seconds per call (the loop moves exactly the minimal bytes);
  %roof  the larger of %peak and %bw: the roofline is the lower of the two rates.
Reported: medians over rounds. Left out on purpose: the Python call of the API, which `directconv bench` includes in
its own %roof column (the probed call_us, a large part of a small layer's call; README gives the figures).

Usage: python benchmarks/depthwise_roofline.py [--threads 1,2] [--rounds 9] [--seconds 0.03] [--json F]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from provenance import provenance, write_json

import directconv
from directconv.core.isa import get_isa, host_isa
from directconv.core.shape import ConvShape, kernel_kind
from directconv.core.suite import Layer, suite
from directconv.kernels import layout
from directconv.tuner import bandwidth
from directconv.tuner.peak import PeakLoop, peak_loop
from directconv.tuner.select import choose_config

GOAL = 70.0  # % of the roofline


def depthwise_layers() -> list[Layer]:
    lanes = get_isa(host_isa()).lanes
    return [layer for layer in suite() if kernel_kind(layer.shape.kernel_view(), lanes) == "depthwise"]


def layer_rounds(layer: Layer, threads: int, peak: PeakLoop, rounds: int, seconds: float) -> dict[str, Any]:
    """One layer's rounds: the kernel, the copy loop and the peak, in rotating order; its medians."""
    s: ConvShape = layer.shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, s.ci, s.h, s.w), dtype=np.float32)
    w = rng.standard_normal((s.co, s.cig, s.kh, s.kw), dtype=np.float32)
    choice = choose_config(s, threads, warn=False)
    cfg = choice.config
    packed = directconv.pack_weights(w, input_size=(s.h, s.w), config=cfg, **s.conv_arguments())
    xb = directconv.to_blocked(x, isa=cfg.isa, threads=threads)
    kernel = packed.kernel
    out = layout.empty_aligned(kernel.output_shape(1), zero=True)
    loop = bandwidth.layer_stream(s, threads, isa=cfg.isa)
    loop_pass = loop.seconds_in_c(max(1, int(0.005 / max(loop.seconds_in_c(3), 1e-9))))

    def time_kernel() -> float:
        samples = kernel.bench(
            xb.data,
            packed.operands,
            out,
            cib=cfg.cib,
            rows=cfg.rows,
            parallel=cfg.parallel,
            threads=threads,
            min_seconds=seconds,
            max_samples=1_000_000,
        )
        return float(np.median(samples))

    def time_loop() -> float:
        passes = max(1, int(seconds / 5 / loop_pass))
        return statistics.median(loop.seconds_in_c(passes) for _ in range(5))

    def time_peak() -> float:
        started = time.perf_counter()
        peak.call()
        return peak.gflops(time.perf_counter() - started)

    steps = {"kernel": time_kernel, "loop": time_loop, "peak": time_peak}
    per_round: list[dict[str, float]] = []
    for r in range(rounds):
        names = list(steps)
        names = names[r % 3 :] + names[: r % 3]
        got = {name: steps[name]() for name in names}
        kernel_gflops = s.flops() / got["kernel"] * 1e-9
        per_round.append(
            {
                "kernel_us": got["kernel"] * 1e6,
                "loop_us": got["loop"] * 1e6,
                "peak_gflops": got["peak"],
                "percent_of_peak": 100 * kernel_gflops / got["peak"],
                "percent_of_peak_executed": 100 * kernel_gflops * s.executed_flops() / s.flops() / got["peak"],
                "percent_of_bandwidth": 100 * got["loop"] / got["kernel"],
            }
        )
    for row in per_round:
        row["percent_of_roofline"] = max(row["percent_of_peak"], row["percent_of_bandwidth"])
    medians = {key: statistics.median(row[key] for row in per_round) for key in per_round[0]}
    return {
        "layer": layer.name,
        "shape": s.describe(),
        "threads": threads,
        "config": cfg.to_dict(),
        "config_source": choice.source,
        "minimal_bytes": loop.traffic.bytes,
        **{key: round(value, 2) for key, value in medians.items()},
        "rounds": per_round,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--seconds", type=float, default=0.03, help="seconds of kernel timing per layer per round")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    thread_counts = [int(t) for t in args.threads.split(",")]
    rows = []
    print(f"{'layer':28} T  {'kernel us':>9} {'loop us':>8} {'%peak':>6} {'%exec':>6} {'%bw':>5} {'%roof':>6}")
    for threads in thread_counts:
        peak = peak_loop(threads, 0.01)
        for layer in depthwise_layers():
            row = layer_rounds(layer, threads, peak, args.rounds, args.seconds)
            rows.append(row)
            print(
                f"{row['layer']:28} {threads}  {row['kernel_us']:9.1f} {row['loop_us']:8.1f} "
                f"{row['percent_of_peak']:5.1f}% {row['percent_of_peak_executed']:5.1f}% "
                f"{row['percent_of_bandwidth']:4.0f}% {row['percent_of_roofline']:5.1f}%",
                flush=True,
            )
    for threads in thread_counts:
        mine = [r for r in rows if r["threads"] == threads]
        good = sum(r["percent_of_roofline"] >= GOAL for r in mine)
        print(f"{threads} thread(s): {good} of {len(mine)} depthwise layers at {GOAL:.0f}% of the roofline or more")
    if args.json:
        note = f"python benchmarks/depthwise_roofline.py --threads {args.threads} --rounds {args.rounds} --json FILE"
        write_json(
            args.json,
            {"provenance": provenance(note), "rounds": args.rounds, "seconds": args.seconds, "layers": rows},
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
