"""The analytical model on hand-computed cases: register constraints, cache blocks, threading, pruning."""

from __future__ import annotations

import dataclasses

import pytest

from directconv.core.config import KernelConfig
from directconv.core.shape import LANE_KINDS, ConvShape, kernel_kind
from directconv.core.suite import get_layer, suite
from directconv.machines.loader import bundled_machines, load_machine
from directconv.machines.machine import Cache, Machine
from directconv.model import estimate_config, predict, register_tiles, search_space, tile_efficiency, unpruned_space
from directconv.model.cache import choose_cib, l1_fit, l2_fit, tile_input_bytes_per_block, weights_level
from directconv.model.estimate import step_cycles
from directconv.model.kinds import group_shape
from directconv.model.lanes import gathers, registers
from directconv.model.roofline import input_reads, layer_memory
from directconv.model.split import CO_BALANCE_MIN, ROWS_PER_TASK, choose_parallel, operand_bytes


def machine(isa: str, n_vec: int, n_reg: int, n_fma: float, l_fma: float, l1=32, l2=1024, cores=4) -> Machine:
    return Machine(
        id=f"test-{isa}",
        name="test",
        vendor="test",
        isa=isa,
        n_vec=n_vec,
        n_reg=n_reg,
        n_fma=n_fma,
        l_fma=l_fma,
        freq_ghz=3.0,
        cores=cores,
        threads_per_core=1,
        caches=(Cache(1, l1, 8, 64, 1), Cache(2, l2, 16, 64, 1)),
        compiler_flags=(),
        sources={},
    )


HASWELL = machine("avx2", 8, 16, 2, 5, l2=256)  # Haswell: 2 FMA ports, latency 5 (Intel optimization manual)
SKYLAKE_SP = machine("avx512", 16, 32, 2, 4)
CORTEX_A57 = machine("neon", 4, 32, 1, 5, l1=32, l2=2048)


