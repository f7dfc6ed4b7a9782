"""A plain 1x1 stride-1 layer's NCHW entry: a matrix product on the NCHW planes (kernels/codegen_pointwise.py), its
tile (model/pointwise.py) and where conv2d_nchw uses it instead of converting."""

from __future__ import annotations

import numpy as np
import pytest

import directconv as dc
from directconv.core.isa import ISAS, get_isa, host_isa
from directconv.core.shape import ConvShape
from directconv.kernels import convert
from directconv.kernels.generator import generate
from directconv.kernels.reference import tolerance
from directconv.machines import load_machine
from directconv.model import pointwise, predict, split

HOST = get_isa(host_isa())
LANES = HOST.lanes
BOOKKEEPING_BYTES = 16 * 1024


def _pixels(runs: int, vectors: int, partial: int) -> int:
    """A plane of `runs` whole runs of the host's tile, then `vectors` more vectors and `partial` pixels."""
    _, v = pointwise.nchw_tile(HOST, 2 * LANES)
    return (runs * v + vectors) * LANES + partial


# (C_i, C_o, H, W): C_i not a multiple of the lanes, C_o leaving a narrower last block and a tile tail, planes of
# whole runs only, with more vectors, with a partial vector, and one of the minimum length.
SHAPES = [
    (LANES + 3, 2 * LANES, 1, _pixels(pointwise.MIN_RUNS, 0, 0)),
    (2 * LANES, 3 * LANES + 5, 1, _pixels(pointwise.MIN_RUNS + 1, 2, 0)),
    (7, 2 * LANES + 1, 1, _pixels(pointwise.MIN_RUNS, 1, 5)),
    (3 * LANES, LANES + 6, 2, _pixels(pointwise.MIN_RUNS, 0, 2 * 3)),  # two rows: H * W is the plane
    (40, 24, 28, 28),
]


def _packed(ci: int, co: int, h: int, w: int, rng: np.random.Generator, threads: int) -> tuple:
    wt = rng.standard_normal((co, ci, 1, 1)).astype(np.float32)
    bias = rng.standard_normal(co).astype(np.float32)
    config = dc.KernelConfig(HOST.name, 2 * LANES, 4, threads=threads)
    return wt, bias, dc.pack_weights(wt, bias, input_size=(h, w), config=config)


def _refuse(*args: object, **kwargs: object) -> None:
    raise AssertionError("a 1x1 layer's NCHW call must not convert")


