"""The graph operators' C library (kernels/graph_ops.py, kernels/c/dc_graph.c) against their numpy versions
(graph/ops.py's _numpy_* functions and the numpy calls they stand for), which tests/test_graph_ops.py checks
against onnxruntime.

Each case runs for 1, 4, 8 and 16 lanes (the library is built per lanes; 1 takes the lane-at-a-time path), batch 1
and 3, contiguous arrays and slices of a larger buffer's channel blocks (the arena's views, strided between
images), on 1 and 2 threads. Inputs carry NaN, -0 and +0 where bitwise results are expected, so NaN propagation
and numpy's choice between tied zeros show; padded lanes hold random finite values.
Tolerance: bit for bit, except global average pooling (float64 sums in another order) and sigmoid and SiLU (a
polynomial exp): rtol 1e-6 (atol 1e-30 for sigmoids of large negative inputs, which numpy rounds to 0).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from directconv.graph import ops
from directconv.kernels import graph_ops

pytestmark = pytest.mark.compiler

LANES = [1, 4, 8, 16]
SIGMOIDS = ("sigmoid", "silu")


def layouts() -> Iterator[tuple[int, bool, int]]:
    """(batch, sliced, threads) of every run."""
    return itertools.product((1, 3), (False, True), (1, 2))


def blocked(rng: np.random.Generator, shape: tuple[int, ...], sliced: bool, special: bool = True) -> np.ndarray:
    """A random (N, CB, H, W, L) array; sliced: blocks [1, 1 + CB) of a buffer of CB + 2 blocks per image. special
    puts NaN, -0 and +0 into the first block's first lane of two pixels in three."""
    n, nb, h, w, lanes = shape
    buffer = rng.standard_normal((n, nb + 2 * sliced, h, w, lanes)).astype(np.float32)
    x = buffer[:, 1 : 1 + nb] if sliced else buffer
    if special:
        values = np.resize(np.array([np.nan, 0.5, -0.0, 0.0], dtype=np.float32), h * w).reshape(h, w)
        x[:, 0, :, :, 0] = np.where(np.arange(h * w).reshape(h, w) % 3, values, x[:, 0, :, :, 0])
    return x


def empty(shape: tuple[int, ...], sliced: bool, fill: float = np.nan) -> np.ndarray:
    """An output of `shape` prefilled with `fill`, contiguous or sliced like blocked's."""
    n, nb = shape[:2]
    buffer = np.full((n, nb + 2 * sliced, *shape[2:]), fill, dtype=np.float32)
    return buffer[:, 1 : 1 + nb] if sliced else buffer


def same_bits(actual: np.ndarray, expected: np.ndarray, where: str) -> None:
    np.testing.assert_array_equal(actual.view(np.uint32), expected.view(np.uint32), err_msg=where)


def close(actual: np.ndarray, expected: np.ndarray, where: str) -> None:
    np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-30, err_msg=where)


# Pooling ------------------------------------------------------------------------------------------------------------

# (h, w, kernel, stride, pads (top, left, bottom, right), dilation, ceil mode)
POOLS = [
    (9, 9, (3, 3), (2, 2), (0, 0, 0, 0), (1, 1), True),  # SqueezeNet's, ceil mode
    (8, 7, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), True),  # the last window runs past the end padding
    (8, 8, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), False),
    (7, 9, (2, 3), (1, 2), (1, 0, 0, 2), (1, 1), True),  # asymmetric everything
    (5, 6, (5, 3), (3, 1), (4, 2, 0, 1), (1, 1), False),
    (1, 6, (2, 2), (1, 2), (1, 0, 1, 0), (2, 1), False),  # dilation: the row window lies wholly in the padding
    (9, 8, (3, 2), (2, 1), (2, 1, 2, 1), (2, 3), True),
    # 3x3 windows with dilation 1 run unrolled where they lie inside (stride 1 as in Inception's branches)
    (10, 11, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), False),
    (11, 12, (3, 3), (2, 3), (0, 2, 1, 0), (1, 1), True),
]


