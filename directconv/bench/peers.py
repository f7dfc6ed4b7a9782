"""The implementations directconv is measured against on one layer: numpy im2col + BLAS, torch (two layouts),
onnxruntime (its NCHW session, and its NCHWc convolution kernel alone on blocked activations); and the set-up they
share with the peers of a whole network (thread counts, ONNX sessions).

Each gets what its users would give it to be fast: weights converted and buffers allocated once in `prepare`,
inference mode, its own thread setting for T threads. torch, onnx and onnxruntime are imported only inside
`prepare`, so that a missing one costs nothing but its own rows.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from directconv.bench.base import Impl, Prepared
from directconv.bench.layer import LayerProblem
from directconv.core.shape import ConvShape

ONNX_OPSET = 17
# IR version 8 is the one that introduced opset 17; a newer onnx package would stamp its own newest IR version,
# which an older onnxruntime refuses to load.
ONNX_IR_VERSION = 8


class Im2col:
    """Convolution as matrix products, one per group: W_g (C_o/g x C_i/g*kh*kw) @ cols_g (C_i/g*kh*kw x H_o*W_o),
    batch 1 (one product when groups = 1, a stacked product otherwise, as Caffe loops over groups).

    The padded copy of the input and the cols matrix are workspaces allocated once and refilled on every call,
    as Caffe-style im2col does; dilated taps are gathered into cols like any others. A 1x1 convolution with
    stride 1 and no padding needs neither: its cols matrix is the input itself. `extra_memory_bytes` is the size
    of the workspaces (the price of this method).
    """

    def __init__(self, w: np.ndarray, shape: ConvShape) -> None:
        s = shape
        self.shape = s
        # No group axis for an ungrouped layer: one plain sgemm, as before grouped layers existed.
        self._groups = (s.groups,) if s.groups > 1 else ()
        self.wmat = np.ascontiguousarray(w.reshape(*self._groups, s.cog, s.cig * s.kh * s.kw))
        self.padded: np.ndarray | None = None
        if s.pt or s.pb or s.pl or s.pr:
            self.padded = np.zeros((s.ci, s.h + s.pt + s.pb, s.w + s.pl + s.pr), dtype=np.float32)
            self._interior = self.padded[:, s.pt : s.pt + s.h, s.pl : s.pl + s.w]
        self.direct = s.kh == s.kw == 1 and s.sh == s.sw == 1 and self.padded is None
        self.cols: np.ndarray | None = None
        if not self.direct:
            self.cols = np.empty((s.ci, s.kh, s.kw, s.ho, s.wo), dtype=np.float32)
            if self.padded is not None:
                self._windows = self._window_view(self.padded)
        self.y = np.empty((*self._groups, s.cog, s.ho * s.wo), dtype=np.float32)

    def _window_view(self, source: np.ndarray) -> np.ndarray:
        """(C_i, kh, kw, H_o, W_o) view of `source` (C_i, H_p, W_p): no copy yet."""
        s = self.shape
        windows = sliding_window_view(source, (s.ekh, s.ekw), axis=(1, 2))[:, :: s.sh, :: s.sw, :: s.dh, :: s.dw]
        return windows[:, : s.ho, : s.wo].transpose(0, 3, 4, 1, 2)

    @property
    def extra_memory_bytes(self) -> int:
        return sum(a.nbytes for a in (self.padded, self.cols) if a is not None)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """NCHW (batch 1) float32 in, NCHW float32 out (a view of a buffer reused by the next call)."""
        s = self.shape
        image = x[0]
        if self.direct:
            cols = image.reshape(*self._groups, s.cig, s.h * s.w)
        else:
            assert self.cols is not None
            if self.padded is not None:
                self._interior[...] = image
                windows = self._windows
            else:
                windows = self._window_view(image)
            np.copyto(self.cols, windows)
            cols = self.cols.reshape(*self._groups, s.cig * s.kh * s.kw, s.ho * s.wo)
        np.matmul(self.wmat, cols, out=self.y)
        return self.y.reshape(1, s.co, s.ho, s.wo)


def blas_threads_note(threads: int | None = None) -> str:
    """How numpy-im2col's BLAS threads are set."""
    return f"BLAS limited to {threads if threads else 'T'} thread(s) by threadpoolctl"


def _limit_blas(threads: int) -> Callable[[], None]:
    """Limit numpy's BLAS to `threads` threads; return the function that undoes it."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads, user_api="blas").restore_original_limits


def prepare_im2col(problem: LayerProblem, threads: int) -> Prepared:
    conv = Im2col(problem.w, problem.shape)
    x = problem.x
    undo = _limit_blas(threads)
    return Prepared(
        lambda: conv(x),
        np.array,
        extra_memory_bytes=conv.extra_memory_bytes,
        note=blas_threads_note(threads),
        close=undo,
    )


def set_torch_threads(threads: int) -> Callable[[], None]:
    """Run torch's intra-op pool on `threads` threads; return the function that restores the previous count."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    return lambda: torch.set_num_threads(previous)


