"""A deterministic corpus of real ONNX CNNs with weights, for tests and `directconv bench --onnx NAME`.

Two sources:

- The nine reference networks onnx ships as light backend test models (LIGHT_NAMES). The files carry the graphs
  Caffe2 exported (opset 9, IR version 3) with placeholder weights: ConstantOfShape nodes fed by int64
  `<tensor>__SHAPE` initializers, a few float initializers, every initializer also listed as a graph input.
  light_model() makes every parameter a float32 initializer of its own, drops the ConstantOfShape nodes, the
  `__SHAPE` tensors and the unused initializers, and lists only the image as a graph input. The graph is otherwise
  untouched: same nodes, attributes, opset and tensor names, and the int64 Reshape shapes keep their values. The
  IR version becomes 4, the first that lets an initializer be no graph input.
- MobileNetV2 and ResNeXt-50 32x4d, written node by node as torchvision defines them (opset 13, IR version 7),
  with Conv, BatchNormalization and the activation as separate nodes (nothing folded), and tensors named after
  torchvision's modules and parameters (`features.1.conv.0.0.weight`, `layer1.0.bn2.running_var`).

Every parameter is drawn from numpy's default_rng seeded with zlib.crc32 of the tensor's name, from a distribution
chosen by its role (see _values) so that activations keep their scale through the whole network. Building a model
twice gives byte-identical serializations.

Batch: the light models keep the files' fixed input shape (1, 3, 224, 224), because their Reshape shapes hard-code
batch 1 (AlexNet's [1, 9216], ShuffleNet's channel shuffle [1, 4, 28, 56, 56]). The built models take a symbolic
batch "N": input "input" (N, 3, 224, 224), output "logits" (N, 1000).
"""

from __future__ import annotations

import functools
import math
import os
import uuid
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from directconv.bench.corpus_names import BUILT_NAMES, LIGHT_NAMES

try:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError as exc:  # onnx is an optional dependency
    raise ImportError("directconv.bench.corpus needs the onnx package: pip install 'directconv[onnx]'") from exc

LIGHT_DIR = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
LIGHT_IR_VERSION = 4  # the first that lets an initializer be no graph input; opset 9 needs no newer one
BUILT_OPSET = 13
BUILT_IR_VERSION = 7  # the first that supports opset 13
BN_EPSILON = 1e-5  # torchvision's BatchNorm2d default

Role = Literal["weight", "gain", "residual", "variance", "shift"]

# (uniform low, high) of the roles other than "weight"
RANGES: dict[Role, tuple[float, float]] = {
    "gain": (0.5, 1.5),
    "residual": (0.1, 0.3),
    "variance": (0.75, 1.75),
    "shift": (-0.1, 0.1),
}

# What a parameter of a light model is, from the node input it ends up in.
LIGHT_ROLES: dict[tuple[str, int], Role] = {
    ("Conv", 1): "weight",
    ("Conv", 2): "shift",
    ("Gemm", 1): "weight",
    ("Gemm", 2): "shift",
    ("BatchNormalization", 1): "gain",  # scale
    ("BatchNormalization", 2): "shift",  # bias
    ("BatchNormalization", 3): "shift",  # running mean
    ("BatchNormalization", 4): "variance",
    ("Mul", 1): "gain",  # the Caffe Scale layer after a BN without affine (DenseNet, Inception v2)
    ("Add", 1): "shift",
}


def _values(name: str, role: Role, shape: Sequence[int], fan_in: int = 1) -> np.ndarray:
    """The float32 values of the parameter `name`, from a generator seeded with zlib.crc32 of the name.

    - weight (Conv, Gemm): normal with standard deviation sqrt(2 / fan_in) (He), which keeps the mean square of
      the activations through a layer whose input comes out of a ReLU.
    - gain (BN scale, per-channel Mul): uniform in [0.5, 1.5]; variance (BN running variance): uniform in
      [0.75, 1.75]. With these, a BN multiplies the mean square by E[scale^2] E[1 / var] = 1.08 * 0.85 = 0.92:
      near 1, so that deep BN networks neither blow up (with var ~ U(0.5, 1.5), ResNet-50's logits spread four
      times wider) nor fade (DenseNet and Inception v2 follow each BN with a second per-channel gain).
    - residual (the BN scale that ends a residual branch added to an identity shortcut): uniform in [0.1, 0.3], so
      that the mean square does not double at each of ResNet-50's 12 identity bottlenecks.
    - shift (biases, BN means and biases, per-channel Add): uniform in [-0.1, 0.1], small beside activations of
      order 1.
    """
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    if role == "weight":
        values = rng.standard_normal(tuple(shape), dtype=np.float32)
        values *= np.float32(math.sqrt(2.0 / fan_in))
        return values
    low, high = RANGES[role]
    values = rng.random(tuple(shape), dtype=np.float32)
    values *= np.float32(high - low)
    values += np.float32(low)
    return values


