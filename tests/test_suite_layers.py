"""Grouped, depthwise and dilated layers in the suite, the commands' --groups and --dilation options, the bandwidth
loop and its roofline in the per-layer bench."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np
import pytest

from directconv.bench import kind, per_layer, session
from directconv.bench.base import Impl, Prepared
from directconv.bench.layer import LayerProblem, check_output
from directconv.bench.results import OK, Result, RooflineTiming
from directconv.bench.runner import ROOFLINE, Settings, run
from directconv.cli.layers import selected_layers
from directconv.cli.main import build_parser
from directconv.core.shape import ConvShape
from directconv.core.suite import NETWORKS, Layer, get_layer, network_layers, parse_row, suite
from directconv.tuner import bandwidth
from directconv.tuner.harness import Timing
from directconv.tuner.peak import Peak

# The 22 layers the suite had before grouped layers: name, Ci, Co, H, W, kh, kw, stride, pad.
ORIGINAL = [
    ("alexnet:conv1", 3, 96, 227, 227, 11, 11, 4, 0),
    ("alexnet:conv2", 96, 256, 27, 27, 5, 5, 1, 2),
    ("alexnet:conv3", 256, 384, 13, 13, 3, 3, 1, 1),
    ("alexnet:conv4", 384, 384, 13, 13, 3, 3, 1, 1),
    ("alexnet:conv5", 384, 256, 13, 13, 3, 3, 1, 1),
    ("vgg16:conv1_2", 64, 64, 224, 224, 3, 3, 1, 1),
    ("vgg16:conv2_2", 128, 128, 112, 112, 3, 3, 1, 1),
    ("vgg16:conv3_2", 256, 256, 56, 56, 3, 3, 1, 1),
    ("vgg16:conv4_2", 512, 512, 28, 28, 3, 3, 1, 1),
    ("vgg16:conv5_2", 512, 512, 14, 14, 3, 3, 1, 1),
    ("resnet50:conv1", 3, 64, 224, 224, 7, 7, 2, 3),
    ("resnet50:res2_3x3", 64, 64, 56, 56, 3, 3, 1, 1),
    ("resnet50:res3_3x3", 128, 128, 28, 28, 3, 3, 1, 1),
    ("resnet50:res4_3x3", 256, 256, 14, 14, 3, 3, 1, 1),
    ("resnet50:res5_3x3", 512, 512, 7, 7, 3, 3, 1, 1),
    ("resnet50:res2_1x1_256to64", 256, 64, 56, 56, 1, 1, 1, 0),
    ("resnet50:res2_1x1_64to256", 64, 256, 56, 56, 1, 1, 1, 0),
    ("resnet50:res4_1x1_1024to256", 1024, 256, 14, 14, 1, 1, 1, 0),
    ("resnet50:res5_1x1_512to2048", 512, 2048, 7, 7, 1, 1, 1, 0),
    ("resnet50:res3_1x1s2_256to512", 256, 512, 56, 56, 1, 1, 2, 0),
    ("googlenet:3a_3x3", 96, 128, 28, 28, 3, 3, 1, 1),
    ("googlenet:3a_5x5", 16, 32, 28, 28, 5, 5, 1, 2),
]

# The layers added with grouped convolutions: name, channels in and out, size, kernel, stride, pad, groups, dilation.
ADDED = [
    ("mobilenetv2:dw3x3_32", 32, 32, 112, 3, 1, 1, 32, 1),
    ("mobilenetv2:dw3x3s2_96", 96, 96, 112, 3, 2, 1, 96, 1),
    ("mobilenetv2:dw3x3_144", 144, 144, 56, 3, 1, 1, 144, 1),
    ("mobilenetv2:dw3x3_192", 192, 192, 28, 3, 1, 1, 192, 1),
    ("mobilenetv2:dw3x3_384", 384, 384, 14, 3, 1, 1, 384, 1),
    ("mobilenetv2:dw3x3_960", 960, 960, 7, 3, 1, 1, 960, 1),
    ("efficientnetb0:dw5x5_240", 240, 240, 28, 5, 1, 2, 240, 1),
    ("efficientnetb0:dw5x5s2_672", 672, 672, 14, 5, 2, 2, 672, 1),
    ("resnext50:res2_3x3g32", 128, 128, 56, 3, 1, 1, 32, 1),
    ("resnext50:res3_3x3g32", 256, 256, 28, 3, 1, 1, 32, 1),
    ("resnext50:res4_3x3g32", 512, 512, 14, 3, 1, 1, 32, 1),
    ("resnext50:res5_3x3g32", 1024, 1024, 7, 3, 1, 1, 32, 1),
    ("alexnet-grouped:conv2", 96, 256, 27, 5, 1, 2, 2, 1),
    ("deeplabv3:aspp_3x3d6", 256, 256, 33, 3, 1, 6, 1, 6),
    ("deeplabv3:aspp_3x3d12", 256, 256, 33, 3, 1, 12, 1, 12),
    ("deeplabv3:res5_3x3d2", 512, 512, 28, 3, 1, 2, 1, 2),
]


# Every command that takes a shape from options, with what else it requires.
COMMANDS = [["predict"], ["tune"], ["export", "--out", "unused"], ["inspect"]]

# --- the suite ------------------------------------------------------------------------------------------------------


def test_the_original_22_layers_keep_their_names_shapes_and_order() -> None:
    original = suite()[: len(ORIGINAL)]
    assert [layer.name for layer in original] == [row[0] for row in ORIGINAL]
    for layer, (_, ci, co, h, w, kh, kw, stride, pad) in zip(original, ORIGINAL, strict=True):
        assert layer.shape == ConvShape.from_args(ci, co, h, w, kh, kw, stride, pad)
        assert layer.shape.groups == 1 and not layer.shape.dilated
    for network, count in (("alexnet", 5), ("vgg16", 5), ("resnet50", 10), ("googlenet", 2)):
        assert [layer.name for layer in network_layers(network)] == [
            r[0] for r in ORIGINAL if r[0].startswith(f"{network}:")
        ]
        assert len(network_layers(network)) == count


@pytest.mark.parametrize("row", ADDED, ids=lambda row: row[0])
def test_added_layers_parse_with_their_groups_and_dilation(row: tuple) -> None:
    name, ci, co, size, k, stride, pad, groups, dilation = row
    shape = get_layer(name).shape
    assert shape == ConvShape.from_args(ci, co, size, size, k, k, stride, pad, dilation, groups)
    assert (shape.groups, shape.dh, shape.dw) == (groups, dilation, dilation)
    # Padding = dilation * (k - 1) / 2 keeps the size at stride 1, as every one of these layers does.
    assert shape.ho == -(-size // stride)
    assert shape.flops() == 2 * co * (ci // groups) * k * k * shape.ho * shape.wo


def test_every_network_has_layers_and_the_cli_accepts_it() -> None:
    assert len(suite()) == len(ORIGINAL) + len(ADDED)
    assert {layer.network for layer in suite()} == set(NETWORKS)
    assert [layer.name for layer in network_layers("alexnet-grouped")] == ["alexnet-grouped:conv2"]
    assert {layer.shape.groups for layer in network_layers("mobilenetv2")} == {32, 96, 144, 192, 384, 960}
    assert all(layer.shape.cig == 1 for net in ("mobilenetv2", "efficientnetb0") for layer in network_layers(net))
    assert {layer.shape.groups for layer in network_layers("resnext50")} == {32}
    assert {layer.shape.dh for layer in network_layers("deeplabv3")} == {2, 6, 12}
    parser = build_parser()
    for command in COMMANDS:
        args = parser.parse_args([*command, "--network", "mobilenetv2", "--network", "deeplabv3"])
        # Suite-only networks: their suite layers, nothing from networks.yaml.
        assert [layer.name for layer in selected_layers(args)] == [
            layer.name for net in ("mobilenetv2", "deeplabv3") for layer in network_layers(net)
        ]


def test_a_bad_row_names_the_layer_and_the_key() -> None:
    row = {"name": "x:y", "Ci": 8, "Co": 8, "H": 5, "W": 5, "kh": 3, "kw": 3, "stride": 1, "pad": 1}
    assert parse_row({**row, "groups": 8}).shape.groups == 8
    with pytest.raises(ValueError, match=r"layer 'x:y' needs the keys .* missing none, unknown \['group'\]"):
        parse_row({**row, "group": 8})
    with pytest.raises(ValueError, match=r"layer 'x:y' .* missing \['pad'\]"):
        parse_row({k: v for k, v in row.items() if k != "pad"})
    with pytest.raises(ValueError, match=r"layer 'x:y': groups=3 must divide both channel counts, got C_i=8"):
        parse_row({**row, "groups": 3})
    with pytest.raises(ValueError, match=r"layer 'x:y': dilation must be >= 1"):
        parse_row({**row, "dilation": 0})


# --- --groups and --dilation ----------------------------------------------------------------------------------------

SHAPE = ["--ci", "32", "--co", "64", "--h", "9", "--w", "11", "--kh", "3", "--kw", "3", "--stride", "2", "--pad", "2"]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda command: command[0])
def test_groups_and_dilation_reach_the_shape(command: list[str]) -> None:
    parser = build_parser()
    (layer,) = selected_layers(parser.parse_args([*command, *SHAPE, "--groups", "4", "--dilation", "2"]))
    assert layer.shape == ConvShape.from_args(32, 64, 9, 11, 3, 3, 2, 2, dilation=2, groups=4)
    assert layer.name == layer.shape.describe() and "d2x2 g4" in layer.name
    (plain,) = selected_layers(parser.parse_args([*command, *SHAPE]))
    assert plain.shape == ConvShape.from_args(32, 64, 9, 11, 3, 3, 2, 2)


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_a_bad_groups_or_dilation_is_a_usage_error(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    for option in ("--groups", "--dilation"):
        with pytest.raises(SystemExit) as exit_info:
            build_parser().parse_args(["predict", *SHAPE, option, value])
        assert exit_info.value.code == 2
        assert f"argument {option}: expected a positive integer" in capsys.readouterr().err


def test_groups_that_do_not_fit_the_shape_say_why() -> None:
    parser = build_parser()
    with pytest.raises(ValueError, match=r"explicit shape: groups=3 must divide both channel counts, got C_i=32"):
        selected_layers(parser.parse_args(["predict", *SHAPE, "--groups", "3"]))
    with pytest.raises(ValueError, match=r"explicit shape: kernel 11x11 \(kernel 3x3 at dilation 5x5\) is larger"):
        selected_layers(parser.parse_args(["predict", *SHAPE[:-1], "0", "--dilation", "5"]))
    with pytest.raises(ValueError, match=r"--groups and --dilation belong to an explicit shape"):
        selected_layers(parser.parse_args(["predict", "--layer", "vgg16:conv3_2", "--groups", "2"]))
    with pytest.raises(ValueError, match=r"needs all of --ci --co --h --w --kh --kw; missing --kw"):
        selected_layers(parser.parse_args(["predict", *SHAPE[:10], "--groups", "2"]))


def test_the_commands_main_reports_a_bad_shape_as_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    from directconv.cli.main import main

    assert main(["predict", "--machine", "haswell", *SHAPE, "--groups", "5"]) == 2
    assert "groups=5 must divide both channel counts" in capsys.readouterr().err


# --- the bandwidth loop ---------------------------------------------------------------------------------------------


def test_minimal_traffic_is_input_weights_and_output_once() -> None:
    depthwise = get_layer("mobilenetv2:dw3x3_960").shape
    traffic = bandwidth.minimal_traffic(depthwise)
    assert traffic.read_bytes == 4 * (960 * 7 * 7 + 960 * 1 * 3 * 3)
    assert traffic.write_bytes == 4 * 960 * 7 * 7
    assert bandwidth.minimal_traffic(depthwise, batch=2).read_bytes == 4 * (2 * 960 * 49 + 960 * 9)
    with pytest.raises(ValueError, match="batch must be >= 1, got 0"):
        bandwidth.minimal_traffic(depthwise, batch=0)


@pytest.mark.compiler
@pytest.mark.parametrize("isa", ["host", "scalar"])
def test_stream_loop_reads_writes_everything_and_reports_a_positive_bandwidth(isa: str) -> None:
    from directconv.core.isa import host_isa
    from directconv.kernels import layout, stream

    name = host_isa() if isa == "host" else isa
    kernels = stream.load(name)
    for n_src, n_dst in ((0, 0), (5, 3), (4099, 1031)):  # empty, shorter than a vector, tails
        src = layout.empty_aligned((n_src,))
        dst = layout.empty_aligned((n_dst,), zero=True)
        src[:] = 1.0
        for threads in (1, 2):
            dst[:] = 0.0
            kernels.bind(src, dst, threads)()
            assert np.all(dst == 1.0), (n_src, n_dst, threads)
    loop = bandwidth.layer_stream(get_layer("mobilenetv2:dw3x3_960").shape, 1, isa=name)
    gbps = bandwidth.bandwidth_once(loop, 0.02)
    # Anything above 10 TB/s from one core is a loop the compiler deleted, not a fast machine.
    assert 0.01 < gbps < 10_000
    # Timed in C, a pass takes what the bytes need at such a rate (no Python call between passes).
    assert 0.01 < loop.traffic.bytes / loop.seconds_in_c(20) * 1e-9 < 10_000


@pytest.mark.compiler
def test_stream_passes_timed_in_c_write_the_fill_and_take_longer_for_more_bytes() -> None:
    from directconv.core.isa import host_isa
    from directconv.kernels import layout, stream

    kernels = stream.load(host_isa())
    small, large = (layout.empty_aligned((n,), zero=True) for n in (1 << 10, 1 << 22))
    timed_small, timed_large = (
        kernels.bind_timed(a, layout.empty_aligned(a.shape, zero=True), 1)[1] for a in (small, large)
    )
    assert timed_large(3) > 100 * timed_small(3)  # 4096x the bytes; far more than 100x the time on any machine
    dst = layout.empty_aligned((1031,), zero=True)
    kernels.bind_timed(small, dst, 2)[1](2)
    assert np.all(dst == 1.0)
    with pytest.raises(ValueError, match="passes must be >= 1, got 0"):
        timed_small(0)


def test_the_level_loops_fill_each_level_and_skip_one_the_threads_lower_levels_already_hold() -> None:
    kib, mib = 1 << 10, 1 << 20
    zen4_guest = [(1, 32 * kib, 1), (2, mib, 1), (3, 32 * mib, 2)]  # (level, bytes, cores sharing one)
    assert bandwidth.level_sizes(zen4_guest, 1) == [("L2", mib // 2), ("L3", 8 * mib), ("memory", 128 * mib)]
    # Two threads: half of each one's L2; the L3 (one instance) a quarter of it, still more than both L2s hold.
    assert bandwidth.level_sizes(zen4_guest, 2) == [("L2", mib), ("L3", 8 * mib), ("memory", 128 * mib)]
    # A small shared L3 that four threads' L2s outgrow is no level of its own for them.
    small_l3 = [(1, 32 * kib, 1), (2, mib, 1), (3, 2 * mib, 8)]
    assert bandwidth.level_sizes(small_l3, 4) == [("L2", 2 * mib), ("memory", 16 * mib)]
    # Hundreds of MiB of caches: the memory loop stays within MEMORY_BYTES_MAX but past every cache.
    many = [(2, mib, 1), (3, 32 * mib, 8)]
    assert bandwidth.level_sizes(many, 96)[-1] == ("memory", 2 * 12 * 32 * mib)


@pytest.mark.compiler
def test_level_bandwidths_are_measured_on_every_thread_count_asked() -> None:
    mib = 1 << 20
    probes = bandwidth.measure_levels([(2, mib // 4, 1)], [2, 1], seconds=0.01)
    assert [p.level for p in probes] == ["L2", "memory"]
    for p in probes:
        assert set(p.gbytes_per_s) == {1, 2}
        assert all(0.01 < g < 10_000 for g in p.gbytes_per_s.values()), p
    with pytest.raises(ValueError, match="threads must name at least one thread count, got none"):
        bandwidth.measure_levels([(2, mib, 1)], [])


@pytest.mark.compiler
def test_stream_loop_refuses_buffers_it_cannot_run_on() -> None:
    from directconv.core.isa import host_isa
    from directconv.kernels import layout, stream

    kernels = stream.load(host_isa())
    good = layout.empty_aligned((64,))
    with pytest.raises(TypeError, match=r"stream src must be a C-contiguous float32 numpy array, got dtype float64"):
        kernels.bind(np.zeros(64), good, 1)
    with pytest.raises(ValueError, match=r"stream dst must start on a 64-byte boundary"):
        kernels.bind(good, layout.empty_aligned((65,))[1:], 1)
    with pytest.raises(ValueError, match=r"threads must be >= 1, got 0"):
        kernels.bind(good, good, 0)


# --- the roofline in the bench --------------------------------------------------------------------------------------


def _fake_peak() -> Peak:
    return Peak("avx2", 1, 100.0, (100.0,), 12)


def test_percent_of_the_bandwidth_roofline_is_per_round() -> None:
    roof = RooflineTiming(2_000_000, (0.001, 0.002, 0.001))  # 2, 1, 2 GB/s
    timing = Timing((0.002, 0.002, 0.004), 10)  # the call: 1, 1, 0.5 GB/s of minimal traffic
    r = Result("t:l", "x", 1, OK, 10, _fake_peak(), timing=timing, roofline=roof)
    assert r.percent_of_bandwidth_roofline_rounds == pytest.approx((50.0, 100.0, 25.0))
    assert r.percent_of_bandwidth_roofline == pytest.approx(50.0)
    fields = per_layer.record(Layer("t:l", ConvShape.from_args(8, 8, 5, 5, 3, 3, 1, 1, groups=8)), r)
    assert fields["bandwidth_gbps"] == pytest.approx(2.0) and fields["bandwidth_gbps_rounds"] == pytest.approx(
        [2, 1, 2]
    )
    assert fields["minimal_bytes"] == 2_000_000 and fields["roofline_error"] is None
    json.dumps(fields, allow_nan=False)
    plain = per_layer.record(get_layer("vgg16:conv3_2"), Result("t:l", "x", 1, OK, 10, _fake_peak(), timing=timing))
    assert plain["percent_of_bandwidth_roofline"] is None and plain["bandwidth_gbps"] is None


def test_percent_of_the_roofline_is_the_larger_fraction_of_each_round() -> None:
    """The roofline is the lower of the FMA peak and the bandwidth bound: a call's time over the larger of the two
    bounds' times, so per round the larger of %peak and %bw."""
    roof = RooflineTiming(2_000_000, (0.001, 0.002, 0.001))  # %bw per round: 50, 100, 25
    timing = Timing((0.002, 0.002, 0.004), 10)
    # 200,000 FLOP per call: 0.1, 0.1, 0.05 GFLOP/s against in-round peaks of 0.2, 1.0, 0.1: %peak 50, 10, 50.
    r = Result("t:l", "x", 1, OK, 200_000, _fake_peak(), timing=timing, roofline=roof, peak_rounds=(0.2, 1.0, 0.1))
    assert r.percent_of_peak_rounds == pytest.approx((50.0, 10.0, 50.0))
    assert r.percent_of_roofline_rounds == pytest.approx((50.0, 100.0, 50.0))
    assert r.percent_of_roofline == pytest.approx(50.0)
    assert (
        Result("t:l", "x", 1, OK, 10, _fake_peak(), timing=timing, peak_rounds=(1.0,) * 3).percent_of_roofline is None
    )
    fields = per_layer.record(Layer("t:l", ConvShape.from_args(8, 8, 5, 5, 3, 3, 1, 1, groups=8)), r)
    assert fields["percent_of_roofline"] == pytest.approx(50.0)


