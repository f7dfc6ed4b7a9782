"""The non-convolution graph operators in C (kernels/c/dc_graph.c), on the caller's threads.

graph/ops.py defines each operator in numpy with onnxruntime's semantics and calls these first. Each returns True
when C wrote `y`, or False, y untouched, when there is no library (neither a C compiler nor a cached build) or the
arrays are not laid out as C indexes them; the caller then runs numpy. The results are numpy's bit for bit, except
global average pooling (float64 sums in another order) and sigmoid and SiLU (a polynomial exp): within 1e-6
relative.

What C indexes: float32 (N, CB, H, W, L) arrays, 4-byte aligned, each image C-contiguous, images any non-negative
number of floats apart; so a slice buffer[:, first:first + CB] of a larger activation buffer runs here for any N.
An output's images must not overlap each other. This module checks shapes, strides and overlaps before C sees a
pointer; the numbers it passes on (kernel sizes, channel counts) C checks, and a refusal raises ValueError.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from directconv.kernels import compiler, convert, ffi
from directconv.kernels.codegen import c_text, vector_prelude
from directconv.kernels.runtime import ACTIVATIONS, BoundCall

log = logging.getLogger("directconv.cache")

# The dc_step adapters (kernels/c/dc_graph.c): what a chain can run.
_STEPS = (
    "conv", "max_pool", "average_pool", "global_average_pool", "channel_shuffle", "copy_channels", "activation", "add",
    "scale_shift", "scale_channels", "lrn", "to_dense", "gemv", "softmax",
)  # fmt: skip
_DECLARATIONS = (
    "int dc_graph_max_pool(const float *x, float *y, long n, long nb, long xs, long ys, long h, long w, long ho,"
    "                      long wo, int kh, int kw, int sh, int sw, int pt, int pl, int dh, int dw, int threads);"
    "int dc_graph_average_pool(const float *x, float *y, long n, long nb, long xs, long ys, long h, long w, long ho,"
    "                          long wo, int kh, int kw, int sh, int sw, int pt, int pl, int pb, int pr,"
    "                          int include_pad, int threads);"
    "int dc_graph_global_average_pool(const float *x, float *y, long n, long nb, long hw, long xs, long ys,"
    "                                 int threads);"
    "int dc_graph_channel_shuffle(const float *x, float *y, long n, long nb, long hw, long xs, long ys, long c,"
    "                             long g, int threads);"
    "int dc_graph_copy_channels(const float *x, float *y, long n, long xb, long yb, long hw, long xs, long ys,"
    "                           long offset, long c, int threads);"
    "int dc_graph_activation(const float *x, float *y, long n, long count, long xs, long ys, int act, float alpha,"
    "                        float beta, int threads);"
    "int dc_graph_add(const float *a, const float *b, float *y, long n, long count, long as, long bs, long ys,"
    "                 int act, float alpha, float beta, int threads);"
    "int dc_graph_scale_shift(const float *x, const float *scale, const float *shift, float *y, long n, long nb,"
    "                         long hw, long xs, long ys, int act, float alpha, float beta, int threads);"
    "int dc_graph_scale_channels(const float *x, const float *scale, float *y, long n, long nb, long hw, long xs,"
    "                            long ys, long ss, int threads);"
    "int dc_graph_lrn(const float *x, float *y, long n, long nb, long hw, long xs, long ys, long c, int size,"
    "                 float scale, float beta, float bias, int threads);"
    "int dc_graph_gemv(const float *a, const float *cols, const float *bias, float *y, long n, long k, long m,"
    "                  int threads);"
    "int dc_graph_to_dense(const float *x, float *y, long n, long nb, long hw, long xs, long c, int threads);"
    "int dc_graph_softmax(const float *x, float *y, long rows, long cols);"
    "typedef struct dc_step { int (*run)(const struct dc_step *); void *fn; void *p[5]; long a[18]; float f[3]; }"
    "    dc_step;"
    "int dc_graph_run(const dc_step *steps, int n);"
    + "".join(f"int dc_step_{step}(const dc_step *);" for step in _STEPS)
)
# -ffp-contract=off overrides compiler.BASE_FLAGS' fast: x * scale + shift must round twice, as numpy's two passes
# do, also where fused multiply-adds need no ISA flag (aarch64); -fno-math-errno lets LRN's square roots run as
# vector instructions.
_FLAGS = ("-ffp-contract=off", "-fno-math-errno")
_libraries: dict[int, Any] = {}
_lock = threading.Lock()


def _flags(lanes: int) -> tuple[str, ...]:
    """_FLAGS, and those of the host's ISA whose vectors hold `lanes` floats where it has one: a max-pool then moves a
    whole block per instruction (measured: docs/design.md, "Where a graph's time went")."""
    return _FLAGS + convert.isa_flags(lanes)


def _chunk(lanes: int) -> int:
    """Lanes per vector: a whole block with its ISA's flags, else 16 bytes where a block is whole ones, else one."""
    if convert.isa_flags(lanes):
        return lanes
    return 4 if lanes % 4 == 0 else 1


