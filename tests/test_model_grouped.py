"""The model on grouped, depthwise and dilated layers: kernel kinds, lane-wise tiles, the roofline, pruned spaces."""

from __future__ import annotations

import dataclasses

import pytest

from directconv.core.shape import LANE_KINDS, ConvShape, input_windows, kernel_kind, window_overhead
from directconv.core.suite import suite
from directconv.machines.loader import bundled_machines, load_machine
from directconv.model import estimate_config, predict, search_space, unpruned_space
from directconv.model.broadcast import BroadcastKernel, WindowKernel
from directconv.model.cache import tile_column_runs, window_bytes_per_block
from directconv.model.estimate import filter_rows, rows_executed, tile_columns
from directconv.model.kinds import group_shape
from directconv.model.lanes import Gathers, gathers, lane_tiles, pixels, registers, tile_cycles
from directconv.model.roofline import input_bytes_read, layer_memory, level_of
from directconv.model.split import output_blocks

SHAPES = {
    "mobilenetv2-dw3x3": ConvShape.from_args(144, 144, 56, 56, 3, 3, 1, 1, groups=144),
    "mobilenetv2-dw3x3s2": ConvShape.from_args(96, 96, 112, 112, 3, 3, 2, 1, groups=96),
    "efficientnet-dw5x5": ConvShape.from_args(240, 240, 28, 28, 5, 5, 1, 2, groups=240),
    "depthwise-multiplier2": ConvShape.from_args(32, 64, 28, 28, 3, 3, 1, 1, groups=32),
    "resnext-32x4d": ConvShape.from_args(128, 128, 56, 56, 3, 3, 1, 1, groups=32),
    "alexnet-2-groups": ConvShape.from_args(96, 256, 27, 27, 5, 5, 1, 2, groups=2),
    "wide-groups-1x1": ConvShape.from_args(256, 256, 14, 14, 1, 1, groups=8),
    "shufflenet-g4-1x1": ConvShape.from_args(272, 272, 14, 14, 1, 1, groups=4),
    "deeplab-dilated-6": ConvShape.from_args(256, 256, 33, 33, 3, 3, 1, 6, dilation=6),
}
MACHINES = bundled_machines()
ZEN3 = load_machine("zen3")


def kind_on(shape: ConvShape, machine_id: str) -> str:
    return kernel_kind(shape, load_machine(machine_id).n_vec)


def test_the_kind_follows_the_vector_width():
    # ResNeXt's 4 channels per group are narrower than 8 AVX2 or 16 AVX-512 lanes, whole vectors of 4 NEON lanes.
    resnext = SHAPES["resnext-32x4d"]
    assert [kind_on(resnext, m) for m in ("zen3", "skylake-sp", "neoverse-n1", "generic")] == [
        "grouped-packed",
        "grouped-packed",
        "grouped",
        "grouped",
    ]
    assert kind_on(SHAPES["mobilenetv2-dw3x3"], "zen3") == "depthwise"
    assert kind_on(SHAPES["alexnet-2-groups"], "zen3") == "grouped"
    assert kind_on(SHAPES["deeplab-dilated-6"], "zen3") == "plain"
    # ShuffleNet's 68 channels per group: windows of 1.11x the multiply-adds on 8 lanes, 1.34x on 16, whole
    # vectors of 4 NEON lanes.
    shuffle = SHAPES["shufflenet-g4-1x1"]
    assert [kind_on(shuffle, m) for m in ("zen3", "skylake-sp", "neoverse-n1")] == [
        "grouped-window",
        "grouped-window",
        "grouped",
    ]
    assert window_overhead(shuffle, 8, 1) == pytest.approx(1.11, abs=0.005)
    assert window_overhead(shuffle, 16, 1) == pytest.approx(1.34, abs=0.005)
    # Wider than WINDOW_MAX_OVERHEAD: ResNeXt's 4 per group would multiply 4 times as much on 16 lanes.
    assert window_overhead(SHAPES["resnext-32x4d"], 16, 1) == 4.0
    # With a filter the lane-wise kernel reuses each shuffled pixel for a row of taps: windows win only below 1.6x.
    filtered = ConvShape.from_args(200, 200, 14, 14, 3, 3, 1, 1, groups=4)
    assert (
        window_overhead(filtered, 16, 1) == pytest.approx(1.5, abs=0.005)
        and kernel_kind(filtered, 16) == "grouped-window"
    )
    # 34 per group, 1.73x: windows in a 1x1 layer (below 1.8x), the lane-wise kernel with a 3x3 filter.
    assert kernel_kind(ConvShape.from_args(136, 136, 14, 14, 1, 1, groups=4), 16) == "grouped-window"
    assert kernel_kind(ConvShape.from_args(136, 136, 14, 14, 3, 3, 1, 1, groups=4), 16) == "grouped-packed"