def _prepare_torch(problem: LayerProblem, threads: int, channels_last: bool) -> Prepared:
    import torch
    import torch.nn.functional as F

    restore = set_torch_threads(threads)
    x = torch.from_numpy(problem.x.copy())
    w = torch.from_numpy(problem.w.copy())
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        w = w.contiguous(memory_format=torch.channels_last)
    pt, pb, pl, pr = problem.padding
    stride, dilation, groups = problem.stride, problem.dilation, problem.groups
    # torch pads both sides of an axis alike; an asymmetric padding is applied as an explicit pad (in the call,
    # as a torch user would have to).
    symmetric = pt == pb and pl == pr
    padding = (pt, pl) if symmetric else (0, 0)

    @torch.inference_mode()
    def call() -> Any:
        xin = x if symmetric else F.pad(x, (pl, pr, pt, pb))
        return F.conv2d(xin, w, None, stride, padding, dilation, groups)

    def to_nchw(y: Any) -> np.ndarray:
        return y.contiguous().numpy().copy()

    return Prepared(call, to_nchw, note=f"torch {torch.__version__}", close=restore)


def prepare_torch_nchw(problem: LayerProblem, threads: int) -> Prepared:
    return _prepare_torch(problem, threads, channels_last=False)


def prepare_torch_channels_last(problem: LayerProblem, threads: int) -> Prepared:
    return _prepare_torch(problem, threads, channels_last=True)


def onnx_conv_model(problem: LayerProblem) -> bytes:
    """A one-node ONNX model: y = Conv(x, w) with w, (C_o, C_i/group, kh, kw), as an initializer (a constant the
    optimizer may prepack)."""
    from onnx import TensorProto, helper, numpy_helper

    s = problem.shape
    node = helper.make_node(
        "Conv",
        ["x", "w"],
        ["y"],
        kernel_shape=[s.kh, s.kw],
        strides=[s.sh, s.sw],
        pads=[s.pt, s.pl, s.pb, s.pr],
        dilations=[s.dh, s.dw],
        group=s.groups,
    )
    graph = helper.make_graph(
        [node],
        "directconv_bench_conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, s.ci, s.h, s.w])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, s.co, s.ho, s.wo])],
        initializer=[numpy_helper.from_array(problem.w, "w")],
    )
    return onnx_model_bytes(graph)


def onnx_model_bytes(graph: Any) -> bytes:
    """The serialized, checked model of an onnx GraphProto, stamped with ONNX_OPSET and ONNX_IR_VERSION."""
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)])
    model.ir_version = ONNX_IR_VERSION
    onnx.checker.check_model(model)
    return model.SerializeToString()


