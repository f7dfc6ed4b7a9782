"""Read an ONNX file into checked parts: the nodes that compute on activations, the constants they use (initializers
and everything computed from them alone, folded here), and the graph's inputs and outputs.

Everything that comes from the file is validated before it is used: the file's size, onnx.checker, the opset, each
initializer's byte count against its claimed shape (before anything is allocated for it), no external data (a path
in the file would read any file on the machine), and a cap on every constant and every folded result.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# Larger than any CNN we know of (VGG-19 is 548 MB of weights) and below protobuf's own 2 GiB limit.
MAX_FILE_BYTES = 1 << 31
# A folded constant (a reshaped weight, a shape) past this many elements is refused, not computed.
MAX_CONSTANT_ELEMENTS = 1 << 28
# The ops whose results are folded when all their inputs are constants: the shape plumbing exporters leave behind.
FOLDABLE = frozenset(
    {"Constant", "ConstantOfShape", "Identity", "Unsqueeze", "Squeeze", "Reshape", "Flatten", "Transpose", "Cast"}
)
MIN_OPSET, MAX_OPSET = 7, 21


class OnnxModelError(ValueError):
    """The ONNX model cannot run here: the message names the node, its op and what is unsupported."""


def require_onnx() -> Any:
    """The onnx package, or an ImportError that names the install command."""
    try:
        import onnx
    except ImportError as error:  # pragma: no cover - the test extra installs it
        raise ImportError("loading ONNX models needs the onnx package: pip install 'directconv[onnx]'") from error
    return onnx


def where(node: Any) -> str:
    """How an error names a node: its name (or its first output) and its op."""
    return f"node {node.name or (node.output[0] if node.output else '?')!r} ({node.op_type})"


@dataclass
class Parsed:
    """The parts of a checked model that the graph builder needs."""

    nodes: list[Any]  # the nodes left after folding, in the file's (topological) order
    constants: dict[str, np.ndarray]
    inputs: list[tuple[str, tuple[int | str | None, ...]]]  # (name, dims: int, a symbolic name, or None)
    outputs: list[str]
    opset: int
    producer: str = ""


def read_bytes(source: str | os.PathLike[str] | bytes) -> bytes:
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
    elif isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.is_file():
            raise OnnxModelError(f"no ONNX file at {str(path)!r}")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise OnnxModelError(f"{str(path)!r} is {size} bytes, more than the {MAX_FILE_BYTES} an ONNX file can be")
        data = path.read_bytes()
    else:
        raise TypeError(f"load_onnx reads a path or the file's bytes, got {type(source).__name__}")
    if len(data) > MAX_FILE_BYTES:
        raise OnnxModelError(f"the model is {len(data)} bytes, more than the {MAX_FILE_BYTES} an ONNX file can be")
    return data


def parse(source: str | os.PathLike[str] | bytes) -> Parsed:
    onnx = require_onnx()
    data = read_bytes(source)
    try:
        model = onnx.load_from_string(data)
    except Exception as error:  # protobuf's DecodeError and friends: the bytes are not a ModelProto
        raise OnnxModelError(f"not an ONNX model: {error or type(error).__name__}") from None
    if not model.HasField("graph") or not model.graph.node:
        raise OnnxModelError("not an ONNX model: it holds no graph (is this an ONNX file?)")
    for tensor in model.graph.initializer:
        _check_tensor(tensor, f"initializer {tensor.name!r}")
    try:
        onnx.checker.check_model(model)
    except Exception as error:
        raise OnnxModelError(f"the model fails onnx.checker: {error}") from None
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise OnnxModelError(f"the model uses ONNX opset {opset}; directconv reads opsets {MIN_OPSET} to {MAX_OPSET}")
    graph = model.graph
    from onnx import numpy_helper

    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    inputs = [
        (value.name, _dims(value))
        for value in graph.input
        if value.name not in constants  # old exporters list initializers as inputs too: those are constants
    ]
    if not inputs:
        raise OnnxModelError("the model has no input that is not an initializer: there is nothing to feed it")
    nodes = []
    for node in graph.node:
        if node.domain not in ("", "ai.onnx"):
            raise OnnxModelError(f"{where(node)}: operators of domain {node.domain!r} are not supported")
        if node.op_type in FOLDABLE and all(not name or name in constants for name in node.input):
            for name, value in zip(node.output, _fold(node, constants, onnx), strict=True):
                constants[name] = value
        else:
            nodes.append(node)
    return Parsed(
        nodes=nodes,
        constants=constants,
        inputs=inputs,
        outputs=[value.name for value in graph.output],
        opset=opset,
        producer=f"{model.producer_name} {model.producer_version}".strip(),
    )


def _dims(value: Any) -> tuple[int | str | None, ...]:
    kind = value.type.WhichOneof("value")
    if kind != "tensor_type":
        raise OnnxModelError(f"input {value.name!r} is a {kind}, not a tensor")
    tensor = value.type.tensor_type
    if tensor.elem_type != 1:  # TensorProto.FLOAT
        raise OnnxModelError(
            f"input {value.name!r} has element type {tensor.elem_type}; directconv runs float32 models"
        )
    if not tensor.HasField("shape"):
        return ()
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim)


_ITEMSIZE = {1: 4, 2: 1, 3: 1, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8}


def _check_tensor(tensor: Any, what: str) -> None:
    """Refuse a tensor whose claimed size is absurd or does not match its bytes, before numpy allocates it."""
    if tensor.data_location == 1:  # TensorProto.EXTERNAL
        raise OnnxModelError(
            f"{what} is stored outside the file (external data); directconv reads self-contained files"
        )
    if any(d < 0 for d in tensor.dims):
        raise OnnxModelError(f"{what} has a negative dimension {list(tensor.dims)}")
    count = math.prod(tensor.dims)
    if count > MAX_CONSTANT_ELEMENTS:
        raise OnnxModelError(
            f"{what} claims {count} elements, more than the {MAX_CONSTANT_ELEMENTS} directconv accepts"
        )
    itemsize = _ITEMSIZE.get(tensor.data_type)
    if itemsize is None:
        raise OnnxModelError(f"{what} has element type {tensor.data_type}, which directconv does not read")
    if tensor.HasField("raw_data"):
        if len(tensor.raw_data) != count * itemsize:
            raise OnnxModelError(
                f"{what} claims shape {list(tensor.dims)} ({count * itemsize} bytes) but holds {len(tensor.raw_data)}"
            )
    else:
        held = max(len(tensor.float_data), len(tensor.int32_data), len(tensor.int64_data), len(tensor.double_data))
        if held != count:
            raise OnnxModelError(f"{what} claims shape {list(tensor.dims)} ({count} values) but holds {held}")


def _attr(node: Any, name: str, default: Any, onnx: Any) -> Any:
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _fold(node: Any, constants: dict[str, np.ndarray], onnx: Any) -> list[np.ndarray]:
    """The outputs of a foldable node whose inputs are all constants, each checked against MAX_CONSTANT_ELEMENTS."""
    from onnx import numpy_helper

    args = [constants[name] for name in node.input if name]  # optional inputs left empty are trailing ones here
    op = node.op_type
    try:
        if op == "Constant":
            if len(node.attribute) != 1 or node.attribute[0].name != "value":
                raise OnnxModelError(f"{where(node)}: only a Constant with a tensor `value` is supported")
            _check_tensor(node.attribute[0].t, where(node))
            result = numpy_helper.to_array(node.attribute[0].t)
        elif op == "ConstantOfShape":
            dims = [int(d) for d in np.asarray(args[0]).reshape(-1)]
            if any(d < 0 for d in dims) or math.prod(dims) > MAX_CONSTANT_ELEMENTS:
                raise OnnxModelError(f"{where(node)}: shape {dims} is negative or larger than directconv accepts")
            value = _attr(node, "value", None, onnx)
            fill = numpy_helper.to_array(value).reshape(-1)[0] if value is not None else np.float32(0)
            result = np.full(dims, fill, dtype=np.asarray(fill).dtype)
        elif op == "Identity":
            result = args[0]
        elif op in ("Unsqueeze", "Squeeze"):
            axes = _attr(node, "axes", None, onnx)
            if axes is None and len(args) > 1:
                axes = [int(a) for a in args[1]]
            x = args[0]
            if op == "Unsqueeze":
                rank = x.ndim + len(axes)
                for axis in sorted(a % rank for a in axes):
                    x = np.expand_dims(x, axis)
                result = x
            else:
                result = np.squeeze(x, axis=None if axes is None else tuple(int(a) for a in axes))
        elif op == "Reshape":
            target = [int(d) for d in args[1]]
            x = args[0]
            if not _attr(node, "allowzero", 0, onnx):
                target = [x.shape[i] if d == 0 else d for i, d in enumerate(target)]
            result = x.reshape(target)
        elif op == "Flatten":
            axis = _attr(node, "axis", 1, onnx) % max(args[0].ndim, 1)
            result = args[0].reshape(math.prod(args[0].shape[:axis]), -1)
        elif op == "Transpose":
            perm = _attr(node, "perm", None, onnx)
            result = np.transpose(args[0], perm)
        else:  # Cast
            to = _attr(node, "to", 1, onnx)
            result = args[0].astype(onnx.helper.tensor_dtype_to_np_dtype(to))
    except OnnxModelError:
        raise
    except Exception as error:
        raise OnnxModelError(f"{where(node)}: cannot compute it from its constant inputs: {error}") from None
    result = np.asarray(result)
    if result.size > MAX_CONSTANT_ELEMENTS:
        raise OnnxModelError(f"{where(node)}: its result of {result.size} elements is larger than directconv accepts")
    return [result]