def test_input_windows_hold_every_group_of_their_register_block():
    shape = SHAPES["shufflenet-g4-1x1"]  # groups at channels 0, 68, 136, 204
    assert input_windows(shape, 16, 1)[:5] == ((0, 5), (0, 5), (0, 5), (0, 5), (0, 9))  # block 4 spans groups 0-1
    for lanes, vectors in ((8, 1), (16, 1), (16, 3)):
        for j, (first, end) in enumerate(input_windows(shape, lanes, vectors)):
            outputs = range(j * vectors * lanes, min(shape.co, (j + 1) * vectors * lanes))
            groups = {o // shape.cog for o in outputs}
            assert first * lanes <= min(groups) * shape.cig and max(groups) * shape.cig + shape.cig <= end * lanes
            assert first == min(groups) * shape.cig // lanes  # no block before the first group's


def test_a_grouped_window_layer_is_planned_over_its_windows():
    shape, skx = SHAPES["shufflenet-g4-1x1"], load_machine("skylake-sp")
    plan = predict(shape, skx, 1)
    # Taller register blocks span more groups: one vector wins, and the estimate charges the window's zeros.
    assert plan.kind == "grouped-window" and plan.config.cob == 16
    model = WindowKernel(skx, shape)
    assert model.unit.ci == round(1.34 * 68) and model.unit.groups == 1
    assert model.widening(2) == pytest.approx(window_overhead(shape, 16, 2) / window_overhead(shape, 16, 1))
    plain = BroadcastKernel(skx, model.unit)
    for vectors in (1, 2):
        assert model.compute_seconds(vectors, 8, 1, 1.0) == pytest.approx(
            plain.compute_seconds(vectors, 8, 1, 1.0) * model.widening(vectors)
        )
    assert "grouped-window" in plan.explain() and "1.34x the layer's multiply-adds" in plan.explain()
    assert plan.config.cib is None  # a window of 91 channels is not cut into cache blocks


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: m.id)
def test_every_new_layer_gets_a_plan_that_fits_below_the_peak_and_names_its_kernel(machine):
    for name, shape in SHAPES.items():
        kind = kernel_kind(shape, machine.n_vec)
        for threads in (1, 2, 4):
            plan = predict(shape, machine, threads)
            plan.config.check_fits(shape)
            executed = plan.predicted_gflops * shape.executed_flops() / shape.flops()
            assert 0 < executed <= machine.peak(threads) * (1 + 1e-9), (name, threads)
            assert estimate_config(shape, machine, plan.config) == pytest.approx(plan.predicted_gflops)
            assert plan.kind == kind and plan.reasons[0].parameter == "kind" and plan.reasons[0].value == kind
            assert f"{kind} kernel" in plan.explain()
            assert any(r.parameter == "roofline" and r.value == plan.bound for r in plan.reasons)
            if kind in LANE_KINDS:
                assert (plan.config.cib, plan.config.unroll) == (None, 1), name
            if kind == "grouped":
                assert plan.config.cob <= -(-shape.cog // machine.n_vec) * machine.n_vec
                assert plan.config.cib is None or plan.config.cib <= shape.cig
            if shape.dilated:
                assert "dilation 6x6" in plan.reasons[0].why and "13x13" in plan.reasons[0].why


def test_depthwise_plan_on_zen3_explains_the_lane_wise_kernel():
    plan = predict(SHAPES["mobilenetv2-dw3x3"], ZEN3, 1)
    text = plan.explain()
    assert "groups = C_i = 144, one input channel per group" in text and "no broadcast" in text
    assert "paper eq. 1, over width x channel blocks" in text and "<= N_reg=16" in text
    assert "no shuffle" in text  # one output per group: lane l already holds its channel
    # The layer's 3.5 MiB live in L3; at 32 B/cycle they move in under a third of the compute time.
    assert plan.bound == "compute" and "from L3 at 78.4 GB/s" in text
    packed = predict(SHAPES["resnext-32x4d"], ZEN3, 1).explain()
    assert "grouped-packed kernel" in packed and "32 groups of 4 input -> 4 output channels" in packed
    assert "shuffles" in packed and "no shuffle" not in packed


# ---- The lane-wise kernel's tiles, by hand -------------------------------------------------------------------------


def test_gathers_count_loads_and_shuffles_per_pixel():
    assert gathers(SHAPES["mobilenetv2-dw3x3"], 8) == Gathers(1.0, 0.0)  # lane l reads input lane l: no shuffle
    # ResNeXt on 8 lanes: two groups of 4 per vector, each of the 4 channels of a group spread over its 4 lanes.
    assert gathers(SHAPES["resnext-32x4d"], 8) == Gathers(1.0, 4.0)
    # Channel multiplier 2: output lanes 0-7 read input channels 0,0,1,1,2,2,3,3 of one vector, shuffled once.
    assert gathers(SHAPES["depthwise-multiplier2"], 8) == Gathers(1.0, 1.0)


def test_pixels_are_loaded_once_for_every_tap_that_reads_them():
    shape = SHAPES["mobilenetv2-dw3x3"]
    assert pixels(shape, 6) == 8  # columns 0..5 x taps 0..2: pixels 0..7
    assert pixels(SHAPES["mobilenetv2-dw3x3s2"], 6) == 13  # stride 2: 0, 2, ..., 10, plus taps: 0..12
    dilated = ConvShape.from_args(8, 8, 40, 40, 3, 3, 1, 6, dilation=6, groups=8)
    assert pixels(dilated, 4) == 12  # taps 6 apart, 4 columns each: no pixel shared


def test_a_tile_keeps_all_its_weights_else_one_filter_rows_else_none():
    shape, g = SHAPES["mobilenetv2-dw3x3"], gathers(SHAPES["mobilenetv2-dw3x3"], 8)
    # 6 accumulators + 9 weights + 1 input = 16 registers: all kept. One column more: 7 + 9 + 1 > 16, but one filter
    # row's 3 weights fit (7 + 3 + 1); at 13 columns not even those (13 + 3 + 1 > 16): 1 register to load into.
    assert registers(shape, g, 1, 6, 16) == (16, "all")
    assert registers(shape, g, 1, 7, 16) == (11, "row")
    assert registers(shape, g, 1, 13, 16) == (15, "none")
    # Per filter row, a 1x6 tile keeping all weights: 18 FMAs on 2 pipes (9 cycles), 8 loads + 7 stores and bias,
    # latency 3 taps x 4 x 1.25 = 15 cycles: latency-bound, 6 accumulators < N_fma * L_fma = 8.
    assert tile_cycles(ZEN3, shape, g, 1, 6, "all", 1) == 15.0
    # A 1x13 tile keeping one filter row: 15 input loads + 3 weights + 14 stores and bias = 32 loads on 2 ports (16
    # cycles) under 39 FMAs on 2 pipes (19.5). Keeping none, every FMA reads its input from L1: 39 + 3 + 14 loads.
    assert tile_cycles(ZEN3, shape, g, 1, 13, "row", 1) == 19.5
    assert tile_cycles(ZEN3, shape, g, 1, 13, "none", 1) == 28.0
    # Shuffled inputs (ResNeXt's 4 channels per group on 8 lanes): all the weights or none, never one row's.
    packed = SHAPES["resnext-32x4d"]
    kept = {registers(packed, gathers(packed, 8), 1, w, 16)[1] for w in range(1, 12)}
    assert "row" not in kept and kept <= {"all", "none"}


def test_equal_estimates_go_to_tiles_without_an_edge_tile():
    # EfficientNet's 5x5 depthwise layer on Zen 4 (28 columns): every tile keeping a filter row's weights is bound by
    # its multiply-adds alike; of those, 2x7 and 1x14 leave no edge tile, and 2x7 has more vectors.
    shape = SHAPES["efficientnet-dw5x5"]
    tiles = lane_tiles(load_machine("zen4"), shape)
    ties = [t for t in tiles if round(t.cycles, 6) == round(tiles[0].cycles, 6)]
    assert {(1, 22), (1, 14), (2, 7)} <= {(t.vectors, t.width) for t in ties}
    assert (tiles[0].vectors, tiles[0].width, tiles[0].kept) == (2, 7, "row")


def test_lane_tiles_fit_the_registers_and_the_best_hides_the_latency():
    for machine in (ZEN3, load_machine("skylake-sp"), load_machine("neoverse-n1")):
        shape = SHAPES["efficientnet-dw5x5"]
        tiles = lane_tiles(machine, shape)
        g = gathers(shape, machine.n_vec)
        assert all(registers(shape, g, t.vectors, t.width, machine.n_reg)[0] <= machine.n_reg for t in tiles)
        assert tiles[0].accumulators >= machine.n_fma * machine.l_fma
        assert [t.cycles for t in tiles] == sorted(t.cycles for t in tiles)


# ---- Grouped: the plain model per group ------------------------------------------------------------------------------


def test_a_grouped_layer_is_planned_as_one_group_counted_groups_times():
    shape = SHAPES["alexnet-2-groups"]
    one = group_shape(shape)
    assert (one.ci, one.co, one.groups) == (48, 128, 1)
    grouped, plain = predict(shape, ZEN3, 1), predict(one, ZEN3, 1)
    assert (grouped.config.cob, grouped.config.wob, grouped.config.cib) == (
        plain.config.cob,
        plain.config.wob,
        plain.config.cib,
    )
    # Twice the FLOPs in twice the time: the same rate (both compute-bound, one thread).
    assert grouped.bound == plain.bound == "compute"
    assert grouped.predicted_gflops == pytest.approx(plain.predicted_gflops, rel=1e-9)
    # The threads share groups x blocks per group: 2 x (128 / 16).
    assert output_blocks(shape, ZEN3, 16) == 16
    assert "C_o=128 per group (2 groups)" in grouped.explain()


# ---- Dilation: the plain model with the dilated taps -----------------------------------------------------------------


def test_dilated_taps_skip_the_padding_and_widen_the_input_window():
    shape = SHAPES["deeplab-dilated-6"]  # taps at rows oh-6, oh, oh+6 of a 33-row input padded by 6
    assert [filter_rows(shape, oh) for oh in (0, 5, 6, 26, 27, 32)] == [2, 2, 3, 3, 2, 2]
    assert rows_executed(shape) == 33 * 3 - 12
    # And the columns: a 4-wide tile at the left edge runs tap 0 on none of its columns (all 6 to 3 left of the
    # input), tap 1 on all; the 9th and last tile (column 32) runs tap 2 on none.
    assert tile_columns(shape, 4)[0] == (4, (0, 4, 4), 1)
    assert tile_columns(shape, 4)[-1] == (1, (1, 1, 0), 1)
    assert sum(n * sum(active) for _, active, n in tile_columns(shape, 4)) == 33 * 3 - 12
    # A 4-column tile reads 4 columns per tap, 6 apart: three runs of 4, not one run of 16.
    assert tile_column_runs(shape, 4) == (4, 4, 4)
    assert tile_column_runs(SHAPES["mobilenetv2-dw3x3"], 4) == (6,)
    # Consecutive output rows share the 13 rows the taps span.
    l2 = ZEN3.cache(2)
    plain = dataclasses.replace(shape, dh=1, dw=1, pt=1, pb=1, pl=1, pr=1)
    assert 3 * window_bytes_per_block(shape, 8, l2) == 13 * window_bytes_per_block(plain, 8, l2)


# ---- The roofline ----------------------------------------------------------------------------------------------------


def test_the_roofline_reads_where_the_layer_lives_and_sets_memory_bound_estimates():
    shape = SHAPES["mobilenetv2-dw3x3"]
    memory = layer_memory(shape, ZEN3, 1)
    assert (memory.input_bytes, memory.output_bytes, memory.weight_bytes) == (144 * 56 * 56 * 4,) * 2 + (144 * 9 * 4,)
    assert (memory.level, memory.gbytes_per_s) == ("L3", pytest.approx(32 * 2.45))
    # Four threads: four private L2s of 512 KiB still do not hold 3.5 MiB; a shared L3 instance does.
    assert level_of(ZEN3, memory.moved, 4)[:2] == ("L3", pytest.approx(4 * 32 * 2.45))
    assert level_of(ZEN3, 1 << 30, 1) == (
        "memory",
        pytest.approx(32 * 2.45),
        "32 B/cycle past L2 x 2.45 GHz x 1 thread",
    )
    assert level_of(ZEN3, 1 << 30, 4)[:2] == ("memory", 204.8)  # the socket's bandwidth caps four threads
    # With its L3 and memory path cut to 2 B/cycle the layer is memory-bound; the transfers add to the same in-core
    # time (the Execution-Cache-Memory composition, model/roofline.py).
    slow = dataclasses.replace(ZEN3, l3_bytes_per_cycle=2.0)
    plan, fast = predict(shape, slow, 1), predict(shape, ZEN3, 1)
    assert plan.bound == "memory" and "memory-bound" in plan.explain()
    assert plan.config == fast.config
    seconds = {p: shape.flops() / p.predicted_gflops / 1e9 for p in (plan, fast)}
    slow_transfers = memory.moved / (2 * 2.45e9)
    fast_transfers = memory.moved / (32 * 2.45e9)
    assert seconds[plan] - slow_transfers == pytest.approx(seconds[fast] - fast_transfers)


def test_a_strided_1x1_layer_reads_half_the_input_rows():
    shape = ConvShape.from_args(256, 512, 56, 56, 1, 1, 2)
    assert input_bytes_read(shape, 8, 64) == 256 * 28 * 56 * 4  # every other row, all lines of a row
    assert input_bytes_read(shape, 16, 64) == 256 * 28 * 28 * 4  # a pixel per line: every other line


def test_estimates_never_exceed_the_fma_peak_over_the_multiply_adds_run():
    # AlexNet's conv4 (13x13, padded by 1) runs 90.0% of its nominal multiply-adds: the kernel skips the taps in the
    # padding. On the bundled Zen 4 its estimate is 1.095x the peak in nominal FLOPs (the C-timed tuned kernels of
    # such layers measure 106-115% on the Zen 4 host: benchmarks/results/model-error-zen4.json), 98.6% over the
    # multiply-adds it runs.
    shape = ConvShape.from_args(384, 384, 13, 13, 3, 3, 1, 1)
    zen4 = load_machine("zen4")
    assert shape.executed_flops() / shape.flops() == pytest.approx((37 / 39) ** 2)  # 2 of the 39 row taps, and columns
    plan = predict(shape, zen4, 1)
    assert plan.predicted_gflops / zen4.peak(1) == pytest.approx(1.095, abs=0.01)
    layers = [shape, *SHAPES.values(), *(layer.shape for layer in suite())]
    for machine in MACHINES:
        for view in (s.kernel_view() for s in layers):
            for threads in (1, 2, 4):
                config = predict(view, machine, threads).config
                executed = estimate_config(view, machine, config) * view.executed_flops() / view.flops()
                assert executed <= machine.peak(threads) * (1 + 1e-9), (machine.id, view.describe(), threads)


def test_an_estimate_at_the_measured_peak_says_how_much_of_the_flop_count_the_kernel_runs():
    # A dilated 3x3 at rate 12 on a 33x33 map: 57.4% of its taps fall inside the input. A probed peak below the
    # description's FMA units (here a third of it) floors the in-core time: the estimate is that peak over the
    # multiply-adds run, 1 / 0.574 of it in nominal FLOPs.
    shape = ConvShape.from_args(256, 256, 33, 33, 3, 3, 1, 12, dilation=12)
    zen4 = load_machine("zen4")
    measured = dataclasses.replace(zen4, peak_gflops={1: zen4.peak(1) / 3})
    plan = predict(shape, measured, 1)
    assert plan.bound == "peak" and "57.4% of the nominal FLOPs" in plan.explain()
    assert plan.predicted_gflops == pytest.approx(measured.peak(1) * shape.flops() / shape.executed_flops(), rel=1e-3)


# ---- The search space ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SHAPES))
@pytest.mark.parametrize("machine_id", ["zen3", "skylake-sp", "neoverse-n1"])
def test_pruned_space_is_20x_smaller_fits_and_is_led_by_the_prediction(name, machine_id):
    shape, machine = SHAPES[name], load_machine(machine_id)
    for threads in (1, 2):
        space = search_space(shape, machine, threads)
        assert space.configs[0] == predict(shape, machine, threads).config
        assert len(set(space.configs)) == len(space.configs)
        unpruned = list(unpruned_space(shape, machine, threads))
        assert len(unpruned) == space.unpruned_size
        if space.unpruned_size >= 20 * 5:  # large: at least 5 configurations would survive a 20x cut
            assert space.unpruned_size >= 20 * len(space)
        for config in unpruned:
            config.check_fits(shape)
        kept = set(unpruned)
        for config in space.configs:
            config.check_fits(shape)
            assert config.replace(rows=None, parallel="co") in kept or config in kept
        if kernel_kind(shape, machine.n_vec) in LANE_KINDS:
            assert {(c.cib, c.unroll) for c in unpruned} == {(None, 1)}