def _source(lanes: int) -> str:
    chunk = _chunk(lanes)
    return (
        f"#define DC_LANES {lanes}\n#define DC_CHUNK {chunk}\n"
        + vector_prelude(chunk, None)
        + c_text("dc_epilogue.h")
        + c_text("dc_window.h")
        + c_text("dc_graph.c")
    )


def _library(lanes: int) -> Any | None:
    """The operator library for `lanes` (built once per lanes and compiler, then from the disk cache), or None when
    neither a compiler nor a cached build is there (remembered: the graph asks at every step)."""
    if lanes in _libraries:
        return _libraries[lanes]
    with _lock:
        if lanes not in _libraries:
            try:
                path = compiler.build(_source(lanes), _flags(lanes), name="graph_ops")
            except compiler.CompilerNotFoundError as exc:
                log.info("graph operators in numpy: %s", exc)
                _libraries[lanes] = None
            else:
                _libraries[lanes] = ffi.load(path, _DECLARATIONS)
        return _libraries[lanes]


def _batch_stride(a: np.ndarray, *, output: bool = False) -> int | None:
    """The floats between a's images, or None unless C can index a: a non-empty aligned float32 5-D array whose
    images are C-contiguous at a non-negative stride (for an output, writeable with disjoint images)."""
    if a.dtype != np.float32 or a.ndim != 5 or a.size == 0 or not a.flags.aligned:
        return None
    if output and not a.flags.writeable:
        return None
    if a.shape[0] == 1:
        return 0 if a.flags.c_contiguous else None
    if a.flags.c_contiguous:
        return a.size // a.shape[0]
    stride = a.strides[0]
    if stride < 0 or stride % 4 or (output and stride < a[0].nbytes) or not a[0].flags.c_contiguous:
        return None
    return stride // 4


def _pointer(a: np.ndarray) -> Any:
    """A float * to a's first element: a view of a C-contiguous array's buffer (the cheaper call), else its address."""
    return ffi.floats(a, writable=False) if a.flags.c_contiguous else ffi.float_pointer(a)


def _act(kind: str | None) -> int:
    """The DC_ACT_* code of an activation name (None: none)."""
    name = kind or "none"
    if name not in ACTIVATIONS:
        raise ValueError(f"act must be one of {', '.join(ACTIVATIONS)} or None, got {kind!r}")
    return ACTIVATIONS.index(name)


def _refused(name: str, result: int, **arguments: Any) -> None:
    """ValueError naming the arguments unless C returned 0."""
    if result != 0:
        details = ", ".join(f"{k}={v}" for k, v in arguments.items())
        raise ValueError(f"{name} refused its arguments: {details}")


def _pool_views(x: np.ndarray, y: np.ndarray) -> tuple[Any, int, int] | None:
    """(library, x's batch stride, y's) when C can pool x into y: same images, blocks and lanes, no overlap."""
    xs, ys = _batch_stride(x), _batch_stride(y, output=True)
    if xs is None or ys is None or (x.shape[:2], x.shape[4]) != (y.shape[:2], y.shape[4]) or np.shares_memory(x, y):
        return None
    lib = _library(x.shape[4])
    return None if lib is None else (lib, xs, ys)


