"""The memory side of a layer (a roofline): however fast it computes, a kernel is not done before its bytes moved.

    time >= (input x reads + output + weights) / bandwidth of the level the layer's data lives in

At batch 1 the layer's data, its input, output and weights in the blocked layouts, lives in the first cache level
past L1 that holds all of it for the threads that run it (a private cache counts once per thread, a shared one once
per instance the threads span), else in memory. The bandwidth is the machine's per-core fill path from there, times
the threads: l2_bytes_per_cycle from L2, l3_bytes_per_cycle from L3 and beyond; memory gives at most the socket's
dram_gbytes_per_s, shared by the threads.

The input is read once (the lines its taps touch: a strided 1x1 layer skips rows), unless the cache blocking makes
the kernel read it again: in a co split every output-channel block of a group streams the group's whole input, which
stays in the core's L2 for the next block only if it fits there (then each thread reads it once). Lane-wise kernels
(depthwise, grouped-packed) read each input vector for their own output vectors only. The output is written once,
the weights read once.

The model's estimate of a layer composes the two as the Execution-Cache-Memory model does (Treibig and Hager,
"Introducing a performance model for bandwidth-limited loop kernels", PPAM 2009; Stengel et al., ICS 2015): the
in-core time (its compute: estimate.py, lanes.py, the largest of its overlapping bounds) plus the transfers of this
roofline, which the kernel's loads wait for rather than overlap. The multiply-adds the kernel runs, at the FMA peak of
the threads, floor the sum: the kernels skip the taps in the padding, so a padded layer's nominal FLOP count (which
includes them, as every peer benchmark counts) can run above the peak, never the multiply-adds run
(ConvShape.executed_flops). Measured on the Zen 4 host, the sum is what the lane-wise kernels' C-timed speeds follow
(docs/design.md, "In-core time plus transfers"); for the broadcast kernels the transfers are a few percent of the
compute.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from directconv.core.shape import LANE_KINDS, ConvShape, input_windows, kernel_kind
from directconv.machines.machine import Machine
from directconv.model.estimate import workers
from directconv.model.plan import Reason
from directconv.model.split import operand_bytes, output_blocks


@dataclass(frozen=True)
class Memory:
    """The bytes a layer moves and where they come from."""

    level: str  # "L2", "L3" or "memory"
    gbytes_per_s: float  # for all the threads together
    rate: str  # how gbytes_per_s follows from the machine description
    input_bytes: int
    input_reads: int
    output_bytes: int
    weight_bytes: int

    @property
    def moved(self) -> int:
        return self.input_bytes * self.input_reads + self.output_bytes + self.weight_bytes

    @property
    def seconds(self) -> float:
        return self.moved / (self.gbytes_per_s * 1e9)

    def describe(self) -> str:
        reads = f" x {self.input_reads} reads" if self.input_reads > 1 else ""
        return (
            f"input {size(self.input_bytes)}{reads} + output {size(self.output_bytes)} + weights "
            f"{size(self.weight_bytes)} = {size(self.moved)} from {self.level} at {self.gbytes_per_s:.1f} GB/s "
            f"({self.rate})"
        )


@dataclass(frozen=True)
class Timing:
    """The in-core time, the transfers and the FMA peak; the estimate is in-core time plus transfers, at least the
    peak's time (see the module docstring)."""

    compute: float  # seconds the kernel's instructions take (register tiles, loads, latency, balance)
    memory: Memory
    peak: float  # seconds of the multiply-adds the kernel runs (ConvShape.executed_flops) at the FMA peak
    flops: int  # nominal, padding included
    executed: int  # the FLOPs of the taps inside the input
    call: float = 0.0  # seconds of the call's fixed cost (Machine.call_seconds), on top of the kernel's time

    @property
    def kernel_seconds(self) -> float:
        return max(self.compute + self.memory.seconds, self.peak)

    @property
    def seconds(self) -> float:
        return self.kernel_seconds + self.call

    @property
    def bound(self) -> str:
        """What the estimate is mostly made of: "memory" where the transfers take longer than the compute, "peak"
        where the peak floors the sum, else "compute"."""
        if self.peak >= self.compute + self.memory.seconds:
            return "peak"
        return "memory" if self.memory.seconds > self.compute else "compute"

    def reason(self) -> Reason:
        mem, intensity = self.memory.seconds, self.flops / self.memory.moved
        traffic = f"{self.memory.describe()}: {mem * 1e6:.1f} us at {intensity:.2f} FLOP/byte"
        compute = f"{self.compute * 1e6:.1f} us of compute"
        total = f"{compute} + {mem * 1e6:.1f} us of transfers = {(self.compute + mem) * 1e6:.1f} us"
        if self.bound == "peak":
            why = (
                f"at the FMA peak: {traffic}; {total}, below the {self.peak * 1e6:.1f} us of its multiply-adds at "
                "the peak"
            )
            if self.executed < self.flops:
                why += (
                    f" (it runs {self.executed / self.flops:.1%} of the nominal FLOPs: the taps in the padding are "
                    "skipped)"
                )
        elif self.bound == "memory":
            why = f"memory-bound: {traffic}, more than the compute: {total}"
        else:
            why = f"compute-bound: {traffic}, {mem / self.compute:.0%} of the compute: {total}"
        if self.call > 0:
            why += f"; plus {self.call * 1e6:.1f} us per call (the probed fixed cost of a call on these threads)"
        return Reason("roofline", self.bound, why)


