"""The user-facing convolution API: plain NCHW calls, and the blocked-layout path with zero memory overhead.

Plain path:   y = conv2d(x, w, bias, stride=1, padding=1)            # converts in and out on every call
Blocked path: xb = to_blocked(x); pw = pack_weights(w, bias, shape=...) # once
              yb = conv2d_blocked(xb, pw)                            # allocates only yb (or nothing, with out=)
              y = from_blocked(yb)
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from directconv.core import checks
from directconv.core.config import KernelConfig
from directconv.core.isa import get_isa, host_isa, host_isas
from directconv.core.shape import (
    ConvShape,
    normalize_dilation,
    normalize_groups,
    normalize_padding,
    normalize_stride,
)
from directconv.kernels import convert, layout, runtime

__all__ = [
    "BlockedTensor",
    "PackedWeights",
    "conv2d",
    "conv2d_blocked",
    "conv2d_nchw",
    "release_buffers",
    "from_blocked",
    "pack_weights",
    "to_blocked",
    "available_threads",
]


def available_threads() -> int:
    """CPUs this process may run on (respects affinity masks and container limits where the OS exposes them)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _require_float32(name: str, a: Any, ndim: int, layout_name: str) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray ({layout_name}), got {type(a).__name__}")
    if a.dtype != np.float32:
        # Refuse rather than convert: a silent float64 -> float32 copy would hide a full pass over the data.
        raise TypeError(
            f"{name} must be float32, got {a.dtype}; directconv does not convert implicitly: "
            f"pass {name}.astype(np.float32)"
        )
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D ({layout_name}), got {a.ndim}-D with shape {a.shape}")
    if 0 in a.shape:
        raise ValueError(f"{name} has an empty dimension: shape {a.shape} ({layout_name})")
    return a


@dataclass(frozen=True)
class BlockedTensor:
    """Activations in the blocked layout: data is (N, ceil(C/lanes), H, W, lanes) float32, channels past C zero.

    `lanes` is the vector width of the ISA the kernels run on; one layer's output is the next layer's input as is.
    """

    data: np.ndarray
    channels: int

    def __post_init__(self) -> None:
        a = _require_float32("BlockedTensor.data", self.data, 5, "N, C/lanes, H, W, lanes")
        if not a.flags.c_contiguous:
            raise ValueError("BlockedTensor.data must be C-contiguous")
        lanes = a.shape[4]
        if not isinstance(self.channels, int) or not (a.shape[1] - 1) * lanes < self.channels <= a.shape[1] * lanes:
            raise ValueError(
                f"BlockedTensor with {a.shape[1]} blocks of {lanes} lanes holds {(a.shape[1] - 1) * lanes + 1}.."
                f"{a.shape[1] * lanes} channels, got channels={self.channels!r}"
            )

    @property
    def lanes(self) -> int:
        return int(self.data.shape[4])

    @property
    def batch(self) -> int:
        return int(self.data.shape[0])

    @property
    def height(self) -> int:
        return int(self.data.shape[2])

    @property
    def width(self) -> int:
        return int(self.data.shape[3])


def _conversion_threads(threads: int | None) -> int:
    if threads is None:
        return available_threads()
    checks.threads(threads)
    return threads


def to_blocked(x: np.ndarray, *, isa: str | None = None, threads: int | None = None) -> BlockedTensor:
    """NCHW float32 -> BlockedTensor with the vector width of `isa` (default: the best ISA of this host).

    threads: threads of the copy (default: every available CPU); the copy runs in C (kernels/convert.py).
    """
    x = _require_float32("x", x, 4, "NCHW")
    lanes = get_isa(isa or host_isa()).lanes
    return BlockedTensor(convert.to_blocked(x, lanes, threads=_conversion_threads(threads)), int(x.shape[1]))


def from_blocked(xb: BlockedTensor, *, threads: int | None = None) -> np.ndarray:
    """BlockedTensor -> NCHW float32 (a new C-contiguous array).

    threads: threads of the copy (default: every available CPU); the copy runs in C (kernels/convert.py).
    """
    if not isinstance(xb, BlockedTensor):
        raise TypeError(f"from_blocked expects a BlockedTensor, got {type(xb).__name__}")
    return convert.from_blocked(xb.data, xb.channels, threads=_conversion_threads(threads))


