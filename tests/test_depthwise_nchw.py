"""A depthwise layer's NCHW entry: each plane convolved where it lies (kernels/codegen_planes.py), its tile
(model/depthwise_nchw.py) and where conv2d_nchw uses it instead of the converting one-pass entry."""

from __future__ import annotations

import numpy as np
import pytest

import directconv as dc
from directconv.core.isa import ISAS, get_isa, host_isa, host_isas
from directconv.core.shape import ConvShape
from directconv.kernels import codegen_planes, convert
from directconv.kernels.generator import generate
from directconv.kernels.reference import tolerance
from directconv.machines import load_machine
from directconv.model import depthwise_nchw, predict
from directconv.nn import api

HOST = get_isa(host_isa())
# The ISAs this host runs whose vectors hold several lanes (AVX2's 8 and AVX-512's 16 on an AVX-512 host).
RUNNABLE = [name for name in host_isas() if ISAS[name].lanes > 1]
BOOKKEEPING_BYTES = 16 * 1024

# (C_i, multiplier, H, W, k, stride, padding, dilation): 112-wide rows of whole vectors (interior loops of whole
# tiles and a narrower rest), widths that end in a vector computed again, stride 2, per-side padding, dilation
# wider than a vector's reach, a channel multiplier, 1x1 to 7x7, and rows just one vector wide.
CASES = [
    (5, 1, 37, 112, 3, 1, 1, 1),
    (6, 1, 30, 75, 3, 2, 1, 1),
    (4, 2, 23, 45, 5, 1, (2, 1, 0, 3), 1),
    (3, 1, 40, 50, 3, 1, 4, 4),
    (3, 1, 26, 70, 7, 2, (3, 1, 2, 3), 2),
    (4, 3, 11, 40, 1, 1, 0, 1),
    (2, 1, 9, 20, 5, 2, 2, 1),
    (3, 1, 12, 17, 3, 1, (1, 1, 0, 0), 1),
]


def _shape(case: tuple) -> ConvShape:
    ci, mult, h, w, k, stride, padding, dilation = case
    return ConvShape.from_args(ci, ci * mult, h, w, k, k, stride, padding, dilation, ci)


def _refuse(*args: object, **kwargs: object) -> None:
    raise AssertionError("a depthwise layer's plane entry must not convert")