def size(nbytes: float) -> str:
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes:.0f} B"


def level_of(machine: Machine, nbytes: int, threads: int) -> tuple[str, float, str]:
    """(level, GB/s for the threads, how) of the first level past L1 that holds `nbytes` for `threads`."""
    t, ghz = workers(machine, threads), machine.freq_ghz
    per_thread = f"{ghz:g} GHz x {t} thread{'s' if t > 1 else ''}"
    for cache in machine.caches:
        if cache.level < 2 or nbytes > cache.size_bytes * math.ceil(t / cache.shared_by_cores):
            continue
        rate = machine.l2_bytes_per_cycle if cache.level == 2 else machine.l3_bytes_per_cycle
        return f"L{cache.level}", rate * ghz * t, f"{rate:g} B/cycle x {per_thread}"
    path = machine.l3_bytes_per_cycle * ghz * t
    if machine.dram_gbytes_per_s <= path:
        return "memory", machine.dram_gbytes_per_s, f"the socket's {machine.dram_gbytes_per_s:g} GB/s"
    return "memory", path, f"{machine.l3_bytes_per_cycle:g} B/cycle past L2 x {per_thread}"


def input_reads(shape: ConvShape, machine: Machine, cob: int, parallel: str, threads: int) -> int:
    """How often the kernel reads the input from where it lives (see the module docstring)."""
    if parallel == "rows" or kernel_kind(shape, machine.n_vec) in LANE_KINDS:
        return 1
    blocks = output_blocks(shape, machine, cob) // shape.groups  # output-channel blocks per group
    group_input = operand_bytes(shape, machine.n_vec)[0] // shape.groups
    if kernel_kind(shape, machine.n_vec) == "grouped-window":  # each block reads its window: a share of the input
        windows = input_windows(shape, machine.n_vec, cob // machine.n_vec)
        blocks = max(1, round(sum(end - first for first, end in windows) / -(-shape.ci // machine.n_vec)))
        group_input = operand_bytes(shape, machine.n_vec)[0]
    l2 = machine.cache(2)
    if l2 is not None and group_input <= l2.size_bytes // l2.shared_by_cores:
        return min(blocks, workers(machine, threads))  # one read per thread, then its L2 holds it
    return blocks


@functools.cache
def input_bytes_read(shape: ConvShape, lanes: int, line_bytes: int) -> int:
    """Bytes of whole lines of the blocked input that the taps read: a strided 1x1 layer skips rows, and columns
    where a pixel (N_vec floats) fills a line or more."""
    rows = {oh * shape.sh - shape.pt + n * shape.dh for oh in range(shape.ho) for n in range(shape.kh)}
    cols = {ow * shape.sw - shape.pl + m * shape.dw for ow in range(shape.wo) for m in range(shape.kw)}
    pixel = lanes * 4
    inside = [c for c in cols if 0 <= c < shape.w]
    lines = len({c * pixel // line_bytes for c in inside}) * line_bytes if pixel < line_bytes else len(inside) * pixel
    blocks = -(-shape.ci // lanes)
    return blocks * sum(1 for r in rows if 0 <= r < shape.h) * min(lines, shape.w * pixel)


def layer_memory(shape: ConvShape, machine: Machine, threads: int, reads: int = 1) -> Memory:
    lanes = machine.n_vec
    weights = operand_bytes(shape, lanes)[1]
    inputs = input_bytes_read(shape, lanes, machine.caches[0].line_bytes)
    outputs = -(-shape.co // lanes) * lanes * shape.ho * shape.wo * 4
    level, gbytes, rate = level_of(machine, inputs + outputs + weights, threads)
    return Memory(level, gbytes, rate, inputs, reads, outputs, weights)


def timing(shape: ConvShape, machine: Machine, threads: int, compute_seconds: float, reads: int = 1) -> Timing:
    executed = shape.executed_flops()
    peak = executed / (machine.peak(threads) * 1e9)
    memory = layer_memory(shape, machine, threads, reads)
    return Timing(compute_seconds, memory, peak, shape.flops(), executed, machine.call_seconds(threads))
