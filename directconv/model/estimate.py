"""Cycle estimates for a kernel configuration on a machine: enough to rank configurations, not to promise times.

The unit of work is a *step*: one input channel x one filter tap for one register tile, i.e. cob/n_vec * wob FMAs.
A step costs the largest of three bounds (the paper's eq. 1 is the second one):
  throughput  vectors * wob / N_fma               cycles the FMA pipes need,
  latency     L_fma                               each accumulator depends on its previous FMA,
  loads       (vectors + wob) / N_load            weight vectors plus broadcast inputs.
Edge tiles (the last partial column tile, the last partial channel block) are costed at their own size: a
two-column tile still pays the full latency bound, which is why the fit of W_o,b to W_o matters.
"""

from __future__ import annotations

from directconv.machines.machine import Machine

from directconv.core.shape import ConvShape

# Vector loads per cycle where a description does not say (two load ports: every x86 core since Sandy Bridge,
# Neoverse N1, Cortex-A57 has one 128-bit load per cycle and says so in its file).
DEFAULT_LOADS_PER_CYCLE = 2.0


# Bytes per cycle the L2 delivers to L1 where a description does not say: 32 on AMD Zen and Arm Neoverse cores,
# 64 on Intel cores since Skylake (vendor optimization guides); the smaller is the safe assumption.
DEFAULT_L2_BYTES_PER_CYCLE = 32.0


def registers_needed(vectors: int, width: int, spare: int = 1) -> int:
    """Accumulators + one register per weight vector + one broadcast input (+ `spare`, see spare_registers)."""
    return vectors * width + vectors + 1 + spare


def spare_registers(shape: ConvShape) -> int:
    """Registers to leave unnamed for GCC. A layer with a filter runs one short loop per tap and keeps even a tile
    that names every register (AVX2: 12 accumulators + 3 weights + 1 broadcast) free of spills; a 1x1 layer's
    single long loop does not (GCC 12 put an accumulator on the stack: 2-4 spill lines per hot loop). Checked in
    the assembly for 3x3, 5x5, 7x7 and 1x1 layers, unroll 1-4 (tests/test_isas.py keeps checking chosen tiles)."""
    return 1 if shape.kh * shape.kw == 1 else 0


# The latency bound, stretched where loops are short: a layer with a filter runs one channel loop per tap, N_vec
# iterations long, and the first multiply-adds of each loop wait on the last ones of the loop before, so tiles with
# exactly N_fma * L_fma accumulators run at about 80%. Measured on Zen 3 (benchmarks/results/model-sweep-zen3.json):
# 2x5 and 2x6 tiles beat 4x2 and 2x4 ones on 3x3 layers. A 1x1 layer runs one loop over all its input channels,
# and out-of-order issue hides the latency: there a 2x4 tile matched or beat 2x6 (res2_1x1_64to256, final rounds of
# benchmarks/results/model-sweep-zen3-2026-11-30c.json).
LATENCY_SLACK = 1.25
LATENCY_SLACK_LONG_LOOP = 1.0


def step_cycles(machine: Machine, vectors: int, width: int, weights_from_l2: bool = False,
                long_loop: bool = False) -> float:
    loads = machine.n_load or DEFAULT_LOADS_PER_CYCLE
    slack = LATENCY_SLACK_LONG_LOOP if long_loop else LATENCY_SLACK
    # The generated code pins each weight vector in a register (one load per step, reused across the tile's width).
    bounds = [vectors * width / machine.n_fma, machine.l_fma * slack, (vectors + width) / loads]
    if weights_from_l2:
        # Weight blocks too large for L1 stream from L2 at every step: bandwidth, not FMAs, sets the pace.
        bounds.append(vectors * machine.n_vec * 4 / DEFAULT_L2_BYTES_PER_CYCLE)
    return max(bounds)


def row_cycles(machine: Machine, shape: ConvShape, vectors: int, width: int, weights_from_l2: bool = False) -> float:
    """Cycles of one step summed over every tile of one output row, all output-channel blocks."""
    blocks_out = -(-shape.co // machine.n_vec)
    full_j, tail_v = divmod(blocks_out, vectors)
    full_t, tail_w = divmod(shape.wo, width)

    long_loop = shape.kh * shape.kw == 1

    def one_block(v: int) -> float:
        full = step_cycles(machine, v, width, weights_from_l2, long_loop)
        return full_t * full + (step_cycles(machine, v, tail_w, weights_from_l2, long_loop) if tail_w else 0.0)

    return full_j * one_block(vectors) + (one_block(tail_v) if tail_v else 0.0)


def taps_executed(shape: ConvShape) -> int:
    """Filter rows actually run over all output rows (rows in the top/bottom padding are skipped)."""
    total = 0
    for oh in range(shape.ho):
        ih0 = oh * shape.sh - shape.pt
        total += max(0, min(shape.kh, shape.h - ih0) - max(0, -ih0))
    return max(1, total) * shape.kw  # at least one: an all-padding layer still costs its loop overhead


def tile_efficiency(machine: Machine, vectors: int, width: int, long_loop: bool = False) -> float:
    """Fraction of FMA peak a full tile reaches by this estimate (long_loop: in a 1x1 layer, see LATENCY_SLACK)."""
    return (vectors * width / machine.n_fma) / step_cycles(machine, vectors, width, long_loop=long_loop)


def layer_seconds(machine: Machine, shape: ConvShape, vectors: int, width: int, threads: int, parallel_balance: float,
                  weights_from_l2: bool = False) -> float:
    """Estimated run time of the layer (batch 1): compute cycles / clock, divided over threads with their balance."""
    cycles = row_cycles(machine, shape, vectors, width, weights_from_l2) * shape.ci * taps_executed(shape)
    return cycles / (machine.freq_ghz * 1e9) / (threads * parallel_balance)


def predicted_gflops(machine: Machine, shape: ConvShape, vectors: int, width: int, threads: int = 1,
                     balance: float = 1.0, weights_from_l2: bool = False) -> float:
    return shape.flops() / layer_seconds(machine, shape, vectors, width, threads, balance, weights_from_l2) / 1e9
