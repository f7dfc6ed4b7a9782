"""predict() and search_space(): the analytical model, (machine, layer shape) -> plan. Pure: no I/O, no timing.

Register blocking follows the paper (Zhang et al. 2018, eqs. 1-2) with the register budget the paper leaves out:
  C_o,b = vectors * N_vec                                   (output channels, innermost, one vector each)
  E = vectors * W_o,b accumulator vectors >= N_fma * L_fma   (enough independent FMAs in flight)
  E + vectors (weights) + 1 (broadcast input) <= N_reg        (everything in registers, no spills)
Cache blocking is ours (the paper leaves it as future work), BLIS-style from cache sizes, ways and line size:
see model/cache.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from directconv.core.config import KernelConfig
from directconv.core.isa import ISAS
from directconv.core.shape import ConvShape
from directconv.machines.machine import Machine
from directconv.model.cache import choose_cib, weights_level
from directconv.model.estimate import layer_seconds, registers_needed, row_cycles, spare_registers, tile_efficiency
from directconv.model.plan import Plan, Reason, SearchSpace
from directconv.model.split import ROWS_PER_TASK, choose_parallel, split_balance

MAX_UNPRUNED_VECTORS = 8
MAX_UNPRUNED_WIDTH = 32
UNROLLS_UNPRUNED = (1, 2, 4, 8)
UNROLLS_PRUNED = (1, 2, 4)
PREDICTED_UNROLL = 2
# Register tiles kept in the pruned space: those whose estimated layer time is within this factor of the best.
TILE_KEEP_FACTOR = 1.15
MAX_PRUNED_TILES = 6
# The pruned space is never more than this fraction of the unpruned one (the best-estimated configurations stay).
MIN_REDUCTION = 20


@dataclass(frozen=True)
class Tile:
    vectors: int
    width: int
    cycles: float  # estimated cycles per (channel, tap) step over one output row, all channel blocks
    weights_from_l2: bool  # no useful C_i,b keeps this tile's weight block in L1

    @property
    def accumulators(self) -> int:
        return self.vectors * self.width


def kernel_isa(machine: Machine) -> str:
    """The code generator's ISA for a machine, checked against the description's vector width."""
    isa = ISAS.get(machine.isa)
    if isa is None:
        raise ValueError(
            f"machine {machine.id}: no kernel generator for isa {machine.isa!r} yet; supported: {', '.join(ISAS)}"
        )
    if isa.lanes != machine.n_vec:
        raise ValueError(
            f"machine {machine.id}: isa {machine.isa} has {isa.lanes} fp32 lanes, description says "
            f"n_vec={machine.n_vec}"
        )
    return isa.name


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
    """Every register tile that fits the registers and the layer, best estimated first."""
    blocks_out = -(-shape.co // machine.n_vec)
    spare = spare_registers(shape)
    tiles = []
    for vectors in range(1, blocks_out + 1):
        if not fits_registers(machine, vectors, 1, spare):
            break
        for width in range(1, shape.wo + 1):
            if not fits_registers(machine, vectors, width, spare):
                break
            from_l2 = weights_level(machine, shape, vectors * machine.n_vec, width) > 1
            tiles.append(Tile(vectors, width, row_cycles(machine, shape, vectors, width, from_l2), from_l2))

    penalty = one_vector_penalty(machine)

    def rank(t: Tile) -> tuple:
        # Estimated cycles, one-vector tiles charged for their broadcasts; among equals one-vector tiles last (a
        # broadcast feeds fewer FMAs), then more accumulators (more slack against latency), then more vectors.
        cycles = t.cycles * (penalty if t.vectors == 1 else 1.0)
        return (round(cycles, 6), t.vectors == 1, -t.accumulators, -t.vectors)

    return sorted(tiles, key=rank)


def predict(shape: ConvShape, machine: Machine, threads: int = 1) -> Plan:
    """The model's configuration for `shape` on `machine` with `threads`, and why."""
    shape = shape.kernel_view()  # the geometry the kernel runs (1x1 layers as one long row)
    isa = kernel_isa(machine)
    tiles = register_tiles(machine, shape)
    best = tiles[0]
    cob = best.vectors * machine.n_vec
    need = machine.n_fma * machine.l_fma
    full_t, tail_w = divmod(shape.wo, best.width)
    blocks_out = -(-shape.co // machine.n_vec)
    full_j, tail_v = divmod(blocks_out, best.vectors)
    reasons = [
        Reason(
            "cob",
            cob,
            f"{best.vectors} vector(s) of N_vec={machine.n_vec} output channels; C_o={shape.co} = {full_j} x {cob}"
            + (f" + a tail block of {shape.co - full_j * cob}" if tail_v else " exactly"),
        ),
        Reason(
            "wob",
            best.width,
            f"E = {best.vectors}x{best.width} = {best.accumulators} accumulator vectors "
            f"{'>=' if best.accumulators >= need else '<'} N_fma*L_fma = {machine.n_fma:g}*{machine.l_fma:g} = "
            f"{need:g} (paper eq. 1); registers {best.accumulators} + {best.vectors} weights + 1 broadcast"
            + (" + 1 spare (1x1 layer)" if spare_registers(shape) else "")
            + " = "
            f"{registers_needed(best.vectors, best.width, spare_registers(shape))} <= N_reg={machine.n_reg} "
            "(eq. 2 with operands); "
            f"W_o={shape.wo} = {full_t} tile(s)"
            + (f" + one of {tail_w}" if tail_w else " exactly")
            + f"; best estimate of {len(tiles)} feasible tiles (full-tile efficiency "
            f"{tile_efficiency(machine, best.vectors, best.width, shape.kh * shape.kw == 1):.0%})",
        ),
    ]
    if best.accumulators < need:
        reasons.append(
            Reason("E", best.accumulators, f"below the latency bound {need:g}: the layer is too narrow for more")
        )
    cib, why_cib = choose_cib(machine, shape, cob, best.width)
    reasons.append(Reason("cib", cib if cib is not None else "all", why_cib))
    parallel, rows, balance, why_par = choose_parallel(shape, machine, cob, threads)
    reasons.append(Reason("parallel", parallel, why_par))
    reasons.append(Reason("threads", threads, f"as asked; machine has {machine.cores} cores"))
    unroll = predicted_unroll(shape, machine.n_vec)
    reasons.append(
        Reason(
            "unroll",
            unroll,
            "the channel loop body already holds E FMAs; unrolling it twice halves the "
            "loop overhead of short channel loops, while 8 lets GCC hoist loads of later iterations and spill "
            "accumulators (measured on AVX2)"
            if unroll == PREDICTED_UNROLL
            else f"C_i={shape.ci} < N_vec={machine.n_vec}: the channel loop runs {shape.ci} times per tap; unrolled, "
            "GCC hoists its loads and spills (measured on AVX2: hundreds of spill lines at unroll 2)",
        )
    )
    config = KernelConfig(
        isa=isa, cob=cob, wob=best.width, cib=cib, rows=rows, parallel=parallel, threads=threads, unroll=unroll
    )
    seconds = layer_seconds(machine, shape, best.vectors, best.width, threads, balance, best.weights_from_l2)
    return Plan(config, tuple(reasons), shape.flops() / seconds / 1e9, machine.id)


def _cib_ladder(shape: ConvShape, lanes: int) -> list[int | None]:
    """C_i,b values of the unpruned space: N_vec * 2^k below the layer's channels, then all channels."""
    ci_padded = -(-shape.ci // lanes) * lanes
    ladder: list[int | None] = []
    c = lanes
    while c < ci_padded:
        ladder.append(c)
        c *= 2
    return ladder + [None]


def unpruned_space(shape: ConvShape, machine: Machine, threads: int = 1) -> Iterator[KernelConfig]:
    """Every configuration a model-free search would have to consider for this layer.

    Register tiles of up to 8 vectors x 32 columns with at most 2*N_reg accumulators (past that every tile
    spills), C_i,b on a doubling ladder (N_vec, 2 N_vec, 4 N_vec, ..., all), every unroll, and for several
    threads both parallel axes with 1, 2 or 4 rows per task.
    """
    shape = shape.kernel_view()
    isa = kernel_isa(machine)
    lanes = machine.n_vec
    blocks_out = -(-shape.co // lanes)
    splits: list[tuple[str, int | None]] = [("co", None)]
    if threads > 1:
        splits += [("rows", r) for r in (1, 2, 4) if r <= shape.ho] + [("co", r) for r in (1, 2, 4) if r <= shape.ho]
    for vectors in range(1, min(MAX_UNPRUNED_VECTORS, blocks_out) + 1):
        for width in range(1, min(MAX_UNPRUNED_WIDTH, shape.wo) + 1):
            if vectors * width > 2 * machine.n_reg:
                break
            for cib in _cib_ladder(shape, lanes):
                for unroll in UNROLLS_UNPRUNED:
                    for parallel, rows in splits:
                        yield KernelConfig(
                            isa,
                            vectors * lanes,
                            width,
                            cib=cib,
                            rows=rows,
                            parallel=parallel,
                            threads=threads,
                            unroll=unroll,
                        )


def search_space(shape: ConvShape, machine: Machine, threads: int = 1) -> SearchSpace:
    """The configurations worth measuring, ordered by predicted performance, with the cuts that made it small."""
    plan = predict(shape, machine, threads)
    flops = shape.flops()
    shape = shape.kernel_view()
    tiles = register_tiles(machine, shape)
    best_cycles = tiles[0].cycles
    kept = [t for t in tiles if t.cycles <= best_cycles * TILE_KEEP_FACTOR][:MAX_PRUNED_TILES]
    lanes = machine.n_vec
    ci_padded = -(-shape.ci // lanes) * lanes
    scored: list[tuple[float, KernelConfig]] = []
    seen: set[KernelConfig] = set()
    for tile in kept:
        cob = tile.vectors * lanes
        cib, _ = choose_cib(machine, shape, cob, tile.width)
        base = cib or ci_padded
        cib_options = {c if c < ci_padded else None for c in (base // 2, base, base * 2, base * 4) if c >= lanes}
        cib_options.add(cib)
        parallel, rows, balance, _ = choose_parallel(shape, machine, cob, threads)
        splits = {(parallel, rows)} | ({("rows", 1), ("rows", ROWS_PER_TASK), ("co", None)} if threads > 1 else set())
        for c in sorted(cib_options, key=lambda v: -1 if v is None else v):
            for unroll in UNROLLS_PRUNED:
                for par, r in sorted(splits, key=str):
                    config = KernelConfig(
                        plan.config.isa, cob, tile.width, cib=c, rows=r, parallel=par, threads=threads, unroll=unroll
                    )
                    if config in seen:
                        continue
                    seen.add(config)
                    # The other splits rank below the model's own: its choice rests on where the weights live,
                    # which balance alone does not see.
                    bal = balance if (par, r) == (parallel, rows) else (1.0 if threads == 1 else 0.9)
                    # The model does not rank unroll or cache blocks finer than "the predicted one first".
                    penalty = 1.0 + 0.01 * (unroll != plan.config.unroll) + 0.01 * (c != cib)
                    seconds = (
                        layer_seconds(machine, shape, tile.vectors, tile.width, threads, bal, tile.weights_from_l2)
                        * penalty
                    )
                    scored.append((seconds, config))
    scored.sort(key=lambda sc: sc[0])
    # The prediction itself always comes first.
    configs = [plan.config] + [c for _, c in scored if c != plan.config]
    gflops = [plan.predicted_gflops] + [flops / s / 1e9 for s, c in scored if c != plan.config]
    unpruned = sum(1 for _ in unpruned_space(shape, machine, threads))
    cap = max(1, unpruned // MIN_REDUCTION)
    configs, gflops = configs[:cap], gflops[:cap]
    cuts = (
        f"register tiles: {len(tiles)} fit N_reg={machine.n_reg} without spilling (accumulators + weights + "
        f"broadcast); tiles that spill lose at least {machine.spill_penalty - 1:.0%} (the machine's spill_penalty) "
        "and are cut",
        f"kept {len(kept)} tiles within {TILE_KEEP_FACTOR:.2f}x of the best estimated cycles (edge tiles counted); "
        f"the estimate's error between tiles of similar FMA count is well below 15%",
        "C_i,b: the model's block, half, twice and four times it (all channels where that reaches them) instead "
        "of the whole ladder: the cost is flat from half the cache fit to four times it and steep below it "
        "(measured on Zen 3)",
        f"unroll: {UNROLLS_PRUNED} (8 makes GCC hoist loads and spill accumulators)",
        f"threads: the model's split plus co, rows of 1 and rows of {ROWS_PER_TASK}" if threads > 1 else "one thread",
        f"at most 1/{MIN_REDUCTION} of the unpruned space ({cap} of {unpruned}), the best estimated first",
    )
    return SearchSpace(tuple(configs), tuple(gflops), unpruned, cuts)


def estimate_config(shape: ConvShape, machine: Machine, config: KernelConfig) -> float:
    """The model's GFLOP/s for an arbitrary `config` on `shape`, on the same terms as predict()'s own estimate.

    Used to judge a configuration tuned for another shape before reusing it: its tile's edge waste and thread
    balance on *this* shape are what change. A tile that does not fit the registers spills: the estimate charges
    the machine's spill_penalty, then more in proportion to the registers it lacks.
    """
    if config.lanes != machine.n_vec:
        raise ValueError(
            f"config for {config.isa} ({config.lanes} lanes) cannot run on {machine.id} (n_vec={machine.n_vec})"
        )
    view = shape.kernel_view()
    vectors = config.cob // machine.n_vec
    from_l2 = weights_level(machine, view, config.cob, config.wob) > 1
    seconds = layer_seconds(
        machine,
        view,
        vectors,
        config.wob,
        config.threads,
        split_balance(view, machine, config.parallel, config.rows, config.cob, config.threads),
        from_l2,
    )
    need = registers_needed(vectors, config.wob, spare_registers(view))
    if need > machine.n_reg:
        seconds *= machine.spill_penalty * need / machine.n_reg
    return view.flops() / seconds / 1e9
