"""The lane-wise kernels (depthwise and grouped-packed): their register tiles and cycles.

When a group has fewer input channels than a vector has lanes (one, in a depthwise layer), an output vector spans
several groups and each lane needs its own input channels: nothing is broadcast and nothing is reduced over channel
blocks. For each register tile of W_o,b columns x V = C_o,b / N_vec output vectors and each filter row, the kernel
(kernels/codegen_lanes.py, core.shape.kernel_kind) loads every input pixel the tile reads once per output vector,
shuffles it once per input channel of a group so that lane l holds its group's channel (no shuffle where the loaded
vector already does: depthwise with one output per group), and issues one FMA per accumulator, tap and channel of
the group. A tile costs, per filter row, the largest of

  FMAs      V * W_o,b * kw * C_i,g / N_fma
  latency   kw * C_i,g * L_fma * latency_slack        each accumulator's chain through the row (paper eq. 1:
                                                      V * W_o,b >= N_fma * L_fma accumulators hide it)
  loads     V * P * (input vectors per pixel) / N_load, plus the weights not kept in registers (below)
  shuffles  V * P * (shuffles per pixel) / N_shuffle

where P counts the distinct input pixels the tile's columns and taps touch in a row (W_o,b + kw - 1 at stride and
dilation 1: a pixel is loaded once and serves every tap that reads it), plus the tile's stores and bias loads. The
kh * kw * C_i,g * V weight vectors are the same for every tile of a row. Where they fit beside the accumulators and
the input vectors they stay in registers (loaded once per output row); else where one filter row's kw * C_i,g * V
fit, the compiler keeps that row's weights while the tile runs the filter row (each weight loaded once per tile and
filter row: a 5x5 depthwise tile of 22 columns keeps 5 of its 25 weights); else it still loads each weight once per
tile and filter row but no longer keeps the input vectors: every FMA reads its input from L1 (a memory operand), one
load per FMA. GCC 12's code for 5x5 depthwise tiles of 1x22 and 3x7 vectors does exactly these.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from directconv.core.shape import ConvShape
from directconv.machines.machine import Machine
from directconv.model.estimate import filter_rows, tile_columns, workers
from directconv.model.kinds import MAX_UNPRUNED_VECTORS, MAX_UNPRUNED_WIDTH
from directconv.model.plan import Reason


@dataclass(frozen=True)
class Gathers:
    """What one output vector needs per input pixel, averaged over the layer's output vectors."""

    loads: float  # input vectors loaded
    shuffles: float  # shuffles to bring each lane its group's channel (one per source vector of a gather)

    @property
    def registers(self) -> int:
        """Input registers of a step: the loaded vectors, and one for the shuffled one."""
        return math.ceil(self.loads) + (1 if self.shuffles else 0)


# Which weight vectors a tile keeps in registers: all of them (across the row's tiles), one filter row's (while the
# tile runs that row), or none (one register to load each into, one load per FMA).
Kept = Literal["all", "row", "none"]
KEEP_ORDER: tuple[Kept, ...] = ("all", "row", "none")


@dataclass(frozen=True)
class LaneTile:
    vectors: int
    width: int
    kept: Kept  # the weight vectors the tile keeps in registers
    registers: int  # accumulators + kept weights (or one register to load a weight into) + input registers
    cycles: float  # estimated cycles of the layer on one thread

    @property
    def accumulators(self) -> int:
        return self.vectors * self.width


