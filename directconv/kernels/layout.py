"""Conversions between plain tensors and the blocked layouts the kernels use (see codegen for the layouts).

These copy; they run once per network input/output and once per weight tensor, never between layers.
"""

from __future__ import annotations

import numpy as np

from directconv.core.shape import LANE_KINDS, ConvShape, input_windows, kernel_kind

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


def weight_shape(shape: ConvShape, lanes: int, cob: int) -> tuple[int, ...]:
    """The packed weights' array shape for `shape` (see pack_weights)."""
    kind = kernel_kind(shape, lanes)
    if kind in LANE_KINDS:
        return (blocks(shape.co, lanes), shape.kh, shape.kw, shape.cig, lanes)
    if kind == "grouped-window":
        windows = input_windows(shape, lanes, cob // lanes)
        return (sum(end - first for first, end in windows), shape.kh, shape.kw, lanes, cob)
    nj = blocks(blocks(shape.cog, lanes) * lanes, cob)
    return (shape.groups * nj, blocks(shape.cig, lanes), shape.kh, shape.kw, lanes, cob)


def bias_length(shape: ConvShape, lanes: int, cob: int) -> int:
    """The packed bias's length: one slot per output channel of every register block, tails included."""
    kind = kernel_kind(shape, lanes)
    if kind in LANE_KINDS:
        return blocks(shape.co, lanes) * lanes
    if kind == "grouped-window":
        return len(input_windows(shape, lanes, cob // lanes)) * cob
    return weight_shape(shape, lanes, cob)[0] * cob


def _shape_of(w: np.ndarray, groups: int) -> ConvShape:
    """A shape with w's channels and taps (the spatial fields do not matter to packing)."""
    co, cig, kh, kw = (int(v) for v in w.shape)
    return ConvShape(ci=cig * groups, co=co, h=kh, w=kw, kh=kh, kw=kw, groups=groups)


def pack_weights(w: np.ndarray, lanes: int, cob: int, groups: int = 1) -> np.ndarray:
    """OIHW weights (C_o, C_i / groups, kh, kw) -> the layout of the kernel that runs them.

    plain and grouped kernels: (groups * ceil(C_o,g / cob), ceil(C_i,g / lanes), kh, kw, lanes, cob), each group's
    register blocks after the previous group's, zero past each group's channels (C_o,g = C_o / groups).
    grouped-window kernels: (sum over register blocks j of their window's input blocks, kh, kw, lanes, cob): block
    j's window (core.shape.input_windows) after block j-1's, as a plain layer's over the window's channels, zero
    where an input channel is not in the output channel's group.
    depthwise and grouped-packed kernels: (ceil(C_o / lanes), kh, kw, C_i / groups, lanes): for output channel
    o = b * lanes + l, element [b, n, m, i, l] is w[o, i, n, m]: one vector per (tap, input channel of the group),
    lane by lane, zero past C_o.
    """
    shape = _shape_of(w, groups)
    packed = empty_aligned(weight_shape(shape, lanes, cob))
    kind = kernel_kind(shape, lanes)
    if kind == "grouped-window":
        _pack_windows(w, shape, lanes, cob, packed)
        return packed
    if kind in LANE_KINDS:
        nbo = packed.shape[0]
        padded = np.zeros((nbo * lanes, shape.cig, shape.kh, shape.kw), dtype=np.float32)
        padded[: shape.co] = w
        # (nbo, lanes, cig, kh, kw) -> (nbo, kh, kw, cig, lanes)
        packed[...] = padded.reshape(nbo, lanes, shape.cig, shape.kh, shape.kw).transpose(0, 3, 4, 2, 1)
        return packed
    nj, nbi = packed.shape[0] // groups, packed.shape[1]
    kh, kw = shape.kh, shape.kw
    padded = np.zeros((groups, nj * cob, nbi * lanes, kh, kw), dtype=np.float32)
    padded[:, : shape.cog, : shape.cig] = w.reshape(groups, shape.cog, shape.cig, kh, kw)
    # (g, nj, cob, nbi, lanes, kh, kw) -> (g, nj, nbi, kh, kw, lanes, cob)
    blocked = padded.reshape(groups, nj, cob, nbi, lanes, kh, kw).transpose(0, 1, 3, 5, 6, 4, 2)
    packed[...] = blocked.reshape(packed.shape)
    return packed


def _pack_windows(w: np.ndarray, shape: ConvShape, lanes: int, cob: int, packed: np.ndarray) -> None:
    """pack_weights of a grouped-window kernel, into `packed`."""
    kh, kw, at = shape.kh, shape.kw, 0
    for j, (first, end) in enumerate(input_windows(shape, lanes, cob // lanes)):
        dense = np.zeros((cob, (end - first) * lanes, kh, kw), dtype=np.float32)
        for o in range(j * cob, min(shape.co, (j + 1) * cob)):
            start = o // shape.cog * shape.cig - first * lanes  # the group's first input channel in the window
            dense[o - j * cob, start : start + shape.cig] = w[o]
        # (cob, blocks, lanes, kh, kw) -> (blocks, kh, kw, lanes, cob)
        packed[at : at + end - first] = dense.reshape(cob, end - first, lanes, kh, kw).transpose(1, 3, 4, 2, 0)
        at += end - first


def _unpack_windows(packed: np.ndarray, shape: ConvShape, lanes: int) -> np.ndarray:
    cob, at = packed.shape[-1], 0
    w = np.empty((shape.co, shape.cig, shape.kh, shape.kw), dtype=np.float32)
    for j, (first, end) in enumerate(input_windows(shape, lanes, cob // lanes)):
        dense = packed[at : at + end - first].transpose(4, 0, 3, 1, 2).reshape(cob, -1, shape.kh, shape.kw)
        for o in range(j * cob, min(shape.co, (j + 1) * cob)):
            start = o // shape.cog * shape.cig - first * lanes
            w[o] = dense[o - j * cob, start : start + shape.cig]
        at += end - first
    return w


def unpack_weights(packed: np.ndarray, co: int, ci: int, groups: int = 1, *, lanes: int) -> np.ndarray:
    """The inverse of pack_weights: packed -> OIHW (co, ci / groups, kh, kw), a new array."""
    cig = ci // groups
    kh, kw = packed.shape[1:3] if packed.ndim == 5 else packed.shape[2:4]  # taps: see pack_weights' layouts
    shape = ConvShape(ci=ci, co=co, h=kh, w=kw, kh=kh, kw=kw, groups=groups)
    if kernel_kind(shape, lanes) == "grouped-window":
        return _unpack_windows(packed, shape, lanes)
    if packed.ndim == 5:  # depthwise and grouped-packed
        nbo, kh, kw, _, lanes = packed.shape
        full = packed.transpose(0, 4, 3, 1, 2).reshape(nbo * lanes, cig, kh, kw)
        return np.ascontiguousarray(full[:co])
    gnj, nbi, kh, kw, lanes, cob = packed.shape
    nj = gnj // groups
    full = packed.reshape(groups, nj, nbi, kh, kw, lanes, cob).transpose(0, 1, 6, 2, 5, 3, 4)
    full = full.reshape(groups, nj * cob, nbi * lanes, kh, kw)[:, : co // groups, :cig]
    return np.ascontiguousarray(full.reshape(co, cig, kh, kw))


def pack_bias(bias: np.ndarray | None, shape: ConvShape, lanes: int, cob: int) -> np.ndarray:
    """Bias in the order of the kernel's output blocks (see bias_length), zero in the tails."""
    packed = empty_aligned((bias_length(shape, lanes, cob),), zero=True)
    if bias is None:
        return packed
    if shape.groups == 1 or kernel_kind(shape, lanes) in (*LANE_KINDS, "grouped-window"):
        packed[: shape.co] = bias
        return packed
    per_group = packed.reshape(shape.groups, -1)
    per_group[:, : shape.cog] = np.asarray(bias).reshape(shape.groups, shape.cog)
    return packed
