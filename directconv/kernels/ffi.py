"""The one module that talks to cffi (PyNaCl's rule): declaring and loading the C libraries directconv builds, and
turning numpy arrays into the pointers C takes.

Modules above pass numpy arrays and Python numbers and check them before calling here; nothing here checks a
buffer's shape, because only the caller knows the geometry the C code was compiled for.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import cffi
import numpy as np

_ffi = cffi.FFI()
_declared: set[str] = set()
_lock = threading.Lock()


def load(path: Path, declarations: str) -> Any:
    """The library at `path`, with the C functions of `declarations` (C prototypes) callable on it.

    One FFI serves every library, so each distinct declaration text is given to cffi once per process.
    """
    with _lock:
        if declarations not in _declared:
            _ffi.cdef(declarations)
            _declared.add(declarations)
    return _ffi.dlopen(str(path))


def floats(a: np.ndarray, *, writable: bool) -> Any:
    """A `float *` over `a`'s memory (no copy); `writable=True` refuses a read-only array."""
    return _ffi.from_buffer("float[]", a, require_writable=writable)


def doubles(a: np.ndarray) -> Any:
    """A writable `double *` over `a`'s memory (no copy)."""
    return _ffi.from_buffer("double[]", a, require_writable=True)


def float_pointer(a: np.ndarray) -> Any:
    """A `float *` to `a`'s first element, for arrays whose writability the caller has checked."""
    return _ffi.cast("float *", a.ctypes.data)


def ints(values: list[int]) -> Any:
    """A new C `int[]` holding `values` (kept alive by the returned object)."""
    return _ffi.new("int[]", values)


def structs(ctype: str, count: int) -> Any:
    """A new zeroed C array of `count` structs of the declared type `ctype` (kept alive by the returned object)."""
    return _ffi.new(f"{ctype}[]", count)


def int_out() -> Any:
    """A new C `int *` for a function to write one result into (read it back with `[0]`)."""
    return _ffi.new("int *")


def parameter_kinds(function: Any) -> tuple[str, ...]:
    """Each parameter of a cffi function as "pointer", "float" (float or double) or "integer"."""
    kinds = []
    for arg in _ffi.typeof(function).args:
        if arg.kind == "pointer":
            kinds.append("pointer")
        else:
            kinds.append("float" if arg.cname in ("float", "double") else "integer")
    return tuple(kinds)


def cast_void(function: Any) -> Any:
    """A cffi function as a `void *`, for a struct field that holds functions of several types."""
    return _ffi.cast("void *", function)


NULL: Any = _ffi.NULL  # a null pointer argument (an optional buffer left out)