def gathers(shape: ConvShape, lanes: int) -> Gathers:
    """Input vectors and shuffles per pixel: lane l of output vector b reads, for channel i of its group, input
    channel (o // C_o,g) * C_i,g + i with o = b * N_vec + l (lanes past C_o repeat the last channel)."""
    blocks = -(-shape.co // lanes)
    loads = shuffles = 0
    for b in range(blocks):
        read: set[int] = set()
        for i in range(shape.cig):
            channels = [(min(b * lanes + lane, shape.co - 1) // shape.cog) * shape.cig + i for lane in range(lanes)]
            sources = {c // lanes for c in channels}
            read |= sources
            in_place = len(sources) == 1 and all(c % lanes == lane for lane, c in enumerate(channels))
            shuffles += 0 if in_place else len(sources)
        loads += len(read)
    return Gathers(loads / blocks, shuffles / blocks)


def pixels(shape: ConvShape, width: int) -> int:
    """Distinct input pixels of one input row that a tile of `width` columns reads (columns times taps)."""
    return len({k * shape.sw + m * shape.dw for k in range(width) for m in range(shape.kw)})


def weight_vectors(shape: ConvShape, vectors: int) -> int:
    return shape.kh * shape.kw * shape.cig * vectors


def row_weight_vectors(shape: ConvShape, vectors: int) -> int:
    """The weight vectors of one filter row: what a tile keeps while it runs that row."""
    return shape.kw * shape.cig * vectors


def kept_vectors(shape: ConvShape, vectors: int, kept: Kept) -> int:
    """Registers the tile's weights take: the kept vectors, or one to load each weight into."""
    if kept == "all":
        return weight_vectors(shape, vectors)
    return row_weight_vectors(shape, vectors) if kept == "row" else 1


def registers(shape: ConvShape, g: Gathers, vectors: int, width: int, n_reg: int) -> tuple[int, Kept]:
    """(registers a tile needs, the weights it keeps): all where they fit, else one filter row's (inputs that need
    no shuffle only), else none."""
    base = vectors * width + g.registers
    kept: Kept = "none"
    if base + weight_vectors(shape, vectors) <= n_reg:
        kept = "all"
    # One filter row's: seen in GCC's depthwise code; where inputs are shuffled, such tiles measured slower.
    elif not g.shuffles and base + row_weight_vectors(shape, vectors) <= n_reg:
        kept = "row"
    return base + kept_vectors(shape, vectors, kept), kept


def tile_cycles(
    machine: Machine,
    shape: ConvShape,
    g: Gathers,
    vectors: int,
    width: int,
    kept: Kept,
    rows: int,
    active: tuple[int, ...] | None = None,
) -> float:
    """Cycles of one tile whose output row runs `rows` filter rows (see the module docstring); `active`: of each
    filter column tap, the columns it runs (estimate.tile_columns; all `width` unless given)."""
    fmas = vectors * (width * shape.kw if active is None else sum(active)) * shape.cig * rows
    touched = vectors * pixels(shape, width) * rows
    inputs = touched * g.loads if kept != "none" else max(touched * g.loads, fmas)
    weights = 0 if kept == "all" else row_weight_vectors(shape, vectors) * rows
    memory = inputs + weights + vectors * width + vectors  # + stores and bias
    bounds = [
        fmas / machine.n_fma,
        rows * shape.kw * shape.cig * machine.l_fma * machine.latency_slack,
        memory / machine.n_load,
        touched * g.shuffles / machine.n_shuffle,
    ]
    return max(bounds)


def layer_cycles(machine: Machine, shape: ConvShape, g: Gathers, vectors: int, width: int) -> float:
    """Cycles of the whole layer on one thread: every output row, tile and output-channel block, edge tiles at their
    own size. Weights kept whole cost nothing here: loaded once per output row and tile function, under the FMAs of
    its tiles."""
    rows = Counter(filter_rows(shape, oh) for oh in range(shape.ho))
    full_j, tail_v = divmod(-(-shape.co // machine.n_vec), vectors)

    def block(v: int) -> float:
        total = 0.0
        for w, active, count in tile_columns(shape, width):
            kept = registers(shape, g, v, w, machine.n_reg)[1]
            total += count * sum(n * tile_cycles(machine, shape, g, v, w, kept, r, active) for r, n in rows.items())
        return total

    return full_j * block(vectors) + (block(tail_v) if tail_v else 0.0)


def full_tile_efficiency(machine: Machine, shape: ConvShape, g: Gathers, tile: LaneTile) -> float:
    """Fraction of FMA peak an interior tile (every filter row run) reaches by this estimate."""
    cycles = tile_cycles(machine, shape, g, tile.vectors, tile.width, tile.kept, shape.kh)
    return tile.vectors * tile.width * shape.kh * shape.kw * shape.cig / machine.n_fma / cycles


def lane_tiles(machine: Machine, shape: ConvShape) -> list[LaneTile]:
    """Every tile that fits the registers and the layer, best estimated first; equal estimates go to a width without
    an edge tile (one tile function per row), then to tiles that keep all their weights, then to more accumulators
    and more vectors."""
    g = gathers(shape, machine.n_vec)
    tiles = []
    for vectors in range(1, min(MAX_UNPRUNED_VECTORS, -(-shape.co // machine.n_vec)) + 1):
        for width in range(1, min(MAX_UNPRUNED_WIDTH, shape.wo) + 1):
            need, kept = registers(shape, g, vectors, width, machine.n_reg)
            if need > machine.n_reg:
                break
            cycles = layer_cycles(machine, shape, g, vectors, width)
            tiles.append(LaneTile(vectors, width, kept, need, cycles))
    return sorted(
        tiles,
        key=lambda t: (
            round(t.cycles, 6),
            shape.wo % t.width > 0,
            KEEP_ORDER.index(t.kept),
            -t.accumulators,
            -t.vectors,
        ),
    )


def lane_seconds(machine: Machine, shape: ConvShape, vectors: int, width: int, threads: int, balance: float) -> float:
    """Compute time of the layer with a V x W tile on `threads` threads of the given balance; a tile that does not
    fit the registers spills: the machine's spill_penalty, scaled by the registers it lacks."""
    g = gathers(shape, machine.n_vec)
    cycles = layer_cycles(machine, shape, g, vectors, width)
    need = registers(shape, g, vectors, width, machine.n_reg)[0]
    if need > machine.n_reg:
        cycles *= machine.spill_penalty * need / machine.n_reg
    return cycles / (machine.freq_ghz * 1e9) / (workers(machine, threads) * balance)


@dataclass(frozen=True)
class LaneKernel:
    """The model of the lane-wise kernel for one layer (kernel_view geometry) on one machine."""

    machine: Machine
    view: ConvShape

    def tiles(self) -> list[LaneTile]:
        return lane_tiles(self.machine, self.view)

    def tile_reasons(self, tiles: Sequence[LaneTile]) -> list[Reason]:
        m, s, best = self.machine, self.view, tiles[0]
        g = gathers(s, m.n_vec)
        cob, need = best.vectors * m.n_vec, m.n_fma * m.l_fma
        full_t, tail_w = divmod(s.wo, best.width)
        full_j, tail_v = divmod(-(-s.co // m.n_vec), best.vectors)
        weights, row = weight_vectors(s, best.vectors), row_weight_vectors(s, best.vectors)
        kept = {
            "all": f"{weights} weight vectors (kh*kw*C_i,g*vectors = {s.kh}*{s.kw}*{s.cig}*{best.vectors}, kept in "
            "registers across the row's tiles)",
            "row": f"{row} weight vectors of one filter row (kw*C_i,g*vectors; all {weights} do not fit beside "
            "them: each row's loaded once per tile)",
            "none": f"1 register to load each weight into (not even a filter row's {row} weight vectors fit beside "
            "them: each weight loaded once per tile and filter row, and every FMA reads its input from L1)",
        }[best.kept]
        p = pixels(s, best.width)
        shuffled = f", {best.vectors * p * g.shuffles:g} shuffles" if g.shuffles else ", no shuffle"
        reasons = [
            Reason(
                "cob",
                cob,
                f"{best.vectors} vector(s) of N_vec={m.n_vec} output channels; C_o={s.co} = {full_j} x {cob}"
                + (f" + a tail block of {s.co - full_j * cob}" if tail_v else " exactly"),
            ),
            Reason(
                "wob",
                best.width,
                f"E = {best.vectors}x{best.width} = {best.accumulators} accumulator vectors "
                f"{'>=' if best.accumulators >= need else '<'} N_fma*L_fma = {m.n_fma:g}*{m.l_fma:g} = {need:g} "
                f"(paper eq. 1, over width x channel blocks); registers {best.accumulators} accumulators + {kept} + "
                f"{g.registers} input = {best.registers} <= N_reg={m.n_reg}; per filter row a tile reads {p} input "
                f"pixels: {best.vectors * p * g.loads:g} loads{shuffled}, "
                f"{best.accumulators * s.kw * s.cig} FMAs; W_o={s.wo} = {full_t} tile(s)"
                + (f" + one of {tail_w}" if tail_w else " exactly")
                + f"; best estimate of {len(tiles)} feasible tiles (full-tile efficiency "
                f"{full_tile_efficiency(m, s, g, best):.0%})",
            ),
        ]
        if best.accumulators < need:
            narrow = -(-s.co // m.n_vec) * s.wo < need
            why = (
                "the layer is too narrow for more"
                if narrow
                else f"every tile with more accumulators estimates slower here (edge tiles of W_o={s.wo}, or weight "
                "vectors that no longer fit the registers)"
            )
            reasons.append(Reason("E", best.accumulators, f"below the latency bound {need:g}: {why}"))
        return reasons

    def cache_block(self, vectors: int, width: int) -> tuple[int | None, str]:
        return None, (
            f"no input-channel loop to block: each output vector reads only the {self.view.cig} input channel(s) "
            "of its own groups"
        )

    def cache_blocks_to_try(self, vectors: int, width: int) -> list[int | None]:
        return [None]

    def unroll(self) -> tuple[int, str]:
        return 1, "no input-channel loop to unroll: the generated tile already unrolls every tap"

    @property
    def unrolls_to_try(self) -> tuple[int, ...]:
        return (1,)

    def unpruned(self) -> Iterator[tuple[int, int, int | None, int]]:
        """(vectors, width, C_i,b, unroll) of the unpruned space: every tile, no cache block, no unroll."""
        for vectors in range(1, min(MAX_UNPRUNED_VECTORS, -(-self.view.co // self.machine.n_vec)) + 1):
            for width in range(1, min(MAX_UNPRUNED_WIDTH, self.view.wo) + 1):
                if vectors * width > 2 * self.machine.n_reg:
                    break
                yield vectors, width, None, 1

    def compute_seconds(self, vectors: int, width: int, threads: int, balance: float) -> float:
        return lane_seconds(self.machine, self.view, vectors, width, threads, balance)

    def cuts(self, tiles: Sequence[LaneTile], kept: int, keep_factor: float) -> tuple[str, ...]:
        return (
            f"register tiles: {len(tiles)} fit N_reg={self.machine.n_reg} (accumulators + input registers, with "
            "the weight vectors where they fit, else one filter row's, else one register to load them into); tiles "
            "that spill are cut",
            f"kept {kept} tiles within {keep_factor:.2f}x of the best estimated cycles (edge tiles counted)",
            "C_i,b and unroll: none and 1, the lane-wise kernel has no input-channel loop",
        )
