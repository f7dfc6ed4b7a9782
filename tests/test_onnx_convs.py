"""Every Conv node of the reference networks that onnx ships as light backend test models runs through
directconv.conv2d and matches the reference.

The light models (onnx/backend/test/data/light) carry the networks' graphs with placeholder weights, so each
convolution is rebuilt from its ONNX attributes and the shapes onnx.shape_inference gives its inputs, then run on
random inputs (batch 1) and random weights. Nodes with the same geometry share one test, named after the first of
them; the grouped geometries and the first convolution of every network form the fast tier, the rest is slow.
"""

from __future__ import annotations

import functools
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import directconv as dc
from directconv.bench.corpus_names import LIGHT_NAMES
from directconv.core.isa import get_isa, host_isa
from directconv.core.shape import ConvShape, kernel_kind
from directconv.kernels.reference import tolerance

onnx = pytest.importorskip("onnx", reason="reading the ONNX networks needs the onnx package (the `test` extra)")

LIGHT_DIR = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
NETWORKS = LIGHT_NAMES
HOST = host_isa()
LANES = get_isa(HOST).lanes


# ---------------------------------------------------------------------------------------------------- ONNX -> shape


def _same_padding(size: int, kernel: int, stride: int, dilation: int, upper: bool) -> tuple[int, int]:
    """auto_pad SAME_UPPER / SAME_LOWER: the output is ceil(size / stride); the odd pixel goes at the end (UPPER)
    or at the beginning (LOWER)."""
    total = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    small, large = total // 2, total - total // 2
    return (small, large) if upper else (large, small)


def conv_shape(node: Any, x_shape: tuple[int, ...], w_shape: tuple[int, ...]) -> ConvShape:
    """The ConvShape of an ONNX Conv node whose input X is NCHW `x_shape` and weight W is OIHW `w_shape`.

    ONNX orders pads (top, left, bottom, right) (all begins, then all ends); directconv takes (top, bottom, left,
    right). auto_pad, when set, replaces pads.
    """
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    _, ci, h, w = x_shape
    co, _, kh, kw = w_shape
    if list(attrs.get("kernel_shape", [kh, kw])) != [kh, kw]:
        raise ValueError(f"Conv {node.name}: kernel_shape {attrs['kernel_shape']} differs from W's shape {w_shape}")
    sh, sw = attrs.get("strides", [1, 1])
    dh, dw = attrs.get("dilations", [1, 1])
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad in ("NOTSET", ""):
        top, left, bottom, right = attrs.get("pads", [0, 0, 0, 0])
    elif auto_pad == "VALID":
        top = left = bottom = right = 0
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        top, bottom = _same_padding(h, kh, sh, dh, auto_pad == "SAME_UPPER")
        left, right = _same_padding(w, kw, sw, dw, auto_pad == "SAME_UPPER")
    else:
        raise ValueError(f"Conv {node.name}: unknown auto_pad {auto_pad!r}")
    return ConvShape.from_args(
        ci, co, h, w, kh, kw, (sh, sw), (top, bottom, left, right), (dh, dw), int(attrs.get("group", 1))
    )


def _static_shapes(model: Any) -> dict[str, tuple[int, ...] | None]:
    """Every tensor's shape after shape inference; None where a dimension is not a number."""
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes: dict[str, tuple[int, ...] | None] = {t.name: tuple(t.dims) for t in model.graph.initializer}
    graph = inferred.graph
    for info in (*graph.input, *graph.value_info, *graph.output):
        dims = info.type.tensor_type.shape.dim
        static = all(d.HasField("dim_value") for d in dims) and len(dims) > 0
        shapes[info.name] = tuple(d.dim_value for d in dims) if static else None
    return shapes


@dataclass(frozen=True)
class ConvNode:
    network: str
    name: str
    index: int  # among the network's Conv nodes
    shape: ConvShape | None  # None: shape inference left an input's shape unknown
    inferred_output: tuple[int, ...] | None  # (N, C_o, H_o, W_o) from shape inference

    @property
    def label(self) -> str:
        return f"{self.network}:{self.name}"


def read_network(path: Path) -> list[ConvNode]:
    model = onnx.load(str(path))
    shapes = _static_shapes(model)
    network = path.stem.removeprefix("light_")
    nodes = []
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        index = len(nodes)
        x_shape, w_shape = shapes.get(node.input[0]), shapes.get(node.input[1])
        shape = None
        if x_shape is not None and w_shape is not None:
            shape = conv_shape(node, (1, *x_shape[1:]), w_shape)  # batch 1, whatever the graph's batch
        name = node.name or f"conv{index}"
        nodes.append(ConvNode(network, name, index, shape, shapes.get(node.output[0])))
    return nodes