def _bound(lib: Any, step: str, *args: Any) -> BoundCall:
    """The call of dc_graph_<step> on `args`, to make now (_made) or later, alone or in a chain."""
    name = f"dc_graph_{step}"
    return BoundCall(getattr(lib, name), args, name, step)


def _made(call: BoundCall | None, **arguments: Any) -> bool:
    """Make `call` now: False without one (C cannot run it), ValueError naming `arguments` if C refuses them."""
    if call is None:
        return False
    _refused(call.name, call.function(*call.args), **arguments)
    return True


def bind_max_pool(
    x: np.ndarray,
    y: np.ndarray,
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    pads: tuple[int, ...],
    dilation: tuple[int, ...],
    *,
    threads: int = 1,
) -> BoundCall | None:
    """max_pool's call, made later (None where max_pool would return False); x and y must stay alive."""
    views = _pool_views(x, y)
    if views is None:
        return None
    lib, xs, ys = views
    n, nb, h, w, _ = x.shape
    args = (n, nb, xs, ys, h, w, y.shape[2], y.shape[3], *kernel, *stride, pads[0], pads[1], *dilation, threads)
    return _bound(lib, "max_pool", _pointer(x), _pointer(y), *args)


def max_pool(
    x: np.ndarray,
    y: np.ndarray,
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    pads: tuple[int, ...],
    dilation: tuple[int, ...],
    *,
    threads: int = 1,
) -> bool:
    """y = ONNX MaxPool of x, pads (top, left, bottom, right) acting as -inf; y's height and width are the output
    size (floor or ceil mode), every window is clipped to the input. NaN propagates; a window holding no input
    element gives the lowest float32. y must not overlap x (False otherwise)."""
    call = bind_max_pool(x, y, kernel, stride, pads, dilation, threads=threads)
    return _made(call, shapes=(x.shape, y.shape), kernel=kernel, stride=stride, pads=pads)


def bind_average_pool(
    x: np.ndarray,
    y: np.ndarray,
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    pads: tuple[int, ...],
    count_include_pad: bool,
    *,
    threads: int = 1,
) -> BoundCall | None:
    """average_pool's call, made later (None where average_pool would return False); x and y must stay alive."""
    views = _pool_views(x, y)
    if views is None:
        return None
    lib, xs, ys = views
    n, nb, h, w, _ = x.shape
    args = (n, nb, xs, ys, h, w, y.shape[2], y.shape[3], *kernel, *stride, *pads, int(count_include_pad), threads)
    return _bound(lib, "average_pool", _pointer(x), _pointer(y), *args)


def average_pool(
    x: np.ndarray,
    y: np.ndarray,
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    pads: tuple[int, ...],
    count_include_pad: bool,
    *,
    threads: int = 1,
) -> bool:
    """y = ONNX AveragePool of x, pads (top, left, bottom, right); y's height and width are the output size. The
    divisor counts the window's elements inside the input, or with count_include_pad inside the padded input. y
    must not overlap x (False otherwise)."""
    call = bind_average_pool(x, y, kernel, stride, pads, count_include_pad, threads=threads)
    return _made(call, shapes=(x.shape, y.shape), kernel=kernel, stride=stride, pads=pads)


def bind_global_average_pool(x: np.ndarray, y: np.ndarray, *, threads: int = 1) -> BoundCall | None:
    """global_average_pool's call, made later (None where it would return False); x and y must stay alive."""
    n, nb, h, w, lanes = x.shape
    if y.shape != (n, nb, 1, 1, lanes):
        raise ValueError(f"y must have shape {(n, nb, 1, 1, lanes)}, got {y.shape}")
    views = _pool_views(x, y)
    if views is None:
        return None
    lib, xs, ys = views
    return _bound(lib, "global_average_pool", _pointer(x), _pointer(y), n, nb, h * w, xs, ys, threads)


def global_average_pool(x: np.ndarray, y: np.ndarray, *, threads: int = 1) -> bool:
    """y (N, CB, 1, 1, L) = the mean of x (N, CB, H, W, L) over height and width, summed in float64."""
    return _made(bind_global_average_pool(x, y, threads=threads), shape=x.shape, threads=threads)


