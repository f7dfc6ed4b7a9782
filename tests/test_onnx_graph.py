"""directconv.load_onnx on small graphs written with onnx.helper, each run against onnxruntime's CPU provider on the
same bytes and the same random input: every supported operator, every fusion and the cases where a fusion must not
happen, Concat in place and by copy, the arena plan, batches and threads, the feeds' checks, and every refusal.

Tolerance: |directconv - onnxruntime| <= 1e-4 * |onnxruntime| + 1e-4 * max(1, max |onnxruntime|). Both compute in
float32 but sum a convolution's products (a few hundred here) in different orders, and directconv folds a
BatchNormalization into the weights; the differences measured stay below 6e-7 of the output's scale, so 1e-4 of that
scale leaves a wide margin and still catches a wrong tap, channel or padded lane (errors of order 1). Two runs of
directconv on one machine (threads 1 and 2) are compared bit for bit.

Spatial sizes stay at 8 to 12 and channels at 3 to 40, so that the kernels compile in seconds the first time and
come from the kernel cache afterwards.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="building ONNX models needs the onnx package (the `test` extra)")
ort = pytest.importorskip("onnxruntime", reason="the reference is onnxruntime (the `test` extra)")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402  (needs onnx, hence after the skips)

import directconv as dc  # noqa: E402
from directconv.graph import OnnxModelError  # noqa: E402
from directconv.graph.arena import Place  # noqa: E402

pytestmark = [
    pytest.mark.compiler,
    # Nothing is tuned for these shapes: every convolution runs the model's configuration, which load_onnx reports.
    pytest.mark.filterwarnings("ignore:.*run the model's configuration:UserWarning"),
]

RTOL = 1e-4
ATOL = 1e-4  # times max(1, the largest magnitude of the expected output)


# ---------------------------------------------------------------------------------------------------- building


class Net:
    """An ONNX graph being written. Each node is named after its output, so that steps' node lists read as the
    tensors they make; weights are seeded normals scaled by 1 / sqrt(fan-in), keeping activations of order 1."""

    def __init__(self, seed: int = 0) -> None:
        self.nodes: list[Any] = []
        self.initializers: dict[str, np.ndarray] = {}
        self.rng = np.random.default_rng(seed)

    def const(self, name: str, value: Any) -> str:
        self.initializers[name] = np.asarray(value)
        return name

    def random(self, name: str, shape: tuple[int, ...], scale: float = 1.0) -> str:
        return self.const(name, (self.rng.standard_normal(shape) * scale).astype(np.float32))

    def node(self, op: str, inputs: list[str], output: str, **attributes: Any) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attributes))
        return output

    def conv(
        self, x: str, output: str, ci: int, co: int, k: int = 3, *, group: int = 1, bias: bool = True, **attributes: Any
    ) -> str:
        """A k x k Conv, padded to keep the size unless pads, strides or auto_pad say otherwise."""
        weight = self.random(f"{output}.weight", (co, ci // group, k, k), 1 / math.sqrt(ci // group * k * k))
        inputs = [x, weight] + ([self.random(f"{output}.bias", (co,), 0.1)] if bias else [])
        if "auto_pad" not in attributes:
            attributes.setdefault("pads", [k // 2] * 4)
        return self.node("Conv", inputs, output, kernel_shape=[k, k], group=group, **attributes)

    def bn(self, x: str, output: str, c: int) -> str:
        gamma = self.const(f"{output}.scale", self.rng.uniform(0.5, 1.5, c).astype(np.float32))
        beta = self.random(f"{output}.bias", (c,), 0.1)
        mean = self.random(f"{output}.mean", (c,), 0.1)
        var = self.const(f"{output}.var", self.rng.uniform(0.5, 1.5, c).astype(np.float32))
        return self.node("BatchNormalization", [x, gamma, beta, mean, var], output, epsilon=1e-3)

    def bytes(self, inputs: dict[str, list[Any]], outputs: dict[str, int] | None = None, opset: int = 13) -> bytes:
        """The serialized model: `inputs` name -> dims (ints or symbolic names), `outputs` name -> rank."""
        graph = helper.make_graph(
            self.nodes,
            "test",
            [helper.make_tensor_value_info(name, TensorProto.FLOAT, dims) for name, dims in inputs.items()],
            [
                helper.make_tensor_value_info(name, TensorProto.FLOAT, [None] * rank)
                for name, rank in (outputs or {"y": 4}).items()
            ],
            [numpy_helper.from_array(value, name) for name, value in self.initializers.items()],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        return model.SerializeToString()


def image(*shape: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def onnxruntime(data: bytes, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def assert_close(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == np.float32
    assert got.shape == want.shape
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL * scale)


def check(data: bytes, feeds: dict[str, np.ndarray], **load: Any) -> dc.Model:
    """Load `data`, run it on `feeds` and compare every output with onnxruntime's; the Model, for more checks."""
    model = dc.load_onnx(data, **load)
    got = model.run(feeds)
    want = onnxruntime(data, feeds)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert_close(g, w)
    return model


def ops(model: dc.Model) -> list[str]:
    return [step.op for step in model._steps]


def step(model: dc.Model, output: str) -> Any:
    (found,) = (s for s in model._steps if s.output == output)
    return found


def stem(net: Net, c: int = 16) -> str:
    """The convolution most tests start from: 3 -> c channels, 3x3, on the 10x10 input "x"."""
    return net.conv("x", "a", 3, c)


X = {"x": [1, 3, 10, 10]}


def feeds_x() -> dict[str, np.ndarray]:
    return {"x": image(1, 3, 10, 10)}


# ---------------------------------------------------------------------------------------------------- convolutions


def test_consecutive_steps_c_makes_run_in_one_c_call_with_the_steps_results() -> None:
    net = Net()
    a = net.conv(net.node("Relu", ["x"], "r"), "a", 3, 16)
    b = net.conv(a, "b", 16, 16, group=16)
    c = net.conv(b, "c", 16, 24, k=1)
    net.node("MaxPool", [c], "p", kernel_shape=[2, 2], strides=[2, 2])
    net.node("Mul", ["p", "p"], "m")  # an operator C does not make: the run ends before it
    net.conv("m", "y", 24, 8)  # a lone convolution after it: one call, no chain
    data = net.bytes(X)
    model = check(data, feeds_x())
    assert ops(model) == ["act", "conv", "conv", "conv", "max_pool", "mul", "conv"]
    bound = model._prepared[1]
    assert bound.chains.keys() == {0}  # steps 0-4: the Relu, the three convolutions and the pool
    assert bound.chains[0][0] == 5
    assert 5 not in bound.calls and len(bound.calls[6]) == 1
    chained = model.run(feeds_x())[0]
    bound.chains.clear()  # each step on its own, as profile() runs them
    np.testing.assert_array_equal(model.run(feeds_x())[0], chained)