@dataclass(frozen=True)
class PackedWeights:
    """Weights (and bias) packed once for one configuration and one layer shape; reused on every call."""

    data: np.ndarray
    bias: np.ndarray
    shape: ConvShape
    config: KernelConfig
    has_bias: bool
    # The loaded kernel, so that a call does not look it up again (it is runtime.load(config, shape)).
    kernel: runtime.CompiledKernel = field(repr=False, compare=False)
    # data and bias checked against the kernel once, as the pointers each call passes (kernel.operands).
    operands: runtime.WeightOperands = field(repr=False, compare=False)


def _check_weights(w: Any, bias: Any) -> tuple[np.ndarray, np.ndarray | None]:
    w = _require_float32("w", w, 4, "OIHW: C_o, C_i / groups, kh, kw")
    if bias is not None:
        bias = _require_float32("bias", bias, 1, "C_o")
        if bias.shape[0] != w.shape[0]:
            raise ValueError(f"bias must have C_o={w.shape[0]} elements (one per filter), got {bias.shape[0]}")
    return w, bias


def _resolve_config(config: KernelConfig | None, shape: ConvShape, threads: int | None) -> KernelConfig:
    checks.optional_threads(threads)
    if config is None:
        from directconv.tuner.select import default_config  # the host and store layers load only when needed

        config = default_config(shape, threads=threads or available_threads())
    elif not isinstance(config, KernelConfig):
        raise TypeError(f"config must be a KernelConfig or None, got {type(config).__name__}")
    elif threads is not None and threads != config.threads:
        config = config.replace(threads=threads)
    if config.isa not in host_isas():
        raise ValueError(
            f"config targets {config.isa}, which this CPU cannot run; this host runs {', '.join(host_isas())}"
        )
    config.check_fits(shape)
    return config


def pack_weights(
    w: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    input_size: tuple[int, int],
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] | tuple[int, int, int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    config: KernelConfig | None = None,
    threads: int | None = None,
) -> PackedWeights:
    """Pack OIHW weights (C_o, C_i / groups, kh, kw) (and bias) for a layer with input height x width `input_size`.

    The layer geometry is fixed here because kernels are compiled for it; `config=None` picks the default
    configuration for this host. The kernel is compiled (or found in the disk cache) now, not at the first call.
    """
    w, bias = _check_weights(w, bias)
    if not (isinstance(input_size, (tuple, list)) and len(input_size) == 2):
        raise TypeError(f"input_size must be a pair (height, width), got {input_size!r}")
    groups = normalize_groups(groups)
    co, cig, kh, kw = (int(v) for v in w.shape)
    if co % groups:
        raise ValueError(f"groups={groups} must divide C_o={co} (w has OIHW shape {w.shape})")
    shape = ConvShape.from_args(
        cig * groups, co, int(input_size[0]), int(input_size[1]), kh, kw, stride, padding, dilation, groups
    )
    config = _resolve_config(config, shape, threads)
    kernel = runtime.load(config, shape)
    data = layout.pack_weights(w, config.lanes, config.cob, shape.groups)
    packed_bias = layout.pack_bias(bias, shape, config.lanes, config.cob)
    return PackedWeights(
        data=data,
        bias=packed_bias,
        shape=shape,
        config=config,
        has_bias=bias is not None,
        kernel=kernel,
        operands=kernel.operands(data, packed_bias),
    )


def _refuse_input(x: BlockedTensor, weights: PackedWeights) -> None:
    """Raise the error that says how `x` differs from the input the weights were packed for."""
    shape, config = weights.shape, weights.config
    if x.lanes != config.lanes:
        raise ValueError(
            f"x is blocked by {x.lanes} lanes but the weights were packed for {config.isa} ({config.lanes} lanes)"
        )
    if x.channels != shape.ci:
        raise ValueError(f"channel mismatch: x has {x.channels} channels, the weights expect C_i={shape.ci}")
    raise ValueError(
        f"x is {x.height}x{x.width} but the weights were packed for {shape.h}x{shape.w} inputs (input_size)"
    )