def _small_problem() -> LayerProblem:
    return LayerProblem.make(Layer("test:dw", ConvShape.from_args(16, 16, 6, 7, 3, 3, 1, 1, groups=16)), 1)


def _answer(problem: LayerProblem) -> Impl[LayerProblem]:
    answer = problem.reference().astype(np.float32)
    return Impl("answer", "", lambda p, t: Prepared(lambda: answer, np.asarray))


def test_runner_times_the_roofline_loop_in_the_same_rounds() -> None:
    problem = _small_problem()
    calls: list[str] = []
    traffic = bandwidth.minimal_traffic(problem.shape)
    loop = bandwidth.StreamLoop(lambda: calls.append("loop"), traffic, 1, "avx2", lambda passes: 0.0)
    (result,) = run(problem.case(), [_answer(problem)], 1, _fake_peak(), Settings(rounds=3, min_time=0.001), loop)
    assert result.status == OK and result.timing is not None and result.roofline is not None
    assert len(result.roofline.samples) == len(result.timing.samples) == 3
    assert len(result.percent_of_bandwidth_roofline_rounds or ()) == 3 and "loop" in calls


def test_a_failing_roofline_loop_is_recorded_and_the_implementations_still_run() -> None:
    problem = _small_problem()

    def broken() -> None:
        raise RuntimeError("dc_stream refused its arguments")

    loop = bandwidth.StreamLoop(broken, bandwidth.minimal_traffic(problem.shape), 1, "avx2", lambda passes: 0.0)
    (result,) = run(problem.case(), [_answer(problem)], 1, _fake_peak(), Settings(rounds=2, min_time=0.001), loop)
    assert result.status == OK and result.timing is not None and len(result.timing.samples) == 2
    assert result.roofline is not None and result.roofline.samples == ()
    assert "dc_stream refused" in (result.roofline.error or "")
    assert result.percent_of_bandwidth_roofline is None
    line = per_layer.roofline_line({1: result.roofline})
    assert "1 thread not measured (" in line and "dc_stream refused" in line
    with pytest.raises(ValueError, match="yardstick names must differ"):
        run(problem.case(), [Impl(ROOFLINE, "", lambda p, t: Prepared(lambda: 0, np.asarray))], 1, _fake_peak(),
            Settings(rounds=1, min_time=0.001), loop)  # fmt: skip


