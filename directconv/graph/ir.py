"""The graph as directconv runs it: tensors with their per-image shapes, and steps in execution order.

A tensor is either *blocked* (a 4-D activation, kept in the NCHWc layout in the arena from the first convolution
to the last) or *dense* (a numpy array in its ONNX layout: the classifier's tail, after a Flatten or a Reshape).
Shapes leave out the batch, which may change between calls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Tensor:
    name: str
    dims: tuple[int, ...]  # per image: (C, H, W) for a blocked tensor, the ONNX shape without the batch for a dense one
    blocked: bool

    @property
    def channels(self) -> int:
        return self.dims[0]

    @property
    def size(self) -> int:
        return math.prod(self.dims)

    def describe(self) -> str:
        return "x".join(str(d) for d in ("N", *self.dims)) + ("" if self.blocked else " dense")


@dataclass
class Step:
    """One call at run time. `op` names what runs (see model.py's table); `params` holds its constants.

    op: conv, scale_shift, act, add, mul, scale_channels, max_pool, avg_pool, global_avg_pool, lrn, shuffle, concat,
    to_dense, reshape, gemm, softmax, dense_act, dense_add, dense_mul, dense_concat.
    """

    op: str
    inputs: list[str]
    output: str
    nodes: list[str]  # the ONNX nodes this step runs (more than one once fused)
    params: dict[str, Any] = field(default_factory=dict)

    def label(self) -> str:
        return "+".join(self.nodes)
