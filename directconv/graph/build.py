"""Turn a parsed ONNX graph into steps on directconv's tensors, computing every tensor's shape and refusing, before
anything runs, whatever the runtime cannot do: the message names the node, its op and what is unsupported.

Conv, pooling and the channel-wise ops keep their tensors blocked; the classifier's tail (Flatten, Reshape, Gemm,
MatMul, Softmax) runs on dense numpy arrays after one conversion.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np

from directconv.core.shape import ConvShape
from directconv.graph import ops
from directconv.graph.ir import Step, Tensor
from directconv.graph.read import OnnxModelError, Parsed, where

FLOAT_MAX = float(np.finfo(np.float32).max)
# An input larger than this is refused at load: kernels are generated per layer shape (their code grows with the
# width), so a file claiming a 10^9-pixel image must not reach the generator. Far beyond any CNN input.
MAX_EXTENT = 1 << 15
MAX_IMAGE_FLOATS = 1 << 30
# ONNX ops whose output is their input (inference only).
PASS_THROUGH = frozenset({"Identity", "Dropout"})
ACTIVATION_OPS = {
    "Relu": "relu",
    "Clip": "clip",
    "LeakyRelu": "leaky_relu",
    "Sigmoid": "sigmoid",
    "HardSigmoid": "hard_sigmoid",
    "HardSwish": "hard_swish",
}
SUPPORTED = sorted(
    {"Conv", "BatchNormalization", "Add", "Sum", "Mul", "Concat", "MaxPool", "AveragePool", "GlobalAveragePool"}
    | {"LRN", "ReduceMean", "Reshape", "Transpose", "Flatten", "Gemm", "MatMul", "Softmax"}
    | set(ACTIVATION_OPS)
    | PASS_THROUGH
)


class Builder:
    def __init__(self, parsed: Parsed, input_shapes: dict[str, tuple[int, ...]] | None) -> None:
        self.parsed = parsed
        self.constants = parsed.constants
        self.tensors: dict[str, Tensor] = {}
        self.alias: dict[str, str] = {}  # pass-through outputs -> the tensor they are
        self.steps: list[Step] = []
        self.uses = Counter(name for node in parsed.nodes for name in node.input if name)
        self.uses.update(parsed.outputs)
        self.consumers: dict[str, list[Any]] = {}
        for node in parsed.nodes:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.skip: set[int] = set()  # nodes consumed by a pattern (channel shuffle) read at an earlier node
        self.declared_batch: dict[str, int | None] = {}
        self._inputs(input_shapes or {})

    # ------------------------------------------------------------------------------------------------ inputs
    def _inputs(self, overrides: dict[str, tuple[int, ...]]) -> None:
        known = {name for name, _ in self.parsed.inputs}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise OnnxModelError(
                f"input_shapes names {unknown}, which are not inputs of the model; inputs: {sorted(known)}"
            )
        for name, dims in self.parsed.inputs:
            given = overrides.get(name)
            if given is not None:
                if len(given) != 4 or not all(isinstance(d, int) and d > 0 for d in given[1:]):
                    raise OnnxModelError(
                        f"input_shapes[{name!r}] must be (N, C, H, W) with positive C, H, W, got {given}"
                    )
                if dims and len(dims) == 4:
                    for axis, (d, g) in enumerate(zip(dims[1:], given[1:], strict=True), 1):
                        if isinstance(d, int) and d > 0 and d != g:
                            raise OnnxModelError(
                                f"input_shapes[{name!r}] gives dimension {axis} = {g}, but the model fixes it to {d}"
                            )
                dims = tuple(given)
            if len(dims) != 4:
                raise OnnxModelError(
                    f"input {name!r} has shape {list(dims)}; directconv runs models whose inputs are images "
                    "(N, C, H, W)"
                )
            per_image = dims[1:]
            if not all(isinstance(d, int) and d > 0 for d in per_image):
                raise OnnxModelError(
                    f"input {name!r} has shape {list(dims)} with unknown C, H or W; give them with "
                    f"input_shapes={{{name!r}: (N, C, H, W)}}"
                )
            extents = [int(d) for d in per_image if isinstance(d, int)]
            if max(extents) > MAX_EXTENT or math.prod(extents) > MAX_IMAGE_FLOATS:
                raise OnnxModelError(
                    f"input {name!r} has shape {list(dims)}: directconv takes C, H and W up to {MAX_EXTENT} and up to "
                    f"{MAX_IMAGE_FLOATS} values per image"
                )
            self.declared_batch[name] = dims[0] if isinstance(dims[0], int) and dims[0] > 0 else None
            self.tensors[name] = Tensor(name, tuple(d for d in per_image if isinstance(d, int)), blocked=True)

    # ------------------------------------------------------------------------------------------------ helpers
    def name(self, name: str) -> str:
        while name in self.alias:
            name = self.alias[name]
        return name

    def tensor(self, node: Any, index: int) -> Tensor:
        if index >= len(node.input) or not node.input[index]:
            raise OnnxModelError(f"{where(node)}: input {index} is missing")
        name = self.name(node.input[index])
        if name in self.tensors:
            return self.tensors[name]
        if name in self.constants:
            raise OnnxModelError(f"{where(node)}: input {name!r} is a constant where directconv expects an activation")
        raise OnnxModelError(
            f"{where(node)}: input {name!r} is neither produced by a node, a graph input nor an initializer"
        )

    def constant(self, node: Any, index: int, what: str, *, optional: bool = False) -> np.ndarray | None:
        if index >= len(node.input) or not node.input[index]:
            if optional:
                return None
            raise OnnxModelError(f"{where(node)}: the {what} (input {index}) is missing")
        name = self.name(node.input[index])
        if name not in self.constants:
            if name in self.tensors:
                raise OnnxModelError(
                    f"{where(node)}: the {what} {name!r} is computed at run time; directconv needs it as an initializer"
                )
            raise OnnxModelError(f"{where(node)}: the {what} {name!r} is missing (no initializer of that name)")
        return self.constants[name]

    def attr(self, node: Any, name: str, default: Any) -> Any:
        from onnx import helper

        for a in node.attribute:
            if a.name == name:
                value = helper.get_attribute_value(a)
                return value.decode() if isinstance(value, bytes) else value
        return default

    def ints(self, node: Any, name: str, default: list[int], count: int) -> list[int]:
        value = [int(v) for v in self.attr(node, name, default)]
        if len(value) != count:
            raise OnnxModelError(f"{where(node)}: {name} must have {count} values for a 2-D operator, got {value}")
        return value

    def add(self, op: str, node: Any, inputs: list[str], dims: tuple[int, ...], blocked: bool, **params: Any) -> None:
        output = node.output[0]
        if output in self.tensors or output in self.constants:
            raise OnnxModelError(f"{where(node)}: its output {output!r} is already defined")
        if (blocked and max(dims) > MAX_EXTENT) or math.prod(dims) > MAX_IMAGE_FLOATS:
            raise OnnxModelError(
                f"{where(node)}: its output of shape {['N', *dims]} is larger than directconv takes (C, H, W up to "
                f"{MAX_EXTENT}, {MAX_IMAGE_FLOATS} values per image)"
            )
        self.tensors[output] = Tensor(output, dims, blocked)
        self.steps.append(Step(op, inputs, output, [node.name or output], dict(params)))

    def blocked_input(self, node: Any, index: int = 0) -> Tensor:
        t = self.tensor(node, index)
        if not t.blocked:
            raise OnnxModelError(
                f"{where(node)}: needs a 4-D activation (N, C, H, W), got a tensor of shape {t.describe()}"
            )
        return t

    def dense_input(self, node: Any, index: int = 0) -> Tensor:
        """The tensor as a dense array: a blocked one is converted once (a to_dense step shared by its readers)."""
        t = self.tensor(node, index)
        return t if not t.blocked else self.tensors[self.dense_input_named(t.name)]

    def single_output(self, node: Any) -> None:
        extra = [name for name in node.output[1:] if name and self.uses[name]]
        if extra:
            raise OnnxModelError(f"{where(node)}: its outputs {extra} are used, but directconv computes only the first")

    # ------------------------------------------------------------------------------------------------ the walk
    def build(self) -> list[Step]:
        for index, node in enumerate(self.parsed.nodes):
            if index in self.skip:
                continue
            op = node.op_type
            handler = getattr(self, f"op_{op}", None)
            if handler is None:
                if op in ACTIVATION_OPS:
                    handler = self.op_activation
                else:
                    raise OnnxModelError(
                        f"{where(node)}: the operator {op} is not supported; directconv runs {', '.join(SUPPORTED)}"
                    )
            self.single_output(node)
            handler(node)
        for output in self.parsed.outputs:
            name = self.name(output)
            if name not in self.tensors:
                raise OnnxModelError(f"graph output {output!r} is not computed by any supported node")
        return self.steps

    # ------------------------------------------------------------------------------------------------ ops
    def op_Identity(self, node: Any) -> None:
        self._pass_through(node)

    def op_Dropout(self, node: Any) -> None:
        mode = self.constant(node, 2, "training_mode", optional=True)
        if mode is not None and bool(np.asarray(mode).reshape(-1)[0]):
            raise OnnxModelError(f"{where(node)}: training_mode=True is not supported (directconv runs inference)")
        self._pass_through(node)

    def _pass_through(self, node: Any) -> None:
        source = self.name(node.input[0])
        if source in self.constants:
            self.constants[node.output[0]] = self.constants[source]
        else:
            self.tensor(node, 0)
            self.alias[node.output[0]] = source

    def op_Conv(self, node: Any) -> None:
        x = self.blocked_input(node)
        w = self.constant(node, 1, "weight")
        bias = self.constant(node, 2, "bias", optional=True)
        assert w is not None
        if w.ndim != 4:
            raise OnnxModelError(f"{where(node)}: a {w.ndim - 2}-D convolution; directconv runs 2-D ones (weight OIHW)")
        co, cig, kh, kw = (int(d) for d in w.shape)
        group = int(self.attr(node, "group", 1))
        kernel = self.ints(node, "kernel_shape", [kh, kw], 2)
        if kernel != [kh, kw]:
            raise OnnxModelError(f"{where(node)}: kernel_shape {kernel} does not match the weight's {[kh, kw]}")
        if group < 1 or cig * group != x.channels:
            raise OnnxModelError(
                f"{where(node)}: the weight's {cig} input channels x group={group} must equal the input's "
                f"{x.channels} channels"
            )
        if bias is not None and bias.shape != (co,):
            raise OnnxModelError(f"{where(node)}: the bias must have shape ({co},), got {bias.shape}")
        strides = self.ints(node, "strides", [1, 1], 2)
        dilations = self.ints(node, "dilations", [1, 1], 2)
        pads = self._pads(node, x.dims[1:], [kh, kw], strides, dilations)
        try:
            shape = ConvShape.from_args(
                x.channels, co, x.dims[1], x.dims[2], kh, kw, tuple(strides), pads, tuple(dilations), group
            )
        except (TypeError, ValueError) as error:
            raise OnnxModelError(f"{where(node)}: {error}") from None
        self.add(
            "conv",
            node,
            [x.name],
            (shape.co, shape.ho, shape.wo),
            True,
            shape=shape,
            weight=np.asarray(w, dtype=np.float32),
            bias=None if bias is None else np.asarray(bias, dtype=np.float32),
            act="none",
            alpha=0.0,
            beta=0.0,
            residual=None,
        )

    def _pads(
        self, node: Any, size: tuple[int, ...], kernel: list[int], strides: list[int], dilations: list[int]
    ) -> tuple[int, int, int, int]:
        """(top, bottom, left, right): ONNX orders pads (top, left, bottom, right); auto_pad replaces them."""
        auto = self.attr(node, "auto_pad", "NOTSET")
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            pairs = []
            for n, k, s, d in zip(size, kernel, strides, dilations, strict=True):
                total = max((math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)
                small, large = total // 2, total - total // 2
                pairs.append((small, large) if auto == "SAME_UPPER" else (large, small))
            return (pairs[0][0], pairs[0][1], pairs[1][0], pairs[1][1])
        if auto == "VALID":
            return (0, 0, 0, 0)
        if auto != "NOTSET":
            raise OnnxModelError(f"{where(node)}: auto_pad={auto!r} is not an ONNX value")
        t, left, b, r = self.ints(node, "pads", [0, 0, 0, 0], 4)
        if min(t, left, b, r) < 0:
            raise OnnxModelError(f"{where(node)}: negative pads {[t, left, b, r]} are not supported")
        return (t, b, left, r)

    def op_BatchNormalization(self, node: Any) -> None:
        x = self.blocked_input(node)
        if int(self.attr(node, "training_mode", 0)):
            raise OnnxModelError(f"{where(node)}: training_mode=1 is not supported (directconv runs inference)")
        if not int(self.attr(node, "spatial", 1)):
            raise OnnxModelError(f"{where(node)}: spatial=0 (per-pixel statistics) is not supported")
        eps = float(self.attr(node, "epsilon", 1e-5))
        params = [self.constant(node, i, what) for i, what in enumerate(("scale", "bias", "mean", "var"), 1)]
        for p, what in zip(params, ("scale", "bias", "mean", "var"), strict=True):
            assert p is not None
            if p.shape != (x.channels,):
                raise OnnxModelError(f"{where(node)}: {what} must have shape ({x.channels},), got {p.shape}")
        gamma, beta, mean, var = (np.asarray(p, dtype=np.float64) for p in params)  # type: ignore[arg-type]
        if (var + eps <= 0).any():
            raise OnnxModelError(f"{where(node)}: var + epsilon must be positive in every channel")
        scale = gamma / np.sqrt(var + eps)
        self.add("scale_shift", node, [x.name], x.dims, True, scale=scale, shift=beta - mean * scale)

    def op_activation(self, node: Any) -> None:
        kind = ACTIVATION_OPS[node.op_type]
        alpha, beta = 0.0, 0.0
        if kind == "clip":
            if self.parsed.opset < 11:
                alpha = float(self.attr(node, "min", -FLOAT_MAX))
                beta = float(self.attr(node, "max", FLOAT_MAX))
            else:
                lo = self.constant(node, 1, "min", optional=True)
                hi = self.constant(node, 2, "max", optional=True)
                alpha = -FLOAT_MAX if lo is None else float(np.asarray(lo).reshape(-1)[0])
                beta = FLOAT_MAX if hi is None else float(np.asarray(hi).reshape(-1)[0])
        elif kind == "leaky_relu":
            alpha = float(self.attr(node, "alpha", 0.01))
        elif kind == "hard_sigmoid":
            alpha, beta = float(self.attr(node, "alpha", 0.2)), float(self.attr(node, "beta", 0.5))
        x = self.tensor(node, 0)
        op = "act" if x.blocked else "dense_act"
        self.add(op, node, [x.name], x.dims, x.blocked, kind=kind, alpha=alpha, beta=beta)

    def _binary(self, node: Any) -> tuple[Tensor | None, Tensor | None, np.ndarray | None]:
        """(a, b, constant): the two operands of an Add or Mul, one of which may be a constant."""
        if len(node.input) != 2:
            raise OnnxModelError(f"{where(node)}: needs 2 inputs, got {len(node.input)}")
        names = [self.name(n) for n in node.input]
        const = [self.constants.get(n) for n in names]
        if const[0] is not None and const[1] is not None:
            raise OnnxModelError(f"{where(node)}: both operands are constants (a graph directconv cannot fold)")
        if const[0] is not None:
            return self.tensor(node, 1), None, const[0]
        if const[1] is not None:
            return self.tensor(node, 0), None, const[1]
        return self.tensor(node, 0), self.tensor(node, 1), None

    def _per_channel(self, node: Any, x: Tensor, c: np.ndarray) -> np.ndarray:
        """A constant that broadcasts per channel over an activation (N, C, H, W), as a (C,) vector."""
        c = np.asarray(c, dtype=np.float64)
        if c.size == 1:
            return np.full(x.channels, float(c.reshape(-1)[0]))
        squeezed = c.reshape(c.shape[-3:] if c.ndim >= 3 else c.shape)
        if c.ndim in (3, 4) and (c.ndim == 3 or c.shape[0] == 1) and squeezed.shape == (x.channels, 1, 1):
            return squeezed.reshape(-1)
        raise OnnxModelError(
            f"{where(node)}: a constant operand of shape {list(c.shape)} on an activation of shape {x.describe()}: "
            "directconv supports scalars and per-channel constants (C, 1, 1)"
        )

    def op_Add(self, node: Any) -> None:
        a, b, c = self._binary(node)
        assert a is not None
        if not a.blocked or (b is not None and not b.blocked):
            self._dense_binary(node, "dense_add", np.add)
        elif c is not None:
            shift = self._per_channel(node, a, c)
            self.add("scale_shift", node, [a.name], a.dims, True, scale=np.ones_like(shift), shift=shift)
        else:
            assert b is not None
            if a.dims != b.dims:
                raise OnnxModelError(f"{where(node)}: operands {a.describe()} and {b.describe()} differ in shape")
            self.add("add", node, [a.name, b.name], a.dims, True)

    def op_Sum(self, node: Any) -> None:
        inputs = [self.tensor(node, i) for i in range(len(node.input))]
        if len(inputs) == 1:
            self.alias[node.output[0]] = inputs[0].name
            return
        if not all(t.blocked and t.dims == inputs[0].dims for t in inputs):
            raise OnnxModelError(
                f"{where(node)}: supported for activations of one shape, got {[t.describe() for t in inputs]}"
            )
        # A Sum of n is n - 1 Adds; the first may fuse into a convolution's store.
        current = inputs[0].name
        for i, t in enumerate(inputs[1:], 1):
            output = node.output[0] if i == len(inputs) - 1 else f"{node.output[0]}::sum{i}"
            self.tensors[output] = Tensor(output, t.dims, True)
            self.steps.append(Step("add", [current, t.name], output, [node.name or node.output[0]]))
            current = output

    def op_Mul(self, node: Any) -> None:
        a, b, c = self._binary(node)
        assert a is not None
        if not a.blocked or (b is not None and not b.blocked):
            self._dense_binary(node, "dense_mul", np.multiply)
        elif c is not None:
            scale = self._per_channel(node, a, c)
            self.add("scale_shift", node, [a.name], a.dims, True, scale=scale, shift=np.zeros_like(scale))
        else:
            assert b is not None
            if a.dims == b.dims:
                self.add("mul", node, [a.name, b.name], a.dims, True)
            elif b.dims == (a.channels, 1, 1) or a.dims == (b.channels, 1, 1):
                x, s = (a, b) if b.dims == (a.channels, 1, 1) else (b, a)
                self.add("scale_channels", node, [x.name, s.name], x.dims, True)
            else:
                raise OnnxModelError(
                    f"{where(node)}: operands {a.describe()} and {b.describe()}: directconv multiplies activations "
                    "of one shape, or an activation by a per-channel (N, C, 1, 1) one"
                )

    def _dense_binary(self, node: Any, op: str, ufunc: Any) -> None:
        names = [self.name(n) for n in node.input]
        operands: list[Any] = []
        shapes = []
        for i, n in enumerate(names):
            if n in self.constants:  # ONNX broadcasts a constant right-aligned against the full (N, ...) shape
                operands.append(np.asarray(self.constants[n], dtype=np.float32))
                shapes.append(tuple(self.constants[n].shape))
            else:
                t = self.dense_input(node, i)
                operands.append(t.name)
                shapes.append((1, *t.dims))
        try:
            dims = np.broadcast_shapes(*shapes)
        except ValueError:
            raise OnnxModelError(f"{where(node)}: operand shapes {shapes} do not broadcast") from None
        rank = max(len(shape) for shape, o in zip(shapes, operands, strict=True) if isinstance(o, str))
        if len(dims) != rank or dims[0] != 1:
            raise OnnxModelError(
                f"{where(node)}: operand shapes {shapes}: a constant would add dimensions or broadcast across the batch"
            )
        tensors = [o for o in operands if isinstance(o, str)]
        self.add(op, node, tensors, tuple(dims[1:]), False, operands=operands)

    def op_Concat(self, node: Any) -> None:
        axis = int(self.attr(node, "axis", 1))
        inputs = [self.tensor(node, i) for i in range(len(node.input))]
        if all(t.blocked for t in inputs):
            if axis not in (1, -3):
                raise OnnxModelError(
                    f"{where(node)}: concatenation along axis {axis}; directconv supports channels (axis 1)"
                )
            if len({t.dims[1:] for t in inputs}) != 1:
                raise OnnxModelError(
                    f"{where(node)}: inputs differ in height or width: {[t.describe() for t in inputs]}"
                )
            channels = sum(t.channels for t in inputs)
            self.add("concat", node, [t.name for t in inputs], (channels, *inputs[0].dims[1:]), True)
            return
        dense = [self.dense_input(node, i) for i in range(len(inputs))]
        rank = len(dense[0].dims) + 1
        if not -rank <= axis < rank or axis % rank == 0:
            raise OnnxModelError(f"{where(node)}: axis {axis} is the batch or out of range for rank {rank}")
        try:
            dims = np.concatenate([np.empty((1, *t.dims), np.bool_) for t in dense], axis=axis).shape[1:]
        except ValueError as error:
            raise OnnxModelError(f"{where(node)}: {error}") from None
        self.add("dense_concat", node, [t.name for t in dense], tuple(dims), False, axis=axis % rank)

    def _pool(
        self, node: Any, x: Tensor
    ) -> tuple[list[int], list[int], tuple[int, int, int, int], list[int], tuple[int, int]]:
        kernel = self.ints(node, "kernel_shape", [], 2)
        strides = self.ints(node, "strides", [1, 1], 2)
        dilations = self.ints(node, "dilations", [1, 1], 2)
        if min(kernel + strides + dilations) < 1:
            raise OnnxModelError(f"{where(node)}: kernel_shape, strides and dilations must be positive")
        ceil_mode = int(self.attr(node, "ceil_mode", 0))
        auto = self.attr(node, "auto_pad", "NOTSET")
        t, b, left, r = self._pads(node, x.dims[1:], kernel, strides, dilations)
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            ceil_mode = 0
        try:
            ho = ops.pool_output_size(x.dims[1], kernel[0], strides[0], t, b, dilations[0], bool(ceil_mode))
            wo = ops.pool_output_size(x.dims[2], kernel[1], strides[1], left, r, dilations[1], bool(ceil_mode))
        except ValueError as error:
            raise OnnxModelError(f"{where(node)}: {error}") from None
        if max(t, b) >= kernel[0] or max(left, r) >= kernel[1]:  # onnxruntime's rule too
            raise OnnxModelError(f"{where(node)}: pads {[t, left, b, r]} as large as the window are not supported")
        return kernel, strides, (t, left, b, r), dilations, (ho, wo)

    def op_MaxPool(self, node: Any) -> None:
        x = self.blocked_input(node)
        if int(self.attr(node, "storage_order", 0)):
            raise OnnxModelError(f"{where(node)}: storage_order=1 is not supported")
        kernel, strides, pads, dilations, (ho, wo) = self._pool(node, x)
        self.add(
            "max_pool",
            node,
            [x.name],
            (x.channels, ho, wo),
            True,
            kernel=tuple(kernel),
            stride=tuple(strides),
            pads=pads,
            dilation=tuple(dilations),
        )

    def op_AveragePool(self, node: Any) -> None:
        x = self.blocked_input(node)
        kernel, strides, pads, dilations, (ho, wo) = self._pool(node, x)
        if dilations != [1, 1]:
            raise OnnxModelError(f"{where(node)}: dilations {dilations} are not supported for AveragePool")
        include = bool(int(self.attr(node, "count_include_pad", 0)))
        self.add(
            "avg_pool",
            node,
            [x.name],
            (x.channels, ho, wo),
            True,
            kernel=tuple(kernel),
            stride=tuple(strides),
            pads=pads,
            count_include_pad=include,
        )

    def op_GlobalAveragePool(self, node: Any) -> None:
        x = self.blocked_input(node)
        self.add("global_avg_pool", node, [x.name], (x.channels, 1, 1), True)

    def op_ReduceMean(self, node: Any) -> None:
        """The mean over height and width (the torch.export exporter writes adaptive_avg_pool2d(x, 1) this way):
        a GlobalAveragePool, then a dense (N, C) when keepdims=0."""
        x = self.blocked_input(node)
        axes = self.attr(node, "axes", None)
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = np.asarray(self.constant(node, 1, "axes")).reshape(-1).tolist()
        if axes is None or sorted(int(a) % 4 for a in axes) != [2, 3]:
            raise OnnxModelError(f"{where(node)}: axes={axes}; directconv averages over height and width (axes 2, 3)")
        if int(self.attr(node, "keepdims", 1)):
            self.add("global_avg_pool", node, [x.name], (x.channels, 1, 1), True)
            return
        pooled = f"{node.output[0]}::pooled"
        self.tensors[pooled] = Tensor(pooled, (x.channels, 1, 1), True)
        self.steps.append(Step("global_avg_pool", [x.name], pooled, [node.name or node.output[0]]))
        self.add("reshape", node, [self.dense_input_named(pooled)], (x.channels,), False)

    def dense_input_named(self, name: str) -> str:
        """A dense copy of the blocked tensor `name` (a to_dense step), for ops that produce one internally."""
        dense = name + "::dense"
        if dense not in self.tensors:
            self.tensors[dense] = Tensor(dense, self.tensors[name].dims, blocked=False)
            self.steps.append(Step("to_dense", [name], dense, [f"to_dense({name})"]))
        return dense

    def op_LRN(self, node: Any) -> None:
        x = self.blocked_input(node)
        size = int(self.attr(node, "size", 0))
        if size < 1:
            raise OnnxModelError(f"{where(node)}: size must be a positive int, got {size}")
        self.add(
            "lrn", node, [x.name], x.dims, True, size=size, alpha=float(self.attr(node, "alpha", 1e-4)),
            beta=float(self.attr(node, "beta", 0.75)), bias=float(self.attr(node, "bias", 1.0)),
        )  # fmt: skip

    def _target(self, node: Any, x: Tensor) -> tuple[int, ...]:
        """A Reshape's target shape without the batch, resolving 0 and -1 (per image)."""
        if self.parsed.opset >= 5:
            shape = self.constant(node, 1, "shape")
            assert shape is not None
            target = [int(d) for d in np.asarray(shape).reshape(-1)]
        else:
            target = [int(d) for d in self.attr(node, "shape", [])]
        allowzero = int(self.attr(node, "allowzero", 0))
        full = (None, *x.dims)
        dims: list[int | None] = []
        for i, d in enumerate(target):
            if d == 0 and not allowzero:
                dims.append(full[i] if i < len(full) else None)
            else:
                dims.append(d)
        if not dims:
            raise OnnxModelError(f"{where(node)}: an empty target shape")
        batch = dims[0]
        declared = {b for b in self.declared_batch.values() if b}
        if batch is not None and batch != -1 and batch not in declared:
            raise OnnxModelError(
                f"{where(node)}: target shape {target} changes the batch dimension; directconv keeps the batch first"
            )
        rest = dims[1:]
        if batch == -1 and -1 in rest:
            raise OnnxModelError(f"{where(node)}: target shape {target} has two -1")
        if None in rest:
            raise OnnxModelError(f"{where(node)}: target shape {target} copies a dimension the input does not have")
        sizes = [int(d) for d in rest if d is not None]
        known = math.prod(d for d in sizes if d != -1)
        if -1 in sizes:
            if known <= 0 or x.size % known:
                raise OnnxModelError(f"{where(node)}: cannot reshape {x.describe()} to {target}")
            sizes = [x.size // known if d == -1 else d for d in sizes]
        if any(d < 0 for d in sizes) or math.prod(sizes) != x.size:
            raise OnnxModelError(
                f"{where(node)}: cannot reshape {x.describe()} to {target} (per image {x.size} elements)"
            )
        return tuple(sizes)

    def op_Reshape(self, node: Any) -> None:
        x = self.tensor(node, 0)
        dims = self._target(node, x)
        if x.blocked and self._shuffle(node, x, dims):
            return
        if x.blocked and dims == x.dims:
            self.alias[node.output[0]] = x.name
            return
        source = self.dense_input(node, 0)
        self.add("reshape", node, [source.name], dims, False)

    def _shuffle(self, node: Any, x: Tensor, dims: tuple[int, ...]) -> bool:
        """Reshape (N, g, C/g, H, W) -> Transpose (0, 2, 1, 3, 4) -> Reshape (N, C, H, W): a channel shuffle."""
        c, h, w = x.dims
        if len(dims) != 4 or dims[2:] != (h, w) or dims[0] * dims[1] != c:
            return False
        after = self.consumers.get(node.output[0], [])
        if len(after) != 1 or after[0].op_type != "Transpose" or self.uses[node.output[0]] != 1:
            return False
        transpose = after[0]
        if [int(p) for p in self.attr(transpose, "perm", [])] != [0, 2, 1, 3, 4]:
            return False
        last = self.consumers.get(transpose.output[0], [])
        if len(last) != 1 or last[0].op_type != "Reshape" or self.uses[transpose.output[0]] != 1:
            return False
        back = last[0]
        positions = {id(n): i for i, n in enumerate(self.parsed.nodes)}
        if self._target(back, Tensor(transpose.output[0], (c, h, w), True)) != (c, h, w):
            return False
        self.skip.update({positions[id(transpose)], positions[id(back)]})
        self.add("shuffle", back, [x.name], x.dims, True, groups=dims[0])
        self.steps[-1].nodes = [
            node.name or node.output[0],
            transpose.name or transpose.output[0],
            back.name or back.output[0],
        ]
        return True

    def op_Transpose(self, node: Any) -> None:
        raise OnnxModelError(
            f"{where(node)}: a Transpose outside a channel shuffle (Reshape-Transpose(0, 2, 1, 3, 4)-Reshape) is not "
            "supported"
        )

    def op_Flatten(self, node: Any) -> None:
        x = self.tensor(node, 0)
        axis = int(self.attr(node, "axis", 1))
        if axis not in (1, -len(x.dims)):
            raise OnnxModelError(f"{where(node)}: axis={axis}; directconv flattens everything but the batch (axis 1)")
        source = self.dense_input(node, 0)
        self.add("reshape", node, [source.name], (x.size,), False)

    def op_Gemm(self, node: Any) -> None:
        a = self.dense_input(node, 0)
        if len(a.dims) != 1:
            raise OnnxModelError(f"{where(node)}: A must be (N, K), got {a.describe()}")
        if int(self.attr(node, "transA", 0)):
            raise OnnxModelError(f"{where(node)}: transA=1 would mix the batch into the features")
        b = self.constant(node, 1, "B")
        assert b is not None
        if b.ndim != 2:
            raise OnnxModelError(f"{where(node)}: B must be 2-D, got shape {list(b.shape)}")
        # Kept as (K, M), whatever transB: a row of A times it reads the weights in one pass, down and across, which
        # measured faster than the same product over (M, K) (docs/design.md, "Where a graph's time went").
        cols = np.asarray(b.T if int(self.attr(node, "transB", 0)) else b, dtype=np.float32)
        if cols.shape[0] != a.dims[0]:
            raise OnnxModelError(f"{where(node)}: A has {a.dims[0]} features but B expects {cols.shape[0]}")
        alpha, beta = float(self.attr(node, "alpha", 1.0)), float(self.attr(node, "beta", 1.0))
        c = self.constant(node, 2, "C", optional=True)
        m = cols.shape[1]
        bias = None
        if c is not None:
            c = np.asarray(c, dtype=np.float32)
            if c.size not in (1, m) or (c.ndim == 2 and c.shape[0] != 1):
                raise OnnxModelError(f"{where(node)}: C of shape {list(c.shape)} must broadcast to (N, {m}) per row")
            bias = np.ascontiguousarray(np.broadcast_to(c.reshape(-1), (m,)) * np.float32(beta))
        cols = cols if alpha == 1.0 else cols * np.float32(alpha)
        self.add("gemm", node, [a.name], (m,), False, cols=np.ascontiguousarray(cols), bias=bias)

    def op_MatMul(self, node: Any) -> None:
        a = self.dense_input(node, 0)
        b = self.constant(node, 1, "B")
        assert b is not None
        if len(a.dims) != 1 or b.ndim != 2 or b.shape[0] != a.dims[0]:
            raise OnnxModelError(
                f"{where(node)}: supported as (N, K) x (K, M) with a constant B, got {a.describe()} x {list(b.shape)}"
            )
        self.add(
            "gemm",
            node,
            [a.name],
            (int(b.shape[1]),),
            False,
            cols=np.ascontiguousarray(b, dtype=np.float32),
            bias=None,
        )

    def op_Softmax(self, node: Any) -> None:
        x = self.dense_input(node, 0)
        rank = len(x.dims) + 1
        axis = int(self.attr(node, "axis", 1 if self.parsed.opset < 13 else -1))
        if not -rank <= axis < rank or axis % rank == 0:
            raise OnnxModelError(f"{where(node)}: axis={axis} is the batch or out of range for rank {rank}")
        # Before opset 13 Softmax flattens the input to 2-D at `axis`; from 13 on it runs along `axis` only.
        self.add("softmax", node, [x.name], x.dims, False, axis=axis % rank, flatten=self.parsed.opset < 13)


def build(
    parsed: Parsed, input_shapes: dict[str, tuple[int, ...]] | None
) -> tuple[list[Step], dict[str, Tensor], dict[str, str]]:
    builder = Builder(parsed, input_shapes)
    steps = builder.build()
    return steps, builder.tensors, builder.alias