def test_the_table_of_a_memory_bound_layer_has_a_bandwidth_column() -> None:
    timing = Timing((0.001, 0.001), 1)
    roof = RooflineTiming(1_000_000, (0.0005, 0.0005))  # 2 GB/s; the call moves 1 GB/s: 50%
    depthwise = get_layer("mobilenetv2:dw3x3_960")
    results = [Result(depthwise.name, "answer", 1, OK, 10**6, _fake_peak(), timing=timing, roofline=roof)]
    text = per_layer.layer_table(depthwise, ["answer"], [1], results)
    assert "bandwidth roofline: 0.95 MiB minimal traffic per call; loop in the same rounds: 1 thread 2 GB/s" in text
    assert "%bw" in text and "%roof" in text and " 50%" in text
    plain = per_layer.layer_table(depthwise, ["answer"], [1], [Result(depthwise.name, "answer", 1, OK, 10**6,
                                                                      _fake_peak(), timing=timing)])  # fmt: skip
    assert "%bw" not in plain and "bandwidth roofline" not in plain
    assert per_layer.memory_bound(depthwise) and not per_layer.memory_bound(get_layer("vgg16:conv3_2"))
    assert not per_layer.memory_bound(get_layer("deeplabv3:aspp_3x3d6"))


@pytest.mark.parametrize(
    "shape",
    [
        ConvShape.from_args(12, 12, 9, 11, 3, 3, 1, 1, groups=12),  # depthwise
        ConvShape.from_args(12, 16, 9, 11, 3, 3, 2, 2, dilation=2, groups=4),  # grouped, dilated, strided
        ConvShape.from_args(6, 12, 10, 10, 3, 3, 1, (1, 2, 0, 3), dilation=(2, 1), groups=6),  # asymmetric
        ConvShape.from_args(8, 8, 6, 7, 1, 1, 1, 0, groups=2),  # 1x1: im2col's direct path, per group
    ],
    ids=lambda s: s.describe(),
)
def test_every_peer_runs_grouped_and_dilated_layers(shape: ConvShape) -> None:
    problem = LayerProblem.make(Layer("test:grouped", shape), 3)
    assert problem.w.shape == (shape.co, shape.cig, shape.kh, shape.kw)
    reference = problem.reference()
    for impl in per_layer.REGISTRY.select(["numpy-im2col", "torch-nchw", "torch-channels_last", "onnxruntime"]):
        if impl.missing():
            continue
        prepared = impl.prepare(problem, 1)
        try:
            verdict = check_output(prepared.to_nchw(prepared.call()), reference, shape)
        finally:
            if prepared.close:
                prepared.close()
        assert verdict.correct, f"{impl.name}: {verdict.problem}"


