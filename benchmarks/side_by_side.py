"""Two or more kernel configurations of one layer, C-timed side by side: what store_ab.py and prediction_vs_tuned.py
share. Imported by the scripts beside it (`python benchmarks/<script>.py` puts this folder on the import path)."""

from __future__ import annotations

import statistics

from directconv.core.config import KernelConfig
from directconv.core.shape import ConvShape
from directconv.tuner.compile import compile_all
from directconv.tuner.measure import Measurer


def gflops_per_round(
    measurer: Measurer, configs: dict[str, KernelConfig], shape: ConvShape, rounds: int
) -> dict[str, list[float]]:
    """Each named configuration's GFLOP/s in every round, timed by the tuner's workers in rotating order (NaN where
    a round lost one)."""
    built = compile_all(list(configs.values()), shape)
    per_round = measurer.rounds(list(configs.values()), shape, built, rounds)
    return {name: [r.get(c, float("nan")) for r in per_round] for name, c in configs.items()}


def median_ratio(a: list[float], b: list[float]) -> float:
    """The median over rounds of a / b, round by round."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def compare(
    measurer: Measurer, name: str, shape: ConvShape, configs: dict[str, KernelConfig], rounds: int, ratio_key: str
) -> dict[str, object]:
    """A result row for layer `name`: two named configurations, the first over the second (`ratio_key`: the median
    over rounds of its GFLOP/s over the other's), each one's median GFLOP/s; 1.0 untimed when they are the same
    configuration. Prints the row."""
    (top, a), (bottom, b) = configs.items()
    row: dict[str, object] = {"layer": name, bottom: b.to_dict(), top: a.to_dict()}
    if a == b:
        print(f"{name:30} same configuration", flush=True)
        return {**row, ratio_key: 1.0, "note": "same configuration"}
    gflops = gflops_per_round(measurer, configs, shape, rounds)
    ratio = median_ratio(gflops[top], gflops[bottom])
    low, high = statistics.median(gflops[bottom]), statistics.median(gflops[top])
    print(f"{name:30} {bottom} {low:6.1f}  {top} {high:6.1f}  {top}/{bottom} {ratio:.3f}", flush=True)
    return {**row, f"{bottom}_gflops": round(low, 2), f"{top}_gflops": round(high, 2), ratio_key: round(ratio, 3)}
