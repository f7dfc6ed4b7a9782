"""Cycle estimates for a kernel configuration on a machine: enough to rank configurations, not to promise times.

The unit of work is a *step*: one input channel x one filter tap for one register tile, i.e. cob/n_vec * wob FMAs.
A step costs the largest of these bounds (the paper's eq. 1 is the second one):
  throughput  vectors * wob / N_fma               cycles the FMA pipes need,
  latency     L_fma * latency_slack               each accumulator depends on its previous FMA (no slack in 1x1),
  loads       (vectors + wob) / N_load            weight vectors plus broadcast inputs,
  L2          vectors * N_vec * 4 / L2 bytes      only for weight blocks that cannot stay in L1.
Edge tiles (the last partial column tile, the last partial channel block) are costed at their own size: a
two-column tile still pays the full latency bound, which is why the fit of W_o,b to W_o matters. Filter rows that fall
in the top or bottom padding are skipped (d_h apart in a dilated layer), and so are a tile's columns whose tap falls
in the left or right padding (the generated edge tiles leave those multiply-adds out); threads past the core count
add no FMA units. The per-machine numbers (N_load, latency_slack, L2 bytes per cycle) come from the machine
description; the memory roofline and the FMA peak bound these times from below (model/roofline.py).
"""

from __future__ import annotations

import functools
from collections import Counter

from directconv.core.shape import ConvShape, tap_inside, taps_inside
from directconv.machines.machine import Machine


def registers_needed(vectors: int, width: int, spare: int = 1) -> int:
    """Accumulators + one register per weight vector + one broadcast input (+ `spare`, see spare_registers)."""
    return vectors * width + vectors + 1 + spare


def spare_registers(shape: ConvShape) -> int:
    """Registers to leave unnamed for GCC: one in a 1x1 layer, whose single long loop makes GCC spill a tile that
    names every register; layers with a filter run one short loop per tap and keep such tiles in registers."""
    return 1 if shape.kh * shape.kw == 1 else 0


def step_cycles(
    machine: Machine, vectors: int, width: int, weights_from_l2: bool = False, long_loop: bool = False
) -> float:
    # Short per-tap loops stretch the latency bound (the next loop's first FMAs wait on this one's last); a 1x1
    # layer's one long loop lets out-of-order issue hide it.
    slack = 1.0 if long_loop else machine.latency_slack
    # The generated code pins each weight vector in a register (one load per step, reused across the tile's width).
    bounds = [vectors * width / machine.n_fma, machine.l_fma * slack, (vectors + width) / machine.n_load]
    if weights_from_l2:
        # Weight blocks too large for L1 stream from L2 at every step: bandwidth, not FMAs, sets the pace.
        bounds.append(vectors * machine.n_vec * 4 / machine.l2_bytes_per_cycle)
    return max(bounds)


@functools.cache  # asked for every tile the model ranks
def tile_columns(shape: ConvShape, width: int) -> tuple[tuple[int, tuple[int, ...], int], ...]:
    """The tiles of an output row W_o,b = `width` wide, as (the tile's width, of each filter column tap the columns
    it runs, how many such tiles): a tap runs only on the columns whose input column is inside the input (edge tiles
    are compiled without the others)."""
    patterns: Counter[tuple[int, tuple[int, ...]]] = Counter()
    for first in range(0, shape.wo, width):
        cols = range(first, min(first + width, shape.wo))
        active = tuple(sum(tap_inside(shape, "cols", c, m) for c in cols) for m in range(shape.kw))
        patterns[len(cols), active] += 1
    return tuple((w, active, n) for (w, active), n in patterns.items())


def row_cycles(machine: Machine, shape: ConvShape, vectors: int, width: int, weights_from_l2: bool = False) -> float:
    """Cycles of one input channel and filter row (its kw taps) summed over every tile of one output row, all
    output-channel blocks."""
    blocks_out = -(-shape.co // machine.n_vec)
    full_j, tail_v = divmod(blocks_out, vectors)
    long_loop = shape.kh * shape.kw == 1

    def one_block(v: int) -> float:
        return sum(
            n * sum(step_cycles(machine, v, a, weights_from_l2, long_loop) for a in active if a)
            for _, active, n in tile_columns(shape, width)
        )

    return full_j * one_block(vectors) + (one_block(tail_v) if tail_v else 0.0)


def filter_rows(shape: ConvShape, oh: int) -> int:
    """Filter rows output row `oh` runs: taps n with 0 <= oh * s_h - p_t + n * d_h < H (rows in the top or bottom
    padding are skipped, dh apart in a dilated layer)."""
    return taps_inside(shape, "rows")[oh]


def rows_executed(shape: ConvShape) -> int:
    """Filter rows actually run over all output rows (rows in the top/bottom padding are skipped)."""
    return max(1, sum(taps_inside(shape, "rows")))  # an all-padding layer still loops


def workers(machine: Machine, threads: int) -> int:
    """Threads that add FMA units: hardware threads of one core share its pipes."""
    return max(1, min(threads, machine.cores))


def tile_efficiency(machine: Machine, vectors: int, width: int, long_loop: bool = False) -> float:
    """Fraction of FMA peak a full tile reaches by this estimate (long_loop: in a 1x1 layer, see step_cycles)."""
    return (vectors * width / machine.n_fma) / step_cycles(machine, vectors, width, long_loop=long_loop)


def layer_seconds(
    machine: Machine,
    shape: ConvShape,
    vectors: int,
    width: int,
    threads: int,
    parallel_balance: float,
    weights_from_l2: bool = False,
) -> float:
    """Estimated run time of the layer (batch 1): compute cycles / clock, divided over threads with their balance."""
    cycles = row_cycles(machine, shape, vectors, width, weights_from_l2) * shape.ci * rows_executed(shape)
    return cycles / (machine.freq_ghz * 1e9) / (workers(machine, threads) * parallel_balance)