@pytest.mark.compiler
@pytest.mark.parametrize("isa", RUNNABLE)
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("case", CASES, ids=lambda c: _shape(c).describe().replace(" ", "_"))
def test_planes_match_the_reference_without_converting(
    case: tuple, threads: int, isa: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lanes = ISAS[isa].lanes
    shape = _shape(case)
    if shape.wo < lanes or shape.w < lanes:
        pytest.skip(f"rows narrower than {lanes} lanes keep the one-pass entry")
    rng = np.random.default_rng(shape.w * shape.kh + threads)
    wt = rng.standard_normal((shape.co, 1, shape.kh, shape.kw)).astype(np.float32)
    bias = rng.standard_normal(shape.co).astype(np.float32)
    config = dc.KernelConfig(isa, lanes, 4, threads=threads)
    packed = dc.pack_weights(
        wt, bias, input_size=(shape.h, shape.w), stride=(shape.sh, shape.sw),
        padding=(shape.pt, shape.pb, shape.pl, shape.pr), dilation=(shape.dh, shape.dw), groups=shape.groups,
        config=config,
    )  # fmt: skip
    assert depthwise_nchw.has_plane_entry(shape, ISAS[isa])
    assert packed.kernel.runs_nchw and packed.kernel.scratch_floats(threads) == 0
    x = rng.standard_normal((2, shape.ci, shape.h, shape.w)).astype(np.float32)
    monkeypatch.setattr(convert, "to_blocked", _refuse)
    monkeypatch.setattr(convert, "from_blocked", _refuse)
    expected = dc.conv2d_reference(
        x, wt, bias, stride=(shape.sh, shape.sw), padding=(shape.pt, shape.pb, shape.pl, shape.pr),
        dilation=(shape.dh, shape.dw), groups=shape.groups,
    )  # fmt: skip
    for relu in (False, True):
        got = dc.conv2d_nchw(x, packed, relu=relu, threads=threads)
        want = np.maximum(expected, 0) if relu else expected
        bound = tolerance(1, shape.kh, shape.kw) * max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(got, want, rtol=0, atol=bound)


@pytest.mark.compiler
def test_rows_narrower_than_a_vector_keep_the_one_pass_entry(rng: np.random.Generator) -> None:
    shape = ConvShape.from_args(40, 40, 7, 7, 3, 3, 1, 1, 1, 40)
    wt = rng.standard_normal((40, 1, 3, 3)).astype(np.float32)
    packed = dc.pack_weights(
        wt, None, input_size=(7, 7), padding=1, groups=40, config=dc.KernelConfig(HOST.name, HOST.lanes, 7)
    )
    assert not depthwise_nchw.has_plane_entry(shape, HOST)
    assert packed.kernel.scratch_floats(1) > 0
    x = rng.standard_normal((1, 40, 7, 7)).astype(np.float32)
    expected = dc.conv2d_reference(x, wt, None, padding=1, groups=40)
    np.testing.assert_allclose(dc.conv2d_nchw(x, packed), expected, rtol=0, atol=tolerance(1, 3, 3) * 10)


@pytest.mark.compiler
def test_planes_allocate_only_their_output(rng: np.random.Generator, peak_bytes) -> None:
    shape = _shape(CASES[0])
    wt = rng.standard_normal((shape.co, 1, 3, 3)).astype(np.float32)
    config = dc.KernelConfig(HOST.name, HOST.lanes, 4, threads=2)
    packed = dc.pack_weights(wt, None, input_size=(shape.h, shape.w), padding=1, groups=shape.groups, config=config)
    x = rng.standard_normal((1, shape.ci, shape.h, shape.w)).astype(np.float32)
    y = np.empty((1, shape.co, shape.ho, shape.wo), np.float32)
    scratch = np.empty(packed.kernel.scratch_floats(2), np.float32)
    assert scratch.size == 0  # planes are read where they lie
    args = dict(cib=None, threads=2)
    packed.kernel.run_nchw(x, packed.operands, y, scratch, **args)  # warm: thread pool started
    assert y.nbytes > BOOKKEEPING_BYTES
    assert peak_bytes(lambda: packed.kernel.run_nchw(x, packed.operands, y, scratch, **args)) < 4096


def _columns_of(shape: ConvShape, lanes: int, v: int) -> list[int]:
    """The first output column of every vector the plan computes, in order."""
    starts = []
    for col in codegen_planes.plan_columns(shape, lanes, v):
        starts += [col.start + k * lanes for k in range(col.count)]
    return starts


@pytest.mark.parametrize("lanes", [4, 8, 16])
@pytest.mark.parametrize("v", [1, 2, 3])
@pytest.mark.parametrize("case", CASES, ids=lambda c: _shape(c).describe().replace(" ", "_"))
def test_the_column_plan_covers_each_row_once_and_loops_only_inside_it(case: tuple, v: int, lanes: int) -> None:
    shape = _shape(case)
    if shape.wo < lanes or shape.w < lanes:
        return
    starts = _columns_of(shape, lanes, v)
    whole = shape.wo // lanes
    assert starts[:whole] == [k * lanes for k in range(whole)]
    assert starts[whole:] == ([shape.wo - lanes] if shape.wo % lanes else [])
    first, last = depthwise_nchw.input_vectors(shape, lanes, 1)
    for col in codegen_planes.plan_columns(shape, lanes, v):
        if col.edge:
            assert col.count == col.width == 1
            continue
        assert col.count % col.width == 0
        tile_first, tile_last = depthwise_nchw.input_vectors(shape, lanes, col.width)
        for start in range(col.start, col.start + col.count * lanes, col.width * lanes):
            assert start * shape.sw + tile_first * lanes >= 0
            assert start * shape.sw + (tile_last + 1) * lanes <= shape.w


@pytest.mark.parametrize("isa", [i for i in ISAS.values() if i.lanes > 1], ids=lambda i: i.name)
@pytest.mark.parametrize("k", [1, 3, 5, 7])
@pytest.mark.parametrize("stride", [1, 2])
def test_the_tile_fits_the_registers(isa, k: int, stride: int) -> None:
    shape = ConvShape.from_args(32, 32, 112, 112, k, k, stride, k // 2, 1, 32)
    r, v = depthwise_nchw.plane_tile(isa, shape)
    first, last = depthwise_nchw.input_vectors(shape, isa.lanes, v)
    assert r * v + depthwise_nchw.kept_weights(shape, isa) + (last - first + 1) + 1 <= isa.registers
    assert r * v >= 8  # enough independent multiply-adds to cover a 4-cycle latency on two pipes


def test_the_plan_says_how_an_nchw_call_of_a_depthwise_layer_runs() -> None:
    zen4 = load_machine("zen4")
    wide = ConvShape.from_args(32, 32, 112, 112, 3, 3, 1, 1, 1, 32)
    narrow = ConvShape.from_args(960, 960, 7, 7, 3, 3, 1, 1, 1, 960)
    reasons = {s: {r.parameter: r for r in predict(s, zen4).reasons} for s in (wide, narrow)}
    assert reasons[wide]["nchw_call"].value == "planes"
    assert "tiles of 8 output rows x 2 vectors of 16 columns" in reasons[wide]["nchw_call"].why
    assert "9 broadcast weights in registers" in reasons[wide]["nchw_call"].why
    assert reasons[narrow]["nchw_call"].value == "one pass"
    assert "output rows of 7 columns" in reasons[narrow]["nchw_call"].why


def test_the_entry_is_generated_only_where_it_is_used() -> None:
    config = dc.KernelConfig("avx512", 16, 8)
    wide = ConvShape.from_args(32, 32, 56, 56, 3, 3, 1, 1, 1, 32)
    narrow = ConvShape.from_args(32, 32, 14, 14, 3, 3, 1, 1, 1, 32)
    assert "plane_" in generate(config, wide) and "plane_" not in generate(config, narrow)
    wide_stride_3 = ConvShape.from_args(32, 32, 112, 112, 3, 3, 3, 1, 1, 32)
    assert not depthwise_nchw.has_plane_entry(wide_stride_3, ISAS["avx512"])
    grouped = ConvShape.from_args(64, 64, 56, 56, 3, 3, 1, 1, 1, 16)
    assert not depthwise_nchw.has_plane_entry(grouped, ISAS["avx512"])


@pytest.mark.compiler
@pytest.mark.parametrize(
    ("ci", "co", "size", "k", "groups", "kept"),
    [
        (32, 32, 40, 3, 32, "none: planes read in place"),
        (40, 40, 7, 3, 40, "one-pass scratch"),
        (24, 40, 20, 3, 1, "blocked input and output"),
        (3, 24, 20, 3, 1, "blocked output"),
    ],
)
def test_working_bytes_are_what_an_nchw_call_keeps(ci, co, size, k, groups, kept, rng) -> None:
    """The bench's extra-memory figure for directconv-nchw is the buffers conv2d_nchw keeps between calls."""
    wt = rng.standard_normal((co, ci // groups, k, k)).astype(np.float32)
    config = dc.KernelConfig(HOST.name, HOST.lanes, 4, threads=2)
    packed = dc.pack_weights(wt, None, input_size=(size, size), padding=1, groups=groups, config=config)
    x = rng.standard_normal((2, ci, size, size)).astype(np.float32)
    api.release_buffers()
    dc.conv2d_nchw(x, packed, threads=2)
    held = sum(buffer.nbytes for buffer in api._workspace.buffers.values())
    assert api.nchw_working_bytes(packed, 2, 2) == held
    assert (held == 0) == kept.startswith("none")
