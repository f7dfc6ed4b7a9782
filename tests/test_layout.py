"""Blocked layouts: round trips, zero channel padding, and the packed weight order."""

from __future__ import annotations

import numpy as np
import pytest

from directconv.core.shape import ConvShape
from directconv.kernels import layout
from directconv.kernels.codegen import plan_tiles


@pytest.mark.parametrize("channels, lanes", [(1, 8), (8, 8), (13, 8), (35, 16), (6, 4), (3, 1)])
def test_activation_round_trip_and_zero_tail(rng, channels, lanes):
    x = rng.standard_normal((2, channels, 5, 7)).astype(np.float32)
    xb = layout.nchw_to_blocked(x, lanes)
    assert xb.shape == (2, -(-channels // lanes), 5, 7, lanes)
    flat = xb.transpose(0, 1, 4, 2, 3).reshape(2, -1, 5, 7)
    assert not flat[:, channels:].any()
    np.testing.assert_array_equal(layout.blocked_to_nchw(xb, channels), x)
    # element (n, c, h, w) lives at [n, c // lanes, h, w, c % lanes]
    assert xb[1, (channels - 1) // lanes, 4, 6, (channels - 1) % lanes] == x[1, channels - 1, 4, 6]


def test_weight_packing_order(rng):
    w = rng.standard_normal((20, 11, 3, 2)).astype(np.float32)
    packed = layout.pack_weights(w, lanes=8, cob=16)
    assert packed.shape == (2, 2, 3, 2, 8, 16)  # (C_o/C_o,b, C_i/lanes, kh, kw, lanes, C_o,b)
    co, ci, i, j = 17, 9, 2, 1
    assert packed[co // 16, ci // 8, i, j, ci % 8, co % 16] == w[co, ci, i, j]
    assert not packed[1, :, :, :, :, 4:].any()  # output channels 20..31 do not exist
    assert not packed[:, 1, :, :, 3:, :].any()  # input channels 11..15 do not exist


@pytest.mark.parametrize(
    "shape, wob",
    [
        (ConvShape.from_args(3, 8, 56, 56, 3, 3, 1, 1), 6),
        (ConvShape.from_args(3, 8, 227, 227, 11, 11, 4, 0), 4),
        (ConvShape.from_args(3, 8, 9, 20, 5, 5, (1, 3), (0, 0, 4, 1)), 3),
        (ConvShape.from_args(3, 8, 7, 7, 3, 3, 1, 1), 12),
    ],
)
def test_tile_plan_covers_each_column_once(shape, wob):
    tiles = plan_tiles(shape, wob)
    columns = [t.first * wob + k for t in tiles for i in range(t.count) for k in range(i * wob, i * wob + t.width)]
    assert columns == list(range(shape.wo))
    for tile in tiles:
        if tile.mask is None:  # an interior run never touches the padding
            for index in range(tile.first, tile.first + tile.count):
                for kk in range(wob):
                    assert all(0 <= (index * wob + kk) * shape.sw + m - shape.pl < shape.w for m in range(shape.kw))


def test_unpadded_1x1_layers_run_as_one_long_row():
    s = ConvShape.from_args(64, 256, 14, 14, 1, 1, 1, 0)
    view = s.kernel_view()
    assert (view.h, view.w, view.ho, view.wo) == (1, 196, 1, 196)
    assert view.flops() == s.flops()
    for other in (
        ConvShape.from_args(64, 256, 14, 14, 1, 1, 2, 0),
        ConvShape.from_args(64, 256, 14, 14, 1, 1, 1, 1),
        ConvShape.from_args(64, 256, 14, 14, 3, 3, 1, 1),
    ):
        assert other.kernel_view() == other


@pytest.mark.parametrize(
    "co, ci, lanes, cob, groups",
    [
        (5, 3, 8, 8, 1),
        (37, 19, 8, 24, 1),
        (64, 64, 16, 32, 1),
        (3, 70, 4, 12, 1),
        (272, 272, 16, 32, 4),
        (136, 136, 8, 16, 4),
        (60, 30, 8, 8, 3),
        (64, 32, 16, 16, 8),
        (64, 64, 16, 16, 4),
        (64, 64, 8, 8, 64),
    ],
)
def test_unpack_weights_inverts_pack_weights(co, ci, lanes, cob, groups):
    """Every layout: plain, grouped-window (272 g4, 136 g4, 60 g3), grouped-packed (32 -> 64 g8 on 16 lanes),
    grouped and depthwise."""
    w = np.random.default_rng(co * ci).standard_normal((co, ci // groups, 3, 2)).astype(np.float32)
    back = layout.unpack_weights(layout.pack_weights(w, lanes, cob, groups), co, ci, groups, lanes=lanes)
    assert back.flags.c_contiguous and np.array_equal(back, w)


def test_kernel_buffers_start_on_a_cache_line():
    """Packed weights, bias and blocked activations are 64-byte aligned, so no vector load straddles two lines."""
    x = np.ones((1, 19, 7, 9), np.float32)
    w = np.ones((37, 19, 3, 3), np.float32)
    for a in (
        layout.nchw_to_blocked(x, 8),
        layout.pack_weights(w, 8, 16),
        layout.pack_bias(None, ConvShape(ci=8, co=37, h=1, w=1, kh=1, kw=1), 8, 16),
        layout.empty_aligned((3, 5, 7)),
    ):
        assert a.ctypes.data % layout.ALIGN == 0 and a.flags.c_contiguous and a.dtype == np.float32


# The C conversions (kernels/convert.py) against the numpy reference above: bit for bit, since they only move floats.
@pytest.mark.compiler
@pytest.mark.parametrize(
    "n, channels, h, w, lanes",
    [
        (1, 3, 227, 227, 8),  # a network's input: one partial channel block, many pixel runs
        (2, 13, 5, 7, 8),  # batch, a full block and a tail
        (1, 64, 56, 56, 8),  # 3136 pixels: a full run of 2048 and a partial one
        (1, 35, 9, 9, 16),
        (1, 6, 4, 3, 4),
        (1, 1, 1, 1, 8),
    ],
)
@pytest.mark.parametrize("threads", [1, 2])
def test_c_conversions_match_the_numpy_reference(rng, n, channels, h, w, lanes, threads):
    from directconv.kernels import convert

    x = rng.standard_normal((n, channels, h, w)).astype(np.float32)
    xb = convert.to_blocked(x, lanes, threads=threads)
    np.testing.assert_array_equal(xb, layout.nchw_to_blocked(x, lanes))
    assert xb.ctypes.data % layout.ALIGN == 0
    xb[..., channels % lanes or lanes :][:, -1] = np.nan  # the way back must not read the padding lanes
    back = convert.from_blocked(xb, channels, threads=threads)
    np.testing.assert_array_equal(back, x)
    assert back.flags.c_contiguous and back.shape == x.shape


@pytest.mark.compiler
def test_c_conversions_take_views_and_fill_given_buffers(rng):
    from directconv.kernels import convert

    view = rng.standard_normal((1, 7, 6, 10)).astype(np.float32)[..., ::2]  # every other column: not contiguous
    x = view.copy()
    assert not view.flags.c_contiguous
    out = np.full((1, 1, 6, 5, 8), np.nan, np.float32)  # padding lanes must come back zero, not left as they were
    assert convert.to_blocked(view, 8, out=out) is out
    np.testing.assert_array_equal(out, layout.nchw_to_blocked(x, 8))
    with pytest.raises(ValueError, match=r"out must be .* shape \(1, 1, 6, 5, 8\)"):
        convert.to_blocked(x, 8, out=np.empty((1, 1, 6, 5, 4), np.float32))


def test_conversion_falls_back_to_numpy_without_a_compiler(rng, monkeypatch):
    from directconv.kernels import compiler, convert

    def no_compiler(*args, **kwargs):
        raise compiler.CompilerNotFoundError("no C compiler found (test)")

    monkeypatch.setattr(compiler, "build", no_compiler)
    monkeypatch.setattr(convert, "_libraries", {})
    x = rng.standard_normal((1, 11, 4, 4)).astype(np.float32)
    xb = convert.to_blocked(x, 8, threads=2)
    np.testing.assert_array_equal(xb, layout.nchw_to_blocked(x, 8))
    np.testing.assert_array_equal(convert.from_blocked(xb, 11, threads=2), x)


def test_conversion_threads_are_checked(rng):
    import directconv

    x = rng.standard_normal((1, 3, 4, 4)).astype(np.float32)
    for bad in (0, -1):
        with pytest.raises(ValueError, match=rf"threads must be >= 1, got {bad!r}"):
            directconv.to_blocked(x, threads=bad)
    for bad in (1.5, True):
        with pytest.raises(TypeError, match=rf"threads must be an int, got {bad!r} \({type(bad).__name__}\)"):
            directconv.to_blocked(x, threads=bad)