@pytest.mark.parametrize(
    ("ci", "co", "k", "attributes"),
    [
        pytest.param(16, 24, 3, {"group": 4}, id="grouped"),
        pytest.param(16, 16, 3, {"group": 16}, id="depthwise"),
        pytest.param(16, 16, 3, {"dilations": [2, 2], "pads": [2, 2, 2, 2]}, id="dilated"),
        pytest.param(16, 8, 3, {"strides": [2, 2], "pads": [0, 1, 1, 0]}, id="strided-asymmetric-pads"),
        pytest.param(16, 40, 1, {"bias": False}, id="1x1-no-bias"),
        pytest.param(16, 8, 3, {"strides": [2, 2], "auto_pad": "SAME_UPPER"}, id="same-upper"),
        pytest.param(16, 8, 3, {"strides": [2, 2], "auto_pad": "SAME_LOWER"}, id="same-lower"),
        pytest.param(16, 8, 3, {"strides": [2, 2], "auto_pad": "VALID"}, id="valid"),
    ],
)
def test_conv_matches_onnxruntime(ci: int, co: int, k: int, attributes: dict[str, Any]) -> None:
    net = Net()
    net.conv("x", "y", ci, co, k, **attributes)
    model = check(net.bytes({"x": [1, ci, 11, 11]}), {"x": image(1, ci, 11, 11)})
    assert ops(model) == ["conv"]


def test_a_first_layer_reads_the_image_as_it_is_without_a_blocked_copy() -> None:
    net = Net()
    net.conv("x", "a", 3, 16, 7, strides=[2, 2], pads=[3, 3, 3, 3])
    net.conv("x", "b", 3, 8, 3)  # a second reader of the image, with the NCHW entry too
    net.node("Relu", ["a"], "y")
    data = net.bytes({"x": ["N", 3, 12, 12]}, {"y": 4, "b": 4})
    batch = {"x": image(2, 3, 12, 12)}
    model = check(data, batch)
    assert "x" not in model.plan.places  # no arena buffer: nothing converts the image
    assert model.summary().count("reads NCHW input") == 2
    rows = model.profile(batch, repeat=2)
    assert rows[0][1].op == "to_blocked" and [r[1].op for r in rows[1:3]] == ["conv", "conv"]


@pytest.mark.parametrize("other", ["MaxPool", "Add", "wide"])
def test_an_image_with_another_reader_or_more_channels_is_converted_once(other: str) -> None:
    net = Net()
    ci = 3 if other != "wide" else 20  # wide: more channels than a vector of 8 or 16 holds
    a = net.conv("x", "a", ci, ci, 3)
    if other == "MaxPool":
        net.node("Add", [a, net.node("MaxPool", ["x"], "p", kernel_shape=[3, 3], pads=[1, 1, 1, 1])], "y")
    elif other == "Add":
        net.node("Add", [a, "x"], "y")  # the image is the conv's residual as well as its input
    else:
        net.node("Relu", [a], "y")
    model = check(net.bytes({"x": [1, ci, 10, 10]}), {"x": image(1, ci, 10, 10)})
    assert "x" in model.plan.places and "reads NCHW input" not in model.summary()


def test_same_upper_and_same_lower_pad_the_odd_pixel_at_opposite_ends() -> None:
    shapes = []
    for auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        net = Net()
        net.conv("x", "y", 16, 8, 3, strides=[2, 2], auto_pad=auto_pad)
        model = check(net.bytes({"x": [1, 16, 10, 10]}), {"x": image(1, 16, 10, 10)})
        shapes.append(model.convolutions()[0][0].params["shape"])
    upper, lower = shapes
    assert (upper.ho, upper.wo) == (lower.ho, lower.wo) == (5, 5)
    # 10 pixels, stride 2, 3 taps: one pixel of padding in all, at the end (UPPER) or at the beginning (LOWER)
    assert (upper.pt, upper.pb, upper.pl, upper.pr) == (0, 1, 0, 1)
    assert (lower.pt, lower.pb, lower.pl, lower.pr) == (1, 0, 1, 0)


# ---------------------------------------------------------------------------------------------------- operators alone

ACTIVATIONS = [
    pytest.param("Relu", {}, [], "relu", (0.0, 0.0), id="relu"),
    pytest.param("Clip", {}, [0.0, 6.0], "clip", (0.0, 6.0), id="relu6"),
    pytest.param("Clip", {}, [-0.5], "clip", (-0.5, float(np.finfo(np.float32).max)), id="clip-min-only"),
    pytest.param("LeakyRelu", {"alpha": 0.1}, [], "leaky_relu", (0.1, 0.0), id="leaky-relu"),
    pytest.param("Sigmoid", {}, [], "sigmoid", (0.0, 0.0), id="sigmoid"),
    pytest.param("HardSigmoid", {"alpha": 0.3, "beta": 0.4}, [], "hard_sigmoid", (0.3, 0.4), id="hard-sigmoid"),
    pytest.param("HardSwish", {}, [], "hard_swish", (0.0, 0.0), id="hard-swish"),
]


def _activation(net: Net, op: str, attributes: dict[str, Any], bounds: list[float], x: str) -> str:
    inputs = [x] + [net.const(f"bound{i}", np.float32(b)) for i, b in enumerate(bounds)]
    return net.node(op, inputs, "y", **attributes)


@pytest.mark.parametrize(("op", "attributes", "bounds", "kind", "params"), ACTIVATIONS)
def test_activation_on_an_input_is_an_act_step(
    op: str, attributes: dict[str, Any], bounds: list[float], kind: str, params: tuple[float, float]
) -> None:
    net = Net()
    _activation(net, op, attributes, bounds, "x")
    model = check(net.bytes({"x": [1, 13, 9, 9]}, opset=14), {"x": 4 * image(1, 13, 9, 9)})
    (act,) = model._steps
    assert (act.op, act.params["kind"]) == ("act", kind)
    assert (act.params["alpha"], act.params["beta"]) == pytest.approx(params)