def check_constraints(m: Machine, shape: ConvShape, threads: int = 1) -> None:
    plan = predict(shape, m, threads)
    c = plan.config
    c.check_fits(shape)
    vectors = c.cob // m.n_vec
    assert c.cob % m.n_vec == 0
    assert plan.kind == kernel_kind(shape, m.n_vec)
    if plan.kind in LANE_KINDS:
        view = shape.kernel_view()
        assert (c.cib, c.unroll) == (None, 1), "the lane-wise kernel has no input-channel loop"
        assert registers(view, gathers(view, m.n_vec), vectors, c.wob, m.n_reg)[0] <= m.n_reg
    else:
        unit = group_shape(shape)  # a grouped layer's blocks stay within one group
        spare = 1 if shape.kh * shape.kw == 1 else 0  # GCC needs one unnamed register only in 1x1 layers' loop
        assert vectors * c.wob + vectors + 1 + spare <= m.n_reg, "accumulators + weights + broadcast (+ spare) fit"
        assert c.unroll == (1 if unit.ci < m.n_vec else 2), "unrolling a channel loop shorter than a vector spills"
        assert c.cob <= -(-unit.co // m.n_vec) * m.n_vec
    co_vectors = -(-group_shape(shape).co // m.n_vec)
    if vectors * c.wob < m.n_fma * m.l_fma:
        # Below paper eq. 1 (E >= N_vec * N_fma * L_fma) only for a layer too narrow for more, or, in the lane-wise
        # kernel, where every wider tile estimates slower (edge tiles); the plan says which.
        assert co_vectors * shape.wo < m.n_fma * m.l_fma or plan.kind in LANE_KINDS
        assert any(r.parameter == "E" and "below the latency bound" in r.why for r in plan.reasons)
    assert c.cib is None or c.cib % m.n_vec == 0
    assert c.threads == threads
    # The kernels skip the taps in the padding: the peak bounds the rate of the multiply-adds they run.
    view = shape.kernel_view()
    assert 0 < plan.predicted_gflops * view.executed_flops() / view.flops() <= m.peak(threads) * (1 + 1e-9)


def test_haswell_needs_80_accumulated_elements_and_fits_16_registers():
    assert HASWELL.fma_in_flight == 80
    plan = predict(get_layer("vgg16:conv3_2").shape, HASWELL)
    vectors = plan.config.cob // 8
    assert vectors * plan.config.wob * 8 >= 80
    assert vectors * plan.config.wob + vectors + 1 <= 16  # accumulators + weights + broadcast (3x3: no spare)
    text = plan.explain()
    assert "N_fma*L_fma = 2*5 = 10" in text and "<= N_reg=16" in text


def test_skylake_and_a57_plans():
    shape = get_layer("resnet50:res3_3x3").shape
    sky = predict(shape, SKYLAKE_SP).config
    assert sky.isa == "avx512" and sky.cob % 16 == 0 and (sky.cob // 16) * sky.wob >= 8
    a57 = predict(shape, CORTEX_A57).config
    assert a57.isa == "neon" and a57.cob % 4 == 0 and (a57.cob // 4) * a57.wob >= 5


@pytest.mark.parametrize("m", [HASWELL, SKYLAKE_SP, CORTEX_A57], ids=lambda m: m.isa)
def test_every_suite_layer_satisfies_every_constraint(m):
    for layer in suite():
        for threads in (1, 2):
            check_constraints(m, layer.shape, threads)


def test_narrow_layer_says_it_cannot_hide_latency():
    shape = ConvShape.from_args(8, 8, 3, 3, 3, 3, 1, 1)  # one output vector, 3 columns
    plan = predict(shape, HASWELL)
    assert plan.config.cob == 8 and plan.config.wob == 3
    assert any(r.parameter == "E" and "below the latency bound" in r.why for r in plan.reasons)


def test_edge_tiles_steer_the_width():
    # W_o = 14 on a Zen 3-like core: 2x6 tiles leave a 2-column tile that pays the whole latency for 4 FMAs, so
    # the model ranks tiles that cover 14 columns without such a narrow edge first (2x5: 5+5+4, 3x4: 4+4+4+2 with
    # 6 accumulators in the edge) and 2x6 below them. (1x14 has no edge either, but is one vector tall: see
    # test_one_vector_tiles_pay_for_their_broadcasts_where_fmas_cannot_broadcast.)
    zen3 = machine("avx2", 8, 16, 2, 4)
    tiles = [(t.vectors, t.width) for t in register_tiles(zen3, get_layer("resnet50:res4_3x3").shape)]
    assert tiles.index((2, 5)) < tiles.index((2, 6)) and tiles.index((3, 4)) < tiles.index((2, 6))
    first = tiles[0]
    assert 14 % first[1] == 0 or first[0] * (14 % first[1]) >= 6, f"{first} leaves a narrow edge tile"


def test_latency_slack_applies_to_short_per_tap_loops_only():
    # A tile with exactly N_fma * L_fma = 8 accumulators (2x4 on a Zen 3-like core): in a 3x3 layer's per-tap loops
    # the latency bound is stretched by the machine's latency_slack (80% of peak); in a 1x1 layer's single long loop
    # it is not.
    zen3 = machine("avx2", 8, 16, 2, 4)
    assert tile_efficiency(zen3, 2, 4) == pytest.approx(0.8)
    assert tile_efficiency(zen3, 2, 4, long_loop=True) == pytest.approx(1.0)
    view = get_layer("resnet50:res2_1x1_64to256").shape.kernel_view()
    one_by_one = [(t.vectors, t.width) for t in register_tiles(zen3, view)]
    assert one_by_one.index((2, 4)) < 6, "an 8-accumulator tile is a front runner in a 1x1 layer"


def test_one_vector_tiles_lose_ties():
    # resnet50:res4_3x3 without its padding (16x16 in, 14x14 out) on a Zen 3-like core: 1x14 and 2x5 tie on
    # estimated cycles; one vector tall means a broadcast per multiply-add, so 2x5 goes first.
    zen3 = machine("avx2", 8, 16, 2, 4)
    tiles = register_tiles(zen3, ConvShape.from_args(256, 256, 16, 16, 3, 3, 1, 0))
    by_shape = {(t.vectors, t.width): t for t in tiles}
    assert by_shape[(1, 14)].cycles == pytest.approx(by_shape[(2, 5)].cycles)
    assert tiles.index(by_shape[(2, 5)]) < tiles.index(by_shape[(1, 14)])
    assert predict(get_layer("resnet50:res4_3x3").shape, zen3).config.cob > 8


def test_one_vector_tiles_pay_for_their_broadcasts_where_fmas_cannot_broadcast():
    # alexnet:conv4 (13x13 output) on a Zen 3-like AVX2 core: the 1x13 tile has the fewest estimated cycles (no
    # edge tile), but each of its multiply-adds needs a broadcast instruction of its own; charged
    # the machine's one_vector_penalty it ranks behind a taller tile, and the prediction is not one vector tall.
    shape = get_layer("alexnet:conv4").shape
    zen3 = machine("avx2", 8, 16, 2, 4)
    tiles = register_tiles(zen3, shape)
    fewest = min(tiles, key=lambda t: t.cycles)
    assert (fewest.vectors, fewest.width) == (1, 13)
    runner_up = tiles[0]
    assert runner_up.vectors > 1 and fewest.cycles < runner_up.cycles < fewest.cycles * zen3.one_vector_penalty
    assert predict(shape, zen3).config.cob > 8
    # Where a multiply-add takes its operand from a lane (NEON fmla by element), the order is the estimate's.
    neon = machine("neon", 4, 32, 2, 4)
    tiles = register_tiles(neon, shape)
    assert tiles[0].cycles == min(t.cycles for t in tiles)


def test_cache_block_keeps_weights_in_l1_and_respects_streams():
    shape = get_layer("vgg16:conv4_2").shape  # 512 -> 512, 3x3
    plan = predict(shape, HASWELL)
    c = plan.config
    why = next(r.why for r in plan.reasons if r.parameter == "cib")
    assert "kept in L1" in why and "ways" in why
    l1 = HASWELL.cache(1)
    way = l1.size_bytes // l1.ways
    weight_ways = -(-c.cib * c.cob * 9 * 4 // way)
    assert weight_ways + 1 <= l1.ways - 1, "the weight block and one way of streaming input leave a way free"
    assert (c.cib // 8) * 3 <= 16  # input planes x filter rows within the prefetch streams
    small = predict(get_layer("googlenet:3a_5x5").shape, HASWELL)  # 16 input channels: no reason to block
    assert small.config.cib is None


def test_cache_block_by_ways_hand_computed():
    # vgg16:conv4_2 on Haswell's L1 (32 KiB, 8 ways of 4 KiB, 64 B lines), a 24x4 tile. Per 8 input channels the
    # weights take 24*3*3*8*4 = 6912 B; the tile reads 3 rows of (4-1)*1+3 = 6 columns x 32 B = 192 B, i.e.
    # ceil(192/64)+1 = 4 lines per row, 768 B. 16 channels: 13824 B = 4 ways + 1 way of input <= 7. 24 channels:
    # 20736 B = 6 ways + 1 <= 7. 32 channels: 27648 B = 7 ways + 1 > 7. So 24 channels fit.
    shape = get_layer("vgg16:conv4_2").shape
    fit = l1_fit(HASWELL, shape, 24, 4)
    assert (fit.channels, fit.weight_ways, fit.other_ways) == (24, 6, 1)
    cib, why = choose_cib(HASWELL, shape, 24, 4)
    assert cib == 16 and "6 + input 1 <= 8 - 1 ways" in why  # 24 rounded down to the N_vec * 2^k ladder
    # Same size, half the ways (8 KiB each): 16 channels take 2 + 1 <= 3 ways, 24 channels 3 + 1 > 3.
    four_way = Machine(**{**HASWELL.__dict__, "caches": (Cache(1, 32, 4, 64, 1), Cache(2, 256, 8, 64, 1))})
    assert l1_fit(four_way, shape, 24, 4).channels == 16
    # A 2-way L1 leaves one way after the reserve: the weights of 16 channels do not fit beside the input, so
    # they live in L2 (256 KiB, 8 ways of 32 KiB), beside the 3-row input window (28 columns x 32 B = 896 B:
    # ceil(896/64)+1 = 15 lines per row, 2880 B per 8 channels). 176 channels: 152064 B = 5 ways + 63360 B = 2 ways
    # <= 7; 184 channels: 5 + 3 > 7.
    two_way = Machine(**{**HASWELL.__dict__, "caches": (Cache(1, 32, 2, 64, 1), Cache(2, 256, 8, 64, 1))})
    assert weights_level(two_way, shape, 24, 4) == 2
    assert l2_fit(two_way, shape, 24).channels == 176
    # Lines are whole: a 128 B line (Apple M1) makes the same 192 B run touch 3 lines of 128 B.
    assert tile_input_bytes_per_block(shape, 8, 4, Cache(1, 128, 8, 128, 1)) == 3 * 3 * 128


def test_threads_share_the_larger_operand():
    # VGG-16 conv3_2, 256 -> 256 at 56x56, 3x3: input 256*56*56*4 B = 3136 KiB, weights 256*256*9*4 B = 2304 KiB.
    # The input is larger: the threads split rows, 4 per task, and share the input.
    shape = get_layer("vgg16:conv3_2").shape
    assert operand_bytes(shape, SKYLAKE_SP.n_vec) == (3136 * 1024, 2304 * 1024)
    two = predict(shape, SKYLAKE_SP, threads=2)
    assert (two.config.parallel, two.config.rows) == ("rows", ROWS_PER_TASK)
    assert "input is the larger operand" in next(r.why for r in two.reasons if r.parameter == "parallel")
    # ResNet-50 res5_3x3, 512 -> 512 at 7x7: weights 9216 KiB, input 98 KiB. The weights are larger: each thread
    # takes whole output-channel blocks; 512 / 16 = 32 blocks divide evenly over 2 threads.
    deep = get_layer("resnet50:res5_3x3").shape
    parallel, rows, bal, why = choose_parallel(deep, SKYLAKE_SP, 16, 2)
    assert (parallel, rows, bal) == ("co", None, 1.0) and "larger operand" in why
    # AVX-512, 16 lanes: 32 blocks of 16 channels over 3 threads, 11 + 11 + 10, balance 32/33: still co. 5 blocks
    # of 112 channels over 3 threads, 2 + 2 + 1, balance 5/6: rows of 4 over 7 rows (2 row tasks x 5 blocks = 10
    # tasks on 3 threads: 4 + 3 + 3, balance 10/12).
    assert 5 / 6 < CO_BALANCE_MIN <= 32 / 33
    assert choose_parallel(deep, SKYLAKE_SP, 16, 3)[:3] == ("co", None, pytest.approx(32 / 33))
    assert choose_parallel(deep, SKYLAKE_SP, 112, 3)[:3] == ("rows", ROWS_PER_TASK, pytest.approx(10 / 12))
    # One thread never splits.
    assert choose_parallel(shape, SKYLAKE_SP, 16, 1)[:2] == ("co", None)


def test_pruned_space_offers_every_split_at_several_threads():
    shape = get_layer("resnet50:res4_3x3").shape
    splits = {(c.parallel, c.rows) for c in search_space(shape, SKYLAKE_SP, 2).configs}
    assert {("co", None), ("rows", 1), ("rows", ROWS_PER_TASK)} <= splits
    assert search_space(shape, SKYLAKE_SP, 2).configs[0] == predict(shape, SKYLAKE_SP, 2).config


@pytest.mark.parametrize(
    "name", ["vgg16:conv3_2", "resnet50:res4_1x1_1024to256", "alexnet:conv2", "googlenet:3a_3x3", "resnet50:res5_3x3"]
)
def test_pruned_space_is_20x_smaller_valid_and_led_by_the_prediction(name):
    shape = get_layer(name).shape
    space = search_space(shape, HASWELL)
    assert space.configs[0] == predict(shape, HASWELL).config
    assert len(set(space.configs)) == len(space.configs)
    assert space.unpruned_size >= 20 * len(space)
    rest = list(space.predicted_gflops[1:])
    assert rest == sorted(rest, reverse=True)
    unpruned = set(unpruned_space(shape, HASWELL))
    assert len(unpruned) == space.unpruned_size
    for config in space.configs:
        config.check_fits(shape)
        assert config.replace(rows=None, parallel="co") in unpruned
    assert len(space.cuts) >= 3


def test_unknown_isa_is_refused_with_reason():
    sve = machine("sve", 8, 32, 2, 4)
    with pytest.raises(ValueError, match=r"no kernel generator for isa 'sve' yet"):
        predict(get_layer("vgg16:conv3_2").shape, sve)


def test_predict_for_every_bundled_machine_and_suite_layer_satisfies_the_constraints():
    machines = bundled_machines()
    assert len(machines) >= 13
    for m in machines:
        for layer in suite():
            check_constraints(m, layer.shape, threads=1)
            check_constraints(m, layer.shape, threads=min(4, m.cores))


def test_rows_entirely_in_the_padding_do_not_break_the_estimate():
    shape = ConvShape.from_args(1, 1, 1, 1, 1, 1, 1, (0, 2, 0, 0))  # output rows 1 and 2 see only padding
    plan = predict(shape, HASWELL)
    assert plan.predicted_gflops > 0


# ---- The machine's numbers, not the model's ------------------------------------------------------------------------


def test_the_estimate_reads_the_machines_factors():
    zen3 = machine("avx2", 8, 16, 2, 4)
    # latency_slack stretches the latency bound of short per-tap loops only.
    assert tile_efficiency(dataclasses.replace(zen3, latency_slack=1.0), 2, 4) == pytest.approx(1.0)
    assert tile_efficiency(dataclasses.replace(zen3, latency_slack=2.0), 2, 4) == pytest.approx(0.5)
    assert tile_efficiency(dataclasses.replace(zen3, latency_slack=2.0), 2, 4, long_loop=True) == pytest.approx(1.0)
    # Weights streaming from L2: 3 vectors of 8 fp32 = 96 bytes per step, against 12 FMAs = 6 cycles on 2 pipes.
    assert step_cycles(dataclasses.replace(zen3, l2_bytes_per_cycle=8.0), 3, 4, weights_from_l2=True) == 12.0
    assert step_cycles(dataclasses.replace(zen3, l2_bytes_per_cycle=64.0), 3, 4, weights_from_l2=True) == 6.0
    # Loads: 3 weight vectors + 4 broadcasts per step.
    assert step_cycles(dataclasses.replace(zen3, n_load=1.0), 3, 4) == 7.0


def test_the_cache_block_reads_the_prefetch_streams():
    # vgg16:conv4_2 on Haswell, a 24x4 tile: 16 streams (half of 32) allow 16 // 3 = 5 planes of 8 channels; half
    # as many streams allow 2 planes, 16 channels, which the L1 fit (24, rounded to 16) also gives.
    shape = get_layer("vgg16:conv4_2").shape
    few = dataclasses.replace(HASWELL, prefetch_streams=8)
    assert choose_cib(few, shape, 24, 4)[0] == 8 and "bound by prefetch streams" in choose_cib(few, shape, 24, 4)[1]
    assert choose_cib(HASWELL, shape, 24, 4)[0] == 16


def test_one_vector_penalty_is_charged_only_where_multiply_adds_cannot_broadcast():
    shape = get_layer("alexnet:conv4").shape
    zen3 = machine("avx2", 8, 16, 2, 4)
    free = dataclasses.replace(zen3, one_vector_penalty=1.0)
    assert register_tiles(free, shape)[0].vectors == 1 and register_tiles(zen3, shape)[0].vectors > 1
    neon = machine("neon", 4, 32, 2, 4)
    assert register_tiles(neon, shape) == register_tiles(dataclasses.replace(neon, one_vector_penalty=3.0), shape)


def test_spilling_configurations_pay_the_machines_spill_penalty():
    shape = get_layer("vgg16:conv3_2").shape
    spills = KernelConfig("avx2", 32, 12)  # 48 accumulators + 4 weights + 1 broadcast > 16 registers
    mild, harsh = (dataclasses.replace(HASWELL, spill_penalty=p) for p in (1.25, 2.5))
    # The in-core time doubles; the transfers added to it (model/roofline.py) do not.
    view = shape.kernel_view()
    transfers = layer_memory(view, mild, 1, input_reads(view, mild, 32, "co", 1)).seconds
    mild_s, harsh_s = (view.flops() / estimate_config(shape, m, spills) / 1e9 for m in (mild, harsh))
    assert harsh_s - transfers == pytest.approx(2 * (mild_s - transfers))


# (machine, layer, threads) -> (cob, wob, cib, rows, parallel, unroll), predicted GFLOP/s: the model's output for
# the bundled descriptions, pinned so that a change in the model or in a description shows here first. Two pass the
# FMA peak of their threads in nominal FLOPs (zen4 alexnet:conv4, apple-m1 res5_3x3): their kernels skip the taps in
# the padding that the FLOP count includes; over the multiply-adds run they stay below it (model/roofline.py).
PINNED = [
    ("zen3", "vgg16:conv3_2", 1, (24, 4, 16, None, "co", 2), 77.836715),
    ("zen3", "resnet50:res2_1x1_64to256", 2, (16, 6, None, 4, "rows", 2), 150.812697),  # 4 tiles of its one row
    ("zen3", "alexnet:conv4", 1, (40, 2, 16, None, "co", 2), 76.370137),
    ("haswell", "alexnet:conv1", 1, (24, 4, None, None, "co", 1), 98.442464),
    ("haswell", "alexnet:conv2", 2, (24, 4, 16, None, "co", 2), 190.590599),
    ("haswell", "alexnet:conv4", 1, (24, 4, 16, None, "co", 2), 98.165552),
    ("skylake-sp", "resnet50:res4_3x3", 2, (32, 14, 64, None, "co", 2), 307.222717),
    ("cortex-a57", "alexnet:conv1", 1, (8, 14, None, None, "co", 1), 8.754905),
    ("piledriver", "vgg16:conv5_2", 2, (16, 5, 32, None, "co", 2), 131.512239),
    ("generic", "alexnet:conv2", 1, (7, 1, 2, None, "co", 2), 4.352469),
    ("zen4", "alexnet:conv4", 1, (48, 9, 64, None, "co", 2), 84.112996),
    ("apple-m1", "resnet50:res5_3x3", 2, (12, 7, 16, None, "co", 2), 216.676122),
]


@pytest.mark.parametrize(
    ("machine_id", "layer", "threads", "config", "gflops"),
    PINNED,
    ids=[f"{m}-{layer}-t{t}" for m, layer, t, _, _ in PINNED],
)
def test_pinned_predictions(machine_id, layer, threads, config, gflops):
    plan = predict(get_layer(layer).shape, load_machine(machine_id), threads)
    c = plan.config
    assert ((c.cob, c.wob, c.cib, c.rows, c.parallel, c.unroll), c.threads) == (config, threads)
    assert plan.predicted_gflops == pytest.approx(gflops, rel=1e-6)


@pytest.mark.parametrize("machine_id", ["zen3", "skylake-sp", "cortex-a57"])
def test_the_plan_says_when_the_kernel_reads_its_input_as_nchw(machine_id: str) -> None:
    machine = load_machine(machine_id)
    first = predict(get_layer("resnet50:conv1").shape, machine, 1)
    (reason,) = [r for r in first.reasons if r.parameter == "input"]
    assert reason.value == "NCHW" and f"<= {machine.n_vec} lanes" in reason.why
    assert "input = NCHW" in first.explain()
    later = predict(get_layer("resnet50:res2_3x3").shape, machine, 1)
    assert [r.value for r in later.reasons if r.parameter == "input"] == ["blocked"]


def test_predict_json_names_the_input_layout(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from directconv.cli.main import main

    assert main(["predict", "--machine", "zen3", "--layer", "alexnet:conv1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["input_layout"] == "NCHW"


def test_predict_json_gives_the_percent_of_peak_and_the_share_of_the_flops_run(capsys) -> None:
    import json

    from directconv.cli.main import main

    assert main(["predict", "--machine", "zen4", "--layer", "resnet50:res5_3x3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["executed_fraction"] == pytest.approx((19 / 21) ** 2, abs=1e-4)  # 7x7, padded by 1: 2 of 21 taps
    zen4 = load_machine("zen4")
    assert out["predicted_percent_of_peak"] == pytest.approx(100 * out["predicted_gflops"] / zen4.peak(1), abs=0.1)
    assert 100 < out["predicted_percent_of_peak"] <= 100 / out["executed_fraction"]


@pytest.mark.parametrize("layer", ["mobilenetv2:dw3x3_960", "resnet50:res4_1x1_1024to256", "vgg16:conv3_2"])
@pytest.mark.parametrize("threads", [1, 2])
def test_a_probed_call_cost_is_added_to_the_estimate_and_changes_no_choice(layer, threads):
    # The probed fixed cost of a call (Machine.call_us) lengthens every estimate by that much, so that a small
    # layer's predicted speed is its call's; being the same for every configuration of a layer, it ranks none higher.
    zen3 = load_machine("zen3")
    charged = dataclasses.replace(zen3, call_us={1: 5.0, 2: 6.0})
    shape = get_layer(layer).shape
    plain, with_call = predict(shape, zen3, threads), predict(shape, charged, threads)
    assert with_call.config == plain.config
    assert search_space(shape, charged, threads).configs == search_space(shape, zen3, threads).configs
    seconds = shape.kernel_view().flops() / (plain.predicted_gflops * 1e9) + (5e-6 if threads == 1 else 6e-6)
    assert with_call.predicted_gflops == pytest.approx(shape.kernel_view().flops() / seconds / 1e9)
    assert estimate_config(shape, charged, plain.config) == pytest.approx(with_call.predicted_gflops)
    assert "us per call (the probed fixed cost" in with_call.explain()
