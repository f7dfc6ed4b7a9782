"""README's ONNX table from several runs of `directconv bench --onnx ... --threads 1,2 --json`.

Per model and thread count: directconv's and onnxruntime's time (the median over the runs of each run's median ms),
the speedup onnxruntime / directconv (each run's median of per-round ratios, and their mean) and the memory ratio
(onnxruntime / directconv peak memory above the baseline, its range over the runs); then the geomean of the mean
speedups, the lowest speedup of any run and the largest output error.

Usage: python benchmarks/onnx_table.py RUN.json [RUN.json ...]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

from provenance import read_json

NAMES = {
    "bvlc_alexnet": "AlexNet",
    "densenet121": "DenseNet-121",
    "inception_v1": "Inception v1 (GoogLeNet)",
    "inception_v2": "Inception v2",
    "resnet50": "ResNet-50",
    "shufflenet": "ShuffleNet",
    "squeezenet": "SqueezeNet",
    "vgg19": "VGG-19",
    "zfnet512": "ZFNet-512",
    "mobilenetv2": "MobileNetV2",
    "resnext50": "ResNeXt-50 32x4d",
}


def _range(values: list[float]) -> str:
    low, high = min(values), max(values)
    return f"{low:.2f}x" if f"{low:.2f}" == f"{high:.2f}" else f"{low:.2f}-{high:.2f}x"


def table(runs: list[dict]) -> str:
    by_key: dict[tuple[str, int], list[dict]] = {}
    for run in runs:
        for m in run["models"]:
            by_key.setdefault((m["model"], m["threads"]), []).append(m)
    threads = sorted({t for _, t in by_key})
    header = "| model | " + " | ".join(
        f"{t} thread{'s' if t > 1 else ''}: directconv / onnxruntime ms | speedup (each run)" for t in threads
    )
    lines = [header + " | memory, onnxruntime / directconv |", "|---" * (2 * len(threads) + 2) + "|"]
    means: dict[int, list[float]] = {t: [] for t in threads}
    lowest, worst_error = math.inf, 0.0
    for model in dict.fromkeys(m for m, _ in by_key):
        cells, memory = [], []
        for t in threads:
            entries = by_key.get((model, t), [])
            speedups = [e["speedup"] for e in entries if e.get("speedup")]
            if not speedups:
                cells += ["-", "-"]
                continue
            ours = statistics.median(e["median_ms"]["directconv"] for e in entries)
            peer = statistics.median(e["median_ms"]["onnxruntime"] for e in entries)
            mean = statistics.fmean(speedups)
            means[t].append(mean)
            lowest = min(lowest, *speedups)
            worst_error = max(worst_error, *(e["max_rel_error"] or 0.0 for e in entries))
            memory += [e["memory_ratio"] for e in entries if e.get("memory_ratio")]
            cells += [f"{ours:.1f} / {peer:.1f}", f"{mean:.2f}x ({', '.join(f'{s:.2f}' for s in speedups)})"]
        memory_cell = _range(memory) if memory else "-"
        lines.append(f"| {NAMES.get(model, model)} | " + " | ".join(cells) + f" | {memory_cell} |")
    geomeans = [math.exp(statistics.fmean(math.log(s) for s in means[t])) for t in threads]
    lines.append("| geomean | " + " | ".join(f" | {g:.2f}x" for g in geomeans) + " | |")
    lines.append("")
    lines.append(f"lowest speedup of any model in any run: {lowest:.2f}x; largest max rel err: {worst_error:.1e}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    args = ap.parse_args()
    print(table([read_json(p) for p in args.runs]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