def _model(graph: onnx.GraphProto, initializers: dict[str, np.ndarray], opset: int, ir_version: int) -> onnx.ModelProto:
    """The model of `graph` with `initializers` written into it in place: passing VGG-19's 575 MB of weights
    through make_graph and make_model would copy them twice more."""
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir_version, producer_name="directconv"
    )
    for name, values in initializers.items():
        tensor = model.graph.initializer.add()
        tensor.name = name
        tensor.data_type = helper.np_dtype_to_tensor_dtype(values.dtype)
        tensor.dims.extend(values.shape)
        tensor.raw_data = values.astype(values.dtype.newbyteorder("<"), copy=False).tobytes()  # ONNX is little-endian
    return model


# ---------------------------------------------------------------------------------------------------- light models


def light_model(name: str) -> onnx.ModelProto:
    """The light backend test model `name` (one of LIGHT_NAMES) with deterministic float32 weights.

    Raises ValueError for an unknown name and FileNotFoundError when the installed onnx ships no such file.
    """
    if name not in LIGHT_NAMES:
        raise ValueError(f"unknown light model {name!r}; known: {', '.join(LIGHT_NAMES)}")
    path = LIGHT_DIR / f"light_{name}.onnx"
    if not path.is_file():
        raise FileNotFoundError(f"onnx {onnx.__version__} ships no {path}")
    source = onnx.load(str(path))
    graph = _LightGraph(source.graph)
    nodes = [node for node in source.graph.node if node.op_type != "ConstantOfShape"]
    initializers: dict[str, np.ndarray] = {}  # in order of first use
    for node in nodes:
        for tensor in node.input:
            if tensor in initializers:
                continue
            if tensor in graph.parameters:
                initializers[tensor] = graph.values(tensor)
            elif tensor in graph.stored:
                initializers[tensor] = numpy_helper.to_array(graph.stored[tensor])  # an int64 Reshape shape
    inputs = [i for i in source.graph.input if i.name not in graph.stored and i.name not in graph.parameters]
    clean = helper.make_graph(nodes, source.graph.name, inputs, list(source.graph.output))
    (opset,) = (o.version for o in source.opset_import if o.domain in ("", "ai.onnx"))
    return _model(clean, initializers, opset, LIGHT_IR_VERSION)


class _LightGraph:
    """A light model's graph, indexed: its initializers, its parameters' shapes, who makes and uses each tensor."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.stored = {t.name: t for t in graph.initializer}
        self.consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
        self.producers: dict[str, onnx.NodeProto] = {}
        # Parameters: the float initializers and the outputs of the ConstantOfShape placeholders.
        self.parameters = {t.name: tuple(t.dims) for t in graph.initializer if t.data_type == TensorProto.FLOAT}
        for node in graph.node:
            for index, tensor in enumerate(node.input):
                self.consumers.setdefault(tensor, []).append((node, index))
            for tensor in node.output:
                self.producers[tensor] = node
            if node.op_type == "ConstantOfShape":
                self.parameters[node.output[0]] = self._ints(node.input[0])

    def _ints(self, name: str) -> tuple[int, ...]:
        return tuple(int(d) for d in numpy_helper.to_array(self.stored[name]))

    def values(self, name: str) -> np.ndarray:
        """The values of parameter `name`, its role read from the node input it ends up in.

        Raises ValueError for a parameter fed to a node input with no known role."""
        node, index = self.consumers[name][0]
        meant = self.parameters[name]  # the parameter's shape where it is used
        # Unsqueeze (DenseNet's and Inception v2's Scale layers) and Reshape (Inception v1's classifier weight,
        # stored as [1, 1, 1000, 1024]) only pass a parameter on.
        while index == 0 and node.op_type in ("Unsqueeze", "Reshape"):
            if node.op_type == "Reshape":
                meant = self._ints(node.input[1])
            node, index = self.consumers[node.output[0]][0]
        role = LIGHT_ROLES.get((node.op_type, index))
        if role is None:
            raise ValueError(f"{name}: no known role for input {index} of {node.op_type} node {node.name!r}")
        fan_in = 1
        if role == "weight" and node.op_type == "Gemm":
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            fan_in = meant[1] if trans_b else meant[0]
        elif role == "weight":
            fan_in = math.prod(meant[1:])
        elif role == "gain" and node.op_type == "BatchNormalization" and self._ends_identity_branch(node):
            role = "residual"
        return _values(name, role, self.parameters[name], fan_in)

    def _ends_identity_branch(self, bn: onnx.NodeProto) -> bool:
        """Whether `bn` ends a residual branch added to an identity shortcut: ResNet-50's and ShuffleNet's Sum
        with a Relu output, unlike a projection shortcut's Sum of two BatchNormalizations."""
        uses = self.consumers.get(bn.output[0], [])
        if len(uses) != 1 or uses[0][0].op_type not in ("Sum", "Add"):
            return False
        others = [t for t in uses[0][0].input if t != bn.output[0]]
        return all(t in self.producers and self.producers[t].op_type != "BatchNormalization" for t in others)


