"""directconv.graph.ops against onnxruntime: each operator as a one-node ONNX model on NCHW data, and on the same
data in the blocked layout for the host's lanes and for 1, 4 and 16 lanes.

The blocked inputs carry 1e30 in their padded lanes, so a padded lane read into a real channel shows, and every
output is prefilled with NaN, so an output element left unwritten shows; every output must end finite.
Tolerances: exact for max-pooling, shuffles and copies; rtol 1e-5 and atol 1e-6 for sums (pools, LRN) and
elementwise arithmetic; rtol and atol 1e-6 for the sigmoid family (onnxruntime approximates the logistic).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest

from directconv.core.isa import get_isa, host_isa
from directconv.graph import ops
from directconv.kernels import layout

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

# A warning would mean an inf or NaN on the way (an overflowing padded lane, an unstable sigmoid).
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

LANES = sorted({get_isa(host_isa()).lanes, 1, 4, 16})
CHANNELS_BATCH = [(3, 1), (8, 2), (13, 1), (24, 2)]  # below one block of 8, one block, a partial block, several
GARBAGE = 1e30  # the padded lanes' content: finite, and large enough to show wherever it leaks
SUMS = {"rtol": 1e-5, "atol": 1e-6}


def blocked(x: np.ndarray, lanes: int) -> np.ndarray:
    """x (N, C, H, W) in the blocked layout, GARBAGE in the padded lanes."""
    xb = layout.nchw_to_blocked(x, lanes)
    xb[:, -1, :, :, x.shape[1] - (xb.shape[1] - 1) * lanes :] = GARBAGE
    return xb


def nan_like(shape: Sequence[int]) -> np.ndarray:
    return np.full(shape, np.nan, dtype=np.float32)


def unblocked(xb: np.ndarray, channels: int) -> np.ndarray:
    assert np.isfinite(xb).all(), "an output is not finite (padded lanes included)"
    return layout.blocked_to_nchw(xb, channels)


def run_onnx(
    nodes: list[Any], inputs: dict[str, np.ndarray], constants: dict[str, np.ndarray] | None = None, opset: int = 13
) -> np.ndarray:
    """The output "y" of the graph of `nodes` on `inputs`, onnxruntime's CPU kernels, no graph rewrites."""
    helper = onnx.helper
    graph = helper.make_graph(
        nodes,
        "op",
        [helper.make_tensor_value_info(k, onnx.TensorProto.FLOAT, v.shape) for k, v in inputs.items()],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        initializer=[onnx.numpy_helper.from_array(v, k) for k, v in (constants or {}).items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8  # onnx may write a newer IR than the installed onnxruntime reads; opsets 13-14 need 7
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(["y"], inputs)[0]


def node(op: str, inputs: Sequence[str], **attributes: Any) -> Any:
    return onnx.helper.make_node(op, list(inputs), ["y"], **attributes)


def normal(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(np.float32)


# Pooling ------------------------------------------------------------------------------------------------------------

# (top, left, bottom, right): symmetric and asymmetric, every pad below the kernel as onnxruntime requires.
PADS = {2: [(0, 0, 0, 0), (1, 0, 0, 1)], 3: [(1, 1, 1, 1), (2, 0, 1, 2)], 5: [(2, 2, 2, 2), (4, 1, 0, 3)]}
POOL_CASES = [
    (k, s, pads, ceil, cb)
    for k, s, ceil in itertools.product((2, 3, 5), (1, 2), (0, 1))
    for pads in PADS[k]
    for cb in CHANNELS_BATCH
]


def pool_shape(h: int, w: int, kernel: int, stride: int, pads: Sequence[int], dilation: int, ceil: int) -> tuple:
    return tuple(
        ops.pool_output_size(size, kernel, stride, pads[a], pads[a + 2], dilation, bool(ceil))
        for a, size in enumerate((h, w))
    )


def strided(xb: np.ndarray) -> np.ndarray:
    """xb's values in a view that is not C-contiguous (which keeps max_pool off its C kernel)."""
    wide = np.zeros(xb.shape[:-1] + (xb.shape[-1] + 1,), dtype=np.float32)
    wide[..., :-1] = xb
    return wide[..., :-1]


def check_pool(
    x: np.ndarray, expected: np.ndarray, pool: Callable[[np.ndarray, np.ndarray], None], exact: bool, ho: int, wo: int
) -> None:
    n, c = x.shape[:2]
    assert expected.shape == (n, c, ho, wo)  # pool_output_size is onnxruntime's rule
    for lanes, contiguous in itertools.product(LANES, (True, False)):
        xb = blocked(x, lanes)
        out = nan_like((n, xb.shape[1], ho, wo, lanes))
        pool(xb if contiguous else strided(xb), out)
        where = f"{lanes} lanes, {'' if contiguous else 'not '}contiguous"
        if exact:
            np.testing.assert_array_equal(unblocked(out, c), expected, err_msg=where)
        else:
            np.testing.assert_allclose(unblocked(out, c), expected, **SUMS, err_msg=where)


@pytest.mark.parametrize("dilation", [1, 2])
@pytest.mark.parametrize("kernel, stride, pads, ceil, channels_batch", POOL_CASES)
def test_max_pool(rng, kernel, stride, pads, ceil, channels_batch, dilation):
    channels, batch = channels_batch
    x = normal(rng, batch, channels, 11, 12)
    attrs = {"kernel_shape": [kernel] * 2, "strides": [stride] * 2, "pads": list(pads), "ceil_mode": ceil}
    expected = run_onnx([node("MaxPool", ["x"], dilations=[dilation] * 2, **attrs)], {"x": x})
    ho, wo = pool_shape(11, 12, kernel, stride, pads, dilation, ceil)

    def pool(xb: np.ndarray, out: np.ndarray) -> None:
        ops.max_pool(xb, out, kernel=(kernel,) * 2, stride=(stride,) * 2, pads=pads, dilation=(dilation,) * 2)

    check_pool(x, expected, pool, True, ho, wo)


@pytest.mark.parametrize("count_include_pad", [0, 1])
@pytest.mark.parametrize("kernel, stride, pads, ceil, channels_batch", POOL_CASES)
def test_average_pool(rng, kernel, stride, pads, ceil, channels_batch, count_include_pad):
    channels, batch = channels_batch
    x = normal(rng, batch, channels, 11, 12)
    attrs = {"kernel_shape": [kernel] * 2, "strides": [stride] * 2, "pads": list(pads), "ceil_mode": ceil}
    expected = run_onnx([node("AveragePool", ["x"], count_include_pad=count_include_pad, **attrs)], {"x": x})
    ho, wo = pool_shape(11, 12, kernel, stride, pads, 1, ceil)

    def pool(xb: np.ndarray, out: np.ndarray) -> None:
        ops.average_pool(
            xb, out, kernel=(kernel,) * 2, stride=(stride,) * 2, pads=pads, count_include_pad=bool(count_include_pad)
        )

    check_pool(x, expected, pool, False, ho, wo)


def test_max_pool_window_wholly_in_padding_gives_the_lowest_float(rng):
    # Height 1, two taps 2 apart, one pad each side: the only row window reads rows -1 and 1, neither in the input.
    x = normal(rng, 1, 13, 1, 6)
    attrs = {"kernel_shape": [2, 2], "strides": [1, 2], "pads": [1, 0, 1, 0], "dilations": [2, 1]}
    expected = run_onnx([node("MaxPool", ["x"], **attrs)], {"x": x})
    assert (expected == np.finfo(np.float32).min).all()

    def pool(xb: np.ndarray, out: np.ndarray) -> None:
        ops.max_pool(xb, out, kernel=(2, 2), stride=(1, 2), pads=(1, 0, 1, 0), dilation=(2, 1))

    check_pool(x, expected, pool, True, 1, 3)


def test_ceil_mode_average_counts_only_the_padded_input(rng):
    # 5 rows, kernel 2, stride 2, ceil: the last window is rows 4..5, row 5 past the input and past the (zero)
    # padding: onnxruntime divides by 1 there, not by the kernel's 2, even with count_include_pad.
    x = normal(rng, 1, 13, 5, 5)
    attrs = {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1, "count_include_pad": 1}
    expected = run_onnx([node("AveragePool", ["x"], **attrs)], {"x": x})
    np.testing.assert_array_equal(expected[:, :, 2, 2], x[:, :, 4, 4])

    def pool(xb: np.ndarray, out: np.ndarray) -> None:
        ops.average_pool(xb, out, kernel=(2, 2), stride=(2, 2), pads=(0, 0, 0, 0), count_include_pad=True)

    check_pool(x, expected, pool, False, 3, 3)


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool0", "AveragePool1"])
def test_ceil_mode_window_larger_than_the_input(rng, op):
    # 2 x 2 input, kernel 3, stride 2: floor mode has no output, ceil mode one window over the whole input.
    x = normal(rng, 2, 8, 2, 2)
    attrs: dict[str, Any] = {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}
    if op == "MaxPool":
        expected = run_onnx([node(op, ["x"], **attrs)], {"x": x})
        assert expected.shape == (2, 8, 1, 1)

        def max_pool(xb: np.ndarray, out: np.ndarray) -> None:
            ops.max_pool(xb, out, kernel=(3, 3), stride=(2, 2), pads=(0,) * 4)

        check_pool(x, expected, max_pool, True, 1, 1)
        return
    include = op.endswith("1")
    expected = run_onnx([node("AveragePool", ["x"], count_include_pad=int(include), **attrs)], {"x": x})

    def pool(xb: np.ndarray, out: np.ndarray) -> None:
        ops.average_pool(xb, out, kernel=(3, 3), stride=(2, 2), pads=(0,) * 4, count_include_pad=include)

    check_pool(x, expected, pool, False, 1, 1)


@pytest.mark.parametrize(
    "args, expected",
    [
        ((11, 3, 2, 1, 1, 1, False), 6),
        ((3, 2, 2, 0, 0, 1, False), 1),
        ((3, 2, 2, 0, 0, 1, True), 2),  # the last window starts inside the input and runs past it
        ((4, 2, 2, 0, 1, 1, True), 2),  # ceil would give 3, whose window would start in the right padding
        ((2, 3, 2, 0, 0, 1, True), 1),  # a window wider than the input, in ceil mode only
        ((12, 5, 1, 4, 3, 2, False), 11),  # dilation 2: the window spans 9
    ],
)
def test_pool_output_size(args, expected):
    assert ops.pool_output_size(*args) == expected


@pytest.mark.parametrize("channels, batch", CHANNELS_BATCH)
def test_global_average_pool(rng, channels, batch):
    x = normal(rng, batch, channels, 7, 9)
    expected = run_onnx([node("GlobalAveragePool", ["x"])], {"x": x})
    for lanes in LANES:
        xb = blocked(x, lanes)
        out = nan_like((batch, xb.shape[1], 1, 1, lanes))
        ops.global_average_pool(xb, out)
        np.testing.assert_allclose(unblocked(out, channels), expected, **SUMS, err_msg=f"{lanes} lanes")


# Channel ops --------------------------------------------------------------------------------------------------------


LRN = {"alpha": 0.3, "beta": 0.75, "bias": 1.5}


def check_lrn(x: np.ndarray, size: int, expected: np.ndarray) -> None:
    channels = x.shape[1]
    for lanes in LANES:
        xb = blocked(x, lanes)
        out = nan_like(xb.shape)
        ops.lrn(xb, out, channels=channels, size=size, **LRN)
        np.testing.assert_allclose(unblocked(out, channels), expected, **SUMS, err_msg=f"{lanes} lanes")


@pytest.mark.parametrize("size", [3, 5])
@pytest.mark.parametrize("channels, batch", CHANNELS_BATCH)
def test_lrn(rng, size, channels, batch):
    x = normal(rng, batch, channels, 5, 6, scale=2.0)
    check_lrn(x, size, run_onnx([node("LRN", ["x"], size=size, **LRN)], {"x": x}))


@pytest.mark.parametrize("size", [2, 4])
@pytest.mark.parametrize("channels", [3, 13])
def test_lrn_even_window_reaches_further_up(rng, size, channels):
    # onnxruntime refuses even sizes (and onnx's reference LRN loops over the batch, not the channels), so the
    # spec in float64: channels c - floor((size - 1) / 2) through c + ceil((size - 1) / 2).
    x = normal(rng, 2, channels, 3, 4, scale=2.0)
    wide = x.astype(np.float64)
    sums = np.stack(
        [(wide[:, max(0, c - (size - 1) // 2) : c + size // 2 + 1] ** 2).sum(axis=1) for c in range(channels)], axis=1
    )
    check_lrn(x, size, wide / (LRN["bias"] + LRN["alpha"] / size * sums) ** LRN["beta"])


SHUFFLES = [(8, 2), (24, 2), (26, 2), (3, 3), (24, 3), (39, 3), (8, 4), (12, 4), (24, 4), (8, 8), (24, 8), (40, 8)]


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("channels, groups", SHUFFLES)
def test_channel_shuffle(rng, channels, groups, batch):
    x = normal(rng, batch, channels, 3, 4)
    nodes = [
        onnx.helper.make_node("Reshape", ["x", "split"], ["t0"]),
        onnx.helper.make_node("Transpose", ["t0"], ["t1"], perm=[0, 2, 1, 3, 4]),
        node("Reshape", ["t1", "merged"]),
    ]
    shapes = {
        "split": np.array([batch, groups, channels // groups, 3, 4], dtype=np.int64),
        "merged": np.array([batch, channels, 3, 4], dtype=np.int64),
    }
    expected = run_onnx(nodes, {"x": x}, shapes)
    for lanes in LANES:
        xb = blocked(x, lanes)
        out = nan_like(xb.shape)
        ops.channel_shuffle(xb, out, channels=channels, groups=groups)
        np.testing.assert_array_equal(unblocked(out, channels), expected, err_msg=f"{lanes} lanes")


@pytest.mark.parametrize("offset", [0, 3, 8, 11])
@pytest.mark.parametrize("channels, batch", CHANNELS_BATCH)
def test_copy_channels_is_concat(rng, offset, channels, batch):
    # Concat(a, b, c) on channels: a fills [0, offset), b the channels under test, c five more after them.
    parts = {"a": offset, "b": channels, "c": 5}
    inputs = {name: normal(rng, batch, count, 3, 4) for name, count in parts.items() if count}
    expected = run_onnx([node("Concat", list(inputs), axis=1)], inputs)
    total = offset + channels + 5
    for lanes in LANES:
        out = nan_like((batch, layout.blocks(total, lanes), 3, 4, lanes))
        start = 0
        for x in inputs.values():
            ops.copy_channels(blocked(x, lanes), out, start, x.shape[1])
            start += x.shape[1]
        out[:, -1, :, :, total - (out.shape[1] - 1) * lanes :] = 0.0  # the caller's padded lanes
        np.testing.assert_array_equal(unblocked(out, total), expected, err_msg=f"{lanes} lanes")


@pytest.mark.parametrize("offset", [0, 3, 8, 11])
@pytest.mark.parametrize("channels", [3, 8, 13, 24])
def test_copy_channels_writes_only_its_channels(rng, offset, channels):
    x = normal(rng, 2, channels, 3, 4)
    for lanes in LANES:
        out = np.full((2, layout.blocks(offset + channels + 7, lanes), 3, 4, lanes), -7.0, dtype=np.float32)
        ops.copy_channels(blocked(x, lanes), out, offset, channels)
        flat = out.transpose(0, 1, 4, 2, 3).reshape(2, -1, 3, 4)  # every lane, padded ones included, in order
        np.testing.assert_array_equal(flat[:, offset : offset + channels], x, err_msg=f"{lanes} lanes")
        assert (flat[:, :offset] == -7.0).all() and (flat[:, offset + channels :] == -7.0).all()


# Elementwise --------------------------------------------------------------------------------------------------------

SIGMOIDS = {"sigmoid", "silu", "hard_sigmoid", "hard_swish"}
ACTIVATIONS = [
    ("relu", 0.0, 0.0),
    ("clip", -0.5, 0.8),
    ("clip", 1.0, 0.5),  # min above max: every output is max
    ("leaky_relu", 0.1, 0.0),
    ("leaky_relu", 1.5, 0.0),
    ("leaky_relu", -0.5, 0.0),
    ("sigmoid", 0.0, 0.0),
    ("hard_sigmoid", 0.3, 0.4),
    ("hard_swish", 0.0, 0.0),
    ("silu", 0.0, 0.0),
]


def activation_graph(kind: str, alpha: float, beta: float) -> tuple[list[Any], dict[str, np.ndarray], int]:
    """(nodes, constants, opset) of the ONNX graph computing `kind` from "x" into "y"."""
    if kind == "clip":
        bounds = {"lo": np.array(alpha, dtype=np.float32), "hi": np.array(beta, dtype=np.float32)}
        return [node("Clip", ["x", "lo", "hi"])], bounds, 13
    if kind == "silu":
        return [onnx.helper.make_node("Sigmoid", ["x"], ["s"]), node("Mul", ["x", "s"])], {}, 13
    if kind == "hard_swish":
        return [node("HardSwish", ["x"])], {}, 14  # HardSwish arrived in opset 14
    ops_by_kind = {"relu": ("Relu", {}), "leaky_relu": ("LeakyRelu", {"alpha": alpha}), "sigmoid": ("Sigmoid", {})}
    ops_by_kind["hard_sigmoid"] = ("HardSigmoid", {"alpha": alpha, "beta": beta})
    op, attributes = ops_by_kind[kind]
    return [node(op, ["x"], **attributes)], {}, 13


@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize("kind, alpha, beta", ACTIVATIONS)
def test_activation(rng, kind, alpha, beta, in_place):
    channels, batch = (13, 2) if in_place else (24, 1)
    x = normal(rng, batch, channels, 4, 5, scale=4.0)
    x[0, 0, 0, :3] = (-20.0, 0.0, 20.0)
    nodes, constants, opset = activation_graph(kind, alpha, beta)
    expected = run_onnx(nodes, {"x": x}, constants, opset)
    tolerance = {"rtol": 1e-6, "atol": 1e-6} if kind in SIGMOIDS else SUMS
    for lanes in LANES:
        xb = blocked(x, lanes)
        out = xb if in_place else nan_like(xb.shape)
        ops.activation(xb, out, kind, alpha, beta)
        np.testing.assert_allclose(unblocked(out, channels), expected, **tolerance, err_msg=f"{lanes} lanes")


@pytest.mark.parametrize("kind", ["sigmoid", "silu", "hard_sigmoid", "hard_swish"])
def test_sigmoids_of_extreme_inputs_stay_finite_and_quiet(kind):
    x = np.array([-3e38, -1e30, -100.0, -89.0, 0.0, 89.0, 100.0, 1e30, 3e38], dtype=np.float32)
    xb = np.ascontiguousarray(np.broadcast_to(x[:, None, None, None, None], (9, 1, 1, 1, 4)))
    out = nan_like(xb.shape)
    with np.errstate(all="raise"):
        ops.activation(xb, out, kind, 0.2, 0.5)
    wide = x.astype(np.float64)
    sigmoid = np.exp(-np.logaddexp(0.0, -wide))
    gate = np.clip(wide / 6 + 0.5, 0, 1)
    exact = {"sigmoid": sigmoid, "silu": wide * sigmoid, "hard_sigmoid": np.clip(0.2 * wide + 0.5, 0, 1)}
    exact["hard_swish"] = wide * gate
    np.testing.assert_allclose(out[:, 0, 0, 0, 0], exact[kind], rtol=1e-6, atol=1e-30)
    assert np.isfinite(out).all()


@pytest.mark.parametrize("target", ["new", "a", "b"])
@pytest.mark.parametrize("channels, batch", CHANNELS_BATCH)
def test_add(rng, channels, batch, target):
    a, b = normal(rng, batch, channels, 3, 5), normal(rng, batch, channels, 3, 5)
    expected = run_onnx([node("Add", ["a", "b"])], {"a": a, "b": b})
    for lanes in LANES:
        ab, bb = blocked(a, lanes), blocked(b, lanes)
        out = {"new": nan_like(ab.shape), "a": ab, "b": bb}[target]
        ops.add(ab, bb, out)
        np.testing.assert_array_equal(unblocked(out, channels), expected, err_msg=f"{lanes} lanes")


@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("channels, batch", CHANNELS_BATCH)
def test_scale_channels(rng, channels, batch, per_image):
    x = normal(rng, batch, channels, 3, 5)
    scale = rng.uniform(0, 1, (batch, channels) if per_image else (channels,)).astype(np.float32)
    s = scale.reshape(-1, channels, 1, 1)
    if per_image:
        expected = run_onnx([node("Mul", ["x", "s"])], {"x": x, "s": s})
    else:
        expected = run_onnx([node("Mul", ["x", "s"])], {"x": x}, {"s": s})
    for lanes in LANES:
        xb = blocked(x, lanes)
        out = nan_like(xb.shape) if per_image else xb  # in place, as a squeeze-and-excitation gate runs
        ops.scale_channels(xb, scale, out)
        np.testing.assert_array_equal(unblocked(out, channels), expected, err_msg=f"{lanes} lanes")


@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize("channels, batch", CHANNELS_BATCH)
def test_scale_shift(rng, channels, batch, in_place):
    x = normal(rng, batch, channels, 3, 5)
    scale, shift = normal(rng, channels), normal(rng, channels)
    nodes = [onnx.helper.make_node("Mul", ["x", "s"], ["t"]), node("Add", ["t", "b"])]
    constants = {"s": scale.reshape(-1, 1, 1), "b": shift.reshape(-1, 1, 1)}
    expected = run_onnx(nodes, {"x": x}, constants)
    for lanes in LANES:
        xb = blocked(x, lanes)
        out = xb if in_place else nan_like(xb.shape)
        ops.scale_shift(xb, scale, shift, out)
        np.testing.assert_array_equal(unblocked(out, channels), expected, err_msg=f"{lanes} lanes")


# Argument errors ----------------------------------------------------------------------------------------------------


def _errors() -> list[tuple[str, Callable[[], object], str]]:
    x = np.zeros((1, 2, 6, 6, 8), dtype=np.float32)
    y = np.zeros((1, 2, 3, 3, 8), dtype=np.float32)
    ones = np.ones(9, dtype=np.float32)
    shared = np.zeros(x.size + 8, dtype=np.float32)  # two arrays of x's shape, one lane apart in one buffer
    first, second = shared[:-8].reshape(x.shape), shared[8:].reshape(x.shape)

    def max_pool(x: np.ndarray, y: np.ndarray, **changes: Any) -> None:
        ops.max_pool(x, y, **{"kernel": (2, 2), "stride": (2, 2), "pads": (0, 0, 0, 0), **changes})

    return [
        (
            "4-D x",
            lambda: max_pool(x[0], y),
            r"x must be a float32 array .* got a float32 array of shape \(2, 6, 6, 8\)",
        ),
        ("float64 x", lambda: ops.add(x.astype(np.float64), x, x), "a must be a float32 array .* got a float64 array"),
        ("pool size", lambda: max_pool(x, y[:, :, :2]), r"Ho in \[3\] and Wo in \[3\] .* got \(1, 2, 2, 3, 8\)"),
        ("pad", lambda: max_pool(x, y, pads=(0, 2, 0, 0)), r"smaller than the kernel .* pads \(0, 2, 0, 0\)"),
        ("pads", lambda: max_pool(x, y, pads=(0, 0)), r"pads must be 4 ints >= 0, got \(0, 0\)"),
        ("stride", lambda: max_pool(x, y, stride=(0, 2)), r"stride\[0\] must be an int >= 1, got 0"),
        ("overlap", lambda: max_pool(x, x[:, :, :3, :3]), "must not overlap the input x"),
        (
            "global",
            lambda: ops.global_average_pool(x, y),
            r"out must have shape \(1, 2, 1, 1, 8\), got \(1, 2, 3, 3, 8\)",
        ),
        ("lrn", lambda: ops.lrn(x, y, channels=9, size=3, alpha=1, beta=1, bias=1), "out must have shape"),
        ("channels", lambda: ops.channel_shuffle(x, x.copy(), channels=17, groups=1), r"in \[9, 16\] .* got 17"),
        ("kind", lambda: ops.activation(x, x, "gelu"), "kind must be one of relu, .* got 'gelu'"),
        ("partial overlap", lambda: ops.activation(first, second, "relu"), "x itself .* or not overlap x"),
        ("add", lambda: ops.add(x, x[:, :1], x), r"b must have a's shape \(1, 2, 6, 6, 8\), got \(1, 1, 6, 6, 8\)"),
        ("scale length", lambda: ops.scale_channels(x, ones[:7], x), r"scale's channel count must be in \[9, 16\]"),
        (
            "scale rows",
            lambda: ops.scale_channels(x, np.ones((2, 9)), x),
            r"scale must have shape \(1, 'C'\), got \(2, 9\)",
        ),
        (
            "scale dtype",
            lambda: ops.scale_shift(x, ones.astype(int), ones, x),
            "scale must be a float array, got a int",
        ),
        ("shift", lambda: ops.scale_shift(x, ones, np.ones(10), x), r"shift must have scale's shape \(9,\)"),
        ("groups", lambda: ops.channel_shuffle(x, y, channels=10, groups=3), "out must have shape"),
        ("groups", lambda: ops.channel_shuffle(x, x.copy(), channels=10, groups=3), "10 channels in 3 groups"),
        ("concat", lambda: ops.copy_channels(x, y, 3, 9), r"out must have shape \(1, CB, 6, 6, 8\)"),
        ("concat room", lambda: ops.copy_channels(x, x.copy(), 8, 9), r"offset \+ channels = 17"),
        ("no output", lambda: ops.pool_output_size(2, 3, 1, 0, 0, 1, False), r"input of 2 padded by 0 \+ 0"),
    ]


@pytest.mark.parametrize("call, message", [e[1:] for e in _errors()], ids=[e[0] for e in _errors()])
def test_bad_arguments_raise_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