def pool_shape(x: np.ndarray, h: int, w: int, kernel, stride, pads, dilation, ceil) -> tuple[int, ...]:
    ho = ops.pool_output_size(h, kernel[0], stride[0], pads[0], pads[2], dilation[0], ceil)
    wo = ops.pool_output_size(w, kernel[1], stride[1], pads[1], pads[3], dilation[1], ceil)
    return (x.shape[0], x.shape[1], ho, wo, x.shape[4])


@pytest.mark.parametrize("h, w, kernel, stride, pads, dilation, ceil", POOLS)
@pytest.mark.parametrize("lanes", LANES)
def test_max_pool(rng, lanes, h, w, kernel, stride, pads, dilation, ceil):
    for batch, sliced, threads in layouts():
        x = blocked(rng, (batch, 2, h, w, lanes), sliced)
        shape = pool_shape(x, h, w, kernel, stride, pads, dilation, ceil)
        out, expected = empty(shape, sliced), empty(shape, False)
        assert graph_ops.max_pool(x, out, kernel, stride, pads, dilation, threads=threads)
        ops._numpy_max_pool(x, expected, kernel, stride, pads, dilation)
        same_bits(out, expected, f"batch {batch}, sliced {sliced}, {threads} threads")


@pytest.mark.parametrize("count_include_pad", [False, True])
@pytest.mark.parametrize("h, w, kernel, stride, pads, dilation, ceil", [p for p in POOLS if p[5] == (1, 1)])
@pytest.mark.parametrize("lanes", LANES)
def test_average_pool(rng, lanes, h, w, kernel, stride, pads, dilation, ceil, count_include_pad):
    for batch, sliced, threads in layouts():
        x = blocked(rng, (batch, 2, h, w, lanes), sliced)
        shape = pool_shape(x, h, w, kernel, stride, pads, dilation, ceil)
        out, expected = empty(shape, sliced), empty(shape, False)
        assert graph_ops.average_pool(x, out, kernel, stride, pads, count_include_pad, threads=threads)
        ops._numpy_average_pool(x, expected, kernel, stride, pads, count_include_pad)
        same_bits(out, expected, f"batch {batch}, sliced {sliced}, {threads} threads")


@pytest.mark.parametrize("h, w", [(13, 13), (1, 1), (7, 3)])
@pytest.mark.parametrize("lanes", LANES)
def test_global_average_pool(rng, lanes, h, w):
    for batch, sliced, threads in layouts():
        x = blocked(rng, (batch, 3, h, w, lanes), sliced, special=False)
        x += 3.0  # a mean far from 0 shows a lost digit
        out, expected = empty((batch, 3, 1, 1, lanes), sliced), empty((batch, 3, 1, 1, lanes), False)
        assert graph_ops.global_average_pool(x, out, threads=threads)
        ops._numpy_global_average_pool(x, expected)
        close(out, expected, f"batch {batch}, sliced {sliced}, {threads} threads")


