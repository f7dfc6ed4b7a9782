"""The memory bandwidth of this machine for one layer's least traffic, measured: the 100% of the bandwidth roofline.

A depthwise layer does a few multiply-adds per byte it moves, so its speed limit is the memory system, not the
FMA peak. Its least traffic is its float32 input and weights read once and its output written once (batch 1, no
bias): `minimal_traffic`. How the roofline is measured:

- the loop is kernels/stream.py's: on T threads (the thread count of the implementations it is set beside) it
  reads a buffer of exactly the layer's input + weights bytes and writes a buffer of exactly its output bytes,
  once per call, with plain vector loads and stores;
- its buffers are allocated once and reused by every call, as the implementations reuse theirs: a layer whose
  tensors fit in a cache is held to that cache's bandwidth, a larger one to DRAM's. The Python call into C (about
  a microsecond) is part of every pass, as it is part of every implementation's call;
- the bench times it as one more callable of the same interleaved rounds as the implementations
  (tuner/harness.interleave: warm-up, a batch size that lasts min_time, one batch of each per round in rotating
  order), so that round r's bandwidth, moved bytes / seconds per pass in round r, saw the same machine state as
  round r of every implementation;
- an implementation's percent of the roofline in round r is (minimal bytes / its seconds per call in round r) /
  round r's bandwidth, 100% meaning it ran as fast as merely moving its data; the bench reports the median over
  rounds. Since the loop moves exactly the minimal bytes, that is the loop's time over the implementation's.

`bandwidth_once` measures the same loop on its own (the fastest of short batches, as the FMA peak is taken), for
tests and a quick look. `measure_levels` runs it over buffers sized for each cache level past L1 and for memory,
for `directconv probe`, which writes the rates into the machine description (the model's transfers use them).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from directconv.core import checks
from directconv.core.isa import host_isa
from directconv.core.shape import ConvShape
from directconv.kernels import layout, stream
from directconv.tuner import harness

DEFAULT_SECONDS = 0.05
FLOAT_BYTES = 4


@dataclass(frozen=True)
class Traffic:
    """Bytes a computation must read and write at least."""

    read_bytes: int
    write_bytes: int

    @property
    def bytes(self) -> int:
        return self.read_bytes + self.write_bytes


def minimal_traffic(shape: ConvShape, batch: int = 1) -> Traffic:
    """The least a convolution of `shape` must move: input and (C_o, C_i/groups, kh, kw) weights read once, output
    written once, float32, no bias."""
    checks.integer("batch", batch, 1)
    s = shape
    read = batch * s.ci * s.h * s.w + s.co * s.cig * s.kh * s.kw
    return Traffic(FLOAT_BYTES * read, FLOAT_BYTES * batch * s.co * s.ho * s.wo)


@dataclass(frozen=True)
class StreamLoop:
    """The bandwidth loop bound to its own buffers: `call()` runs one pass, moving `traffic` on `threads` threads."""

    call: Callable[[], None]
    traffic: Traffic
    threads: int
    isa: str
    seconds_in_c: Callable[[int], float]  # seconds per pass of that many passes, timed in C (no Python call each)


def stream_loop(traffic: Traffic, threads: int, *, isa: str | None = None) -> StreamLoop:
    """The loop over fresh buffers of traffic.read_bytes (read) and traffic.write_bytes (written), rounded up to
    whole floats (compiles the loop on first use)."""
    checks.threads(threads)
    checks.integer("read_bytes", traffic.read_bytes, 0)
    checks.integer("write_bytes", traffic.write_bytes, 0)
    isa_name = isa or host_isa()
    kernels = stream.load(isa_name)
    # zero=True writes every page now, so that no call pays for the first touch.
    src = layout.empty_aligned((-(-traffic.read_bytes // FLOAT_BYTES),), zero=True)
    dst = layout.empty_aligned((-(-traffic.write_bytes // FLOAT_BYTES),), zero=True)
    call, seconds_in_c = kernels.bind_timed(src, dst, threads)
    return StreamLoop(call, traffic, threads, isa_name, seconds_in_c)


def layer_stream(shape: ConvShape, threads: int, *, isa: str | None = None) -> StreamLoop:
    """The loop that moves the minimal traffic of `shape` (see the module docstring)."""
    return stream_loop(minimal_traffic(shape), threads, isa=isa)


def bandwidth_once(loop: StreamLoop, seconds: float = DEFAULT_SECONDS) -> float:
    """GB/s (1e9 bytes per second) of `loop`: its bytes over the seconds per pass of the fastest batch of passes
    within about `seconds` (under load from other processes the fastest short batch is the machine's)."""
    best = fastest_pass(loop, seconds)
    result = loop.traffic.bytes / best * 1e-9
    if not result > 0:
        raise RuntimeError(f"bandwidth loop moved {loop.traffic} in {best} s per pass: expected a positive rate")
    return result


def fastest_pass(loop: StreamLoop, seconds: float = DEFAULT_SECONDS) -> float:
    """Seconds per pass of `loop` in the fastest batch of passes within about `seconds`."""
    checks.positive("seconds", seconds)
    per_call = harness.warm_up(loop.call, seconds / 10, 2)
    calls = harness.calls_per_batch(per_call, seconds / 5)
    started = time.perf_counter()
    best = float("inf")
    while time.perf_counter() - started < seconds or best == float("inf"):
        best = min(best, harness.time_batch(loop.call, calls))
    return best


# How much of a level the probe's loop fills: half of a private one, a quarter of a shared one (other cores, and in
# a virtual machine other guests, use it too: docs/design.md, "In-core time plus transfers"), and for memory four
# times all the caches of the threads, so that none holds it.
PRIVATE_FILL = 0.5
SHARED_FILL = 0.25
MEMORY_BYTES_MAX = 1 << 29  # the memory loop's pass at most (a many-core socket's caches add up to hundreds of MiB)
MEMORY_OVER_LAST_CACHE = 4


@dataclass(frozen=True)
class LevelProbe:
    """The copy loop's bandwidth from one level of the memory hierarchy, measured on one or more thread counts."""

    level: str  # "L2", "L3", "memory"
    total_bytes: int  # read + written per pass, all threads together (on the most threads measured)
    gbytes_per_s: dict[int, float]  # threads -> GB/s of all of them


def level_sizes(caches: Sequence[tuple[int, int, int]], threads: int) -> list[tuple[str, int]]:
    """(level, bytes per pass) of the loops that probe each level past L1 on `threads` threads: `caches` holds
    (level, size in bytes, cores sharing one) per level. A private level holds each thread's share of the pass;
    a shared one the whole pass, and only where that exceeds every lower level of all the threads; memory takes
    MEMORY_OVER_LAST_CACHE times all the caches (at most MEMORY_BYTES_MAX, at least twice them)."""
    sizes: list[tuple[str, int]] = []
    below = 0  # bytes the lower levels of all the threads hold
    for level, size, shared_by in sorted(caches):
        instances = -(-threads // shared_by)  # private: one per thread; shared: the instances the threads span
        total = int(size * instances * (PRIVATE_FILL if shared_by == 1 else SHARED_FILL))
        if level >= 2 and total > below:
            sizes.append((f"L{level}", total))
        below = max(below, size * instances)
    sizes.append(("memory", max(min(MEMORY_OVER_LAST_CACHE * below, MEMORY_BYTES_MAX), 2 * below, 1 << 22)))
    return sizes


def measure_levels(
    caches: Sequence[tuple[int, int, int]],
    threads: Sequence[int],
    *,
    isa: str | None = None,
    seconds: float = DEFAULT_SECONDS,
) -> list[LevelProbe]:
    """The copy loop's bandwidth from each level past L1 on each thread count (level_sizes of that count; a level
    the lower ones outgrow on some count is left out there), the fastest of short batches over about `seconds` per
    level and thread count, as bandwidth_once takes it. Runs nothing else meanwhile: it times the machine."""
    counts = sorted(set(threads))
    if not counts:
        raise ValueError("threads must name at least one thread count, got none")
    # A pass of an L2-sized loop lasts a few microseconds, of which the call itself is one or two: the time of a
    # pass over one vector on as many threads is taken off each pass.
    empty = {t: fastest_pass(stream_loop(Traffic(64, 64), t, isa=isa), seconds) for t in counts}
    rates: dict[str, dict[int, float]] = {}
    sizes: dict[str, int] = {}
    for t in counts:
        for level, total in level_sizes(caches, t):
            half = -(-total // 2)
            per_pass = fastest_pass(stream_loop(Traffic(half, half), t, isa=isa), seconds) - empty[t]
            if not per_pass > 0:
                raise RuntimeError(f"a pass over {2 * half} bytes took no longer than an empty one on {t} threads")
            rates.setdefault(level, {})[t] = 2 * half / per_pass * 1e-9
            sizes[level] = 2 * half
    return [LevelProbe(level, sizes[level], by_threads) for level, by_threads in rates.items()]