# ---------------------------------------------------------------------------------------------------- built models


class _Network:
    """The nodes and initializers of a network being written; each method returns its output tensor's name."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: dict[str, np.ndarray] = {}

    def node(self, op_type: str, inputs: list[str], name: str, **attributes: Any) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [name], name=name, **attributes))
        return name

    def parameter(self, name: str, role: Role, shape: Sequence[int], fan_in: int = 1) -> str:
        self.initializers[name] = _values(name, role, shape, fan_in)
        return name

    def conv_bn(
        self,
        x: str,
        conv: str,
        bn: str,
        channels: tuple[int, int],
        kernel: int,
        stride: int = 1,
        groups: int = 1,
        activation: Literal["relu", "relu6"] | None = None,
        scale: Role = "gain",
    ) -> str:
        """Conv (no bias, padding kernel // 2) -> BatchNormalization -> activation, named after torchvision's
        modules `conv` and `bn`; `scale` is the role of the BN scale ("residual" where the BN ends a residual
        branch added to an identity shortcut)."""
        cin, cout = channels
        fan_in = cin // groups * kernel * kernel
        weight = self.parameter(f"{conv}.weight", "weight", (cout, cin // groups, kernel, kernel), fan_in)
        pads = [kernel // 2] * 4
        y = self.node(
            "Conv", [x, weight], conv, kernel_shape=[kernel, kernel], strides=[stride, stride], pads=pads, group=groups
        )
        statistics = [
            self.parameter(f"{bn}.weight", scale, (cout,)),
            self.parameter(f"{bn}.bias", "shift", (cout,)),
            self.parameter(f"{bn}.running_mean", "shift", (cout,)),
            self.parameter(f"{bn}.running_var", "variance", (cout,)),
        ]
        y = self.node("BatchNormalization", [y, *statistics], bn, epsilon=BN_EPSILON)
        if activation == "relu":
            return self.node("Relu", [y], f"{bn}.relu")
        if activation == "relu6":
            if "relu6.min" not in self.initializers:
                self.initializers["relu6.min"] = np.array(0.0, dtype=np.float32)
                self.initializers["relu6.max"] = np.array(6.0, dtype=np.float32)
            return self.node("Clip", [y, "relu6.min", "relu6.max"], f"{bn}.relu6")
        return y

    def model(self, name: str, x: str, linear: str, features: int) -> onnx.ModelProto:
        """The network ending in GlobalAveragePool -> Flatten -> Gemm (torchvision's Linear `linear`, 1000
        classes) on `x`, from input "input" (N, 3, 224, 224) to output "logits" (N, 1000)."""
        y = self.node("GlobalAveragePool", [x], "avgpool")
        y = self.node("Flatten", [y], "flatten", axis=1)
        weight = self.parameter(f"{linear}.weight", "weight", (1000, features), features)
        bias = self.parameter(f"{linear}.bias", "shift", (1000,))
        self.node("Gemm", [y, weight, bias], "logits", transB=1)
        graph = helper.make_graph(
            self.nodes,
            name,
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 224, 224])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 1000])],
        )
        return _model(graph, self.initializers, BUILT_OPSET, BUILT_IR_VERSION)


def mobilenet_v2() -> onnx.ModelProto:
    """torchvision's mobilenet_v2 (width 1.0): a 3x3 stem, 17 inverted residual blocks (1x1 expansion, depthwise
    3x3, linear 1x1 projection; 10 with a residual Add), a 1x1 convolution to 1280 channels, the classifier.
    52 Conv nodes, ReLU6 as Clip(0, 6), 3,504,872 trainable parameters."""
    net = _Network()
    x = net.conv_bn("input", "features.0.0", "features.0.1", (3, 32), 3, stride=2, activation="relu6")
    cin, index = 32, 1
    # torchvision's inverted_residual_setting: expansion t, output channels c, blocks n, first block's stride s
    settings = (
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    )
    for t, c, n, s in settings:
        for block in range(n):
            stride = s if block == 0 else 1
            residual = stride == 1 and cin == c
            prefix, hidden, y = f"features.{index}.conv", cin * t, x
            layer = 0  # torchvision numbers the modules of `conv` from 0, with no expansion when t = 1
            if t != 1:
                y = net.conv_bn(y, f"{prefix}.0.0", f"{prefix}.0.1", (cin, hidden), 1, activation="relu6")
                layer = 1
            dw_conv, dw_bn = f"{prefix}.{layer}.0", f"{prefix}.{layer}.1"
            y = net.conv_bn(y, dw_conv, dw_bn, (hidden, hidden), 3, stride, groups=hidden, activation="relu6")
            scale: Role = "residual" if residual else "gain"
            y = net.conv_bn(y, f"{prefix}.{layer + 1}", f"{prefix}.{layer + 2}", (hidden, c), 1, scale=scale)
            if residual:
                y = net.node("Add", [x, y], f"features.{index}.add")
            x, cin, index = y, c, index + 1
    x = net.conv_bn(x, f"features.{index}.0", f"features.{index}.1", (cin, 1280), 1, activation="relu6")
    return net.model("mobilenet_v2", x, "classifier.1", 1280)


def resnext50_32x4d() -> onnx.ModelProto:
    """torchvision's resnext50_32x4d: a 7x7 stem and max pool, 16 bottlenecks (3, 4, 6, 3) whose 3x3 convolution
    has 32 groups of 4, 8, 16, 32 channels and carries the stride, a projection shortcut at each stage's first
    block, residual Add then Relu, the classifier. 53 Conv nodes, 25,028,904 trainable parameters."""
    net = _Network()
    x = net.conv_bn("input", "conv1", "bn1", (3, 64), 7, stride=2, activation="relu")
    x = net.node("MaxPool", [x], "maxpool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin, groups = 64, 32
    for stage, (planes, blocks) in enumerate(((64, 3), (128, 4), (256, 6), (512, 3)), start=1):
        width, cout = planes * 2, planes * 4  # width int(planes * 4 / 64) * 32 groups; expansion 4
        for block in range(blocks):
            stride = 2 if block == 0 and stage > 1 else 1
            p = f"layer{stage}.{block}"
            y = net.conv_bn(x, f"{p}.conv1", f"{p}.bn1", (cin, width), 1, activation="relu")
            y = net.conv_bn(y, f"{p}.conv2", f"{p}.bn2", (width, width), 3, stride, groups, activation="relu")
            y = net.conv_bn(y, f"{p}.conv3", f"{p}.bn3", (width, cout), 1, scale="residual" if block else "gain")
            shortcut = x
            if block == 0:
                shortcut = net.conv_bn(x, f"{p}.downsample.0", f"{p}.downsample.1", (cin, cout), 1, stride)
            y = net.node("Add", [shortcut, y], f"{p}.add")
            x, cin = net.node("Relu", [y], f"{p}.relu"), cout
    return net.model("resnext50_32x4d", x, "fc", 2048)


# ---------------------------------------------------------------------------------------------------- the corpus

CORPUS: dict[str, Callable[[], onnx.ModelProto]] = {
    **{name: functools.partial(light_model, name) for name in LIGHT_NAMES},
    **dict(zip(BUILT_NAMES, (mobilenet_v2, resnext50_32x4d), strict=True)),
}


def corpus_model(name: str) -> onnx.ModelProto:
    """A newly built corpus model `name` (a key of CORPUS); ValueError naming the known ones for another name."""
    builder = CORPUS.get(name)
    if builder is None:
        raise ValueError(f"unknown corpus model {name!r}; known: {', '.join(CORPUS)}")
    return builder()


@functools.lru_cache(maxsize=2)  # VGG-19 serializes to 575 MB: keep only the two models asked for last
def corpus_bytes(name: str) -> bytes:
    """The serialized corpus model `name`, built once while it stays among the two names asked for last."""
    return corpus_model(name).SerializeToString()


def write_corpus_model(name: str, path: str | os.PathLike[str]) -> None:
    """Write the serialized corpus model `name` to `path` atomically: readers see the old file or the whole new
    one, never a part (a temporary file in the same directory, then os.replace)."""
    target = Path(path)
    data = corpus_bytes(name)
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")  # unique, and created with the umask
    try:
        with open(temporary, "xb") as file:
            file.write(data)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
