"""directconv.MaxPool2d: 2-D max-pooling on blocked activations, so a network never leaves the blocked layout.

Pooling treats every channel alike, so it runs on (N, C/lanes, H, W, lanes) data as it is, in C on the caller's
threads (the graph operators' pool, kernels/c/dc_graph.c: one output row of one channel block per task; why C:
docs/design.md). The numpy reference, used without a C compiler and matched bit for bit: for each of the kernel's
taps, one strided view of the input is folded into the output with np.maximum, a later tap winning a tie. Padding
acts as -infinity: a tap only touches the outputs whose window sees it inside the input, so nothing is padded or
copied.
The zero channels past C stay zero (each window holds at least one real element, see `check_pool`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from directconv.kernels import graph_ops, layout
from directconv.nn import api

__all__ = ["MaxPool2d", "check_pool", "pool_output_size"]


def _positive(name: str, value: Any, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def check_pool(kernel: Any, stride: Any, padding: Any) -> tuple[int, int, int]:
    """(kernel, stride, padding) as ints, or ValueError saying which one is wrong and why.

    padding <= kernel // 2 (torch's rule too) guarantees that every window holds at least one element of the
    input, so no output is -infinity.
    """
    k = _positive("kernel", kernel, 1)
    s = _positive("stride", stride, 1)
    p = _positive("padding", padding, 0)
    if p > k // 2:
        raise ValueError(
            f"padding must be at most kernel // 2 = {k // 2} (else a window can lie wholly in the padding), "
            f"got padding={p} for kernel={k}"
        )
    return k, s, p


def pool_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length along one axis, rounded down; ValueError if the window does not fit the padded input."""
    if kernel > size + 2 * padding:
        raise ValueError(
            f"pooling window {kernel} is larger than the padded input {size + 2 * padding} "
            f"(input {size}, padding {padding} on each side)"
        )
    return (size + 2 * padding - kernel) // stride + 1


def _tap_range(tap: int, size_in: int, size_out: int, stride: int, padding: int) -> tuple[int, int, int]:
    """For kernel offset `tap`: the outputs [lo, hi) whose window sees it inside the input, and the input index
    that output `lo` reads (input index of output o is o*stride - padding + tap)."""
    lo = max(0, -(-(padding - tap) // stride))
    hi = min(size_out, (size_in - 1 + padding - tap) // stride + 1)
    return lo, hi, lo * stride - padding + tap


class MaxPool2d:
    """Max-pooling with a square `kernel`, `stride` and zero-or-more `padding` (acting as -infinity) per side.

    Call it on a BlockedTensor; `out=` writes into a preallocated BlockedTensor of the output shape and allocates
    no activation memory (the numpy fallback's iterator over strided views takes a scratch buffer of at most 3 *
    np.getbufsize() floats per np.maximum, whatever the size of the data). `threads`: how many run the C pool.
    Stateless, hence thread-safe.
    """

    def __init__(self, kernel: int, stride: int | None = None, padding: int = 0) -> None:
        self.kernel, self.stride, self.padding = check_pool(kernel, kernel if stride is None else stride, padding)

    def __repr__(self) -> str:
        return f"MaxPool2d(kernel={self.kernel}, stride={self.stride}, padding={self.padding})"

    @property
    def window(self) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int, int, int], tuple[int, int]]:
        """(kernel, stride, pads, dilation) as the graph operators' max-pool takes them (kernels/graph_ops.py)."""
        k, s, p = self.kernel, self.stride, self.padding
        return (k, k), (s, s), (p, p, p, p), (1, 1)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        k, s, p = self.kernel, self.stride, self.padding
        return pool_output_size(height, k, s, p), pool_output_size(width, k, s, p)

    def output_shape(self, x: api.BlockedTensor) -> tuple[int, int, int, int, int]:
        """The shape of the output's data for input `x`."""
        ho, wo = self.output_size(x.height, x.width)
        return x.batch, int(x.data.shape[1]), ho, wo, x.lanes

    def __call__(
        self, x: api.BlockedTensor, *, out: api.BlockedTensor | None = None, threads: int = 1
    ) -> api.BlockedTensor:
        if not isinstance(x, api.BlockedTensor):
            raise TypeError(f"MaxPool2d runs on a BlockedTensor (see directconv.to_blocked), got {type(x).__name__}")
        expected = self.output_shape(x)
        if out is None:
            out = api.BlockedTensor(layout.empty_aligned(expected), x.channels)
        elif not isinstance(out, api.BlockedTensor) or out.data.shape != expected or out.channels != x.channels:
            got = (out.data.shape, out.channels) if isinstance(out, api.BlockedTensor) else type(out).__name__
            raise ValueError(f"out must be a BlockedTensor of shape {expected} with {x.channels} channels, got {got}")
        elif np.shares_memory(out.data, x.data):
            raise ValueError("out must not overlap the input x")
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise ValueError(f"threads must be a positive int, got {threads!r}")
        if not out.data.flags.writeable:
            raise ValueError("the max-pool's output buffer is read-only")
        if not graph_ops.max_pool(x.data, out.data, *self.window, threads=threads):
            self._pool(x.data, out.data)
        return out

    def _pool(self, x: np.ndarray, y: np.ndarray) -> None:
        """The numpy reference, and the fallback without a C compiler (kernels/c/dc_graph.c's max-pool computes the
        same): the taps folded in row-major order, a later tap winning a tie (-0 against +0) and a NaN passing on."""
        k, s, p = self.kernel, self.stride, self.padding
        h, w, ho, wo = x.shape[2], x.shape[3], y.shape[2], y.shape[3]
        # Outputs some tap never reaches would keep -inf; check_pool rules that out, so filling once is enough.
        y.fill(-np.inf)
        for i in range(k):
            r_lo, r_hi, r0 = _tap_range(i, h, ho, s, p)
            if r_lo >= r_hi:
                continue
            for j in range(k):
                c_lo, c_hi, c0 = _tap_range(j, w, wo, s, p)
                if c_lo >= c_hi:
                    continue
                rows = slice(r0, r0 + (r_hi - r_lo - 1) * s + 1, s)
                cols = slice(c0, c0 + (c_hi - c_lo - 1) * s + 1, s)
                target = y[:, :, r_lo:r_hi, c_lo:c_hi]
                np.maximum(x[:, :, rows, cols], target, out=target)  # on a tie numpy returns its first operand
