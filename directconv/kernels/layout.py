"""Conversions between plain tensors and the blocked layouts the kernels use (see codegen for the layouts).

These copy; they run once per network input/output and once per weight tensor, never between layers.
"""

from __future__ import annotations

import numpy as np

# Alignment of every buffer the kernels read or write: a cache line. numpy aligns to 16 bytes only (large arrays
# usually start 16 bytes past a line), so every other 32-byte (AVX2) or every 64-byte (AVX-512) vector load of
# packed weights and outputs may straddle two cache lines; aligned, none does (measured: docs/design.md).
ALIGN = 64


def empty_aligned(shape: tuple[int, ...], *, zero: bool = False) -> np.ndarray:
    """A C-contiguous float32 array of `shape` whose data starts on an ALIGN-byte boundary."""
    count = int(np.prod(shape, dtype=np.int64))
    raw = (np.zeros if zero else np.empty)(count + ALIGN // 4, dtype=np.float32)
    start = (-raw.ctypes.data % ALIGN) // 4
    return raw[start : start + count].reshape(shape)


def blocks(channels: int, lanes: int) -> int:
    return -(-channels // lanes)


def nchw_to_blocked(x: np.ndarray, lanes: int, out: np.ndarray | None = None) -> np.ndarray:
    """(N, C, H, W) -> (N, ceil(C/lanes), H, W, lanes) float32, channels past C zero."""
    n, c, h, w = x.shape
    nb = blocks(c, lanes)
    if out is None:
        out = empty_aligned((n, nb, h, w, lanes))
    full = c // lanes
    if full:
        out[:, :full] = x[:, : full * lanes].reshape(n, full, lanes, h, w).transpose(0, 1, 3, 4, 2)
    if nb > full:
        tail = c - full * lanes
        out[:, full, :, :, :tail] = x[:, full * lanes :].transpose(0, 2, 3, 1)
        out[:, full, :, :, tail:] = 0.0
    return out


def blocked_to_nchw(xb: np.ndarray, channels: int) -> np.ndarray:
    """(N, CB, H, W, lanes) -> (N, channels, H, W) float32, C-contiguous."""
    n, nb, h, w, lanes = xb.shape
    full = xb.transpose(0, 1, 4, 2, 3).reshape(n, nb * lanes, h, w)
    return np.ascontiguousarray(full[:, :channels])


def pack_weights(w: np.ndarray, lanes: int, cob: int) -> np.ndarray:
    """OIHW -> (ceil(C_o/cob), ceil(C_i/lanes), kh, kw, lanes, cob), zero past C_o and C_i."""
    co, ci, kh, kw = w.shape
    nj = blocks(blocks(co, lanes) * lanes, cob)
    nbi = blocks(ci, lanes)
    padded = np.zeros((nj * cob, nbi * lanes, kh, kw), dtype=np.float32)
    padded[:co, :ci] = w
    # (nj, cob, nbi, lanes, kh, kw) -> (nj, nbi, kh, kw, lanes, cob)
    packed = empty_aligned((nj, nbi, kh, kw, lanes, cob))
    packed[...] = padded.reshape(nj, cob, nbi, lanes, kh, kw).transpose(0, 2, 4, 5, 3, 1)
    return packed


def unpack_weights(packed: np.ndarray, co: int, ci: int) -> np.ndarray:
    """The inverse of pack_weights: (nj, nbi, kh, kw, lanes, cob) -> OIHW (co, ci, kh, kw), a new array."""
    nj, nbi, kh, kw, lanes, cob = packed.shape
    full = packed.transpose(0, 5, 1, 4, 2, 3).reshape(nj * cob, nbi * lanes, kh, kw)
    return np.ascontiguousarray(full[:co, :ci])


def pack_bias(bias: np.ndarray | None, co: int, lanes: int, cob: int) -> np.ndarray:
    nj = blocks(blocks(co, lanes) * lanes, cob)
    packed = empty_aligned((nj * cob,), zero=True)
    if bias is not None:
        packed[:co] = bias
    return packed