def session_options(threads: int, optimize: bool = True) -> Any:
    """onnxruntime session options: `threads` intra-op threads, run sequentially, every graph optimization (or
    none, for a graph onnxruntime has already optimized)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    level = ort.GraphOptimizationLevel
    options.graph_optimization_level = level.ORT_ENABLE_ALL if optimize else level.ORT_DISABLE_ALL
    return options


def onnx_session(model: bytes | str, threads: int, optimize: bool = True) -> Any:
    """An onnxruntime CPU session of a model (its bytes, or its file's path) on `threads` intra-op threads, run
    sequentially, with every graph optimization (or none)."""
    import onnxruntime as ort

    return ort.InferenceSession(model, session_options(threads, optimize), providers=["CPUExecutionProvider"])


def prepare_onnxruntime(problem: LayerProblem, threads: int) -> Prepared:
    import onnxruntime as ort

    session = onnx_session(onnx_conv_model(problem), threads)
    s = problem.shape
    # Input and output bound once to numpy buffers: the timed call allocates nothing, as directconv-blocked.
    y = np.empty((1, s.co, s.ho, s.wo), dtype=np.float32)
    binding = session.io_binding()
    binding.bind_cpu_input("x", problem.x)
    binding.bind_output("y", "cpu", 0, np.float32, list(y.shape), y.ctypes.data)

    def call() -> np.ndarray:
        session.run_with_iobinding(binding)
        return y

    return Prepared(call, np.array, note=f"onnxruntime {ort.__version__}, opset {ONNX_OPSET}")


NCHWC_DOMAIN = "com.microsoft.nchwc"  # onnxruntime's blocked-layout operators (its NchwcTransformer writes them)


@dataclass(frozen=True)
class NchwcSplit:
    """onnxruntime's own NCHWc rewrite of a one-Conv model, cut around its convolution: the nodes that reorder
    the NCHW input into blocks (none when the convolution reads NCHW itself, as for 3-channel first layers), the
    blocked convolution with its reordered weights, and the nodes that reorder its output back to NCHW."""

    before: list[Any]
    conv: Any
    after: list[Any]
    initializers: list[Any]
    opsets: list[Any]


def nchwc_split(model: bytes) -> NchwcSplit:
    """Let onnxruntime optimize `model` (a Conv from "x" to "y") at its highest level, and cut the result.

    The weights are reordered by onnxruntime itself, as its sessions do at load; ValueError if its transformer
    left the convolution in NCHW (it does for some grouped layers)."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="directconv-bench-nchwc-") as folder:
        path = os.path.join(folder, "optimized.onnx")
        options = session_options(1)
        options.optimized_model_filepath = path
        options.log_severity_level = 3  # its warning that the saved graph is for this CPU only: that is the point
        ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        optimized = onnx.load(path)
    nodes = list(optimized.graph.node)
    convs = [i for i, n in enumerate(nodes) if n.domain == NCHWC_DOMAIN and n.op_type == "Conv"]
    if len(convs) != 1:
        found = ", ".join(f"{n.domain or 'ai.onnx'}.{n.op_type}" for n in nodes)
        raise ValueError(
            f"onnxruntime's NCHWc transformer did not turn this layer into one blocked Conv (its graph: {found})"
        )
    i = convs[0]
    return NchwcSplit(
        nodes[:i], nodes[i], nodes[i + 1 :], list(optimized.graph.initializer), list(optimized.opset_import)
    )


def _ort_graph(split: NchwcSplit, nodes: list[Any], source: str, target: str) -> bytes:
    """A model of some of `split`'s nodes, from tensor `source` to tensor `target` (shapes left to onnxruntime)."""
    from onnx import TensorProto, helper

    used = {name for node in nodes for name in node.input}
    graph = helper.make_graph(
        nodes,
        "directconv_bench_nchwc",
        [helper.make_tensor_value_info(source, TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info(target, TensorProto.FLOAT, None)],
        initializer=[t for t in split.initializers if t.name in used],
    )
    model = helper.make_model(graph, opset_imports=split.opsets)
    model.ir_version = ONNX_IR_VERSION
    return model.SerializeToString()


def _reorder(split: NchwcSplit, nodes: list[Any], source: str, target: str, value: np.ndarray) -> np.ndarray:
    """Run reordering nodes of `split` once on `value` (not timed): onnxruntime's own layout, whatever its block."""
    if not nodes:
        return value
    session = onnx_session(_ort_graph(split, nodes, source, target), 1, optimize=False)
    return np.asarray(session.run([target], {source: value})[0])


def prepare_onnxruntime_nchwc(problem: LayerProblem, threads: int) -> Prepared:
    """onnxruntime's NCHWc convolution kernel alone: its blocked Conv on input reordered once beforehand, weights
    as its transformer reordered them, output into a buffer bound once; the reorders are outside the timing, as
    directconv-blocked's conversions are."""
    import onnxruntime as ort

    split = nchwc_split(onnx_conv_model(problem))
    source, target = split.conv.input[0], split.conv.output[0]
    xb = np.ascontiguousarray(_reorder(split, split.before, "x", source, problem.x))
    session = onnx_session(_ort_graph(split, [split.conv], source, target), threads, optimize=False)
    first = session.run([target], {source: xb})[0]
    y = np.empty(first.shape, dtype=np.float32)
    binding = session.io_binding()
    binding.bind_cpu_input(source, xb)
    binding.bind_output(target, "cpu", 0, np.float32, list(y.shape), y.ctypes.data)

    def call() -> np.ndarray:
        session.run_with_iobinding(binding)
        return y

    def to_nchw(blocked: np.ndarray) -> np.ndarray:
        return _reorder(split, split.after, target, "y", blocked)

    layout = "NCHW input" if not split.before else f"blocked input {'x'.join(map(str, xb.shape))}"
    return Prepared(call, to_nchw, note=f"onnxruntime {ort.__version__} NchwcConv, {layout}")


IMPLS: tuple[Impl[LayerProblem], ...] = (
    Impl(
        "numpy-im2col",
        "numpy im2col (padded copy + cols matrix, workspaces reused) + BLAS sgemm (one per group)",
        prepare_im2col,
    ),
    Impl(
        "torch-nchw",
        "torch.nn.functional.conv2d (groups, dilation), NCHW input and weights, inference mode",
        prepare_torch_nchw,
        requires=("torch",),
    ),
    Impl(
        "torch-channels_last",
        "torch.nn.functional.conv2d (groups, dilation), input and weights in channels_last, inference mode",
        prepare_torch_channels_last,
        requires=("torch",),
    ),
    Impl(
        "onnxruntime",
        "onnxruntime one-node Conv model (CPUExecutionProvider, all graph optimizations, I/O bound once)",
        prepare_onnxruntime,
        requires=("onnx", "onnxruntime"),
    ),
    Impl(
        "onnxruntime-nchwc",
        "onnxruntime's NCHWc Conv kernel alone (com.microsoft.nchwc, weights reordered by onnxruntime) on "
        "pre-blocked input, output bound once: kernel against kernel with directconv-blocked",
        prepare_onnxruntime_nchwc,
        requires=("onnx", "onnxruntime"),
        nchw=False,
    ),
)