@pytest.mark.parametrize(("op", "attributes", "bounds", "kind", "params"), ACTIVATIONS)
def test_activation_after_a_conv_fuses_into_its_store(
    op: str, attributes: dict[str, Any], bounds: list[float], kind: str, params: tuple[float, float]
) -> None:
    net = Net()
    _activation(net, op, attributes, bounds, stem(net))
    model = check(net.bytes(X, opset=14), feeds_x())
    ((conv, compiled),) = model.convolutions()
    assert ops(model) == ["conv"]
    assert conv.nodes == ["a", "y"]
    assert (conv.params["act"], compiled.epilogue.act) == (kind, kind)
    assert (conv.params["alpha"], conv.params["beta"]) == pytest.approx(params)
    assert f"fused: {kind}" in model.summary()


@pytest.mark.parametrize("gate_first", [False, True])
def test_x_times_sigmoid_x_after_a_conv_fuses_as_silu(gate_first: bool) -> None:
    net = Net()
    a = stem(net)
    gate = net.node("Sigmoid", [a], "gate")
    net.node("Mul", [gate, a] if gate_first else [a, gate], "y")
    model = check(net.bytes(X), feeds_x())
    ((conv, _),) = model.convolutions()
    assert ops(model) == ["conv"]
    assert conv.params["act"] == "silu"
    assert conv.nodes == ["a", "gate", "y"]


def test_x_times_sigmoid_x_on_an_input_is_a_silu_step() -> None:
    net = Net()
    net.node("Mul", ["x", net.node("Sigmoid", ["x"], "gate")], "y")
    model = check(net.bytes({"x": [1, 13, 9, 9]}), {"x": 4 * image(1, 13, 9, 9)})
    assert [(s.op, s.params["kind"]) for s in model._steps] == [("act", "silu")]


def test_batch_normalization_on_an_input_is_a_scale_shift_step() -> None:
    net = Net()
    net.bn("x", "y", 13)
    model = check(net.bytes({"x": [1, 13, 9, 9]}), {"x": image(1, 13, 9, 9)})
    assert ops(model) == ["scale_shift"]


@pytest.mark.parametrize(
    ("op", "operand"),
    [
        pytest.param("Mul", np.linspace(-2, 2, 13, dtype=np.float32).reshape(13, 1, 1), id="mul-per-channel"),
        pytest.param("Mul", np.float32(-1.5), id="mul-scalar"),
        pytest.param("Add", np.linspace(-2, 2, 13, dtype=np.float32).reshape(1, 13, 1, 1), id="add-per-channel"),
        pytest.param("Add", np.array([0.75], dtype=np.float32), id="add-scalar"),
    ],
)
def test_constant_operand_is_a_scale_shift_step(op: str, operand: np.ndarray) -> None:
    for constant_first in (False, True):
        net = Net()
        c = net.const("c", operand)
        net.node(op, [c, "x"] if constant_first else ["x", c], "y")
        model = check(net.bytes({"x": [1, 13, 9, 9]}), {"x": image(1, 13, 9, 9)})
        assert ops(model) == ["scale_shift"]


def test_per_channel_constants_after_a_conv_fold_into_its_weights() -> None:
    net = Net()
    scaled = net.node(
        "Mul", [stem(net), net.const("s", np.linspace(0.5, 2, 16, dtype=np.float32).reshape(16, 1, 1))], "m"
    )
    net.node("Add", [scaled, net.const("t", np.linspace(-1, 1, 16, dtype=np.float32).reshape(16, 1, 1))], "y")
    model = check(net.bytes(X), feeds_x())
    assert ops(model) == ["conv"]
    assert model._steps[0].nodes == ["a", "m", "y"]


def test_mul_and_add_of_two_activations_are_elementwise_steps() -> None:
    net = Net()
    product = net.node("Mul", ["x", "x2"], "p")
    net.node("Add", [product, "x"], "y")
    shape = [1, 13, 9, 9]
    model = check(net.bytes({"x": shape, "x2": shape}), {"x": image(*shape), "x2": image(*shape, seed=2)})
    assert ops(model) == ["mul", "add"]


def test_sum_of_three_activations_is_a_chain_of_adds() -> None:
    net = Net()
    net.node("Sum", ["x", "x2", "x3"], "y")
    shape = [1, 13, 9, 9]
    feeds = {name: image(*shape, seed=i) for i, name in enumerate(("x", "x2", "x3"))}
    model = check(net.bytes(dict.fromkeys(feeds, shape)), feeds)
    assert ops(model) == ["add", "add"]


def test_mul_by_a_per_channel_activation_scales_channels() -> None:
    net = Net()
    net.node("Mul", [net.node("GlobalAveragePool", ["x"], "g"), "x"], "y")
    model = check(net.bytes({"x": [1, 13, 9, 9]}), {"x": image(1, 13, 9, 9)})
    assert ops(model) == ["global_avg_pool", "scale_channels"]


def test_squeeze_and_excitation_gate_fuses_and_scales_the_channels() -> None:
    """GlobalAveragePool -> Conv 1x1 -> Relu -> Conv 1x1 -> Sigmoid -> Mul with the feature map."""
    net = Net()
    features = net.conv("x", "f", 3, 32)
    squeezed = net.node("GlobalAveragePool", [features], "g")
    hidden = net.node("Relu", [net.conv(squeezed, "s1", 32, 8, 1)], "s1.relu")
    gate = net.node("Sigmoid", [net.conv(hidden, "s2", 8, 32, 1)], "s2.sigmoid")
    net.node("Mul", [features, gate], "y")
    model = check(net.bytes(X), feeds_x())
    assert ops(model) == ["conv", "global_avg_pool", "conv", "conv", "scale_channels"]
    assert [conv.params["act"] for conv, _ in model.convolutions()] == ["none", "relu", "sigmoid"]
    assert step(model, "y").inputs == ["f", "s2.sigmoid"]


@pytest.mark.parametrize(
    ("op", "attributes"),
    [
        pytest.param("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, id="max-3x3-s2"),
        pytest.param("MaxPool", {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}, id="max-ceil"),
        pytest.param("MaxPool", {"kernel_shape": [2, 2], "strides": [2, 2], "pads": [0, 0, 1, 1]}, id="max-asym"),
        pytest.param(
            "MaxPool", {"kernel_shape": [3, 2], "strides": [1, 2], "pads": [1, 0, 2, 1]}, id="max-rectangular"
        ),
        pytest.param("MaxPool", {"kernel_shape": [3, 3], "dilations": [2, 2], "pads": [1, 1, 1, 1]}, id="max-dilated"),
        pytest.param("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_LOWER"}, id="max-same"),
        pytest.param(
            "AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, id="avg-exclude-pad"
        ),
        pytest.param(
            "AveragePool",
            {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "count_include_pad": 1},
            id="avg-include-pad",
        ),
        pytest.param(
            "AveragePool",
            {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 0, 0], "ceil_mode": 1, "count_include_pad": 1},
            id="avg-ceil-include-pad",
        ),
        pytest.param(
            "AveragePool", {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}, id="avg-ceil-exclude-pad"
        ),
        pytest.param(
            "AveragePool",
            {"kernel_shape": [2, 3], "strides": [2, 1], "pads": [1, 0, 0, 2], "count_include_pad": 1},
            id="avg-asym-include-pad",
        ),
    ],
)
def test_pool_matches_onnxruntime(op: str, attributes: dict[str, Any]) -> None:
    net = Net()
    net.node(op, ["x"], "y", **attributes)
    model = check(net.bytes({"x": [1, 13, 11, 11]}), {"x": image(1, 13, 11, 11)})
    assert ops(model) == [{"MaxPool": "max_pool", "AveragePool": "avg_pool"}[op]]


