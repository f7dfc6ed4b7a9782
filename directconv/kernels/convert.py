"""NCHW <-> blocked conversions in C (kernels/c/dc_layout.c), on the caller's threads.

Faster than numpy's strided copies (docs/design.md). layout.nchw_to_blocked and layout.blocked_to_nchw are the
references: these compute the same arrays bit for bit, and they run instead (with a log line) when there is neither
a C compiler nor a cached build.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

from directconv.core.isa import ISAS, host_isas
from directconv.kernels import compiler, ffi, layout
from directconv.kernels.codegen import c_text

log = logging.getLogger("directconv.cache")

_DECLARATIONS = (
    "int dc_to_blocked(const float *x, float *xb, long n, long c, long hw, int threads);"
    "int dc_from_blocked(const float *xb, float *x, long n, long c, long hw, int threads);"
)
_libraries: dict[int, Any] = {}
_lock = threading.Lock()


def _source(lanes: int) -> str:
    return f"#define DC_LANES {lanes}\n" + c_text("dc_transpose.h") + c_text("dc_layout.c")


def isa_flags(lanes: int) -> tuple[str, ...]:
    """The flags of the best ISA of this host whose vectors hold `lanes` floats, else none: the library runs only
    where kernels of that width run, and with them GCC moves a whole block per instruction (docs/design.md)."""
    for name in host_isas():
        if ISAS[name].lanes == lanes:
            return ISAS[name].flags
    return ()


def _library(lanes: int) -> Any | None:
    """The conversion library for `lanes` (built once per lanes and compiler, then from the disk cache), or None
    when neither a compiler nor a cached build is there."""
    lib = _libraries.get(lanes)
    if lib is None:
        with _lock:
            lib = _libraries.get(lanes)
            if lib is None:
                try:
                    path = compiler.build(_source(lanes), isa_flags(lanes), name="layout")
                except compiler.CompilerNotFoundError as exc:
                    log.info("layout conversions in numpy: %s", exc)
                    return None
                lib = _libraries[lanes] = ffi.load(path, _DECLARATIONS)
    return lib


# Copies of fewer floats than this run on one thread: a second thread costs more to wake than it saves, and on a
# shared host it can be descheduled (kernels.codegen.MIN_PARALLEL_MACS is the kernels' rule).
MIN_PARALLEL_FLOATS = 1 << 16


def _team(threads: int, floats: int) -> int:
    return max(1, threads) if floats >= MIN_PARALLEL_FLOATS else 1


def _pointer(a: np.ndarray) -> Any:
    # Every array here is C-contiguous and writability is checked where it matters; from_buffer rather than a cast
    # of a.ctypes.data, which costs more than a small layer's conversion (docs/design.md, "The Python cost of an
    # NCHW call").
    return ffi.floats(a, writable=False)


def _check_out(out: np.ndarray, shape: tuple[int, ...]) -> None:
    if out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError(
            f"out must be a writeable C-contiguous float32 array of shape {shape}, got "
            f"{out.dtype} {out.shape} (contiguous={out.flags.c_contiguous})"
        )


def to_blocked(x: np.ndarray, lanes: int, *, threads: int = 1, out: np.ndarray | None = None) -> np.ndarray:
    """(N, C, H, W) float32 C-contiguous -> (N, ceil(C/lanes), H, W, lanes), channels past C zero."""
    n, c, h, w = x.shape
    shape = (n, layout.blocks(c, lanes), h, w, lanes)
    if out is None:
        out = layout.empty_aligned(shape)
    else:
        _check_out(out, shape)
    lib = _library(lanes)
    if lib is None or x.size == 0:
        return layout.nchw_to_blocked(x, lanes, out=out)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if lib.dc_to_blocked(_pointer(x), _pointer(out), n, c, h * w, _team(threads, x.size)) != 0:
        raise ValueError(f"dc_to_blocked refused shape {x.shape} with threads={threads}")
    return out


def from_blocked(xb: np.ndarray, channels: int, *, threads: int = 1, out: np.ndarray | None = None) -> np.ndarray:
    """(N, CB, H, W, lanes) float32 C-contiguous -> (N, channels, H, W), the channels past `channels` dropped."""
    n, nb, h, w, lanes = xb.shape
    if not (nb - 1) * lanes < channels <= nb * lanes:
        raise ValueError(
            f"{nb} blocks of {lanes} lanes hold {(nb - 1) * lanes + 1}..{nb * lanes} channels, got {channels}"
        )
    shape = (n, channels, h, w)
    if out is None:
        out = np.empty(shape, dtype=np.float32)
    else:
        _check_out(out, shape)
    lib = _library(lanes)
    if lib is None or not xb.flags.c_contiguous or xb.dtype != np.float32:
        out[...] = layout.blocked_to_nchw(xb, channels)
        return out
    if lib.dc_from_blocked(_pointer(xb), _pointer(out), n, channels, h * w, _team(threads, out.size)) != 0:
        raise ValueError(f"dc_from_blocked refused shape {xb.shape} with threads={threads}")
    return out
