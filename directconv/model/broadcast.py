"""The broadcast kernel (plain and grouped layers): register tiles, cache blocks and unroll, with their reasons.

Register blocking follows the paper (Zhang et al. 2018, eqs. 1-2) with the register budget the paper leaves out:
  C_o,b = vectors * N_vec                                   (output channels, innermost, one vector each)
  E = vectors * W_o,b accumulator vectors >= N_fma * L_fma   (enough independent FMAs in flight)
  E + vectors (weights) + 1 (broadcast input) <= N_reg        (everything in registers, no spills)
Cache blocking is ours (the paper leaves it as future work), BLIS-style from cache sizes, ways and line size:
see model/cache.py. A grouped layer is planned on one group (model/kinds.py): its blocks stay within the group's
C_o/groups outputs and C_i/groups inputs, and its time is `groups` times one group's. A grouped-window layer is
planned as a plain layer over its mean input window (WindowKernel), each register tile charged for the zeros its
window multiplies.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from functools import cached_property

from directconv.core.isa import ISAS
from directconv.core.shape import ConvShape, mean_window, window_overhead
from directconv.machines.machine import Machine
from directconv.model.cache import choose_cib, weights_level
from directconv.model.estimate import layer_seconds, registers_needed, row_cycles, spare_registers, tile_efficiency
from directconv.model.kinds import MAX_UNPRUNED_VECTORS, MAX_UNPRUNED_WIDTH, group_shape
from directconv.model.plan import Reason

UNROLLS_UNPRUNED = (1, 2, 4, 8)
UNROLLS_PRUNED = (1, 2, 4)
PREDICTED_UNROLL = 2


@dataclass(frozen=True)
class Tile:
    vectors: int
    width: int
    cycles: float  # estimated cycles of one input channel and filter row over one output row, all channel blocks
    weights_from_l2: bool  # no useful C_i,b keeps this tile's weight block in L1

    @property
    def accumulators(self) -> int:
        return self.vectors * self.width


def fits_registers(machine: Machine, vectors: int, width: int, spare: int = 1) -> bool:
    """Accumulators + weight vectors (pinned in registers by the generated code) + one broadcast input (+ spare)
    fit."""
    return registers_needed(vectors, width, spare) <= machine.n_reg


def predicted_unroll(shape: ConvShape, lanes: int) -> int:
    """Unroll of the channel loop: 2, or 1 when the layer has fewer input channels than a vector block (C_i = 3
    first layers), whose short loop GCC would unroll by hoisting all its loads and spilling."""
    return 1 if shape.ci < lanes else PREDICTED_UNROLL


def one_vector_penalty(machine: Machine) -> float:
    """How much slower a tile one vector tall ranks: the machine's one_vector_penalty where every multiply-add needs
    a broadcast instruction of its own (the load bound does not see it), nothing where multiply-adds broadcast."""
    isa = ISAS.get(machine.isa)
    return 1.0 if isa is None or isa.fma_broadcast else machine.one_vector_penalty


def register_tiles(machine: Machine, shape: ConvShape) -> list[Tile]:
    """Every register tile that fits the registers and the layer (one group of it), best estimated first."""
    shape = group_shape(shape)
    blocks_out = -(-shape.co // machine.n_vec)
    spare = spare_registers(shape)
    tiles = []
    for vectors in range(1, min(blocks_out, MAX_UNPRUNED_VECTORS) + 1):  # the unpruned space's tiles only
        if not fits_registers(machine, vectors, 1, spare):
            break
        for width in range(1, shape.wo + 1):
            if not fits_registers(machine, vectors, width, spare):
                break
            from_l2 = weights_level(machine, shape, vectors * machine.n_vec, width) > 1
            tiles.append(Tile(vectors, width, row_cycles(machine, shape, vectors, width, from_l2), from_l2))

    return ranked(machine, tiles)


def ranked(machine: Machine, tiles: Sequence[Tile]) -> list[Tile]:
    """`tiles` best first: estimated cycles, one-vector tiles charged for their broadcasts; among equals one-vector
    tiles last (a broadcast feeds fewer FMAs), then more accumulators (more slack against latency), then more
    vectors."""
    penalty = one_vector_penalty(machine)

    def rank(t: Tile) -> tuple:
        cycles = t.cycles * (penalty if t.vectors == 1 else 1.0)
        return (round(cycles, 6), t.vectors == 1, -t.accumulators, -t.vectors)

    return sorted(tiles, key=rank)


def cib_ladder(shape: ConvShape, lanes: int) -> list[int | None]:
    """C_i,b values of the unpruned space: N_vec * 2^k below the layer's channels, then all channels."""
    ci_padded = -(-shape.ci // lanes) * lanes
    ladder: list[int | None] = []
    c = lanes
    while c < ci_padded:
        ladder.append(c)
        c *= 2
    return ladder + [None]


@dataclass(frozen=True)
class BroadcastKernel:
    """The model of the broadcast kernel for one layer (kernel_view geometry) on one machine."""

    machine: Machine
    view: ConvShape

    @property
    def unit(self) -> ConvShape:
        """What one run of the kernel convolves: the layer, or one group of a grouped layer."""
        return group_shape(self.view)

    def tiles(self) -> list[Tile]:
        return register_tiles(self.machine, self.unit)

    def tile_reasons(self, tiles: Sequence[Tile]) -> list[Reason]:
        m, unit, best = self.machine, self.unit, tiles[0]
        cob, need = best.vectors * m.n_vec, m.n_fma * m.l_fma
        full_t, tail_w = divmod(unit.wo, best.width)
        full_j, tail_v = divmod(-(-unit.co // m.n_vec), best.vectors)
        per_group = f" per group ({self.view.groups} groups)" if unit.co != self.view.co else ""
        spare = spare_registers(unit)
        reasons = [
            Reason(
                "cob",
                cob,
                f"{best.vectors} vector(s) of N_vec={m.n_vec} output channels; C_o={unit.co}{per_group} = "
                f"{full_j} x {cob}" + (f" + a tail block of {unit.co - full_j * cob}" if tail_v else " exactly"),
            ),
            Reason(
                "wob",
                best.width,
                f"E = {best.vectors}x{best.width} = {best.accumulators} accumulator vectors "
                f"{'>=' if best.accumulators >= need else '<'} N_fma*L_fma = {m.n_fma:g}*{m.l_fma:g} = "
                f"{need:g} (paper eq. 1); registers {best.accumulators} + {best.vectors} weights + 1 broadcast"
                + (" + 1 spare (1x1 layer)" if spare else "")
                + f" = {registers_needed(best.vectors, best.width, spare)} <= N_reg={m.n_reg} (eq. 2 with operands); "
                f"W_o={unit.wo} = {full_t} tile(s)"
                + (f" + one of {tail_w}" if tail_w else " exactly")
                + f"; best estimate of {len(tiles)} feasible tiles (full-tile efficiency "
                f"{tile_efficiency(m, best.vectors, best.width, unit.kh * unit.kw == 1):.0%})",
            ),
        ]
        if best.accumulators < need:
            reasons.append(
                Reason("E", best.accumulators, f"below the latency bound {need:g}: the layer is too narrow for more")
            )
        return reasons

    def cache_block(self, vectors: int, width: int) -> tuple[int | None, str]:
        return choose_cib(self.machine, self.unit, vectors * self.machine.n_vec, width)

    def cache_blocks_to_try(self, vectors: int, width: int) -> list[int | None]:
        """The model's C_i,b, half, twice and four times it (all channels where that reaches them)."""
        lanes = self.machine.n_vec
        ci_padded = -(-self.unit.ci // lanes) * lanes
        cib, _ = self.cache_block(vectors, width)
        base = cib or ci_padded
        options = {c if c < ci_padded else None for c in (base // 2, base, base * 2, base * 4) if c >= lanes}
        options.add(cib)
        return sorted(options, key=lambda v: -1 if v is None else v)

    def unroll(self) -> tuple[int, str]:
        unit, lanes = self.unit, self.machine.n_vec
        unroll = predicted_unroll(unit, lanes)
        if unroll == PREDICTED_UNROLL:
            return unroll, (
                "the channel loop body already holds E FMAs; unrolling it twice halves the loop overhead of short "
                "channel loops, while 8 lets GCC hoist loads of later iterations and spill accumulators (measured "
                "on AVX2)"
            )
        return unroll, (
            f"C_i={unit.ci} < N_vec={lanes}: the channel loop runs {unit.ci} times per tap; unrolled, GCC hoists "
            "its loads and spills (measured on AVX2: hundreds of spill lines at unroll 2)"
        )

    @property
    def unrolls_to_try(self) -> tuple[int, ...]:
        return UNROLLS_PRUNED

    def unpruned(self) -> Iterator[tuple[int, int, int | None, int]]:
        """(vectors, width, C_i,b, unroll) of the unpruned space (predict.unpruned_space)."""
        lanes, unit = self.machine.n_vec, self.unit
        for vectors in range(1, min(MAX_UNPRUNED_VECTORS, -(-unit.co // lanes)) + 1):
            for width in range(1, min(MAX_UNPRUNED_WIDTH, unit.wo) + 1):
                if vectors * width > 2 * self.machine.n_reg:
                    break
                for cib in cib_ladder(unit, lanes):
                    for unroll in UNROLLS_UNPRUNED:
                        yield vectors, width, cib, unroll

    def compute_seconds(self, vectors: int, width: int, threads: int, balance: float) -> float:
        """Run time of the layer's instructions, every group; a tile that does not fit the registers spills: the
        machine's spill_penalty, scaled by the registers it lacks."""
        m, unit = self.machine, self.unit
        from_l2 = weights_level(m, unit, vectors * m.n_vec, width) > 1
        seconds = layer_seconds(m, unit, vectors, width, threads, balance, from_l2) * self.view.groups
        need = registers_needed(vectors, width, spare_registers(unit))
        if need > m.n_reg:
            seconds *= m.spill_penalty * need / m.n_reg
        return seconds

    def cuts(self, tiles: Sequence[Tile], kept: int, keep_factor: float) -> tuple[str, ...]:
        m = self.machine
        return (
            f"register tiles: {len(tiles)} fit N_reg={m.n_reg} without spilling (accumulators + weights + "
            f"broadcast); tiles that spill lose at least {m.spill_penalty - 1:.0%} (the machine's spill_penalty) "
            "and are cut",
            f"kept {kept} tiles within {keep_factor:.2f}x of the best estimated cycles (edge tiles counted); "
            "the estimate's error between tiles of similar FMA count is well below 15%",
            "C_i,b: the model's block, half, twice and four times it (all channels where that reaches them) instead "
            "of the whole ladder: the cost is flat from half the cache fit to four times it and steep below it "
            "(measured on Zen 3)",
            f"unroll: {UNROLLS_PRUNED} (8 makes GCC hoist loads and spill accumulators)",
        )


@dataclass(frozen=True)
class WindowKernel(BroadcastKernel):
    """The broadcast kernel of a grouped-window layer (core.shape.input_windows): planned as a plain layer over
    the mean input window of a one-vector register block, each tile of `vectors` vectors charged for how much
    wider its windows are (a register block that spans more groups reduces over more input blocks)."""

    @cached_property
    def unit(self) -> ConvShape:
        return replace(self.view, ci=mean_window(self.view, self.machine.n_vec), groups=1)

    def widening(self, vectors: int) -> float:
        """Multiply-adds of `vectors`-vector register blocks over those of one-vector blocks."""
        lanes = self.machine.n_vec
        return window_overhead(self.view, lanes, vectors) / window_overhead(self.view, lanes, 1)

    def tiles(self) -> list[Tile]:
        return ranked(self.machine, [replace(t, cycles=t.cycles * self.widening(t.vectors)) for t in super().tiles()])

    def cache_block(self, vectors: int, width: int) -> tuple[int | None, str]:
        cib, why = super().cache_block(vectors, width)
        if cib is not None and 2 * cib > self.unit.ci:
            return None, (
                f"{why}; but a register block reduces over its window only (about {self.unit.ci} input channels), "
                f"so C_i,b={cib} would cut a short tail off each window, storing and reloading every accumulator "
                "for it: the window is the cache block"
            )
        return cib, why

    def cache_blocks_to_try(self, vectors: int, width: int) -> list[int | None]:
        """The whole window, and the model's C_i,b where it cuts one (windows are a few blocks: no ladder)."""
        cib, _ = self.cache_block(vectors, width)
        return [None] if cib is None else [None, cib]

    def compute_seconds(self, vectors: int, width: int, threads: int, balance: float) -> float:
        # The unit is the whole layer (one "group"): no factor of groups, the windows' widening instead.
        one = super().compute_seconds(vectors, width, threads, balance) / self.view.groups
        return one * self.widening(vectors)