@pytest.mark.parametrize("size", [3, 5])
def test_lrn_matches_onnxruntime(size: int) -> None:
    net = Net()
    net.node("LRN", ["x"], "y", size=size, alpha=1e-2, beta=0.75, bias=2.0)
    model = check(net.bytes({"x": [1, 13, 9, 9]}), {"x": 3 * image(1, 13, 9, 9)})
    assert ops(model) == ["lrn"]


def test_channel_shuffle_is_one_step() -> None:
    """ShuffleNet's Reshape (N, g, C/g, H, W) -> Transpose (0, 2, 1, 3, 4) -> Reshape (N, C, H, W)."""
    net = Net()
    grouped = net.node("Reshape", ["x", net.const("split.shape", np.array([0, 3, 4, 9, 9], np.int64))], "split")
    swapped = net.node("Transpose", [grouped], "swap", perm=[0, 2, 1, 3, 4])
    net.node("Reshape", [swapped, net.const("merge.shape", np.array([-1, 12, 9, 9], np.int64))], "y")
    model = check(net.bytes({"x": ["N", 12, 9, 9]}), {"x": image(2, 12, 9, 9)})
    ((shuffle),) = model._steps
    assert (shuffle.op, shuffle.params["groups"], shuffle.nodes) == ("shuffle", 3, ["split", "swap", "y"])


def test_dropout_and_identity_pass_through_and_let_relu_fuse() -> None:
    net = Net()
    dropped = net.node("Dropout", [stem(net), net.const("ratio", np.float32(0.5))], "drop")
    net.node("Relu", [net.node("Identity", [dropped], "same")], "y")
    model = check(net.bytes(X), feeds_x())
    ((conv, _),) = model.convolutions()
    assert ops(model) == ["conv"]
    assert conv.params["act"] == "relu"


def test_classifier_tail_global_pool_flatten_gemm_softmax() -> None:
    net = Net()
    pooled = net.node("GlobalAveragePool", [net.node("Relu", [stem(net, 24)], "r")], "g")
    flat = net.node("Flatten", [pooled], "flat")
    logits = net.node(
        "Gemm", [flat, net.random("fc.w", (10, 24)), net.random("fc.b", (10,))], "fc", transB=1, alpha=0.5, beta=2.0
    )
    net.node("Softmax", [logits], "y")
    model = check(net.bytes(X, {"y": 2}), feeds_x())
    assert ops(model) == ["conv", "global_avg_pool", "to_dense", "reshape", "gemm", "softmax"]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("batch", [1, 3, 5])
def test_a_large_classifier_matches_onnxruntime_on_any_threads(threads, batch) -> None:
    """A Gemm whose weights are bound by memory (at least model.LARGE_GEMM floats) runs in C on the kernels' threads,
    in the chain, at 2 threads and a few images (graph_ops.gemv), else in BLAS; either way onnxruntime's answer."""
    net = Net()
    flat = net.node("Flatten", [net.node("Relu", [stem(net, 8)], "r")], "flat")  # 8 x 10 x 10 = 800 features
    net.node("Gemm", [flat, net.random("fc.w", (5243, 800)), net.random("fc.b", (5243,))], "y", transB=1)
    model = check(net.bytes({"x": ["N", 3, 10, 10]}, {"y": 2}), {"x": image(batch, 3, 10, 10)}, threads=threads)
    gemm = ops(model).index("gemm")
    in_c = threads == 2 and batch <= 4
    assert (gemm in model._prepared[batch].calls) == in_c


def test_a_small_classifier_runs_in_c_on_one_thread_in_the_chain() -> None:
    """Below LARGE_GEMM floats the Gemm runs in C at 1 thread too: everything after the convolution that reads the
    NCHW input (bound per call), tail included, is one chain."""
    net = Net()
    flat = net.node("Flatten", [net.node("Relu", [stem(net, 8)], "r")], "flat")
    logits = net.node("Gemm", [flat, net.random("fc.w", (30, 800)), net.random("fc.b", (30,))], "fc", transB=1)
    net.node("Softmax", [logits], "y")
    model = check(net.bytes(X, {"y": 2}), feeds_x(), threads=1)
    assert ops(model) == ["conv", "to_dense", "reshape", "gemm", "softmax"]
    assert model._prepared[1].chains.keys() == {1}
    assert model._prepared[1].chains[1][0] == len(model._steps)


def test_dense_tail_reshape_matmul_activation_add_mul_concat() -> None:
    net = Net()
    flat = net.node("Reshape", ["x", net.const("shape", np.array([0, -1], np.int64))], "flat")
    hidden = net.node("Relu", [net.node("MatMul", [flat, net.random("w", (8 * 4 * 4, 12))], "mm")], "hidden")
    shifted = net.node("Add", [hidden, net.random("shift", (12,))], "shifted")
    scaled = net.node("Mul", [net.const("half", np.float32(0.5)), shifted], "scaled")
    net.node("Concat", [scaled, flat], "y", axis=1)
    model = check(net.bytes({"x": ["N", 8, 4, 4]}, {"y": 2}), {"x": image(2, 8, 4, 4)})
    assert ops(model) == ["to_dense", "reshape", "gemm", "dense_act", "dense_add", "dense_mul", "dense_concat"]


def test_dense_add_of_a_full_rank_bias_keeps_the_rank() -> None:
    """MatMul + Add with a (1, M) bias, as a Linear exported without Gemm, then Softmax on the last axis."""
    net = Net()
    flat = net.node("Flatten", ["x"], "flat")
    logits = net.node(
        "Add", [net.node("MatMul", [flat, net.random("w", (8 * 4 * 4, 10))], "mm"), net.random("b", (1, 10))], "fc"
    )
    net.node("Softmax", [logits], "y")
    check(net.bytes({"x": ["N", 8, 4, 4]}, {"y": 2}), {"x": image(2, 8, 4, 4)})