@functools.cache
def corpus() -> tuple[dict[str, list[ConvNode]], tuple[str, ...]]:
    """The Conv nodes of each light network found, and the networks whose file is missing."""
    found, missing = {}, []
    for network in NETWORKS:
        path = LIGHT_DIR / f"light_{network}.onnx"
        if path.is_file():
            found[network] = read_network(path)
        else:
            missing.append(network)
    return found, tuple(missing)


@dataclass(frozen=True)
class Geometry:
    """One distinct convolution and every node of the corpus that has it."""

    shape: ConvShape
    nodes: tuple[ConvNode, ...]

    @property
    def fast(self) -> bool:
        return self.shape.groups > 1 or any(node.index == 0 for node in self.nodes)

    @property
    def label(self) -> str:
        return self.nodes[0].label


def geometries() -> list[Geometry]:
    by_shape: dict[ConvShape, list[ConvNode]] = {}
    for nodes in corpus()[0].values():
        for node in nodes:
            if node.shape is not None:
                by_shape.setdefault(node.shape, []).append(node)
    return [Geometry(shape, tuple(nodes)) for shape, nodes in by_shape.items()]


def _corpus_params() -> list[Any]:
    found, missing = corpus()
    params: list[Any] = [pytest.param(g, id=g.label, marks=() if g.fast else pytest.mark.slow) for g in geometries()]
    for network in missing:
        reason = f"onnx {onnx.__version__} ships no light_{network}.onnx in {LIGHT_DIR}"
        params.append(pytest.param(None, id=f"{network}:missing", marks=pytest.mark.skip(reason=reason)))
    return params


# ---------------------------------------------------------------------------------------------------- the corpus


def _require_corpus() -> dict[str, list[ConvNode]]:
    found, _ = corpus()
    if not found:
        pytest.skip(f"onnx {onnx.__version__} ships none of the light backend test models in {LIGHT_DIR}")
    return found


def test_every_conv_node_has_a_static_geometry() -> None:
    found = _require_corpus()
    unresolved = [node.label for nodes in found.values() for node in nodes if node.shape is None]
    assert unresolved == []
    assert all(nodes for nodes in found.values()), "every network has Conv nodes"


def test_geometries_give_the_output_shapes_onnx_infers() -> None:
    """Strides, pads, dilations and groups read from the attributes give the output shape of every node."""
    found = _require_corpus()
    for nodes in found.values():
        for node in nodes:
            assert node.shape is not None and node.inferred_output is not None, node.label
            s = node.shape
            assert (s.co, s.ho, s.wo) == tuple(node.inferred_output[1:]), f"{node.label}: {s.describe()}"


def test_corpus_has_grouped_and_depthwise_geometries() -> None:
    """The corpus covers the new kernels: AlexNet's two-group layers and ShuffleNet's depthwise and 4-group ones."""
    _require_corpus()
    kinds = {kernel_kind(g.shape, LANES) for g in geometries()}
    assert {"plain", "depthwise"} <= kinds
    assert kinds & {"grouped", "grouped-packed"}


