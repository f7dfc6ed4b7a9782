"""predict() and search_space(): the analytical model, (machine, layer shape) -> plan. Pure: no I/O, no timing.

Which kernel runs the layer decides how its blocks are planned (model/kinds.py):
  plain, grouped          the paper's broadcast kernel, on one group of the layer (model/broadcast.py);
  grouped-window          the same kernel over each register block's input window (broadcast.WindowKernel);
  depthwise,              the lane-wise kernel: no broadcast, no channel reduction (model/lanes.py).
  grouped-packed
Either way the threads split output-channel blocks or (block, rows) tasks (model/split.py), and the estimate is the
kernel's compute time plus its transfers, floored at the FMA peak's time (model/roofline.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from directconv.core.config import KernelConfig
from directconv.core.isa import ISAS, Isa
from directconv.core.shape import LANE_KINDS, ConvShape, kernel_kind, reads_nchw, split_units
from directconv.machines.machine import Machine
from directconv.model import depthwise_nchw, pointwise
from directconv.model.broadcast import BroadcastKernel, WindowKernel, register_tiles
from directconv.model.kinds import kind_reason
from directconv.model.lanes import LaneKernel
from directconv.model.plan import Plan, Reason, SearchSpace
from directconv.model.roofline import Timing, input_reads, timing
from directconv.model.split import ROWS_PER_TASK, choose_parallel, split_balance

__all__ = ["estimate_config", "kernel_isa", "predict", "register_tiles", "search_space", "unpruned_space"]

# Register tiles kept in the pruned space: those whose estimated layer time is within this factor of the best.
TILE_KEEP_FACTOR = 1.15
MAX_PRUNED_TILES = 6
# The pruned space is never more than this fraction of the unpruned one (the best-estimated configurations stay).
MIN_REDUCTION = 20


class TileLike(Protocol):
    @property
    def vectors(self) -> int: ...

    @property
    def width(self) -> int: ...

    @property
    def cycles(self) -> float: ...


class KernelModel(Protocol):
    """What the model knows of one kernel for one layer on one machine (BroadcastKernel, LaneKernel)."""

    def tiles(self) -> Sequence[TileLike]: ...

    def tile_reasons(self, tiles: Sequence) -> list[Reason]: ...

    def cache_block(self, vectors: int, width: int) -> tuple[int | None, str]: ...

    def cache_blocks_to_try(self, vectors: int, width: int) -> list[int | None]: ...

    def unroll(self) -> tuple[int, str]: ...

    @property
    def unrolls_to_try(self) -> tuple[int, ...]: ...

    def unpruned(self) -> Iterator[tuple[int, int, int | None, int]]: ...

    def compute_seconds(self, vectors: int, width: int, threads: int, balance: float) -> float: ...

    def cuts(self, tiles: Sequence, kept: int, keep_factor: float) -> tuple[str, ...]: ...


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


def kernel_model(view: ConvShape, machine: Machine) -> KernelModel:
    """The model of the kernel that runs `view` (a kernel_view geometry) on `machine`."""
    kind = kernel_kind(view, machine.n_vec)
    if kind in LANE_KINDS:
        return LaneKernel(machine, view)
    return WindowKernel(machine, view) if kind == "grouped-window" else BroadcastKernel(machine, view)


def _timing(
    view: ConvShape, machine: Machine, model: KernelModel, config: KernelConfig, balance: float | None = None
) -> Timing:
    """The three bounds of a configuration: compute (at its split's balance unless given), the roofline and the FMA
    peak."""
    c = config
    if balance is None:
        balance = split_balance(view, machine, c.parallel, c.rows, c.cob, c.threads, c.wob)
    compute = model.compute_seconds(c.cob // machine.n_vec, c.wob, c.threads, balance)
    return timing(view, machine, c.threads, compute, input_reads(view, machine, c.cob, c.parallel, c.threads))


def predict(shape: ConvShape, machine: Machine, threads: int = 1) -> Plan:
    """The model's configuration for `shape` on `machine` with `threads`, and why."""
    view = shape.kernel_view()  # the geometry the kernel runs (1x1 layers as one long row)
    isa = kernel_isa(machine)
    kind = kernel_kind(view, machine.n_vec)
    model = kernel_model(view, machine)
    tiles = model.tiles()
    best = tiles[0]
    cob = best.vectors * machine.n_vec
    reasons = [kind_reason(view, machine.n_vec), *model.tile_reasons(tiles)]
    cib, why_cib = model.cache_block(best.vectors, best.width)
    reasons.append(Reason("cib", cib if cib is not None else "none" if kind in LANE_KINDS else "all", why_cib))
    parallel, rows, _, why_par = choose_parallel(view, machine, cob, threads, best.width)
    reasons.append(Reason("parallel", parallel, why_par))
    reasons.append(Reason("threads", threads, f"as asked; machine has {machine.cores} cores"))
    unroll, why_unroll = model.unroll()
    reasons.append(Reason("unroll", unroll, why_unroll))
    reasons.append(input_reason(view, machine.n_vec))
    if pointwise.is_matrix_product(view, machine.n_vec):
        reasons.append(nchw_call_reason(view, ISAS[isa], cob))
    elif kind == "depthwise":
        reasons.append(depthwise_nchw_reason(view, ISAS[isa]))
    config = KernelConfig(
        isa=isa, cob=cob, wob=best.width, cib=cib, rows=rows, parallel=parallel, threads=threads, unroll=unroll
    )
    t = _timing(view, machine, model, config)
    reasons.append(t.reason())
    return Plan(config, tuple(reasons), view.flops() / t.seconds / 1e9, machine.id, kind, t.bound)


def input_reason(view: ConvShape, lanes: int) -> Reason:
    """How the kernel reads its input: NCHW where C_i fits one block (core.shape.reads_nchw), else blocked."""
    if reads_nchw(view, lanes):
        return Reason(
            "input",
            "NCHW",
            f"C_i = {view.ci} <= {lanes} lanes: one block, so the kernel reads the C_i planes of an NCHW input itself "
            "(no conversion of a network's image, no padded lanes read)",
        )
    return Reason("input", "blocked", f"C_i = {view.ci} channels are read as blocks of {lanes} (NCHWc)")


def nchw_call_reason(view: ConvShape, isa: Isa, cob: int) -> Reason:
    """How an NCHW call (conv2d_nchw) of a 1x1 stride-1 layer runs: a matrix product on the planes where they are
    large enough (model/pointwise.py), else converted in, run blocked and converted back."""
    if pointwise.has_nchw_entry(view, isa, cob):
        return Reason("nchw_call", "matrix product", pointwise.explain(isa, cob, view.w))
    _, v = pointwise.nchw_tile(isa, cob)
    return Reason(
        "nchw_call",
        "three passes",
        f"{view.w} pixels per plane < {pointwise.MIN_RUNS} runs of {v} x {isa.lanes} pixels: an NCHW call converts "
        "in, runs the blocked kernel and converts back (on planes this small the matrix product's tail tiles cost "
        "more than the conversions)",
    )


def depthwise_nchw_reason(view: ConvShape, isa: Isa) -> Reason:
    """How an NCHW call of a depthwise layer runs: each plane convolved in place where its rows are at least a
    vector wide (model/depthwise_nchw.py), else in one pass through a per-thread blocked scratch."""
    if depthwise_nchw.has_plane_entry(view, isa):
        return Reason("nchw_call", "planes", depthwise_nchw.explain(isa, view))
    return Reason(
        "nchw_call",
        "one pass",
        f"output rows of {view.wo} columns (stride {view.sw}) on {isa.lanes} lanes: an NCHW call converts each task's "
        "channel blocks into a per-thread scratch, runs the blocked kernel there and transposes its output back",
    )


def _splits(shape: ConvShape, threads: int, wob: int, lanes: int) -> list[tuple[str, int | None]]:
    """Thread splits of the unpruned space: both axes with 1, 2 or 4 rows (tiles of a single row) per task (one
    task per block alone)."""
    units = split_units(shape, wob, lanes)
    splits: list[tuple[str, int | None]] = [("co", None)]
    if threads > 1:
        splits += [("rows", r) for r in (1, 2, 4) if r <= units] + [("co", r) for r in (1, 2, 4) if r <= units]
    return splits


def unpruned_space(shape: ConvShape, machine: Machine, threads: int = 1) -> Iterator[KernelConfig]:
    """Every configuration a model-free search would have to consider for this layer.

    Register tiles of up to 8 vectors x 32 columns with at most 2*N_reg accumulators (past that every tile
    spills; in a grouped layer at most a group's outputs), C_i,b on a doubling ladder (N_vec, 2 N_vec, 4 N_vec, ...,
    all) and every unroll where the kernel has an input-channel loop, and for several threads both parallel axes
    with 1, 2 or 4 rows per task.
    """
    view = shape.kernel_view()
    isa = kernel_isa(machine)
    for vectors, width, cib, unroll in kernel_model(view, machine).unpruned():
        for parallel, rows in _splits(view, threads, width, machine.n_vec):
            yield KernelConfig(
                isa,
                vectors * machine.n_vec,
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
    view = shape.kernel_view()
    flops = view.flops()
    model = kernel_model(view, machine)
    tiles = model.tiles()
    best_cycles = tiles[0].cycles
    kept = [t for t in tiles if t.cycles <= best_cycles * TILE_KEEP_FACTOR][:MAX_PRUNED_TILES]
    scored: list[tuple[float, KernelConfig]] = []
    seen: set[KernelConfig] = set()
    for tile in kept:
        cob = tile.vectors * machine.n_vec
        cib, _ = model.cache_block(tile.vectors, tile.width)
        parallel, rows, balance, _ = choose_parallel(view, machine, cob, threads, tile.width)
        splits = {(parallel, rows)} | ({("rows", 1), ("rows", ROWS_PER_TASK), ("co", None)} if threads > 1 else set())
        for c in model.cache_blocks_to_try(tile.vectors, tile.width):
            for unroll in model.unrolls_to_try:
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
                    scored.append((_timing(view, machine, model, config, bal).kernel_seconds * penalty, config))
    scored.sort(key=lambda sc: sc[0])
    # The prediction itself always comes first.
    configs = [plan.config] + [c for _, c in scored if c != plan.config]
    call = machine.call_seconds(threads)  # left out of the ranking (the same for every configuration), not the speeds
    gflops = [plan.predicted_gflops] + [flops / (s + call) / 1e9 for s, c in scored if c != plan.config]
    unpruned = sum(1 for _ in unpruned_space(view, machine, threads))
    cap = max(1, unpruned // MIN_REDUCTION)
    configs, gflops = configs[:cap], gflops[:cap]
    cuts = (
        *model.cuts(tiles, len(kept), TILE_KEEP_FACTOR),
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
    return view.flops() / _timing(view, machine, kernel_model(view, machine), config).seconds / 1e9