# ---------------------------------------------------------------------------------------------------- fusions


def test_conv_then_batch_normalization_folds_into_one_conv_step() -> None:
    net = Net()
    net.bn(stem(net), "y", 16)
    model = check(net.bytes(X), feeds_x())
    assert ops(model) == ["conv"]
    assert model._steps[0].nodes == ["a", "y"]
    assert "a+y" in model.summary()


def test_conv_add_relu_fuses_the_residual_and_the_relu() -> None:
    net = Net()
    a = stem(net)
    net.node("Relu", [net.node("Add", [net.conv(a, "b", 16, 16), a], "sum")], "y")
    model = check(net.bytes(X), feeds_x())
    assert ops(model) == ["conv", "conv"]
    conv = step(model, "y")
    assert conv.nodes == ["b", "sum", "y"]
    assert (conv.params["residual"], conv.params["act"]) == ("a", "relu")
    assert conv.inputs == ["a", "a"]
    assert "fused: +residual relu" in model.summary()


def test_conv_bn_add_relu_fuses_into_one_conv_step() -> None:
    net = Net()
    a = stem(net)
    normalized = net.bn(net.conv(a, "b", 16, 16), "bn", 16)
    net.node("Relu", [net.node("Add", [a, normalized], "sum")], "y")
    model = check(net.bytes(X), feeds_x())
    assert ops(model) == ["conv", "conv"]
    conv = step(model, "y")
    assert conv.nodes == ["b", "bn", "sum", "y"]
    assert (conv.params["residual"], conv.params["act"]) == ("a", "relu")


def test_residual_from_a_graph_input() -> None:
    net = Net()
    net.node("Add", ["skip", stem(net)], "y")
    feeds = {"x": image(1, 3, 10, 10), "skip": image(1, 16, 10, 10, seed=2)}
    model = check(net.bytes({"x": [1, 3, 10, 10], "skip": [1, 16, 10, 10]}), feeds)
    assert ops(model) == ["conv"]
    assert step(model, "y").params["residual"] == "skip"


def test_add_does_not_fuse_when_the_conv_output_has_another_reader() -> None:
    net = Net()
    a = stem(net)
    b = net.conv(a, "b", 16, 16)
    net.node("Add", [b, a], "y")
    net.node("Relu", [b], "y2")
    model = check(net.bytes(X, {"y": 4, "y2": 4}), feeds_x())
    assert step(model, "y").op == "add"
    assert [(conv.output, conv.params["residual"]) for conv, _ in model.convolutions()] == [("a", None), ("b", None)]


def test_add_does_not_fuse_when_the_conv_output_is_a_graph_output() -> None:
    net = Net()
    a = stem(net)
    net.node("Relu", [net.node("Add", [net.conv(a, "b", 16, 16), a], "sum")], "y")
    model = check(net.bytes(X, {"b": 4, "y": 4}), feeds_x())
    assert "add" in ops(model)
    assert [(conv.output, conv.params["residual"]) for conv, _ in model.convolutions()] == [("a", None), ("b", None)]


def test_relu_does_not_fuse_when_the_conv_output_is_a_graph_output() -> None:
    net = Net()
    net.node("Relu", [stem(net)], "y")
    model = check(net.bytes(X, {"a": 4, "y": 4}), feeds_x())
    assert ops(model) == ["conv", "act"]


@pytest.mark.parametrize("source", ["concat", "input", "shared-conv"])
def test_batch_normalization_that_cannot_fold_stays_a_scale_shift(source: str) -> None:
    net = Net()
    outputs = {"y": 4}
    if source == "concat":
        x, c = net.node("Concat", [stem(net), net.conv("x", "a2", 3, 8)], "cat", axis=1), 24
    elif source == "input":
        x, c = net.conv(net.bn("x", "bn", 3), "y", 3, 16), 3
    else:
        x, c = stem(net), 16
        net.node("Relu", [x], "y2")
        outputs["y2"] = 4
    if source != "input":
        net.bn(x, "y", c)
    model = check(net.bytes(X, outputs), feeds_x())
    assert "scale_shift" in ops(model)
    assert all(len(conv.nodes) == 1 for conv, _ in model.convolutions())


# ---------------------------------------------------------------------------------------------------- Concat


def _concat_of_convs(net: Net, channels: list[int]) -> list[str]:
    names = [net.conv("x", f"c{i}", 3, co) for i, co in enumerate(channels)]
    net.node("Relu", [net.node("Concat", names, "cat", axis=1)], "y")
    return names