def _config(shape: ConvShape) -> dc.KernelConfig:
    """Two vectors of output channels by up to six columns, clamped to the layer (per group for grouped layers)."""
    kind = kernel_kind(shape, LANES)
    co = shape.cog if kind == "grouped" else shape.co
    return dc.KernelConfig(HOST, min(2, -(-co // LANES)) * LANES, min(6, shape.kernel_view().wo), threads=1)


def _run_and_check(shape: ConvShape, seed: int, what: str, config: dc.KernelConfig | None = None) -> None:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1, shape.ci, shape.h, shape.w)).astype(np.float32)
    w = rng.standard_normal((shape.co, shape.cig, shape.kh, shape.kw)).astype(np.float32)
    bias = rng.standard_normal(shape.co).astype(np.float32)
    args = dict(
        stride=(shape.sh, shape.sw),
        padding=(shape.pt, shape.pb, shape.pl, shape.pr),
        dilation=(shape.dh, shape.dw),
        groups=shape.groups,
    )
    y = dc.conv2d(x, w, bias, config=config or _config(shape), **args)
    ref = dc.conv2d_reference(x, w, bias, **args)
    assert y.shape == ref.shape
    err = float(np.abs(y - ref).max()) / max(float(np.abs(ref).max()), 1e-30)
    bound = tolerance(shape.cig, shape.kh, shape.kw)
    assert err <= bound, f"{what}: relative error {err:.3g} > {bound:.3g} on {shape.describe()}"


@pytest.mark.compiler
@pytest.mark.parametrize("geometry", _corpus_params())
def test_onnx_conv_matches_reference(geometry: Geometry) -> None:
    others = ", ".join(node.label for node in geometry.nodes[1:5]) + (", ..." if len(geometry.nodes) > 5 else "")
    what = geometry.label + (f" (also {others})" if others else "")
    _run_and_check(geometry.shape, zlib.crc32(geometry.label.encode()), what)


# ---------------------------------------------------------------------------------------------------- attributes


def _single_conv(x_shape: tuple[int, ...], w_shape: tuple[int, ...], **attrs: Any) -> Any:
    helper, tensor = onnx.helper, onnx.TensorProto
    node = helper.make_node("Conv", ["X", "W", "B"], ["Y"], name="conv", **attrs)
    graph = helper.make_graph(
        [node],
        "single_conv",
        [
            helper.make_tensor_value_info("X", tensor.FLOAT, x_shape),
            helper.make_tensor_value_info("W", tensor.FLOAT, w_shape),
            helper.make_tensor_value_info("B", tensor.FLOAT, w_shape[:1]),
        ],
        [helper.make_tensor_value_info("Y", tensor.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # readable by any onnxruntime this project supports
    return model


ATTRIBUTES = {
    "pads": (
        (1, 4, 9, 11),
        (4, 2, 3, 3),
        dict(pads=[1, 2, 3, 0], strides=[1, 2], dilations=[2, 1], group=2),
        (1, 3, 2, 0),
    ),
    "same-upper": ((1, 6, 10, 9), (6, 1, 3, 4), dict(auto_pad="SAME_UPPER", strides=[2, 2], group=6), (0, 1, 1, 2)),
    "same-lower": ((1, 6, 10, 9), (6, 1, 3, 4), dict(auto_pad="SAME_LOWER", strides=[2, 2], group=6), (1, 0, 2, 1)),
    "same-dilated": ((1, 8, 9, 9), (8, 4, 3, 3), dict(auto_pad="SAME_UPPER", dilations=[2, 3], group=2), (2, 2, 3, 3)),
    "valid": ((1, 4, 9, 9), (8, 4, 5, 5), dict(auto_pad="VALID", pads=None), (0, 0, 0, 0)),
}


@pytest.mark.parametrize("case", list(ATTRIBUTES.values()), ids=list(ATTRIBUTES))
def test_attributes_become_directconv_padding(case: tuple) -> None:
    """ONNX pads (top, left, bottom, right) and auto_pad become directconv's (top, bottom, left, right), and the
    result has the output shape onnx infers."""
    x_shape, w_shape, attrs, padding = case
    model = _single_conv(x_shape, w_shape, **{k: v for k, v in attrs.items() if v is not None})
    shape = conv_shape(model.graph.node[0], x_shape, w_shape)
    assert (shape.pt, shape.pb, shape.pl, shape.pr) == padding
    inferred = _static_shapes(model)["Y"]
    assert inferred == (1, shape.co, shape.ho, shape.wo)


# onnxruntime refuses dilation with auto_pad SAME_*; shape inference above covers that case.
RUNNABLE = [name for name in ATTRIBUTES if name != "same-dilated"]


@pytest.mark.compiler
@pytest.mark.parametrize("case", [ATTRIBUTES[name] for name in RUNNABLE], ids=RUNNABLE)
def test_attributes_match_onnxruntime(case: tuple) -> None:
    """The same single-Conv models run by onnxruntime: directconv computes what the ONNX attributes mean."""
    ort = pytest.importorskip("onnxruntime", reason="the comparison with onnxruntime needs onnxruntime")
    x_shape, w_shape, attrs, _ = case
    model = _single_conv(x_shape, w_shape, **{k: v for k, v in attrs.items() if v is not None})
    shape = conv_shape(model.graph.node[0], x_shape, w_shape)
    rng = np.random.default_rng(zlib.crc32(repr(case).encode()))
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    bias = rng.standard_normal(w_shape[0]).astype(np.float32)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    expected = session.run(None, {"X": x, "W": w, "B": bias})[0]
    y = dc.conv2d(
        x,
        w,
        bias,
        stride=(shape.sh, shape.sw),
        padding=(shape.pt, shape.pb, shape.pl, shape.pr),
        dilation=(shape.dh, shape.dw),
        groups=shape.groups,
        config=_config(shape),
    )
    assert y.shape == expected.shape
    err = float(np.abs(y - expected).max()) / float(np.abs(expected).max())
    assert err <= 2 * tolerance(shape.cig, shape.kh, shape.kw)  # two float32 results, each within the bound
