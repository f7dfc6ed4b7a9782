"""The implementations directconv is measured against on one layer: numpy im2col + BLAS, torch (two layouts),
onnxruntime; and the set-up they share with the peers of a whole network (thread counts, ONNX sessions).

Each gets what its users would give it to be fast: weights converted and buffers allocated once in `prepare`,
inference mode, its own thread setting for T threads. torch, onnx and onnxruntime are imported only inside
`prepare`, so that a missing one costs nothing but its own rows.
"""

from __future__ import annotations

from collections.abc import Callable
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


def _threadpool_limits() -> Any:
    try:
        from threadpoolctl import threadpool_limits
    except Exception:  # any failure to import means: not available
        return None
    return threadpool_limits


def blas_threads_note(threads: int | None = None) -> str:
    """How numpy-im2col's BLAS threads are set: limited to T by threadpoolctl, or not at all without it."""
    if _threadpool_limits() is None:
        # Then numpy's BLAS uses its own default (often every core) whatever T says: the report says so.
        return "BLAS threads not limited (threadpoolctl not installed): BLAS may use more threads than T"
    return f"BLAS limited to {threads if threads else 'T'} thread(s) by threadpoolctl"


def _limit_blas(threads: int) -> Any:
    """Limit BLAS to `threads` threads if threadpoolctl is installed; return the undo function (or None)."""
    limits = _threadpool_limits()
    return None if limits is None else limits(limits=threads, user_api="blas").restore_original_limits


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


def onnx_session(model: bytes | str, threads: int) -> Any:
    """An onnxruntime CPU session of a model (its bytes, or its file's path) on `threads` intra-op threads, run
    sequentially, with every graph optimization."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


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
)
