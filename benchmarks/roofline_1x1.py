"""How far the 1x1 layers are from the roofline: min(FMA peak, arithmetic intensity x memory bandwidth).

A 1x1 convolution is a matrix product with little reuse per byte, the suite's most bandwidth-exposed layers. For
each 1x1 suite layer this measures, in interleaved rounds on one process:
  - the FMA peak (bench.peak, the same probe as `directconv bench`),
  - the streaming bandwidth a core gets from memory: numpy copying a buffer far larger than the last-level cache
    (read + write bytes per second; every call of a layer is assumed to come from memory, the worst case),
  - the layer with the configuration production picks (timed in C, median),
and reports the compulsory traffic (blocked input + packed weights + output, each once), the arithmetic intensity,
the memory roof (intensity x bandwidth), the roofline (the lower of that and the FMA peak) and the layer's fraction
of the roofline.

Usage: python benchmarks/roofline_1x1.py [--threads 1] [--rounds 7] [--json out.json]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from provenance import provenance, write_json

import directconv
from directconv.core.suite import suite
from directconv.kernels.layout import blocks
from directconv.model.split import operand_bytes
from directconv.tuner.compile import compile_all
from directconv.tuner.measure import Measurer
from directconv.tuner.peak import peak_once

DRAM_BYTES = 512 * 2**20  # far beyond any last-level cache of a 2-core slice


def copy_bandwidth(nbytes: int, seconds: float = 0.2) -> float:
    """Bytes per second read plus written by np.copyto over a buffer of `nbytes`, median of repeated copies."""
    src = np.ones(nbytes // 4, dtype=np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)  # touch every page first
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 3:
        t0 = time.perf_counter()
        np.copyto(dst, src)
        times.append(time.perf_counter() - t0)
    return 2 * nbytes / statistics.median(times)


def traffic(shape, lanes: int) -> int:
    """Compulsory bytes of one call: the blocked input and output and the packed weights, each once."""
    inputs, weights = operand_bytes(shape, lanes)
    return inputs + weights + 4 * blocks(shape.co, lanes) * lanes * shape.ho * shape.wo


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.threads != 1:
        ap.error("the bandwidth probe is single-threaded numpy: --threads 1 only")
    layers = [layer for layer in suite() if layer.shape.kh == layer.shape.kw == 1]
    configs = {layer.name: directconv.default_config(layer.shape, threads=1) for layer in layers}
    built = {
        layer.name: compile_all([configs[layer.name]], layer.shape)[configs[layer.name].compile_key()]
        for layer in layers
    }
    peaks, dram = [], []
    gflops: dict[str, list[float]] = {layer.name: [] for layer in layers}
    with Measurer(min_time=0.1, timeout=120) as measurer:
        for _ in range(args.rounds):
            peaks.append(peak_once(1))
            dram.append(copy_bandwidth(DRAM_BYTES))
            for layer in layers:
                m = measurer.measure(configs[layer.name], layer.shape, built[layer.name].library)
                gflops[layer.name].append(m.gflops if m.ok else float("nan"))
    peak, bw_dram = statistics.median(peaks), statistics.median(dram)
    print(
        f"FMA peak {peak:.1f} GFLOP/s; copy bandwidth {bw_dram / 1e9:.1f} GB/s from memory (read + write, 1 thread, "
        f"medians of {args.rounds} rounds)"
    )
    print(
        f"{'layer':30} {'MB/call':>8} {'FLOP/B':>7} {'mem roof':>9} {'roofline':>9} {'GFLOP/s':>8} {'of roofline':>12}"
    )
    rows = []
    for layer in layers:
        s = layer.shape
        nbytes = traffic(s, configs[layer.name].lanes)
        intensity = s.flops() / nbytes
        roof_mem = intensity * bw_dram / 1e9
        roofline = min(peak, roof_mem)
        got = statistics.median(gflops[layer.name])
        rows.append(
            {
                "layer": layer.name,
                "config": configs[layer.name].to_dict(),
                "bytes": nbytes,
                "flop_per_byte": round(intensity, 2),
                "memory_roof_gflops": round(roof_mem, 1),
                "roofline_gflops": round(roofline, 1),
                "bound": "memory" if roof_mem < peak else "compute",
                "gflops": round(got, 1),
                "fraction_of_roofline": round(got / roofline, 3),
            }
        )
        print(
            f"{layer.name:30} {nbytes / 1e6:8.2f} {intensity:7.1f} {roof_mem:9.1f} {roofline:9.1f} {got:8.1f} "
            f"{got / roofline:12.0%}"
        )
    if args.json:
        write_json(
            args.json,
            {
                "provenance": provenance(),
                "threads": 1,
                "rounds": args.rounds,
                "fma_peak_gflops": round(peak, 1),
                "copy_bandwidth_memory_gbs": round(bw_dram / 1e9, 2),
                "layers": rows,
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