# --- the bench end to end on a grouped and a depthwise layer --------------------------------------------------------


@pytest.mark.compiler
def test_bench_runs_a_grouped_and_a_depthwise_layer_like_for_like(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(session, "measure_peaks", lambda threads, **kw: {t: _fake_peak() for t in threads})
    out = tmp_path / "grouped.json"
    layers = ("resnext50:res5_3x3g32", "mobilenetv2:dw3x3_960")
    request = kind.Request(
        layers=layers, threads=(1,), settings=Settings(rounds=2, min_time=0.002, warmup_calls=0), json=out
    )
    status = session.run(per_layer.KIND, request)
    text = capsys.readouterr().out
    data = json.loads(out.read_text())
    records = {(r["layer"], r["impl"]): r for r in data["records"]}
    problems = [f"{key}: {r['error']}" for key, r in records.items() if r["status"] != OK]
    assert status == 0 and not problems, "\n".join(problems)
    assert {layer for layer, _ in records} == set(layers)
    for (layer, impl), r in records.items():
        assert r["correct"] is True and r["gflops"] > 0, (layer, impl)
        assert r["flops"] == get_layer(layer).shape.flops()
        assert r["shape"]["groups"] == get_layer(layer).shape.groups
        if per_layer.memory_bound(get_layer(layer)):
            assert r["percent_of_bandwidth_roofline"] > 0 and r["bandwidth_gbps"] > 0
            assert len(r["percent_of_bandwidth_roofline_rounds"]) == 2
            assert statistics.median(r["percent_of_bandwidth_roofline_rounds"]) == r["percent_of_bandwidth_roofline"]
        else:
            assert r["percent_of_bandwidth_roofline"] is None
    assert {impl for _, impl in records} >= {"directconv-blocked", "directconv-nchw", "numpy-im2col"}
    assert "bandwidth roofline:" in text and "%bw" in text


def test_bench_source_of_layers_names_the_new_networks() -> None:
    names = [layer.name for layer in per_layer.select_layers(None, ["resnext50", "alexnet-grouped"])]
    assert names == ["resnext50:res2_3x3g32", "resnext50:res3_3x3g32", "resnext50:res4_3x3g32",
                     "resnext50:res5_3x3g32", "alexnet-grouped:conv2"]  # fmt: skip