def conv2d_blocked(
    x: BlockedTensor,
    weights: PackedWeights,
    *,
    relu: bool = False,
    threads: int | None = None,
    out: BlockedTensor | None = None,
) -> BlockedTensor:
    """The zero-overhead convolution: blocked input, packed weights, blocked output (+ bias, optional ReLU).

    Allocates the output and nothing else; with `out=` it allocates nothing at all. Thread-safe: the kernel
    only reads `x` and `weights`.
    """
    if not isinstance(x, BlockedTensor):
        raise TypeError(f"x must be a BlockedTensor (see to_blocked), got {type(x).__name__}")
    if not isinstance(weights, PackedWeights):
        raise TypeError(f"weights must be PackedWeights (see pack_weights), got {type(weights).__name__}")
    kernel = weights.kernel
    # One comparison of the whole geometry on the common path; the checks that name what differs only on failure
    # (each costs a call of a small layer a few percent: docs/design.md, "The Python cost of a call").
    if x.channels != weights.shape.ci or x.data.shape[1:] != kernel.input_shape(1)[1:]:
        _refuse_input(x, weights)
    if threads is not None:
        checks.threads(threads)
    expected = kernel.output_shape(x.batch)
    if out is None:
        out = BlockedTensor(layout.empty_aligned(expected), weights.shape.co)
    elif not isinstance(out, BlockedTensor) or out.data.shape != expected or out.channels != weights.shape.co:
        got = out.data.shape if isinstance(out, BlockedTensor) else type(out).__name__
        raise ValueError(f"out must be a BlockedTensor of shape {expected} with {weights.shape.co} channels, got {got}")
    elif np.shares_memory(out.data, x.data):
        raise ValueError("out must not overlap the input x")
    config = weights.config
    kernel.run(
        x.data,
        weights.operands,
        out.data,
        cib=config.cib,
        rows=config.rows,
        parallel=config.parallel,
        threads=threads or config.threads,
        relu=relu,
    )
    return out


class _Workspace(threading.local):
    """Per calling thread, the blocked buffers of an NCHW call (its input and output, or the one-pass kernels'
    scratch), kept between calls and grown to the largest layer the thread has run, so that an NCHW call allocates
    only its result, as a peer's NCHW session does."""

    def __init__(self) -> None:
        self.buffers: dict[str, np.ndarray] = {}

    def blocked(self, slot: str, shape: tuple[int, ...]) -> np.ndarray:
        count = math.prod(shape)  # not np.prod: see docs/design.md, "The Python cost of an NCHW call"
        flat = self.buffers.get(slot)
        if flat is None or flat.size < count:
            flat = self.buffers[slot] = layout.empty_aligned((count,))
        return flat[:count].reshape(shape)


_workspace = _Workspace()


def release_buffers() -> None:
    """Free the calling thread's NCHW-call buffers (conv2d, conv2d_nchw, Conv2d on NCHW arrays); the next call
    allocates them again."""
    _workspace.buffers.clear()


def conv2d_nchw_input(
    x: np.ndarray, weights: PackedWeights, out: BlockedTensor, *, relu: bool = False, threads: int | None = None
) -> BlockedTensor:
    """A first convolution: NCHW x (checked by the caller) read as it is by the kernel's NCHW entry (layers of at most
    one block of input channels: weights.kernel.reads_nchw), blocked `out` written. Allocates nothing."""
    kernel, config = weights.kernel, weights.config
    kernel.run_fused(
        np.ascontiguousarray(x), weights.data, weights.bias, out.data, cib=config.cib, rows=config.rows,
        parallel=config.parallel, threads=threads or config.threads,
        epilogue=runtime.Epilogue("relu") if relu else None, nchw_input=True,
    )  # fmt: skip
    return out


def nchw_working_bytes(weights: PackedWeights, batch: int, threads: int) -> int:
    """Bytes of the per-thread buffers conv2d_nchw keeps for a call of `batch` images on `threads` threads: the
    one-pass kernels' scratch (none where planes are read in place), else the blocked output and, unless the kernel
    reads NCHW input itself, the blocked input."""
    kernel = weights.kernel
    if kernel.runs_nchw:
        return 4 * kernel.scratch_floats(threads)
    out = int(np.prod(kernel.output_shape(batch)))
    return 4 * (out if kernel.reads_nchw else out + int(np.prod(kernel.input_shape(batch))))


