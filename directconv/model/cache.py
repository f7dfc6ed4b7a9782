"""Cache blocking: the input-channel block C_i,b, from the size, associativity and line size of L1 and L2.

The kernel's loop nest (kernels/codegen.py), for one output-channel block j:

    for each block of C_i,b input channels:            <- the cache block
        for each output row:
            for each register tile of the row:         <- accumulators stay in registers
                for each filter row, tap and channel of the block: one step of FMAs

The weights of (j, block), C_o,b x C_i,b x kh x kw floats, are read again by every tile of every row: they are
the operand to keep close, BLIS's B panel. What one tile reads of the input, C_i,b channels x kh rows x
((W_o,b - 1) * stride + the filter's extent) columns (one run per tap where dilation spaces the taps further apart
than that), is used by that tile and streams past: BLIS's A micro-panel.

In a set-associative cache, a stream evicts the least recently used line of each set it touches. Following the
BLIS analytical model (Low, Igual, Smith, Quintana-Orti, "Analytical modeling is enough for high-performance
BLIS", ACM TOMS 43(2), 2016), each operand is given whole ways: an operand of B bytes spread evenly over the sets
takes ceil(B / way) ways, where a way holds size / ways bytes (sets x line). The weight block stays resident
while the streaming input has ways of its own:

    ways(weight block) + ways(input of one tile) <= L1 ways - 1

the last way left to the output tile's loads and stores and the stack. Lines are whole: a tile reads, per channel
block and filter row, one contiguous run of columns x N_vec floats that starts anywhere in a line, so it touches
ceil(run / line) + 1 lines.

When not even two vectors of channels fit L1 that way, the weight block is read from L2 at every step, and L2
must hold it beside the input rows the next output rows read again (the window of C_i,b channels over the filter's
(kh - 1) * d_h + 1 rows):

    ways(weight block) + ways(input window) <= L2 ways - 1

C_i,b is also bounded by the input streams a tile reads at once (C_i,b / N_vec channel planes x kh rows): past
what the hardware prefetchers track (the machine's prefetch_streams, of which the planes get half), every plane
misses.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from directconv.core.shape import ConvShape
from directconv.machines.machine import Cache, Machine

# Ways of each cache left to what neither operand accounts for (the output tile, the stack, the other operand's
# prefetched lines).
RESERVED_WAYS = 1


@dataclass(frozen=True)
class CacheFit:
    """The largest C_i,b (a multiple of N_vec) whose operands fit the ways of one cache level, and how."""

    level: int
    channels: int  # largest channel count that fits (multiple of N_vec, at least N_vec)
    weight_ways: int  # ways the weight block of `channels` takes
    other_ways: int  # ways the input operand of `channels` takes
    ways: int  # ways of the cache

    def describe(self, cache: Cache) -> str:
        return (
            f"L{self.level} {cache.size_kib:g} KiB = {cache.ways} ways of {cache.size_bytes / cache.ways / 1024:g} "
            f"KiB; at most {self.channels} channels fit: weights {self.weight_ways} + input {self.other_ways} "
            f"<= {self.ways} - {RESERVED_WAYS} ways"
        )


def input_streams(machine: Machine) -> int:
    """Prefetch streams a tile's input channel planes may take: half of those the core's prefetchers follow, leaving
    the rest to weights, output and the other hardware thread."""
    return machine.prefetch_streams // 2


def _ways(nbytes: float, cache: Cache) -> int:
    return max(1, math.ceil(nbytes / (cache.size_bytes / cache.ways)))


def _lines(run_bytes: int, cache: Cache) -> int:
    """Lines touched by a contiguous run that may start anywhere in a line."""
    return -(-run_bytes // cache.line_bytes) + 1


def weight_bytes_per_channel(shape: ConvShape, cob: int) -> int:
    return cob * shape.kh * shape.kw * 4


def tile_column_runs(shape: ConvShape, wob: int) -> tuple[int, ...]:
    """Contiguous runs of input columns one register tile reads per filter row: one run of (W_o,b - 1) * s_w plus
    the filter's extent, or, where dilation spaces the taps further apart than a tap's columns reach, one run per
    tap."""
    per_tap = (wob - 1) * shape.sw + 1
    if shape.dw <= per_tap:
        return (per_tap + (shape.kw - 1) * shape.dw,)
    return (per_tap,) * shape.kw


def tile_input_bytes_per_block(shape: ConvShape, lanes: int, wob: int, cache: Cache) -> int:
    """Bytes of whole lines one register tile reads from one block of N_vec input channels."""
    lines = sum(_lines(run * lanes * 4, cache) for run in tile_column_runs(shape, wob))
    return shape.kh * lines * cache.line_bytes


def window_bytes_per_block(shape: ConvShape, lanes: int, cache: Cache) -> int:
    """Bytes of whole lines of the input rows that consecutive output rows share, for N_vec channels: the filter's
    extent, (kh - 1) * d_h + 1 rows (the rows between dilated taps are the next output rows' taps)."""
    return shape.ekh * _lines(shape.w * lanes * 4, cache) * cache.line_bytes


def _largest_fit(
    machine: Machine, shape: ConvShape, cob: int, level: int, other_per_block: Callable[[Cache], int]
) -> CacheFit | None:
    """Walk C_i,b up in blocks of N_vec channels while the weight block and the other operand (bytes per block of
    N_vec channels, given the cache) fit the ways of cache `level`; None when the description has no such cache."""
    cache = machine.cache(level)
    if cache is None:
        return None
    lanes = machine.n_vec
    ci_padded = -(-shape.ci // lanes) * lanes
    weight, other = weight_bytes_per_channel(shape, cob) * lanes, other_per_block(cache)
    best = CacheFit(level, lanes, _ways(weight, cache), _ways(other, cache), cache.ways)
    blocks = 2
    while blocks * lanes <= ci_padded:
        w, o = _ways(blocks * weight, cache), _ways(blocks * other, cache)
        if w + o > cache.ways - RESERVED_WAYS:
            break
        best = CacheFit(level, blocks * lanes, w, o, cache.ways)
        blocks += 1
    return best


def l1_fit(machine: Machine, shape: ConvShape, cob: int, wob: int) -> CacheFit | None:
    """The weight block kept in L1 beside one tile's streaming input."""
    return _largest_fit(machine, shape, cob, 1, lambda c: tile_input_bytes_per_block(shape, machine.n_vec, wob, c))


def l2_fit(machine: Machine, shape: ConvShape, cob: int) -> CacheFit | None:
    """The weight block kept in L2 beside the input rows the next output rows reuse."""
    return _largest_fit(machine, shape, cob, 2, lambda c: window_bytes_per_block(shape, machine.n_vec, c))


def weights_level(machine: Machine, shape: ConvShape, cob: int, wob: int) -> int:
    """The cache level that holds the weight block of a C_o,b x W_o,b tile: 1 when a C_i,b of at least two vectors
    of channels (or all of them) fits L1's ways beside the tile's input, else 2."""
    fit = l1_fit(machine, shape, cob, wob)
    if fit is None:
        return 1
    ci_padded = -(-shape.ci // machine.n_vec) * machine.n_vec
    fits_l1 = fit.weight_ways + fit.other_ways <= fit.ways - RESERVED_WAYS
    return 1 if fits_l1 and fit.channels >= min(2 * machine.n_vec, ci_padded) else 2


def choose_cib(machine: Machine, shape: ConvShape, cob: int, wob: int) -> tuple[int | None, str]:
    """C_i,b for a C_o,b x W_o,b tile (None: all input channels in one block), with the reason."""
    lanes = machine.n_vec
    ci_padded = -(-shape.ci // lanes) * lanes
    level = weights_level(machine, shape, cob, wob)
    fit = l1_fit(machine, shape, cob, wob) if level == 1 else l2_fit(machine, shape, cob)
    by_cache = fit.channels if fit is not None else ci_padded
    streams = input_streams(machine)
    by_streams = max(lanes, (streams * lanes // shape.kh) // lanes * lanes)
    cib = min(by_cache, by_streams)
    # Round down to the ladder N_vec * 2^k that the search space uses, so the prediction is one of its points.
    cib = lanes * 2 ** int(math.log2(cib // lanes))
    cache = machine.cache(level)
    where = fit.describe(cache) if fit is not None and cache is not None else f"no L{level} described"
    taps = shape.kh * shape.kw
    if cib >= ci_padded:
        return None, (
            f"all {shape.ci} input channels in one block: weights {cob}x{shape.ci}x{shape.kh}x{shape.kw}x4 B = "
            f"{cob * shape.ci * taps * 4 / 1024:.1f} KiB kept in L{level} ({where}); {ci_padded // lanes} planes "
            f"x {shape.kh} rows <= {streams} prefetch streams"
        )
    bound = "prefetch streams" if by_streams < by_cache else f"L{level} ways"
    return cib, (
        f"bound by {bound}: weights per block {cob}x{cib}x{shape.kh}x{shape.kw}x4 B = "
        f"{cob * cib * taps * 4 / 1024:.1f} KiB, kept in L{level} ({where}); input streams {cib // lanes} planes "
        f"x {shape.kh} rows (limit {streams})"
    )