def test_concat_at_unaligned_offsets_copies_those_inputs() -> None:
    net = Net()
    names = _concat_of_convs(net, [3, 5, 13])
    model = check(net.bytes(X), feeds_x())
    lanes = model.lanes
    offsets = [0, 3, 8]
    copied = [i for i, offset in enumerate(offsets) if offset % lanes]
    assert step(model, "cat").params["copies"] == [(i, offsets[i]) for i in copied]
    assert f"copies {len(copied)} of 3 inputs" in model.summary()
    for i, name in enumerate(names):
        expected = Place(name, 0) if i in copied else Place("cat", offsets[i] // lanes)
        assert model.plan.places[name] == expected


def test_concat_at_aligned_offsets_is_written_in_place() -> None:
    net = Net()
    names = _concat_of_convs(net, [16, 32, 16])
    model = check(net.bytes(X), feeds_x())
    lanes = model.lanes
    assert step(model, "cat").params["copies"] == []
    assert [model.plan.places[name] for name in names] == [Place("cat", o // lanes) for o in (0, 16, 48)]
    assert not set(names) & set(model.plan.shapes)  # no buffer of their own
    assert re.search(r"concat\s+cat\s.*in place", model.summary())


def test_nested_concats_share_the_outer_buffer() -> None:
    """DenseNet's growing block: cat2 = concat(concat(a, b), c) with b = conv(a) and c = conv(concat(a, b))."""
    net = Net()
    a = stem(net)
    b = net.conv(a, "b", 16, 16)
    inner = net.node("Concat", [a, b], "cat1", axis=1)
    c = net.conv(inner, "c", 32, 16)
    net.node("Concat", [inner, c], "y", axis=1)
    model = check(net.bytes(X), feeds_x())
    lanes = model.lanes
    places = model.plan.places
    assert [places[n] for n in (a, b, inner, c)] == [Place("y", o // lanes) for o in (0, 16, 0, 32)]
    assert step(model, "cat1").params["copies"] == step(model, "y").params["copies"] == []


def test_concat_of_a_nested_concat_and_one_of_its_inputs() -> None:
    net = Net()
    a, b = net.conv("x", "a", 3, 16), net.conv("x", "b", 3, 16)
    net.node("Concat", [net.node("Concat", [a, b], "inner", axis=1), a], "y", axis=1)
    check(net.bytes(X), feeds_x())


def test_concat_input_that_is_a_graph_output_is_copied() -> None:
    net = Net()
    a, b = net.conv("x", "a", 3, 16), net.conv("x", "b", 3, 16)
    net.node("Concat", [a, b], "y", axis=1)
    model = check(net.bytes(X, {"a": 4, "y": 4}), feeds_x())
    assert step(model, "y").params["copies"] == [(0, 0)]
    assert model.plan.places["a"] == Place("a", 0)
    assert model.plan.places["b"] == Place("y", 16 // model.lanes)
    assert "copies 1 of 2 inputs" in model.summary()


def test_concat_of_the_same_tensor_twice_copies_both() -> None:
    net = Net()
    a = stem(net)
    net.node("Concat", [a, a], "y", axis=1)
    model = check(net.bytes(X), feeds_x())
    assert step(model, "y").params["copies"] == [(0, 0), (1, 16)]
    assert "copies 2 of 2 inputs" in model.summary()


def test_concat_of_graph_inputs_copies_them() -> None:
    net = Net()
    net.node("Concat", ["x", "x2"], "y", axis=1)
    feeds = {"x": image(1, 3, 10, 10), "x2": image(1, 13, 10, 10, seed=2)}
    model = check(net.bytes({"x": [1, 3, 10, 10], "x2": [1, 13, 10, 10]}), feeds)
    assert step(model, "y").params["copies"] == [(0, 0), (1, 3)]


# ---------------------------------------------------------------------------------------------------- batch, threads


def _small_network(net: Net) -> None:
    """Conv, pooling, an in-place Concat, a residual and a classifier: a bit of everything, batch symbolic."""
    a = net.node("Relu", [stem(net)], "a.relu")
    pooled = net.node("MaxPool", [a], "pool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    b = net.conv(pooled, "b", 16, 16)
    c = net.node("Add", [net.conv(pooled, "c", 16, 16), pooled], "c.add")
    cat = net.node("Concat", [b, c], "cat", axis=1)
    flat = net.node("Flatten", [net.node("GlobalAveragePool", [cat], "gap")], "flat")
    net.node("Gemm", [flat, net.random("fc.w", (32, 10))], "y")


def test_batch_sizes_change_between_runs() -> None:
    net = Net()
    _small_network(net)
    data = net.bytes({"x": ["N", 3, 10, 10]}, {"y": 2})
    model = dc.load_onnx(data)
    for batch in (1, 3, 1):
        x = image(batch, 3, 10, 10, seed=batch)
        (got,) = model.run({"x": x})
        assert got.shape == (batch, 10)
        assert_close(got, onnxruntime(data, {"x": x})[0])


def test_one_and_two_threads_give_identical_results() -> None:
    net = Net()
    _small_network(net)
    data = net.bytes({"x": ["N", 3, 10, 10]}, {"y": 2})
    x = image(2, 3, 10, 10)
    one, two = dc.load_onnx(data, threads=1), dc.load_onnx(data, threads=2)
    assert (one.threads, two.threads) == (1, 2)
    assert np.array_equal(one(x), two(x))


# ---------------------------------------------------------------------------------------------------- inputs, feeds


def _two_in_two_out() -> bytes:
    net = Net()
    net.node("Add", [stem(net), "skip"], "y1")
    net.node("MaxPool", ["skip"], "y2", kernel_shape=[2, 2], strides=[2, 2])
    return net.bytes({"x": ["N", 3, 10, 10], "skip": ["N", 16, 10, 10]}, {"y1": 4, "y2": 4})


def test_two_inputs_and_two_outputs_run() -> None:
    feeds = {"x": image(2, 3, 10, 10), "skip": image(2, 16, 10, 10, seed=2)}
    model = check(_two_in_two_out(), feeds)
    assert (model.input_names, model.output_names) == (["x", "skip"], ["y1", "y2"])
    y1, y2 = model.run(feeds)
    assert (y1.shape, y2.shape) == ((2, 16, 10, 10), (2, 16, 5, 5))


def test_calling_a_model_with_two_inputs_is_refused() -> None:
    model = dc.load_onnx(_two_in_two_out())
    with pytest.raises(ValueError, match=r"model\(x\) runs a model with one input and one output.*use run\("):
        model(image(1, 3, 10, 10))


@pytest.mark.parametrize(
    ("feeds", "error", "message"),
    [
        pytest.param({"x": image(1, 3, 10, 10)}, ValueError, r"missing \['skip'\], unknown \[\]", id="missing"),
        pytest.param(
            {"x": image(1, 3, 10, 10), "skip": image(1, 16, 10, 10), "z": image(1, 3, 10, 10)},
            ValueError,
            r"missing \[\], unknown \['z'\]",
            id="unknown",
        ),
        pytest.param(
            {"x": image(1, 3, 10, 10).astype(np.float64), "skip": image(1, 16, 10, 10)},
            TypeError,
            "input 'x' must be a float32 numpy array, got float64",
            id="float64",
        ),
        pytest.param(
            {"x": image(1, 3, 10, 10), "skip": image(1, 16, 10, 12)},
            ValueError,
            re.escape("input 'skip' must have shape (N, 16, 10, 10), got (1, 16, 10, 12)"),
            id="wrong-shape",
        ),
        pytest.param(
            {"x": image(1, 3, 10, 10), "skip": image(2, 16, 10, 10)},
            ValueError,
            "all inputs must share the batch size, got 1 and 2",
            id="mixed-batches",
        ),
    ],
)
def test_bad_feeds_are_refused(feeds: dict[str, np.ndarray], error: type[Exception], message: str) -> None:
    model = dc.load_onnx(_two_in_two_out())
    with pytest.raises(error, match=message):
        model.run(feeds)


def test_input_shapes_fix_symbolic_height_and_width() -> None:
    net = Net()
    net.node("Relu", [stem(net)], "y")
    data = net.bytes({"x": ["N", 3, "H", "W"]})
    model = check(data, feeds_x(), input_shapes={"x": (1, 3, 10, 10)})
    with pytest.raises(ValueError, match=re.escape("input 'x' must have shape (N, 3, 10, 10)")):
        model.run({"x": image(1, 3, 12, 12)})


def test_loading_a_path_and_loading_bytes_give_the_same_results(tmp_path: Path) -> None:
    net = Net()
    net.node("Relu", [stem(net)], "y")
    data = net.bytes(X)
    path = tmp_path / "model.onnx"
    path.write_bytes(data)
    x = image(1, 3, 10, 10)
    assert np.array_equal(dc.load_onnx(path)(x), dc.load_onnx(data)(x))
    assert np.array_equal(dc.load_onnx(str(path))(x), dc.load_onnx(data)(x))


# ---------------------------------------------------------------------------------------------------- arena


def _chain(length: int) -> dc.Model:
    net = Net()
    x = "x"
    for i in range(length):
        x = net.conv(x, "y" if i == length - 1 else f"c{i}", 32, 32)
    # 32 channels: more than a vector of 8 or 16, so the image is converted into a buffer of the arena
    return dc.load_onnx(net.bytes({"x": [1, 32, 10, 10]}))


def _lifetimes(model: dc.Model) -> dict[str, tuple[int, int]]:
    """buffer -> (first step touching it, last): graph inputs at -1, graph outputs after the last step."""
    places, life = model.plan.places, {}
    touches = [(name, -1) for name in model.input_names]
    touches += [(name, i) for i, s in enumerate(model._steps) for name in (*s.inputs, s.output)]
    touches += [(name, len(model._steps)) for name in model.output_names]
    for name, index in touches:
        if name in places:
            lo, hi = life.get(places[name].buffer, (index, index))
            life[places[name].buffer] = (min(lo, index), max(hi, index))
    return life


def test_arena_reuses_memory_and_never_overlaps_live_buffers() -> None:
    model = _chain(6)
    plan = model.plan
    assert model(image(1, 32, 10, 10)).shape == (1, 32, 10, 10)
    assert len(plan.shapes) == 7  # the input and six outputs
    assert plan.floats < plan.unshared
    life = _lifetimes(model)
    assert set(life) == set(plan.shapes)
    buffers = sorted(plan.shapes)
    for i, p in enumerate(buffers):
        for q in buffers[i + 1 :]:
            if life[p][1] < life[q][0] or life[q][1] < life[p][0]:
                continue  # never live at once: they may share floats
            p_end, q_end = plan.offsets[p] + plan.buffer_floats(p), plan.offsets[q] + plan.buffer_floats(q)
            assert p_end <= plan.offsets[q] or q_end <= plan.offsets[p], (p, q)


def test_arena_scales_with_the_batch_and_the_summary_reports_it() -> None:
    model = _chain(6)
    plan = model.plan
    assert model.arena_bytes(2) == 2 * model.arena_bytes(1) == 8 * plan.floats
    last = model.summary().splitlines()[-1]
    assert last == (
        f"activation arena: {4 * plan.floats / 2**20:.2f} MiB per image ({len(plan.shapes)} buffers, "
        f"{4 * plan.unshared / 2**20:.2f} MiB without reuse)"
    )


def test_summary_names_every_step() -> None:
    net = Net()
    _small_network(net)
    model = dc.load_onnx(net.bytes({"x": ["N", 3, 10, 10]}, {"y": 2}))
    lines = model.summary().splitlines()
    assert len(lines) == 1 + len(model._steps) + 2
    for s, line in zip(model._steps, lines[1:-2], strict=True):
        assert s.op in line and s.label()[:33] in line
    assert lines[-2].startswith(f"{len(model._steps)} steps, 3 convolutions (configurations: ")


# ---------------------------------------------------------------------------------------------------- refusals


def _refused(data: bytes | str, message: str, **load: Any) -> None:
    with pytest.raises(OnnxModelError, match=message):
        dc.load_onnx(data, **load)


@pytest.mark.parametrize("op", ["Resize", "Gather"])
def test_unsupported_operator_is_refused(op: str) -> None:
    net = Net()
    if op == "Resize":
        net.node("Resize", [stem(net), "", net.const("scales", np.array([1, 1, 2, 2], np.float32))], "up")
    else:
        net.node("Gather", [stem(net), net.const("index", np.array([0, 2], np.int64))], "up", axis=1)
    _refused(net.bytes(X, {"up": 4}), rf"node 'up' \({op}\): the operator {op} is not supported; directconv runs ")


def test_conv_weight_computed_at_run_time_is_refused() -> None:
    net = Net()
    net.node("Conv", ["x", net.node("Relu", ["w.input"], "w")], "y", kernel_shape=[3, 3])
    _refused(
        net.bytes({"x": [1, 3, 10, 10], "w.input": [16, 3, 3, 3]}),
        r"node 'y' \(Conv\): the weight 'w' is computed at run time; directconv needs it as an initializer",
    )


def test_conv_weight_that_nothing_produces_is_refused() -> None:
    net = Net()
    net.node("Conv", ["x", "nowhere"], "y", kernel_shape=[3, 3])
    _refused(net.bytes(X), r"fails onnx.checker: .*'nowhere'")


def test_three_dimensional_conv_is_refused() -> None:
    net = Net()
    net.node("Conv", ["x", net.random("w", (4, 3, 3, 3, 3))], "y")
    _refused(net.bytes(X), r"node 'y' \(Conv\): a 3-D convolution; directconv runs 2-D ones")


def test_max_pool_storage_order_is_refused() -> None:
    net = Net()
    net.node("MaxPool", ["x"], "y", kernel_shape=[2, 2], storage_order=1)
    _refused(net.bytes(X), r"node 'y' \(MaxPool\): storage_order=1 is not supported")


def test_max_pool_pads_as_large_as_the_kernel_are_refused_at_load() -> None:
    net = Net()
    net.node("MaxPool", ["x"], "y", kernel_shape=[2, 2], dilations=[2, 2], pads=[2, 2, 2, 2])
    _refused(net.bytes(X), r"node 'y' \(MaxPool\): pads .* are not supported")


def test_dropout_in_training_mode_is_refused() -> None:
    net = Net()
    net.node("Dropout", ["x", net.const("ratio", np.float32(0.5)), net.const("training", np.array(True))], "y")
    _refused(net.bytes(X), r"node 'y' \(Dropout\): training_mode=True is not supported")


def test_gemm_with_trans_a_is_refused() -> None:
    net = Net()
    flat = net.node("Flatten", ["x"], "flat")
    net.node("Gemm", [flat, net.random("w", (300, 10))], "y", transA=1)
    _refused(net.bytes(X, {"y": 2}), r"node 'y' \(Gemm\): transA=1 would mix the batch into the features")


def test_transpose_outside_a_channel_shuffle_is_refused() -> None:
    net = Net()
    net.node("Transpose", ["x"], "y", perm=[0, 1, 3, 2])
    _refused(net.bytes(X), r"node 'y' \(Transpose\): a Transpose outside a channel shuffle")


@pytest.mark.parametrize("data", [pytest.param(b"hello", id="garbage"), pytest.param(b"", id="empty")])
def test_bytes_that_are_not_onnx_are_refused(data: bytes) -> None:
    _refused(data, "not an ONNX model")


def test_model_failing_the_checker_is_refused() -> None:
    net = Net()
    net.nodes.append(helper.make_node("Relu", ["x", "x"], ["y"], name="twice"))
    _refused(net.bytes(X), r"the model fails onnx.checker: .*twice")


def _with_initializer(tensor: Any) -> bytes:
    net = Net()
    net.node("Add", ["x", tensor.name], "y")
    model = onnx.load_from_string(net.bytes(X))
    model.graph.initializer.append(tensor)
    return model.SerializeToString()


def test_initializer_claiming_a_huge_shape_is_refused_without_allocating(
    peak_bytes: Callable[[Callable[[], object]], int],
) -> None:
    tensor = TensorProto(name="huge", data_type=TensorProto.FLOAT, dims=[1 << 40], raw_data=b"\0" * 4)
    data = _with_initializer(tensor)
    peak = peak_bytes(lambda: _refused(data, r"initializer 'huge' claims 1099511627776 elements, more than"))
    assert peak < 1 << 20


def test_initializer_with_external_data_is_refused() -> None:
    tensor = TensorProto(name="far", data_type=TensorProto.FLOAT, dims=[1], data_location=TensorProto.EXTERNAL)
    tensor.external_data.add(key="location", value="weights.bin")
    _refused(_with_initializer(tensor), r"initializer 'far' is stored outside the file \(external data\)")


def test_constant_of_shape_asking_for_a_trillion_elements_is_refused(
    peak_bytes: Callable[[Callable[[], object]], int],
) -> None:
    net = Net()
    big = net.node("ConstantOfShape", [net.const("dims", np.array([10**6, 10**6], np.int64))], "big")
    net.node("Add", ["x", big], "y")
    data = net.bytes(X)
    peak = peak_bytes(lambda: _refused(data, r"node 'big' \(ConstantOfShape\): shape \[1000000, 1000000\] is"))
    assert peak < 1 << 20


def test_input_of_rank_two_is_refused() -> None:
    net = Net()
    net.node("Relu", ["x"], "y")
    _refused(net.bytes({"x": [1, 10]}, {"y": 2}), r"input 'x' has shape \[1, 10\]; directconv runs models whose inputs")


def test_input_with_unknown_height_needs_input_shapes() -> None:
    net = Net()
    net.node("Relu", ["x"], "y")
    _refused(
        net.bytes({"x": [1, 3, "H", 10]}), r"unknown C, H or W; give them with input_shapes=\{'x': \(N, C, H, W\)\}"
    )


def test_input_shapes_naming_an_unknown_input_is_refused() -> None:
    net = Net()
    net.node("Relu", ["x"], "y")
    _refused(
        net.bytes(X), r"input_shapes names \['z'\], which are not inputs of the model", input_shapes={"z": (1, 3, 8, 8)}
    )


def test_input_shapes_contradicting_the_file_is_refused() -> None:
    net = Net()
    net.node("Relu", ["x"], "y")
    _refused(
        net.bytes({"x": [1, 3, "H", 10]}),
        r"input_shapes\['x'\] gives dimension 3 = 12, but the model fixes it to 10",
        input_shapes={"x": (1, 3, 10, 12)},
    )


def test_path_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    _refused(str(tmp_path / "absent.onnx"), "no ONNX file at .*absent.onnx")


# ---------------------------------------------------------------------------------------------------- more fusions


def test_an_activation_after_an_unfused_add_or_scale_shift_runs_in_that_step() -> None:
    """Concat -> BatchNormalization -> Relu (DenseNet's pre-activation) and Relu(Add(a, a')) where both operands are
    read again: the BN and the Add stay steps of their own, and the Relu goes into them."""
    net = Net()
    a = stem(net, 8)
    b = net.conv("x", "b", 3, 8)
    cat = net.node("Concat", [a, b], "cat", axis=1)
    r1 = net.node("Relu", [net.bn(cat, "bn", 16)], "r1")
    s = net.node("Add", [a, b], "s")
    r2 = net.node("Relu", [s], "r2")
    y1 = net.conv(r1, "y1", 16, 8)
    y2 = net.node("Add", [net.conv(r2, "c2", 8, 8), a], "y2")
    net.node("Mul", [y1, y2], "y")
    model = check(net.bytes({"x": [1, 3, 10, 10]}), {"x": image(1, 3, 10, 10)})
    assert step(model, "r1").op == "scale_shift" and step(model, "r1").params["act"] == "relu"
    assert step(model, "r2").op == "add" and step(model, "r2").params["act"] == "relu"
    assert "r1" not in ops(model) and not any(s.op == "act" for s in model._steps)


def test_reduce_mean_over_height_and_width_is_a_global_average_pool() -> None:
    """torch's default exporter writes adaptive_avg_pool2d(x, 1) as ReduceMean(axes 2, 3): kept dims and not."""
    for keepdims in (1, 0):
        net = Net()
        a = stem(net)
        axes = net.const("axes", np.array([-1, -2], np.int64))
        net.node("ReduceMean", [a, axes], "y", keepdims=keepdims)
        model = check(
            net.bytes({"x": [2, 3, 10, 10]}, {"y": 4 if keepdims else 2}, opset=18), {"x": image(2, 3, 10, 10)}
        )
        assert "global_avg_pool" in ops(model)
    net = Net()
    axes = net.const("axes", np.array([1], np.int64))
    net.node("ReduceMean", [stem(net), axes], "y")
    with pytest.raises(OnnxModelError, match=r"node 'y' \(ReduceMean\): axes=\[1\]; directconv averages over height"):
        dc.load_onnx(net.bytes({"x": [1, 3, 10, 10]}, opset=18))


def test_an_input_too_large_to_generate_kernels_for_is_refused_at_load() -> None:
    net = Net()
    stem(net)
    net.node("Relu", ["a"], "y")
    with pytest.raises(
        OnnxModelError, match=r"input 'x' has shape \[1, 3, 100000, 10\]: directconv takes C, H and W up"
    ):
        dc.load_onnx(net.bytes({"x": [1, 3, 100000, 10]}))