def bind_lrn(
    x: np.ndarray, y: np.ndarray, channels: int, size: int, alpha: float, beta: float, bias: float, *, threads: int = 1
) -> BoundCall | None:
    """lrn's call, made later (None where lrn would return False); x and y must stay alive."""
    if x.shape != y.shape:
        raise ValueError(f"y must have x's shape {x.shape}, got {y.shape}")
    views = _pool_views(x, y)
    if views is None or x.shape[1] * x.shape[4] > 4096 or size > 65:
        return None
    lib, xs, ys = views
    n, nb, h, w, _ = x.shape
    scale = float(np.float32(float(alpha) / size))  # numpy multiplies float32 data by alpha / size as a float32
    args = (n, nb, h * w, xs, ys, channels, size, scale, float(beta), float(bias), threads)
    return _bound(lib, "lrn", _pointer(x), _pointer(y), *args)


def lrn(
    x: np.ndarray, y: np.ndarray, channels: int, size: int, alpha: float, beta: float, bias: float, *, threads: int = 1
) -> bool:
    """y = ONNX LRN of x across its `channels` real channels (graph.ops.lrn's definition); False when C cannot run
    it (overlap, a layout C cannot index, more than 4096 channels or a window wider than 65)."""
    call = bind_lrn(x, y, channels, size, alpha, beta, bias, threads=threads)
    return _made(call, shape=x.shape, channels=channels, size=size, threads=threads)


def bind_channel_shuffle(
    x: np.ndarray, y: np.ndarray, channels: int, groups: int, *, threads: int = 1
) -> BoundCall | None:
    """channel_shuffle's call, made later (None where it would return False); x and y must stay alive."""
    if x.shape != y.shape:
        raise ValueError(f"y must have x's shape {x.shape}, got {y.shape}")
    views = _pool_views(x, y)
    if views is None:
        return None
    lib, xs, ys = views
    n, nb, h, w, _ = x.shape
    args = (n, nb, h * w, xs, ys, channels, groups, threads)
    return _bound(lib, "channel_shuffle", _pointer(x), _pointer(y), *args)


def channel_shuffle(x: np.ndarray, y: np.ndarray, channels: int, groups: int, *, threads: int = 1) -> bool:
    """y = the channel shuffle of x (output channel k * groups + i = input channel i * channels / groups + k), y's
    padded lanes zero. x and y have one shape and must not overlap (False otherwise)."""
    call = bind_channel_shuffle(x, y, channels, groups, threads=threads)
    return _made(call, shape=x.shape, channels=channels, groups=groups, threads=threads)


def bind_copy_channels(
    x: np.ndarray, y: np.ndarray, offset: int, channels: int, *, threads: int = 1
) -> BoundCall | None:
    """copy_channels' call, made later (None where it would return False); x and y must stay alive."""
    if (x.shape[0], *x.shape[2:]) != (y.shape[0], *y.shape[2:]):
        raise ValueError(f"y must have x's images, height, width and lanes {x.shape}, got {y.shape}")
    xs, ys = _batch_stride(x), _batch_stride(y, output=True)
    if xs is None or ys is None or np.shares_memory(x, y):
        return None
    lib = _library(x.shape[4])
    if lib is None:
        return None
    n, nb, h, w, _ = x.shape
    args = (n, nb, y.shape[1], h * w, xs, ys, offset, channels, threads)
    return _bound(lib, "copy_channels", _pointer(x), _pointer(y), *args)


def copy_channels(x: np.ndarray, y: np.ndarray, offset: int, channels: int, *, threads: int = 1) -> bool:
    """y's channels [offset, offset + channels) = x's [0, channels); nothing else of y is written. x and y have the
    same images, heights, widths and lanes (any blocks) and must not overlap (False otherwise)."""
    call = bind_copy_channels(x, y, offset, channels, threads=threads)
    return _made(call, shapes=(x.shape, y.shape), offset=offset, channels=channels)