@pytest.mark.parametrize("size, beta, bias", [(5, 0.75, 1.0), (3, 0.75, 2.0), (5, 0.6, 1.0), (4, 0.75, 1.0)])
@pytest.mark.parametrize("channels", [3, 13, 24])
@pytest.mark.parametrize("lanes", LANES)
def test_lrn(rng, lanes, channels, size, beta, bias):
    nb = -(-channels // lanes)
    for batch, sliced, threads in layouts():
        x = blocked(rng, (batch, nb, 5, 6, lanes), sliced, special=False)
        out, expected = empty(x.shape, sliced), empty(x.shape, False)
        assert graph_ops.lrn(x, out, channels, size, 1e-2, beta, bias, threads=threads)
        ops._numpy_lrn(x, expected, channels, size, 1e-2, beta, bias)
        close(out, expected, f"batch {batch}, sliced {sliced}, {threads} threads")


# Channel moves ------------------------------------------------------------------------------------------------------


# (68, 4), (136, 4) and (272, 4): ShuffleNet's 4 groups of 17, 34 and 68 channels, whose runs straddle blocks
# (some of them), and (64, 4), whose do not: with 16 lanes, whole blocks of 4 groups take the transpose path.
@pytest.mark.parametrize(
    "channels, groups", [(12, 3), (24, 4), (16, 2), (30, 5), (7, 7), (68, 4), (136, 4), (64, 4), (272, 4)]
)
@pytest.mark.parametrize("lanes", LANES)
def test_channel_shuffle(rng, lanes, channels, groups):
    nb = -(-channels // lanes)
    for batch, sliced, threads in layouts():
        x = blocked(rng, (batch, nb, 5, 6, lanes), sliced)
        out, expected = empty(x.shape, sliced), empty(x.shape, False)
        assert graph_ops.channel_shuffle(x, out, channels, groups, threads=threads)
        ops._numpy_channel_shuffle(x, expected, channels, groups)
        same_bits(out, expected, f"batch {batch}, sliced {sliced}, {threads} threads")


@pytest.mark.parametrize("offset, channels", [(0, 3), (0, 16), (3, 13), (8, 8), (11, 20), (16, 5)])
@pytest.mark.parametrize("lanes", LANES)
def test_copy_channels(rng, lanes, offset, channels):
    nb, out_blocks = -(-channels // lanes), -(-(offset + channels + 2) // lanes)
    for batch, sliced, threads in layouts():
        x = blocked(rng, (batch, nb, 4, 5, lanes), sliced)
        out = empty((batch, out_blocks, 4, 5, lanes), sliced, fill=7.0)
        expected = empty(out.shape, False, fill=7.0)
        assert graph_ops.copy_channels(x, out, offset, channels, threads=threads)
        ops._numpy_copy_channels(x, expected, offset, channels)
        same_bits(out, expected, f"batch {batch}, sliced {sliced}, {threads} threads")


# Elementwise --------------------------------------------------------------------------------------------------------

ACTS = [
    ("relu", 0.0, 0.0),
    ("clip", 0.0, 6.0),
    ("clip", 0.5, -1.0),  # alpha > beta: everything is beta
    ("leaky_relu", 0.1, 0.0),
    ("sigmoid", 0.0, 0.0),
    ("hard_sigmoid", 0.2, 0.5),
    ("hard_swish", 0.0, 0.0),
    ("silu", 0.0, 0.0),
]


def extremes(x: np.ndarray) -> None:
    """Puts values where exp over- or underflows and signed zeros into x's last block."""
    values = np.array([-3e38, -100.0, -88.5, -87.0, 88.0, 100.0, 3e38, -0.0, 0.0], dtype=np.float32)
    for image in x:
        image[-1].reshape(-1)[: values.size] = values  # a view: each image's blocks are contiguous


@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize("kind, alpha, beta", ACTS)
@pytest.mark.parametrize("lanes", LANES)
def test_activation(rng, lanes, kind, alpha, beta, in_place):
    for batch, sliced, threads in layouts():
        x = blocked(rng, (batch, 2, 4, 5, lanes), sliced)
        x *= 4.0
        extremes(x)
        expected = empty(x.shape, False)
        ops._numpy_activation(x, expected, kind, alpha, beta)
        out = x if in_place else empty(x.shape, sliced)
        assert graph_ops.activation(x, out, kind, alpha, beta, threads=threads)
        check = close if kind in SIGMOIDS else same_bits
        check(out, expected, f"batch {batch}, sliced {sliced}, {threads} threads")


@pytest.mark.parametrize("target", ["new", "a", "b"])
@pytest.mark.parametrize("act", [None, "relu", "clip", "silu"])
@pytest.mark.parametrize("lanes", LANES)
def test_add(rng, lanes, act, target):
    for batch, sliced, threads in layouts():
        a, b = blocked(rng, (batch, 2, 4, 5, lanes), sliced), blocked(rng, (batch, 2, 4, 5, lanes), not sliced)
        expected = np.add(a, b)
        if act is not None:
            ops._numpy_activation(expected, expected, act, 0.0, 6.0)
        out = {"new": empty(a.shape, sliced), "a": a, "b": b}[target]
        assert graph_ops.add(a, b, out, act, 0.0, 6.0, threads=threads)
        check = close if act in SIGMOIDS else same_bits
        check(out, expected, f"batch {batch}, sliced {sliced}, {threads} threads")


def per_channel(rng: np.random.Generator, rows: int, nb: int, lanes: int, channels: int) -> np.ndarray:
    """(rows, CB, 1, 1, L) float32 values, zero past `channels`: graph/ops.py's padded per-channel vectors."""
    values = np.zeros((rows, nb * lanes), dtype=np.float32)
    values[:, :channels] = rng.standard_normal((rows, channels))
    return values.reshape(rows, nb, 1, 1, lanes)


@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize("act, alpha, beta", [(None, 0.0, 0.0), *ACTS[:2], ACTS[4], ACTS[6]])
@pytest.mark.parametrize("lanes", LANES)
def test_scale_shift(rng, lanes, act, alpha, beta, in_place):
    channels = 2 * lanes - 1 if lanes > 1 else 2
    for batch, sliced, threads in layouts():
        x = blocked(rng, (batch, 2, 4, 5, lanes), sliced)
        scale, shift = per_channel(rng, 1, 2, lanes, channels), per_channel(rng, 1, 2, lanes, channels)
        expected = empty(x.shape, False)
        ops._numpy_scale_shift(x, scale, shift, expected, act, alpha, beta)
        out = x if in_place else empty(x.shape, sliced)
        assert graph_ops.scale_shift(x, scale, shift, out, act, alpha, beta, threads=threads)
        check = close if act in SIGMOIDS else same_bits
        check(out, expected, f"batch {batch}, sliced {sliced}, {threads} threads")
        assert np.isfinite(out[:, -1, :, :, channels - lanes :]).all(), "a padded lane is not finite"


@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("lanes", LANES)
def test_scale_channels(rng, lanes, per_image, in_place):
    for batch, sliced, threads in layouts():
        x = blocked(rng, (batch, 2, 4, 5, lanes), sliced)
        scale = per_channel(rng, batch if per_image else 1, 2, lanes, 2 * lanes)
        expected = np.multiply(x, scale)
        out = x if in_place else empty(x.shape, sliced)
        assert graph_ops.scale_channels(x, scale, out, threads=threads)
        same_bits(out, expected, f"batch {batch}, sliced {sliced}, {threads} threads")


# Dispatch -----------------------------------------------------------------------------------------------------------


C_FUNCTIONS = ("max_pool", "average_pool", "global_average_pool", "channel_shuffle", "copy_channels", "activation")
C_FUNCTIONS += ("add", "scale_shift", "scale_channels")


@pytest.fixture
def c_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, object, bool]]:
    """Each graph_ops call graph/ops.py makes: (name, its threads, what it returned: True when C ran)."""
    calls: list[tuple[str, object, bool]] = []
    for name in C_FUNCTIONS:
        original = getattr(graph_ops, name)

        def spy(
            *args: object,
            _name: str = name,
            _original: Callable[..., bool] = original,
            **kwargs: object,
        ) -> bool:
            calls.append((_name, kwargs.get("threads"), _original(*args, **kwargs)))
            return calls[-1][2]

        monkeypatch.setattr(graph_ops, name, spy)
    return calls


def test_ops_dispatch_sliced_views_to_c_with_threads(rng, c_calls):
    """graph/ops.py's public functions on the arena's views (batch 3) with threads=2 run in C, with numpy's results."""
    lanes, batch = 8, 3
    x = blocked(rng, (batch, 2, 9, 9, lanes), True, special=False)
    other = blocked(rng, x.shape, True, special=False)
    pool = {"kernel": (3, 3), "stride": (2, 2), "pads": (1, 1, 1, 1), "threads": 2}
    ones = per_channel(rng, 1, 2, lanes, 12)
    ones[ones != 0] = 1.0
    pooled = (batch, 2, 5, 5, lanes)

    def relu(out: np.ndarray) -> None:
        np.add(x, other, out=out)
        ops._numpy_activation(out, out, "relu", 0.0, 0.0)

    cases: list[tuple[Callable[[np.ndarray], None], Callable[[np.ndarray], None], tuple[int, ...]]] = [
        (
            lambda out: ops.max_pool(x, out, **pool),
            lambda out: ops._numpy_max_pool(x, out, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),
            pooled,
        ),
        (
            lambda out: ops.average_pool(x, out, **pool, count_include_pad=False),
            lambda out: ops._numpy_average_pool(x, out, (3, 3), (2, 2), (1, 1, 1, 1), False),
            pooled,
        ),
        (
            lambda out: ops.channel_shuffle(x, out, channels=12, groups=3, threads=2),
            lambda out: ops._numpy_channel_shuffle(x, out, 12, 3),
            x.shape,
        ),
        (
            lambda out: ops.copy_channels(x, out, 5, 12, threads=2),
            lambda out: ops._numpy_copy_channels(x, out, 5, 12),
            (batch, 3, 9, 9, lanes),
        ),
        (
            lambda out: ops.scale_shift(x, np.ones(12), np.full(12, -1.0), out, act="relu", threads=2),
            lambda out: ops._numpy_scale_shift(x, ones, -ones, out, "relu", 0.0, 0.0),
            x.shape,
        ),
        (
            lambda out: ops.scale_channels(x, np.ones(12), out, threads=2),
            lambda out: np.multiply(x, ones, out=out),
            x.shape,
        ),
        (lambda out: ops.add(x, other, out, act="relu", threads=2), relu, x.shape),
        (
            lambda out: ops.activation(x, out, "hard_swish", threads=2),
            lambda out: ops._numpy_activation(x, out, "hard_swish", 0.0, 0.0),
            x.shape,
        ),
    ]
    for public, numpy, shape in cases:
        out, expected = empty(shape, True), empty(shape, False)
        if shape[1] == 3:
            out.fill(0.0)
            expected.fill(0.0)
        public(out)
        numpy(expected)
        same_bits(out, expected, str(c_calls[-1:]))
    ops.global_average_pool(x, empty((batch, 2, 1, 1, lanes), True), threads=2)
    assert len(c_calls) == len(cases) + 1 and all(threads == 2 and c for _, threads, c in c_calls), c_calls


def test_lane_strided_views_fall_back_to_numpy(rng):
    x = blocked(rng, (1, 2, 6, 6, 9), False)[..., :8]  # lanes 8 of 9: images are not C-contiguous
    out = empty((1, 2, 3, 3, 8), False)
    assert not graph_ops.max_pool(x, out, (2, 2), (2, 2), (0, 0, 0, 0), (1, 1))
    assert np.isnan(out).all(), "a refused call wrote its output"
    ops.max_pool(x, out, kernel=(2, 2), stride=(2, 2), pads=(0, 0, 0, 0))
    expected = empty(out.shape, False)
    ops._numpy_max_pool(x, expected, (2, 2), (2, 2), (0, 0, 0, 0), (1, 1))
    same_bits(out, expected, "numpy through ops")


def test_partial_overlap_falls_back_to_numpy(rng):
    buffer = rng.standard_normal(2 * 4 * 4 * 8 + 8).astype(np.float32)
    a, out = buffer[:-8].reshape(1, 2, 4, 4, 8), buffer[8:].reshape(1, 2, 4, 4, 8)
    expected = a + a
    assert not graph_ops.add(a, a, out)
    ops.add(a, a, out)
    same_bits(out, expected, "numpy's add of overlapping arrays")


def test_c_refusal_raises_value_error():
    x = np.zeros((1, 2, 4, 4, 8), dtype=np.float32)
    with pytest.raises(ValueError, match="dc_graph_channel_shuffle refused"):
        graph_ops.channel_shuffle(x, np.zeros_like(x), 10, 3)
    with pytest.raises(ValueError, match="act must be one of"):
        graph_ops.activation(x, x, "gelu")


@pytest.mark.parametrize(("n", "k", "m"), [(1, 7, 5), (1, 1000, 300), (3, 1001, 129), (4, 4, 1)])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_gemv_gives_the_product_plus_bias_with_the_same_bits_on_any_threads(rng, n, k, m, threads):
    a = rng.standard_normal((n, k)).astype(np.float32)
    cols = rng.standard_normal((k, m)).astype(np.float32)
    bias = rng.standard_normal(m).astype(np.float32)
    y, one = np.full((n, m), np.nan, dtype=np.float32), np.full((n, m), np.nan, dtype=np.float32)
    assert graph_ops.gemv(a, cols, y, lanes=8, threads=threads, bias=bias)
    want = a.astype(np.float64) @ cols.astype(np.float64) + bias
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    assert graph_ops.gemv(a, cols, one, lanes=8, threads=1, bias=bias)
    same_bits(y, one, f"{threads} threads against 1")


def test_gemv_refuses_operands_c_cannot_index(rng):
    a, cols = np.ones((2, 6), np.float32), np.ones((6, 4), np.float32)
    with pytest.raises(ValueError, match=r"a \(2, 6\) times cols \(5, 4\) does not give y \(2, 4\)"):
        graph_ops.gemv(a, np.ones((5, 4), np.float32), np.empty((2, 4), np.float32), lanes=8)
    with pytest.raises(ValueError, match=r"cols must be C-contiguous float32"):
        graph_ops.gemv(a, np.ones((4, 6), np.float32).T, np.empty((2, 4), np.float32), lanes=8)
    with pytest.raises(ValueError, match=r"y must be writeable and apart from a and cols"):
        graph_ops.gemv(a, cols, cols[:2], lanes=8)


@pytest.mark.parametrize("cols", [1, 7, 16, 1000])
@pytest.mark.parametrize("lanes", LANES)
def test_softmax_matches_numpy_and_makes_a_row_with_a_nan_or_an_infinity_nan(rng, lanes, cols):
    x = (rng.standard_normal((6, cols)) * 20).astype(np.float32)
    x[1, 0], x[2, -1], x[3, 0] = np.nan, np.inf, -np.inf  # rows 1 and 2 have no finite max; row 3 has
    x[4] = -np.inf  # nor does a row of -inf
    y = np.full_like(x, 7.0)
    call = graph_ops.bind_softmax(x, y, lanes=lanes)
    assert call is not None
    call()
    with np.errstate(invalid="ignore"):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        want = e / e.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(y, want, rtol=2e-6, atol=1e-30)
    finite = [0, 3, 5] if cols > 1 else [0, 5]  # a row of one -inf has no finite max
    assert np.isnan(y[[1, 2, 4]]).all() and np.isfinite(y[finite]).all()


@pytest.mark.parametrize("lanes", LANES)
def test_to_dense_writes_the_real_channels_as_nchw(rng, lanes):
    x = blocked(rng, (3, 2, 4, 5, lanes), True)
    channels = 2 * lanes - (lanes > 1)
    y = np.zeros((3, channels, 4, 5), np.float32)
    assert graph_ops._made(graph_ops.bind_to_dense(x, y, channels, threads=2))
    want = x.transpose(0, 1, 4, 2, 3).reshape(3, 2 * lanes, 4, 5)[:, :channels]
    same_bits(y, np.ascontiguousarray(want), "to_dense")


# ---- A run of convolutions in one C call -----------------------------------------------------------------------------


def _bound_layers(
    rng: np.random.Generator, inputs: dict[int, np.ndarray] | None = None
) -> tuple[list, list[np.ndarray], int]:
    """Three convolutions of the host's ISA bound one after the other, batch 2 (the second adds a residual, the
    third is depthwise with a clip), their outputs (zeroed) and the lanes."""
    from directconv.core.config import KernelConfig
    from directconv.core.isa import get_isa, host_isa
    from directconv.core.shape import ConvShape
    from directconv.kernels import layout, runtime

    isa = host_isa()
    lanes = get_isa(isa).lanes
    c = 2 * lanes
    shapes = [
        ConvShape.from_args(lanes, c, 6, 6, 3, 3, 1, 1),
        ConvShape.from_args(c, c, 6, 6, 1, 1, 1, 0),
        ConvShape.from_args(c, c, 6, 6, 3, 3, 1, 1, groups=c),
    ]
    x = layout.nchw_to_blocked(rng.standard_normal((2, lanes, 6, 6)).astype(np.float32), lanes)
    outs = [np.zeros((2, 2, 6, 6, lanes), np.float32) for _ in shapes]
    calls = []
    for i, s in enumerate(shapes):
        cfg = KernelConfig(isa, lanes, 3, threads=1)
        kernel = runtime.load(cfg, s)
        w = rng.standard_normal((s.co, s.ci // s.groups, s.kh, s.kw)).astype(np.float32)
        weights = layout.pack_weights(w, lanes, cfg.cob, s.groups)
        bias = layout.pack_bias(rng.standard_normal(s.co).astype(np.float32), s, lanes, cfg.cob)
        calls.append(
            kernel.bind_fused(
                (inputs or {}).get(i, x if i == 0 else outs[i - 1]), weights, bias, outs[i], cib=None, rows=None,
                parallel="co", threads=1,
                epilogue=runtime.Epilogue("clip", 0.0, 6.0) if i == 2 else None,
                residual=outs[0] if i == 1 else None,
            )
        )  # fmt: skip
    return calls, outs, lanes


def _bound_operators(rng: np.random.Generator, lanes: int, x: np.ndarray) -> tuple[list, list[np.ndarray]]:
    """Every operator a chain can make (graph_ops._STEPS but conv), bound on x (batch 2, 2 blocks, 7x5, sliced:
    images apart) into outputs of their own, zeroed, and the dense tail's: the calls and the outputs."""
    n, nb, h, w, _ = x.shape
    channels = nb * lanes - (lanes > 1)  # a padded lane where there are lanes to pad
    outs = {name: empty(shape, True, 0.0) for name, shape in (
        ("max_pool", (n, nb, 3, 6, lanes)), ("average_pool", (n, nb, 3, 6, lanes)), ("global", (n, nb, 1, 1, lanes)),
        ("shuffle", x.shape), ("copy", (n, nb + 1, h, w, lanes)), ("act", x.shape), ("add", x.shape),
        ("scale_shift", x.shape), ("scale_channels", x.shape), ("lrn", x.shape),
    )}  # fmt: skip
    scale, shift = per_channel(rng, 1, nb, lanes, channels), per_channel(rng, 1, nb, lanes, channels)
    window = ((3, 2), (2, 1), (0, 1, 0, 1))  # no two sizes alike: an adapter that swaps two gives another result
    calls = [
        graph_ops.bind_max_pool(x, outs["max_pool"], *window, (1, 1), threads=2),
        graph_ops.bind_average_pool(x, outs["average_pool"], *window, False, threads=2),
        graph_ops.bind_global_average_pool(x, outs["global"], threads=2),
        graph_ops.bind_channel_shuffle(x, outs["shuffle"], channels - channels % 2, 2, threads=2),
        graph_ops.bind_copy_channels(x, outs["copy"], min(3, lanes), channels, threads=2),
        graph_ops.bind_activation(x, outs["act"], "clip", -0.5, 0.5, threads=2),
        graph_ops.bind_add(x, outs["act"], outs["add"], "leaky_relu", 0.1, 0.0, threads=2),
        graph_ops.bind_scale_shift(x, scale.reshape(-1), shift.reshape(-1), outs["scale_shift"], "relu", threads=2),
        graph_ops.bind_scale_channels(x, scale.reshape(-1), outs["scale_channels"], threads=2),
        graph_ops.bind_lrn(x, outs["lrn"], channels, 5, 1e-4, 0.75, 2.0, threads=2),
    ]
    # the dense tail: x's channels as NCHW, a product with bias of a few rows (made of them), a softmax of its rows
    dense = np.zeros((n, channels, h, w), np.float32)
    a = rng.standard_normal((n, 37)).astype(np.float32)
    cols, bias = rng.standard_normal((37, 13)).astype(np.float32), rng.standard_normal(13).astype(np.float32)
    product, probabilities = np.zeros((n, 13), np.float32), np.zeros((n, 13), np.float32)
    calls += [
        graph_ops.bind_to_dense(x, dense, channels, threads=2),
        graph_ops.bind_gemv(a, cols, bias, product, lanes=lanes, threads=2),
        graph_ops.bind_softmax(product, probabilities, lanes=lanes),
    ]
    outs.update(dense=dense, product=product, probabilities=probabilities)
    assert all(call is not None for call in calls)
    assert {call.step for call in calls} == set(graph_ops._STEPS) - {"conv"}
    return calls, list(outs.values())


@pytest.mark.parametrize("lanes", LANES)
def test_a_chain_makes_every_operator_as_its_own_call_does(rng, lanes):
    """Each dc_step adapter unpacks its operator's arguments in the order the operator takes them: the operators
    made one by one and made in one chain write the same bits."""
    x = blocked(rng, (2, 2, 7, 5, lanes), True, special=False)
    calls, outs = _bound_operators(rng, lanes, x)
    for call in calls:
        call()
    one_by_one = [o.copy() for o in outs]
    for o in outs:
        o[...] = 0
    chain = graph_ops.chain(calls, lanes=lanes)
    assert chain is not None
    chain()
    for call, got, want in zip(calls, outs, one_by_one, strict=True):
        same_bits(got, want, call.name)


def test_a_chain_makes_convolutions_and_operators_in_order(rng):
    """Convolutions and operators in one chain: each reads what the one before it wrote, as when made one by one."""
    from directconv.core.isa import get_isa, host_isa

    lanes = get_isa(host_isa()).lanes
    shuffled = np.zeros((2, 2, 6, 6, lanes), np.float32)
    pooled = np.zeros((2, 2, 3, 3, lanes), np.float32)
    calls, outs, _ = _bound_layers(rng, inputs={2: shuffled})  # the third convolution reads the shuffle
    steps = [
        calls[0],
        calls[1],
        graph_ops.bind_channel_shuffle(outs[1], shuffled, 2 * lanes, 2),
        calls[2],
        graph_ops.bind_max_pool(outs[2], pooled, (2, 2), (2, 2), (0, 0, 0, 0), (1, 1)),
    ]
    for call in steps:
        call()
    one_by_one = [o.copy() for o in (*outs, shuffled, pooled)]
    for o in (*outs, shuffled, pooled):
        o[...] = 0
    chain = graph_ops.chain(steps, lanes=lanes)
    assert chain is not None
    chain()
    for got, want in zip((*outs, shuffled, pooled), one_by_one, strict=True):
        np.testing.assert_array_equal(got, want)
    assert np.any(pooled != 0)
    assert graph_ops.chain([], lanes=lanes) is None


def test_a_chain_stops_at_a_call_c_refuses(rng):
    from directconv.kernels.runtime import BoundCall

    calls, outs, lanes = _bound_layers(rng)
    refused = BoundCall(calls[1].function, (*calls[1].args[:5], 0, *calls[1].args[6:]), calls[1].name)  # batch 0
    chain = graph_ops.chain([calls[0], refused, calls[2]], lanes=lanes)
    assert chain is not None
    with pytest.raises(RuntimeError, match=rf"kernel {calls[1].name} rejected its arguments \(call 2 of 3\)"):
        chain()
    assert np.any(outs[0] != 0)  # the first call ran
    assert not np.any(outs[2])  # the one after the refused call did not
    shuffle = graph_ops.bind_channel_shuffle(outs[0], outs[1], 2 * lanes, 2)
    assert shuffle is not None
    bad = BoundCall(shuffle.function, (*shuffle.args[:7], 3, *shuffle.args[8:]), shuffle.name, shuffle.step)
    with pytest.raises(RuntimeError, match=r"dc_graph_channel_shuffle rejected its arguments \(call 2 of 2\)"):
        graph_ops.chain([calls[0], bad], lanes=lanes)()  # 2 * lanes channels do not split into 3 groups