@pytest.mark.compiler
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(("ci", "co", "h", "w"), SHAPES)
def test_matrix_product_matches_the_reference_without_converting(
    ci: int, co: int, h: int, w: int, threads: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(ci * co + w)
    wt, bias, packed = _packed(ci, co, h, w, rng, threads)
    assert packed.kernel.runs_nchw
    x = rng.standard_normal((2, ci, h, w)).astype(np.float32)
    monkeypatch.setattr(convert, "to_blocked", _refuse)
    monkeypatch.setattr(convert, "from_blocked", _refuse)
    for relu in (False, True):
        got = dc.conv2d_nchw(x, packed, relu=relu, threads=threads)
        expected = dc.conv2d_reference(x, wt, bias)
        expected = np.maximum(expected, 0) if relu else expected
        bound = tolerance(ci, 1, 1) * max(1.0, float(np.abs(expected).max()))
        np.testing.assert_allclose(got, expected, rtol=0, atol=bound)


@pytest.mark.compiler
def test_small_planes_keep_the_three_passes(rng: np.random.Generator) -> None:
    ci, co, h, w = 2 * LANES, 2 * LANES, 1, _pixels(pointwise.MIN_RUNS - 1, 1, 3)
    wt, bias, packed = _packed(ci, co, h, w, rng, 1)
    assert not packed.kernel.runs_nchw
    x = rng.standard_normal((1, ci, h, w)).astype(np.float32)
    expected = dc.conv2d_reference(x, wt, bias)
    np.testing.assert_allclose(dc.conv2d_nchw(x, packed), expected, rtol=0, atol=tolerance(ci, 1, 1) * 10)


@pytest.mark.compiler
def test_matrix_product_allocates_only_its_output(rng: np.random.Generator, peak_bytes) -> None:
    ci, co, h, w = SHAPES[1]
    _, _, packed = _packed(ci, co, h, w, rng, 2)
    x = rng.standard_normal((1, ci, h, w)).astype(np.float32)
    y = np.empty((1, co, h, w), np.float32)
    scratch = np.empty(packed.kernel.scratch_floats(2), np.float32)
    assert scratch.size == 0  # nothing to keep between loads and stores but registers
    args = dict(cib=None, threads=2)
    packed.kernel.run_nchw(x, packed.operands, y, scratch, **args)  # warm: thread pool started
    assert y.nbytes > BOOKKEEPING_BYTES
    assert peak_bytes(lambda: packed.kernel.run_nchw(x, packed.operands, y, scratch, **args)) < 4096


@pytest.mark.parametrize("isa", [i for i in ISAS.values() if i.lanes > 1], ids=lambda i: i.name)
@pytest.mark.parametrize("vectors", [1, 2, 3, 4, 6])
def test_the_tile_fits_the_registers_and_divides_the_weight_block(isa, vectors: int) -> None:
    cob = vectors * isa.lanes
    r, v = pointwise.nchw_tile(isa, cob)
    assert cob % r == 0 and v >= 1
    assert r * v + v + (0 if isa.fma_broadcast else 1) <= isa.registers
    assert r * v >= 8  # enough independent multiply-adds to cover a 4-cycle latency on two pipes


def test_the_plan_says_how_an_nchw_call_of_a_1x1_layer_runs() -> None:
    zen4 = load_machine("zen4")
    big = ConvShape.from_args(64, 256, 56, 56, 1, 1)
    small = ConvShape.from_args(1024, 256, 14, 14, 1, 1)
    reasons = {s: {r.parameter: r for r in predict(s, zen4).reasons} for s in (big, small)}
    assert reasons[big]["nchw_call"].value == "matrix product"
    assert "tiles of 4 output channels x 6 vectors of 16 pixels" in reasons[big]["nchw_call"].why
    assert "32 runs of 96 + 64 pixels" in reasons[big]["nchw_call"].why
    assert reasons[small]["nchw_call"].value == "three passes"
    assert "196 pixels per plane < 4 runs of 6 x 16 pixels" in reasons[small]["nchw_call"].why
    three_by_three = ConvShape.from_args(64, 64, 56, 56, 3, 3, padding=1)
    assert "nchw_call" not in {r.parameter for r in predict(three_by_three, zen4).reasons}


def test_the_entry_is_generated_only_where_it_is_used() -> None:
    isa = get_isa("avx512")
    config = dc.KernelConfig("avx512", 32, 14)
    big, small = ConvShape.from_args(64, 256, 56, 56, 1, 1), ConvShape.from_args(64, 256, 14, 14, 1, 1)
    assert "dc_conv_nchw" in generate(config, big) and pointwise.has_nchw_entry(big, isa, 32)
    assert "dc_conv_nchw" not in generate(config, small) and not pointwise.has_nchw_entry(small, isa, 32)
    strided = ConvShape.from_args(64, 256, 56, 56, 1, 1, stride=2)
    assert not pointwise.has_nchw_entry(strided, isa, 32)


@pytest.mark.compiler
@pytest.mark.parametrize("rows", [1, 2, 4, 1000])
@pytest.mark.parametrize("parallel", ["rows", "co"])
@pytest.mark.parametrize("groups", [1, 3], ids=["plain", "grouped-packed"])
def test_a_one_row_layer_splits_its_row_by_tiles(rows: int, parallel: str, groups: int, rng) -> None:
    """A 1x1 layer's plane is one long row (ConvShape.kernel_view): a plain kernel's tasks take `rows` register tiles
    of it; a lane-wise kernel's take the whole row of a block. Both give the reference's result."""
    ci, co, h, w = 21, 3 * (LANES // 2 + 1), 9, 13  # 117 pixels: 9 tiles of 13, the last one narrower
    wt = rng.standard_normal((co, ci // groups, 1, 1)).astype(np.float32)
    bias = rng.standard_normal(co).astype(np.float32)
    x = rng.standard_normal((2, ci, h, w)).astype(np.float32)
    cob = LANES if groups > 1 else 2 * LANES
    config = dc.KernelConfig(HOST.name, cob, 13, rows=min(rows, h), parallel=parallel, threads=2)
    packed = dc.pack_weights(wt, bias, input_size=(h, w), groups=groups, config=config)
    assert packed.kernel.kind == ("plain" if groups == 1 else "grouped-packed")
    got = dc.from_blocked(dc.conv2d_blocked(dc.to_blocked(x, isa=HOST.name), packed, relu=True, threads=2))
    expected = np.maximum(dc.conv2d_reference(x, wt, bias, groups=groups), 0)
    np.testing.assert_allclose(
        got, expected, rtol=0, atol=tolerance(ci, 1, 1) * max(1.0, float(np.abs(expected).max()))
    )


def test_the_model_counts_a_one_row_layers_tasks_in_tiles() -> None:
    zen4 = load_machine("zen4")
    view = ConvShape.from_args(144, 24, 56, 56, 1, 1).kernel_view()  # one row of 3136 pixels, one block of 32
    parallel, rows, balance, why = split.choose_parallel(view, zen4, 32, 2, 14)
    assert (parallel, rows, balance) == ("rows", 4, 1.0)
    assert "56 tasks of one output-channel block x 4 tiles of its one row (224 tiles of 14 columns)" in why
    assert split.split_balance(view, zen4, "rows", 4, 32, 2, 14) == 1.0
    assert split.split_balance(view, zen4, "rows", 4, 32, 2) == 0.5  # without the tile width: one task