def _elementwise(inputs: tuple[np.ndarray, ...], y: np.ndarray) -> tuple[Any, list[Any], int, Any] | None:
    """(library, each input's pointer then batch stride, y's batch stride, y's pointer) when C can map `inputs` of
    y's shape elementwise into y: each input is y element for element, or shares no memory with it."""
    ys = _batch_stride(y, output=True)
    if ys is None:
        return None
    target = _pointer(y)
    arguments = []
    for a in inputs:
        stride = _batch_stride(a)
        if stride is None:
            return None
        pointer = _pointer(a)
        if np.shares_memory(a, y) and not (pointer == target and a.strides == y.strides):
            return None
        arguments += [pointer, stride]
    lib = _library(y.shape[4])
    return None if lib is None else (lib, arguments, ys, target)


def bind_activation(
    x: np.ndarray, y: np.ndarray, kind: str, alpha: float = 0.0, beta: float = 0.0, *, threads: int = 1
) -> BoundCall | None:
    """activation's call, made later (None where it would return False); x and y must stay alive."""
    if x.shape != y.shape:
        raise ValueError(f"y must have x's shape {x.shape}, got {y.shape}")
    act = _act(kind)
    views = _elementwise((x,), y)
    if views is None:
        return None
    lib, (px, xs), ys, py = views
    n = x.shape[0]
    return _bound(lib, "activation", px, py, n, x.size // n, xs, ys, act, float(alpha), float(beta), threads)


def activation(
    x: np.ndarray, y: np.ndarray, kind: str, alpha: float = 0.0, beta: float = 0.0, *, threads: int = 1
) -> bool:
    """y = the activation `kind` of x (one of runtime.ACTIVATIONS, graph/ops.py's semantics); y is x or apart from
    it (False otherwise)."""
    call = bind_activation(x, y, kind, alpha, beta, threads=threads)
    return _made(call, shape=x.shape, kind=kind, threads=threads)


def bind_add(
    a: np.ndarray,
    b: np.ndarray,
    y: np.ndarray,
    act: str | None = None,
    alpha: float = 0.0,
    beta: float = 0.0,
    *,
    threads: int = 1,
) -> BoundCall | None:
    """add's call, made later (None where add would return False); a, b and y must stay alive."""
    if not a.shape == b.shape == y.shape:
        raise ValueError(f"a, b and y must have one shape, got {a.shape}, {b.shape} and {y.shape}")
    code = _act(act)
    views = _elementwise((a, b), y)
    if views is None:
        return None
    lib, (pa, as_, pb, bs), ys, py = views
    n = a.shape[0]
    return _bound(lib, "add", pa, pb, py, n, a.size // n, as_, bs, ys, code, float(alpha), float(beta), threads)


def add(
    a: np.ndarray,
    b: np.ndarray,
    y: np.ndarray,
    act: str | None = None,
    alpha: float = 0.0,
    beta: float = 0.0,
    *,
    threads: int = 1,
) -> bool:
    """y = act(a + b) elementwise (act None: the sum), all of one shape; y is a, b, or apart from both (False
    otherwise)."""
    return _made(bind_add(a, b, y, act, alpha, beta, threads=threads), shape=a.shape, act=act, threads=threads)


def _per_channel(values: np.ndarray, floats: int) -> bool:
    """True if values are `floats` C-contiguous, aligned float32s: what C reads a channel vector from."""
    return values.dtype == np.float32 and values.flags.c_contiguous and values.flags.aligned and values.size == floats


def bind_scale_shift(
    x: np.ndarray,
    scale: np.ndarray,
    shift: np.ndarray,
    y: np.ndarray,
    act: str | None = None,
    alpha: float = 0.0,
    beta: float = 0.0,
    *,
    threads: int = 1,
) -> BoundCall | None:
    """scale_shift's call, made later (None where it would return False); every array must stay alive."""
    n, nb, h, w, lanes = x.shape
    if y.shape != x.shape or not (_per_channel(scale, nb * lanes) and _per_channel(shift, nb * lanes)):
        raise ValueError(
            f"y must have x's shape {x.shape} and scale and shift {nb * lanes} C-contiguous float32s, got "
            f"{y.shape}, {scale.dtype} {scale.shape} and {shift.dtype} {shift.shape}"
        )
    code = _act(act)
    views = _elementwise((x,), y)
    if views is None:
        return None
    lib, (px, xs), ys, py = views
    args = (n, nb, h * w, xs, ys, code, float(alpha), float(beta), threads)
    return _bound(lib, "scale_shift", px, _pointer(scale), _pointer(shift), py, *args)


def scale_shift(
    x: np.ndarray,
    scale: np.ndarray,
    shift: np.ndarray,
    y: np.ndarray,
    act: str | None = None,
    alpha: float = 0.0,
    beta: float = 0.0,
    *,
    threads: int = 1,
) -> bool:
    """y = act(x * scale + shift) per channel, rounded after each step; scale and shift are C-contiguous float32
    of CB * L floats (zero past the real channels); y is x or apart from it (False otherwise)."""
    call = bind_scale_shift(x, scale, shift, y, act, alpha, beta, threads=threads)
    return _made(call, shape=x.shape, act=act, threads=threads)


def bind_scale_channels(x: np.ndarray, scale: np.ndarray, y: np.ndarray, *, threads: int = 1) -> BoundCall | None:
    """scale_channels' call, made later (None where it would return False); every array must stay alive."""
    n, nb, h, w, lanes = x.shape
    row = nb * lanes
    if y.shape != x.shape or not (_per_channel(scale, row) or _per_channel(scale, n * row)):
        raise ValueError(
            f"y must have x's shape {x.shape} and scale {row} or {n * row} C-contiguous float32s, got {y.shape} "
            f"and {scale.dtype} {scale.shape}"
        )
    views = _elementwise((x,), y)
    if views is None:
        return None
    lib, (px, xs), ys, py = views
    ss = row if scale.size == n * row and n > 1 else 0
    return _bound(lib, "scale_channels", px, _pointer(scale), py, n, nb, h * w, xs, ys, ss, threads)


def scale_channels(x: np.ndarray, scale: np.ndarray, y: np.ndarray, *, threads: int = 1) -> bool:
    """y = x times a per-(image, channel) scale: C-contiguous float32 of CB * L floats (every image) or N * CB * L
    (one row per image), zero past the real channels; y is x or apart from it (False otherwise)."""
    return _made(bind_scale_channels(x, scale, y, threads=threads), shape=x.shape, threads=threads)


# Room in a dc_step for each kind of argument (kernels/c/dc_graph.c's struct dc_step).
_STEP_ROOM = {"pointer": 5, "integer": 18, "float": 3}


def _step_arguments(call: BoundCall) -> dict[str, list[Any]]:
    """call.args sorted by kind in order, as the dc_step adapters unpack them; ValueError if they do not fit."""
    sorted_args: dict[str, list[Any]] = {kind: [] for kind in _STEP_ROOM}
    for kind, value in zip(ffi.parameter_kinds(call.function), call.args, strict=True):
        sorted_args[kind].append(value)
    for kind, values in sorted_args.items():
        if len(values) > _STEP_ROOM[kind]:
            raise ValueError(f"{call.label} takes {len(values)} {kind} arguments; a dc_step holds {_STEP_ROOM[kind]}")
    return sorted_args


def chain(calls: Sequence[BoundCall], *, lanes: int) -> Callable[[], None] | None:
    """One function that makes `calls` (convolutions and operators, bound) in order in one C call (dc_graph_run),
    or None without a library. The calls were checked when they were bound; their buffers must stay alive and keep
    their shapes while the function may be called. A call C refuses raises RuntimeError, the calls after it not
    made."""
    lib = _library(lanes)
    if lib is None or not calls:
        return None
    table = ffi.structs("dc_step", len(calls))
    for entry, call in zip(table, calls, strict=True):
        entry.run = getattr(lib, f"dc_step_{call.step}")
        if call.step == "conv":
            entry.fn = ffi.cast_void(call.function)
        args = _step_arguments(call)
        for field, kind in (("p", "pointer"), ("a", "integer"), ("f", "float")):
            for i, value in enumerate(args[kind]):
                getattr(entry, field)[i] = value
    held = tuple(calls)  # their arguments own the buffers' pointers the table copied

    def run() -> None:
        failed = lib.dc_graph_run(table, len(held))
        if failed:
            raise RuntimeError(f"{held[failed - 1].label} rejected its arguments (call {failed} of {len(held)})")

    return run


def bind_to_dense(x: np.ndarray, y: np.ndarray, channels: int, *, threads: int = 1) -> BoundCall | None:
    """The call that writes x's first `channels` channels (N, CB, H, W, L) into y (N, channels, H, W), C-contiguous
    float32 (the dense tail's first array), or None where C cannot index x. x and y must stay alive."""
    n, nb, h, w, lanes = x.shape
    if y.shape != (n, channels, h, w) or y.dtype != np.float32 or not y.flags.c_contiguous or not y.flags.writeable:
        raise ValueError(
            f"y must be a writeable C-contiguous float32 array of shape {(n, channels, h, w)}, got {y.shape}"
        )
    xs = _batch_stride(x)
    lib = None if xs is None or np.shares_memory(x, y) else _library(lanes)
    if lib is None:
        return None
    return _bound(lib, "to_dense", _pointer(x), _pointer(y), n, nb, h * w, xs, channels, threads)


def bind_softmax(x: np.ndarray, y: np.ndarray, *, lanes: int) -> BoundCall | None:
    """The call that writes the softmax of each row of x (rows, cols), C-contiguous float32, into y of its shape (y may
    be x), or None without a library (`lanes` picks it). x and y must stay alive."""
    for name, a in (("x", x), ("y", y)):
        if a.ndim != 2 or a.dtype != np.float32 or not a.flags.c_contiguous or a.size == 0:
            raise ValueError(f"{name} must be a non-empty C-contiguous float32 (rows, cols) array, got {a.shape}")
    if y.shape != x.shape or not y.flags.writeable:
        raise ValueError(f"y must be writeable with x's shape {x.shape}, got {y.shape}")
    lib = _library(lanes)
    return None if lib is None else _bound(lib, "softmax", _pointer(x), _pointer(y), *x.shape)


def bind_gemv(
    a: np.ndarray, cols: np.ndarray, bias: np.ndarray | None, y: np.ndarray, *, lanes: int, threads: int = 1
) -> BoundCall | None:
    """gemv's call, made later (None without a library); every array must stay alive."""
    n, k = a.shape
    if cols.shape[0] != k or y.shape != (n, cols.shape[1]):
        raise ValueError(f"a {a.shape} times cols {cols.shape} does not give y {y.shape}")
    arrays = (("a", a), ("cols", cols), ("y", y)) + ((("bias", bias),) if bias is not None else ())
    for name, arr in arrays:
        if arr.dtype != np.float32 or not arr.flags.c_contiguous:
            raise ValueError(f"{name} must be C-contiguous float32, got {arr.dtype} with strides {arr.strides}")
    if bias is not None and bias.shape != (cols.shape[1],):
        raise ValueError(f"bias must have shape ({cols.shape[1]},), got {bias.shape}")
    if not y.flags.writeable or np.shares_memory(y, a) or np.shares_memory(y, cols):
        raise ValueError("y must be writeable and apart from a and cols")
    lib = _library(lanes)
    if lib is None:
        return None
    pointers = (_pointer(a), _pointer(cols), ffi.NULL if bias is None else _pointer(bias), _pointer(y))
    return _bound(lib, "gemv", *pointers, n, k, cols.shape[1], threads)


def gemv(
    a: np.ndarray, cols: np.ndarray, y: np.ndarray, *, lanes: int, threads: int = 1, bias: np.ndarray | None = None
) -> bool:
    """y (N, M) = a (N, K) times cols (K, M) (plus bias (M,) if given), all C-contiguous float32, on the library's
    threads: each owns a run of the output columns and reads its part of the matrix once (dc_graph_gemv); the bits do
    not depend on the thread count. For a few rows of `a` and a matrix bound by memory; `lanes` picks the library.
    False, y untouched, without a library."""
    call = bind_gemv(a, cols, bias, y, lanes=lanes, threads=threads)
    return _made(call, a=a.shape, cols=cols.shape, threads=threads)
