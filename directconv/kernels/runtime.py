"""Load compiled convolution kernels and call them (through kernels.ffi, the one module that talks to cffi).

Above this layer everything is numpy arrays and typed values; this layer checks every buffer's shape, dtype and
contiguity against the compiled geometry before C sees a pointer, because C would not notice.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from directconv.core.config import KernelConfig
from directconv.core.isa import get_isa
from directconv.core.shape import ConvShape, KernelKind, kernel_kind, reads_nchw, split_units
from directconv.kernels import codegen, compiler, ffi, layout
from directconv.kernels.generator import generate, nchw_scratch
from directconv.kernels.layout import blocks

# The NCHW entry exists in grouped, lane-wise and large-plane 1x1 kernels only (CompiledKernel.runs_nchw); cffi
# looks a function up when it is first called.
# The same for the NCHW-input entry, in kernels of layers with one input-channel block (core.shape.reads_nchw).
_DECLARATIONS = (
    codegen.C_SIGNATURE
    + codegen.C_FUSED_SIGNATURE
    + codegen.C_FUSED_X_SIGNATURE
    + codegen.C_BENCH_SIGNATURE
    + codegen.C_NCHW_SIGNATURE
)


# The activations a kernel applies in its store, in kernels/c/dc_epilogue.h's order.
ACTIVATIONS = ("none", "relu", "clip", "leaky_relu", "sigmoid", "hard_sigmoid", "hard_swish", "silu")


@dataclass(frozen=True)
class Epilogue:
    """What a kernel applies to its finished output before storing it: act(x) with ONNX's parameters (clip: alpha
    = min, beta = max; leaky_relu: alpha; hard_sigmoid: alpha, beta)."""

    act: str = "none"
    alpha: float = 0.0
    beta: float = 0.0

    def __post_init__(self) -> None:
        if self.act not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.act!r}")


@dataclass(frozen=True)
class WeightOperands:
    """A kernel's packed weights and bias, checked against its geometry once (CompiledKernel.operands) and held as
    the C pointers every call passes: converting and checking them on each call cost more than a small layer's
    kernel (docs/design.md, "The Python cost of a call"). The pointers keep their arrays alive."""

    weights: Any  # cffi float * over the packed weights
    bias: Any  # cffi float * over the packed bias
    weight_shape: tuple[int, ...]  # the geometry they were checked for
    bias_shape: tuple[int, ...]


@dataclass(frozen=True)
class BoundCall:
    """A C call checked once and made as often as wanted: a convolution's (CompiledKernel.bind_fused) or a graph
    operator's (kernels.graph_ops.bind_*), as the C function and the arguments it is called with (cffi pointers into
    the buffers). A graph runs a run of them in one C call (kernels.graph_ops.chain), the same function with the
    same arguments, through the dc_step adapter `step` names (dc_step_<step> in kernels/c/dc_graph.c)."""

    function: Any  # cffi function: dc_conv_fused or dc_conv_fused_x (codegen.C_FUSED_SIGNATURE), or a dc_graph_*
    args: tuple[Any, ...]  # its arguments, in the function's order
    name: str  # a kernel's library file name, or the operator's C function name, for the error
    step: str = "conv"  # the adapter's suffix: conv, or the operator (max_pool, channel_shuffle...)

    @property
    def label(self) -> str:
        """What the errors call it: `kernel LIBRARY` for a convolution, the C function's name for an operator."""
        return f"kernel {self.name}" if self.step == "conv" else self.name

    def __call__(self) -> None:
        code = self.function(*self.args)
        if code != 0:
            raise RuntimeError(f"{self.label} rejected its arguments (code {code})")