def conv2d_nchw(x: np.ndarray, weights: PackedWeights, *, relu: bool = False, threads: int | None = None) -> np.ndarray:
    """NCHW in, NCHW out, with weights packed once: x is converted to the blocked layout, convolved and converted
    back, on the layer's threads (grouped, depthwise and narrow-group layers do all three in one pass; a 1x1
    stride-1 layer on a large enough plane is a matrix product on the planes, and a depthwise layer whose rows are a
    vector wide convolves its planes, nothing converted; a layer of at most one block of input channels, a
    network's first, reads x as it is). The blocked copies, or the one-pass
    kernels' scratch, live in per-thread buffers reused by the next call (release_buffers frees them); the result is
    a new array."""
    x = _require_float32("x", x, 4, "NCHW")
    if not isinstance(weights, PackedWeights):
        raise TypeError(f"weights must be PackedWeights (see pack_weights), got {type(weights).__name__}")
    checks.optional_threads(threads)
    kernel, shape = weights.kernel, weights.shape
    if x.shape[1:] != (shape.ci, shape.h, shape.w):
        raise ValueError(
            f"x has NCHW shape {x.shape}, the weights were packed for {shape.ci} channels of {shape.h}x{shape.w}"
        )
    threads = threads or weights.config.threads
    batch = int(x.shape[0])
    if kernel.runs_nchw:  # one pass: each task converts the channel blocks it reads in a per-thread scratch
        y = np.empty((batch, shape.co, shape.ho, shape.wo), dtype=np.float32)
        scratch = _workspace.blocked("scratch", (kernel.scratch_floats(threads),))
        x = np.ascontiguousarray(x)  # the kernel reads planes in place: a strided view is copied once (as to_blocked)
        kernel.run_nchw(x, weights.operands, y, scratch, cib=weights.config.cib, threads=threads, relu=relu)
        return y
    yb = _workspace.blocked("out", kernel.output_shape(batch))
    config = weights.config
    if kernel.reads_nchw:  # one input-channel block (a first layer): the kernel reads the NCHW planes themselves
        conv2d_nchw_input(x, weights, BlockedTensor(yb, shape.co), relu=relu, threads=threads)
        return convert.from_blocked(yb, shape.co, threads=threads)
    xb = convert.to_blocked(x, kernel.lanes, threads=threads, out=_workspace.blocked("in", kernel.input_shape(batch)))
    # The kernel itself, not conv2d_blocked: its checks hold by construction here (docs/design.md, "The Python cost
    # of an NCHW call").
    kernel.run(
        xb, weights.operands, yb, cib=config.cib, rows=config.rows, parallel=config.parallel,
        threads=threads, relu=relu,
    )  # fmt: skip
    return convert.from_blocked(yb, shape.co, threads=threads)


def conv2d(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] | tuple[int, int, int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    config: KernelConfig | None = None,
    threads: int | None = None,
) -> np.ndarray:
    """2-D convolution (cross-correlation, as in every CNN framework) of NCHW float32 x with OIHW float32 w.

    w has shape (C_o, C_i / groups, kh, kw), as in PyTorch and ONNX: `groups` independent convolutions of
    C_i / groups input and C_o / groups output channels each (groups = C_i: depthwise).
    stride: int or (h, w). padding: int, (h, w), or (top, bottom, left, right); zeros, applied inside the kernel.
    dilation: int or (h, w): the taps' spacing on the input.
    config=None picks the default configuration for this host; threads=None uses the config's thread count
    (or every available CPU with the default config). Returns NCHW float32.
    """
    x = _require_float32("x", x, 4, "NCHW")
    w, bias = _check_weights(w, bias)
    groups = normalize_groups(groups)
    ci = int(x.shape[1])
    if ci % groups or w.shape[0] % groups:
        raise ValueError(
            f"groups={groups} must divide both channel counts, got C_i={ci} (x, NCHW shape {x.shape}) and "
            f"C_o={w.shape[0]} (w, OIHW shape {w.shape})"
        )
    if w.shape[1] != ci // groups:
        raise ValueError(
            f"channel mismatch: x has C_i={ci} channels (NCHW shape {x.shape}), so w's second dimension must be "
            f"C_i / groups = {ci // groups}, got {w.shape[1]} (OIHW shape {w.shape})"
        )
    normalize_stride(stride)
    normalize_padding(padding)
    normalize_dilation(dilation)
    packed = pack_weights(
        w,
        bias,
        input_size=(int(x.shape[2]), int(x.shape[3])),
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        config=config,
        threads=threads,
    )
    return conv2d_nchw(x, packed)