@dataclass(frozen=True)
class CompiledKernel:
    """The direct convolution for one (register-level config, layer shape), loaded and ready to run."""

    isa: str
    cob: int
    wob: int
    unroll: int
    shape: ConvShape
    path: Path
    _lib: Any

    # The geometry below is fixed per kernel and read on every call: computed once (a call of a small layer costs
    # as much in Python as in C otherwise).
    @cached_property
    def lanes(self) -> int:
        return get_isa(self.isa).lanes

    @cached_property
    def _in_planes(self) -> tuple[int, ...]:
        s = self.shape
        return (blocks(s.ci, self.lanes), s.h, s.w, self.lanes)

    @cached_property
    def _out_planes(self) -> tuple[int, ...]:
        s = self.shape
        return (blocks(s.co, self.lanes), s.ho, s.wo, self.lanes)

    @cached_property
    def _bias_shape(self) -> tuple[int]:
        return (layout.bias_length(self.shape, self.lanes, self.cob),)

    @cached_property
    def _input_blocks(self) -> int:
        return blocks(self.shape.cig, self.lanes)  # a grouped layer blocks each group's input channels

    @cached_property
    def _rows(self) -> int:
        return self.shape.kernel_view().ho  # the kernel's rows (one for a flattened 1x1 layer)

    @cached_property
    def _units(self) -> int:
        """The most a task's `rows` can count: output rows, or register tiles of a kernel's one row (split_units)."""
        return split_units(self.shape.kernel_view(), self.wob, self.lanes)

    def input_shape(self, batch: int) -> tuple[int, ...]:
        return (batch, *self._in_planes)

    def output_shape(self, batch: int) -> tuple[int, ...]:
        return (batch, *self._out_planes)

    @cached_property
    def kind(self) -> KernelKind:
        return kernel_kind(self.shape, self.lanes)

    @cached_property
    def _weight_shape(self) -> tuple[int, ...]:
        return layout.weight_shape(self.shape, self.lanes, self.cob)

    def weight_shape(self) -> tuple[int, ...]:
        return self._weight_shape

    def operands(self, weights: np.ndarray, bias: np.ndarray) -> WeightOperands:
        """Packed weights and bias checked against this kernel's geometry once, as the pointers every call passes."""
        _check_buffer("packed weights", weights, self._weight_shape)
        _check_buffer("packed bias", bias, self._bias_shape)
        return WeightOperands(
            ffi.floats(weights, writable=False), ffi.floats(bias, writable=False), self._weight_shape, self._bias_shape
        )

    def _args(self, x, weights: WeightOperands, out, cib, rows, parallel) -> tuple:
        """Checked cffi arguments shared by run() and bench()."""
        batch = x.shape[0] if x.ndim == 5 else -1
        _check_buffer("input", x, self.input_shape(batch))
        self._check_operands(weights)
        _check_buffer("output", out, self.output_shape(batch))
        if not out.flags.writeable:
            raise ValueError("output buffer is read-only")
        nbi = self._input_blocks
        cib_blocks = nbi if cib is None else max(1, min(nbi, cib // self.lanes))
        rows_per_task = self._rows if rows is None else max(1, min(self._units, rows))
        return (
            ffi.floats(x, writable=False),
            weights.weights,
            weights.bias,
            ffi.floats(out, writable=True),
            batch,
            cib_blocks,
            rows_per_task,
            1 if parallel == "rows" else 0,
        )

    def _check_operands(self, weights: WeightOperands) -> None:
        if not isinstance(weights, WeightOperands):
            raise TypeError(
                f"weights must be WeightOperands (see CompiledKernel.operands), got {type(weights).__name__}"
            )
        if weights.weight_shape != self._weight_shape or weights.bias_shape != self._bias_shape:
            raise ValueError(
                f"these weights were checked for packed shapes {weights.weight_shape} and {weights.bias_shape}; this "
                f"kernel takes {self._weight_shape} and {self._bias_shape}"
            )

    def bench(
        self,
        x: np.ndarray,
        weights: WeightOperands,
        out: np.ndarray,
        *,
        cib: int | None,
        rows: int | None,
        parallel: str,
        threads: int,
        warmup: int = 2,
        min_seconds: float = 0.2,
        min_samples: int = 5,
        max_samples: int = 10000,
    ) -> np.ndarray:
        """Time the kernel in C (see codegen.C_BENCH_SIGNATURE); returns per-call seconds."""
        samples = np.empty(max_samples, dtype=np.float64)
        n = self._lib.dc_bench(
            *self._args(x, weights, out, cib, rows, parallel),
            threads,
            warmup,
            min_seconds,
            min_samples,
            max_samples,
            ffi.doubles(samples),
        )
        if n < 0:
            raise RuntimeError(f"kernel {self.path.name} rejected its arguments (code {n})")
        return samples[:n].copy()

    def run(
        self,
        x: np.ndarray,
        weights: WeightOperands,
        out: np.ndarray,
        *,
        cib: int | None,
        rows: int | None,
        parallel: str,
        threads: int,
        relu: bool = False,
    ) -> None:
        """out = conv(x, weights) + bias (optionally ReLU), all in blocked layouts (weights: operands(packed weights,
        packed bias)). Allocates nothing."""
        code = self._lib.dc_conv(*self._args(x, weights, out, cib, rows, parallel), threads, 1 if relu else 0)
        if code != 0:
            raise RuntimeError(f"kernel {self.path.name} rejected its arguments (code {code})")

    def run_fused(
        self,
        x: np.ndarray,
        weights: np.ndarray,
        bias: np.ndarray,
        out: np.ndarray,
        *,
        cib: int | None,
        rows: int | None,
        parallel: str,
        threads: int,
        epilogue: Epilogue | None = None,
        in_first: int = 0,
        out_first: int = 0,
        residual: np.ndarray | None = None,
        res_first: int = 0,
        nchw_input: bool = False,
    ) -> None:
        """out[:, out_first:...] = act(conv(x[:, in_first:...], weights) + bias + residual[:, res_first:...]) in
        blocked layouts (codegen.C_FUSED_SIGNATURE): x, out and residual may hold more channel blocks than the
        layer's, which then reads and writes its slice of them (a Concat's producers write in place). With
        `nchw_input` (kernels that reads_nchw), x is NCHW and in_first counts channels. Allocates nothing."""
        self.bind_fused(
            x, weights, bias, out, cib=cib, rows=rows, parallel=parallel, threads=threads, epilogue=epilogue,
            in_first=in_first, out_first=out_first, residual=residual, res_first=res_first, nchw_input=nchw_input,
        )()  # fmt: skip

    def bind_fused(
        self,
        x: np.ndarray,
        weights: np.ndarray,
        bias: np.ndarray,
        out: np.ndarray,
        *,
        cib: int | None,
        rows: int | None,
        parallel: str,
        threads: int,
        epilogue: Epilogue | None = None,
        in_first: int = 0,
        out_first: int = 0,
        residual: np.ndarray | None = None,
        res_first: int = 0,
        nchw_input: bool = False,
    ) -> BoundCall:
        """run_fused's call, checked now and made later, as often as wanted: a graph binds each convolution to its
        arena once per batch size, so that a call costs the C function and nothing else (checking and converting
        the arguments costs more than the kernel of a small layer: docs/design.md). The buffers must stay alive and
        keep their shapes while the returned function may be called: it holds pointers into them. With
        `nchw_input`, x is NCHW (N, C, H, W) and the layer reads its channels [in_first, in_first + C_i): only
        kernels that reads_nchw have that entry."""
        s, lanes = self.shape, self.lanes
        ep = epilogue or Epilogue()
        if nchw_input:
            if not self.reads_nchw:
                raise ValueError(
                    f"this kernel reads blocked input only: the NCHW entry is for layers of one input-channel block "
                    f"and one group (C_i <= {lanes}), got {s.describe()}"
                )
            batch = x.shape[0] if x.ndim == 4 else -1
            in_blocks = _check_view("input", x, (batch, s.h, s.w), in_first, s.ci, rank=4)
        else:
            batch = x.shape[0] if x.ndim == 5 else -1
            in_blocks = _check_view("input", x, (batch, s.h, s.w, lanes), in_first, blocks(s.ci, lanes))
        out_blocks = _check_view("output", out, (batch, s.ho, s.wo, lanes), out_first, blocks(s.co, lanes))
        _check_buffer("packed weights", weights, self._weight_shape)
        _check_buffer("packed bias", bias, self._bias_shape)
        if not out.flags.writeable:
            raise ValueError("output buffer is read-only")
        res_blocks = 0
        if residual is not None:
            res_blocks = _check_view("residual", residual, (batch, s.ho, s.wo, lanes), res_first, blocks(s.co, lanes))
            if np.shares_memory(residual, out):
                raise ValueError("the residual must not overlap the output (the kernel stores partial sums there)")
        nbi = self._input_blocks
        args = (
            ffi.floats(x, writable=False),
            ffi.floats(weights, writable=False),
            ffi.floats(bias, writable=False),
            ffi.floats(out, writable=True),
            ffi.NULL if residual is None else ffi.floats(residual, writable=False),
            batch,
            nbi if cib is None else max(1, min(nbi, cib // lanes)),
            self._rows if rows is None else max(1, min(self._units, rows)),
            1 if parallel == "rows" else 0,
            threads,
            in_blocks,
            in_first,
            out_blocks,
            out_first,
            res_blocks,
            res_first,
            ACTIVATIONS.index(ep.act),
            ep.alpha,
            ep.beta,
        )
        function = self._lib.dc_conv_fused_x if nchw_input else self._lib.dc_conv_fused
        return BoundCall(function, args, self.path.name)

    @cached_property
    def reads_nchw(self) -> bool:
        """Whether the kernel has the NCHW-input entry (bind_fused's nchw_input): one input-channel block, no groups."""
        return reads_nchw(self.shape, self.lanes)

    @cached_property
    def _nchw_scratch(self) -> int | None:
        return nchw_scratch(KernelConfig(self.isa, self.cob, self.wob, unroll=self.unroll), self.shape)

    @property
    def runs_nchw(self) -> bool:
        """Whether the kernel has a one-pass NCHW entry (run_nchw): the kinds whose output blocks read only their
        own groups' input blocks (grouped, depthwise, grouped-packed; a depthwise layer whose rows are a vector wide
        convolves its planes in place, kernels/codegen_planes.py), and plain 1x1 stride-1 layers on large enough
        planes, whose NCHW planes are the rows of a matrix product (kernels/codegen_pointwise.py)."""
        return self._nchw_scratch is not None

    def scratch_floats(self, threads: int) -> int:
        """Floats of the scratch run_nchw needs on `threads` threads."""
        return threads * (self._nchw_scratch or 0)

    def run_nchw(
        self,
        x: np.ndarray,
        weights: WeightOperands,
        out: np.ndarray,
        scratch: np.ndarray,
        *,
        cib: int | None,
        threads: int,
        relu: bool = False,
    ) -> None:
        """out (NCHW) = conv(x (NCHW), weights) + bias (optionally ReLU) in one pass (codegen.C_NCHW_SIGNATURE),
        using `scratch` (at least scratch_floats(threads) floats). Allocates nothing."""
        if not self.runs_nchw:
            raise ValueError(f"a {self.kind} kernel has no NCHW entry; convert with to_blocked and from_blocked")
        s = self.shape
        batch = x.shape[0] if x.ndim == 4 else -1
        _check_buffer("input", x, (batch, s.ci, s.h, s.w))
        self._check_operands(weights)
        _check_buffer("output", out, (batch, s.co, s.ho, s.wo))
        if not out.flags.writeable or not scratch.flags.writeable:
            raise ValueError("output and scratch buffers must be writeable")
        if scratch.dtype != np.float32 or not scratch.flags.c_contiguous or scratch.size < self.scratch_floats(threads):
            raise ValueError(
                f"scratch must be C-contiguous float32 of at least {self.scratch_floats(threads)} floats for "
                f"{threads} thread(s), got {scratch.dtype} of {scratch.size}"
            )
        code = self._lib.dc_conv_nchw(
            ffi.floats(x, writable=False),
            weights.weights,
            weights.bias,
            ffi.floats(out, writable=True),
            batch,
            self._input_blocks if cib is None else max(1, min(self._input_blocks, cib // self.lanes)),
            threads,
            1 if relu else 0,
            ffi.floats(scratch, writable=True),
        )
        if code != 0:
            raise RuntimeError(f"kernel {self.path.name} rejected its arguments (code {code})")


def _check_view(what: str, a: np.ndarray, planes: tuple[int, ...], first: int, count: int, rank: int = 5) -> int:
    """Check that `a` is a blocked tensor (batch, blocks, *planes[1:]) whose blocks [first, first + count) exist
    (rank 4: an NCHW tensor and its channels); returns its blocks (channels) per image."""
    if not isinstance(a, np.ndarray) or a.ndim != rank:
        kind = "5-d blocked" if rank == 5 else f"{rank}-d NCHW"
        raise ValueError(f"{what} must be a {kind} array, got {getattr(a, 'shape', type(a).__name__)}")
    held = a.shape[1]
    _check_buffer(what, a, (planes[0], held, *planes[1:]))
    if not isinstance(first, int) or first < 0 or first + count > held:
        raise ValueError(
            f"{what} {'channel blocks' if rank == 5 else 'channels'} [{first}, {first}+{count}) must lie within its "
            f"{held} {'blocks' if rank == 5 else 'channels'} per image"
        )
    return held


def _check_buffer(what: str, a: np.ndarray, expected: tuple[int, ...]) -> None:
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{what} must be a numpy array, got {type(a).__name__}")
    if a.dtype != np.float32:
        raise TypeError(f"{what} must be float32, got {a.dtype}")
    if a.shape != expected:
        raise ValueError(f"{what} must have shape {expected} for this kernel, got {a.shape}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{what} must be C-contiguous (use np.ascontiguousarray)")


# In-process kernel cache, keyed like the disk cache: by the library's file, whose name is the hash of source,
# flags and compiler, so any two requests that would compile the same C share one loaded library. The first dict
# only spares a known (config, shape) from generating its source again.
_by_library: dict[Path, CompiledKernel] = {}
_by_request: dict[tuple[Any, ...], CompiledKernel] = {}
_load_lock = threading.Lock()


def load(config: KernelConfig, shape: ConvShape) -> CompiledKernel:
    """Generate, build (or find in the disk cache) and load the kernel for `config` on `shape`.

    Run-time fields of the config (cib, rows, parallel, threads) do not make a new kernel. Thread-safe: concurrent
    first calls build and load the library once.
    """
    request = (config.compile_key(), shape)
    kernel = _by_request.get(request)
    if kernel is not None:
        return kernel
    with _load_lock:
        kernel = _by_request.get(request)
        if kernel is None:
            path = build(config, shape)
            kernel = _by_library.get(path)
            if kernel is None:
                kernel = open_library(path, config, shape)
                _by_library[path] = kernel
            _by_request[request] = kernel
    return kernel


def loaded_libraries() -> list[Path]:
    """The kernel libraries this process has loaded (diagnostics and tests)."""
    with _load_lock:
        return list(_by_library)


def build(config: KernelConfig, shape: ConvShape, source: str | None = None) -> Path:
    """Compile (or find in the disk cache) the kernel library; `source` overrides the generated C."""
    if source is None:
        source = generate(config, shape)
    return compiler.build(source, get_isa(config.isa).flags, name="conv")


def cached_library(config: KernelConfig, shape: ConvShape) -> Path | None:
    """The verified disk-cache library load() would use without compiling, or None if it would compile."""
    return compiler.cached(generate(config, shape), get_isa(config.isa).flags, name="conv")


def open_library(path: Path, config: KernelConfig, shape: ConvShape) -> CompiledKernel:
    """Load a built kernel library for `config` on `shape` (not shared through the in-process cache)."""
    return CompiledKernel(*config.compile_key(), shape, path, ffi.load(path, _DECLARATIONS))
