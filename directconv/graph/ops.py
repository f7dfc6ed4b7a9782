"""The non-convolution ONNX operators on blocked activations, with onnxruntime's semantics.

Every tensor is a float32 array in the blocked layout (N, ceil(C/L), H, W, L), L the vector lanes (any L >= 1):
channel c lives at [:, c // L, :, :, c % L]. The lanes past C in the last block ("padded lanes") hold unspecified
but finite values; no operator here reads them into a real channel, and none makes them inf or NaN for finite
input. Each function writes into a preallocated `out` (a view into an activation arena: it is written, never
rebound) and returns None. They keep no state and precompute nothing, so two threads may run them on different
arrays at once. Argument errors raise ValueError naming what was expected and what was given.

Every operator runs in C first (kernels/graph_ops.py: one pass, on `threads` threads; LRN up to 4096 channels and a
window of 65) when a compiler or a cached build is there and the arrays are laid out as C indexes them: each image
C-contiguous, images any distance apart, as the arena's slices buffer[:, first:first + CB] are. The C results are
the numpy ones below bit for bit, except global average pooling's float64 sums (summed in another order) and sigmoid
and SiLU (a polynomial exp), within 1e-6 relative. The numpy versions (the private _numpy_* functions, which take
checked arguments) run otherwise: their loops run over kernel taps or channel runs, never over pixels, each step one
numpy call on a strided view, and their temporaries are at most one input-sized array (LRN's squares,
channel_shuffle's gather, an in-place SiLU's or HardSwish's gate).
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from directconv.kernels import graph_ops

__all__ = [
    "ACTIVATIONS",
    "activation",
    "add",
    "average_pool",
    "channel_shuffle",
    "channel_vector",
    "copy_channels",
    "global_average_pool",
    "lrn",
    "max_pool",
    "pool_output_size",
    "scale_channels",
    "scale_shift",
]

ACTIVATIONS = ("relu", "clip", "leaky_relu", "sigmoid", "hard_sigmoid", "hard_swish", "silu")

# onnxruntime's MaxPool gives a window that holds no input element (possible with dilation) the lowest float,
# not -inf; matching it also keeps such outputs finite.
_LOWEST = float(np.finfo(np.float32).min)

_LAYOUT = "(N, ceil(C/lanes), H, W, lanes)"


def _integer(name: str, value: Any, minimum: int) -> int:
    try:
        number = operator.index(value)
    except TypeError:
        number = None
    if number is None or isinstance(value, bool) or number < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return number


def _integers(name: str, values: Any, count: int, minimum: int) -> tuple[int, ...]:
    if not isinstance(values, tuple | list) or len(values) != count:
        raise ValueError(f"{name} must be {count} ints >= {minimum}, got {values!r}")
    return tuple(_integer(f"{name}[{i}]", v, minimum) for i, v in enumerate(values))


def _blocked(name: str, a: Any) -> tuple[int, ...]:
    """a's shape, or ValueError unless a is a 5-D float32 array."""
    if not isinstance(a, np.ndarray) or a.dtype != np.float32 or a.ndim != 5:
        got = f"a {a.dtype} array of shape {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
        raise ValueError(f"{name} must be a float32 array {_LAYOUT}, got {got}")
    return tuple(int(v) for v in a.shape)


def _output(out: Any, expected: tuple[int, ...]) -> None:
    if _blocked("out", out) != expected:
        raise ValueError(f"out must have shape {expected}, got {out.shape}")
    if not out.flags.writeable:
        raise ValueError("out must be writeable, got a read-only array")


def _disjoint(x: np.ndarray, out: np.ndarray) -> None:
    if np.shares_memory(x, out):
        raise ValueError("out must not overlap the input x (this operator reads x after writing out)")


def _in_place(x: np.ndarray, out: np.ndarray) -> bool:
    """True if out is x's memory element for element; ValueError if the two overlap otherwise."""
    if x.__array_interface__["data"][0] == out.__array_interface__["data"][0] and x.strides == out.strides:
        return True
    if np.shares_memory(x, out):
        raise ValueError("out must be x itself (in place) or not overlap x, got a partial overlap")
    return False


def _channel_count(name: str, channels: Any, blocks: int, lanes: int) -> int:
    c = _integer(name, channels, 1)
    if not (blocks - 1) * lanes < c <= blocks * lanes:
        raise ValueError(
            f"{name} must be in [{(blocks - 1) * lanes + 1}, {blocks * lanes}] for {blocks} blocks of {lanes} "
            f"lanes, got {c}"
        )
    return c


def _padded_lanes(a: np.ndarray, channels: int) -> np.ndarray:
    """The view of a's lanes past `channels` (empty when the last block is full)."""
    return a[:, -1, :, :, channels - (a.shape[1] - 1) * a.shape[4] :]


def _per_channel(name: str, values: Any, rows: tuple[int, ...], blocks: int, lanes: int) -> np.ndarray:
    """values of shape rows + (C,) as float32 of shape (rows or 1, blocks, 1, 1, lanes), zero past C."""
    if not isinstance(values, np.ndarray) or not np.issubdtype(values.dtype, np.floating):
        got = f"a {values.dtype} array" if isinstance(values, np.ndarray) else type(values).__name__
        raise ValueError(f"{name} must be a float array, got {got}")
    if values.shape[:-1] != rows or values.ndim != len(rows) + 1:
        raise ValueError(f"{name} must have shape {rows + ('C',)}, got {values.shape}")
    _channel_count(f"{name}'s channel count", values.shape[-1], blocks, lanes)
    padded = np.zeros((rows[0] if rows else 1, blocks * lanes), dtype=np.float32)
    padded[:, : values.shape[-1]] = values.reshape(padded.shape[0], -1)
    return padded.reshape(-1, blocks, 1, 1, lanes)


def channel_vector(values: np.ndarray, blocks: int, lanes: int) -> np.ndarray:
    """A (C,) per-channel constant (scale_shift's scale or shift) as the C operators read it: blocks * lanes
    C-contiguous float32s, zero past C."""
    return _per_channel("values", values, (), blocks, lanes).reshape(-1)


def _channel_runs(lanes: int, src: int, dst: int, count: int) -> list[tuple[tuple[slice, slice], tuple[slice, slice]]]:
    """Channels [src, src + count) and [dst, dst + count) as pairs of (blocks, lanes) slices, source first.

    At most six pairs whatever the count: the source's head block, full blocks and tail block, each split where
    its lanes cross into the destination's next block.
    """
    first, head = divmod(src, lanes)
    last, tail = divmod(src + count, lanes)
    if first == last:
        runs = [(first, first + 1, head, tail)]
    else:
        middle = first + (head > 0)
        runs = [(first, first + 1, head, lanes)] if head else []
        runs += [(middle, last, 0, lanes)] if middle < last else []
        runs += [(last, last + 1, 0, tail)] if tail else []
    shift_blocks, shift_lanes = divmod(dst - src, lanes)
    pairs = []
    for b0, b1, l0, l1 in runs:
        # Source lanes below `split` stay in block b + shift_blocks; the rest wrap into the block after it.
        split = min(max(lanes - shift_lanes, l0), l1)
        for lo, hi, carry in ((l0, split, 0), (split, l1, 1)):
            if lo < hi:
                to = b0 + shift_blocks + carry
                lane = shift_lanes - carry * lanes
                pairs.append(((slice(b0, b1), slice(lo, hi)), (slice(to, to + b1 - b0), slice(lo + lane, hi + lane))))
    return pairs


def _length(size: int, kernel: int, stride: int, pad_begin: int, pad_end: int, dilation: int, ceil_mode: bool) -> int:
    """pool_output_size's rule, unchecked: below 1 where no window fits."""
    span = size + pad_begin + pad_end - dilation * (kernel - 1) - 1
    if not ceil_mode:
        return span // stride + 1
    length = -(-span // stride) + 1
    return length - 1 if (length - 1) * stride >= size + pad_begin else length


def pool_output_size(
    size: int, kernel: int, stride: int, pad_begin: int, pad_end: int, dilation: int, ceil_mode: bool
) -> int:
    """ONNX's (and onnxruntime's) pooling output length along one axis.

    floor or ceil of (size + pads - window) / stride, plus one, where window = dilation * (kernel - 1) + 1; with
    ceil_mode, a last window that would start past the input's end (in the right padding) is dropped. ValueError
    if that leaves no output (onnxruntime returns an empty tensor there).
    """
    checks = (("size", size, 1), ("kernel", kernel, 1), ("stride", stride, 1), ("dilation", dilation, 1))
    for name, value, minimum in (*checks, ("pad_begin", pad_begin, 0), ("pad_end", pad_end, 0)):
        _integer(name, value, minimum)
    length = _length(size, kernel, stride, pad_begin, pad_end, dilation, ceil_mode)
    if length < 1:
        raise ValueError(
            f"the pooling window ({kernel} taps, dilation {dilation}) does not fit the input of {size} padded by "
            f"{pad_begin} + {pad_end}: no output"
        )
    return length


def _pool_arguments(
    x: Any, out: Any, kernel: Any, stride: Any, pads: Any, dilation: Any
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(kernel, stride, pads, dilation) as ints after checking x, out and every argument."""
    shape = _blocked("x", x)
    k = _integers("kernel", kernel, 2, 1)
    s = _integers("stride", stride, 2, 1)
    p = _integers("pads", pads, 4, 0)
    d = _integers("dilation", dilation, 2, 1)
    if any(p[i] >= k[i % 2] for i in range(4)):
        # onnxruntime refuses these too; they are what lets every average window hold an input element.
        raise ValueError(f"each pad must be smaller than the kernel along its axis: pads {p}, kernel {k}")
    sizes = []
    for axis in range(2):
        args = (shape[2 + axis], k[axis], s[axis], p[axis], p[axis + 2], d[axis])
        # Ceil mode has the most windows (ValueError if even it has none); floor mode may have none.
        longest = pool_output_size(*args, True)
        sizes.append(sorted(v for v in {longest, _length(*args, False)} if v >= 1))
    out_shape = _blocked("out", out)
    if out_shape[:2] != shape[:2] or out_shape[4] != shape[4] or any(out_shape[2 + a] not in sizes[a] for a in (0, 1)):
        raise ValueError(
            f"out must have shape {shape[:2] + ('Ho', 'Wo', shape[4])} with Ho in {sizes[0]} and Wo in {sizes[1]} "
            f"(floor and ceil mode), got {out_shape}"
        )
    if not out.flags.writeable:
        raise ValueError("out must be writeable, got a read-only array")
    _disjoint(x, out)
    return k, s, p, d


def _axis_taps(size: int, length: int, kernel: int, stride: int, pad: int, dilation: int) -> list[tuple[slice, slice]]:
    """For each kernel tap along one axis that sees the input: (the outputs it reaches, the inputs they read).

    Output o's tap t reads input o * stride + t * dilation - pad; the outputs reading inside [0, size) form a
    run, and so do the inputs they read, with step `stride`.
    """
    taps = []
    for tap in range(kernel):
        offset = tap * dilation - pad
        lo = max(0, -(offset // stride))
        hi = min(length, (size - 1 - offset) // stride + 1)
        if lo < hi:
            start = lo * stride + offset
            taps.append((slice(lo, hi), slice(start, start + (hi - lo - 1) * stride + 1, stride)))
    return taps


def _fold(
    x: np.ndarray, out: np.ndarray, combine: np.ufunc, rows: list[tuple[slice, slice]], cols: list[tuple[slice, slice]]
) -> None:
    """out = combine(out, tap's view of x) for every tap, row-major over the kernel."""
    for out_rows, in_rows in rows:
        for out_cols, in_cols in cols:
            target = out[:, :, out_rows, out_cols]
            combine(target, x[:, :, in_rows, in_cols], out=target)


def max_pool(
    x: np.ndarray,
    out: np.ndarray,
    *,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    pads: tuple[int, int, int, int],
    dilation: tuple[int, int] = (1, 1),
    threads: int = 1,
) -> None:
    """out = ONNX MaxPool of x; pads are (top, left, bottom, right) and act as -inf.

    out's height and width choose floor or ceil mode (see pool_output_size; ValueError for any other size). A
    window holding no input element (only with dilation) gives the lowest float32, as in onnxruntime; NaN
    propagates. out must not overlap x.
    """
    k, s, p, d = _pool_arguments(x, out, kernel, stride, pads, dilation)
    if not graph_ops.max_pool(x, out, k, s, p, d, threads=_integer("threads", threads, 1)):
        _numpy_max_pool(x, out, k, s, p, d)


def _numpy_max_pool(
    x: np.ndarray, out: np.ndarray, k: tuple[int, ...], s: tuple[int, ...], p: tuple[int, ...], d: tuple[int, ...]
) -> None:
    """max_pool in numpy, on checked arguments: -inf, then np.maximum with each tap's view, row-major."""
    h, w, ho, wo = x.shape[2], x.shape[3], out.shape[2], out.shape[3]
    rows = _axis_taps(h, ho, k[0], s[0], p[0], d[0])
    cols = _axis_taps(w, wo, k[1], s[1], p[1], d[1])
    out.fill(-np.inf)
    _fold(x, out, np.maximum, rows, cols)
    for axis, taps, length in ((2, rows, ho), (3, cols, wo)):
        # A window is empty exactly when its row or its column meets no input along that axis.
        seen = np.zeros(length, dtype=bool)
        for reached, _ in taps:
            seen[reached] = True
        if not seen.all():
            out[(slice(None),) * axis + (~seen,)] = _LOWEST


def _divisors(size: int, length: int, kernel: int, stride: int, pads: tuple[int, int], with_pads: bool) -> np.ndarray:
    """How many elements each output's window counts along one axis: those inside the input, or with_pads those
    inside the padded input (onnxruntime clips a ceil-mode window that runs past the end padding)."""
    start = np.arange(length) * stride - pads[0]
    if with_pads:
        return np.minimum(start + kernel, size + pads[1]) - start
    return np.minimum(start + kernel, size) - np.maximum(start, 0)


def average_pool(
    x: np.ndarray,
    out: np.ndarray,
    *,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    pads: tuple[int, int, int, int],
    count_include_pad: bool,
    threads: int = 1,
) -> None:
    """out = ONNX AveragePool of x; pads are (top, left, bottom, right), zeros when count_include_pad.

    out's height and width choose floor or ceil mode (see pool_output_size). The divisor is the number of window
    elements inside the input, or with count_include_pad inside the padded input: a ceil-mode window running past
    the end padding is not divided by the full kernel (onnxruntime's rule). out must not overlap x.
    """
    k, s, p, _ = _pool_arguments(x, out, kernel, stride, pads, (1, 1))
    include = bool(count_include_pad)
    if not graph_ops.average_pool(x, out, k, s, p, include, threads=_integer("threads", threads, 1)):
        _numpy_average_pool(x, out, k, s, p, include)


def _numpy_average_pool(
    x: np.ndarray, out: np.ndarray, k: tuple[int, ...], s: tuple[int, ...], p: tuple[int, ...], include: bool
) -> None:
    """average_pool in numpy, on checked arguments: the float32 sum of the taps' views, row-major, over the divisor."""
    h, w, ho, wo = x.shape[2], x.shape[3], out.shape[2], out.shape[3]
    out.fill(0.0)
    _fold(x, out, np.add, _axis_taps(h, ho, k[0], s[0], p[0], 1), _axis_taps(w, wo, k[1], s[1], p[1], 1))
    counts = np.multiply.outer(
        _divisors(h, ho, k[0], s[0], (p[0], p[2]), include),
        _divisors(w, wo, k[1], s[1], (p[1], p[3]), include),
    )
    np.divide(out, counts.astype(np.float32)[:, :, None], out=out)


def global_average_pool(x: np.ndarray, out: np.ndarray, *, threads: int = 1) -> None:
    """out (N, CB, 1, 1, L) = the mean of x over height and width, summed in float64."""
    n, nb, h, w, lanes = _blocked("x", x)
    _output(out, (n, nb, 1, 1, lanes))
    if not graph_ops.global_average_pool(x, out, threads=_integer("threads", threads, 1)):
        _numpy_global_average_pool(x, out)


def _numpy_global_average_pool(x: np.ndarray, out: np.ndarray) -> None:
    """global_average_pool in numpy, on checked arguments."""
    # float64 sums: a float32 running sum over a large image loses digits onnxruntime keeps.
    out[:, :, 0, 0, :] = x.sum(axis=(2, 3), dtype=np.float64) / (x.shape[2] * x.shape[3])


def lrn(
    x: np.ndarray,
    out: np.ndarray,
    *,
    channels: int,
    size: int,
    alpha: float,
    beta: float,
    bias: float,
    threads: int = 1,
) -> None:
    """out = ONNX LRN of x: x / (bias + alpha / size * sum of x^2 over the channel window) ** beta.

    The window of channel c is [c - floor((size - 1) / 2), c + ceil((size - 1) / 2)] clipped to the C = `channels`
    real channels, across block boundaries. out's padded lanes get x's. Takes one x-sized temporary (the squares);
    out must not overlap x.
    """
    shape = _blocked("x", x)
    _output(out, shape)
    c = _channel_count("channels", channels, shape[1], shape[4])
    n = _integer("size", size, 1)
    _disjoint(x, out)
    if not graph_ops.lrn(x, out, c, n, alpha, beta, bias, threads=_integer("threads", threads, 1)):
        _numpy_lrn(x, out, c, n, alpha, beta, bias)


def _numpy_lrn(x: np.ndarray, out: np.ndarray, c: int, n: int, alpha: float, beta: float, bias: float) -> None:
    """lrn in numpy, on checked arguments."""
    lanes = x.shape[4]
    # Only real channels are squared: a large finite padded lane could overflow, and must not be summed anyway.
    squares = np.empty_like(x)
    _padded_lanes(squares, c).fill(0.0)
    for (blocks, real), _ in _channel_runs(lanes, 0, 0, c):
        np.square(x[:, blocks, :, :, real], out=squares[:, blocks, :, :, real])
    np.copyto(out, squares)
    for shift in range(-((n - 1) // 2), n // 2 + 1):
        if shift == 0 or abs(shift) >= c:
            continue
        # Output channels [max(0, -shift), min(C, C - shift)) add the squares `shift` channels away.
        start = max(0, shift)
        for (src_blocks, src_lanes), (dst_blocks, dst_lanes) in _channel_runs(
            lanes, start, start - shift, c - abs(shift)
        ):
            target = out[:, dst_blocks, :, :, dst_lanes]
            np.add(target, squares[:, src_blocks, :, :, src_lanes], out=target)
    np.multiply(out, float(alpha) / n, out=out)
    np.add(out, float(bias), out=out)
    # bias may be 0, and 0 ** -beta is inf: a base of 1 keeps the padded lanes finite (they end as x's).
    _padded_lanes(out, c).fill(1.0)
    np.power(out, -float(beta), out=out)
    np.multiply(out, x, out=out)


def _logistic_denominator(x: np.ndarray, out: np.ndarray) -> None:
    """out = 1 + exp(-x): inf where exp overflows (x < -88), which a division turns into the exact limit 0."""
    np.negative(x, out=out)
    with np.errstate(over="ignore", under="ignore"):
        np.exp(out, out=out)
    np.add(out, 1.0, out=out)


def _activation_kind(name: str, kind: Any, optional: bool) -> None:
    if not (kind in ACTIVATIONS or (optional and kind is None)):
        raise ValueError(f"{name} must be one of {', '.join(ACTIVATIONS)}{' or None' * optional}, got {kind!r}")


def activation(
    x: np.ndarray, out: np.ndarray, kind: str, alpha: float = 0.0, beta: float = 0.0, *, threads: int = 1
) -> None:
    """out = the elementwise activation `kind` of x; out may be x itself (in place).

    relu: max(x, 0). clip: min(max(x, alpha), beta) (beta when alpha > beta, as ONNX Clip). leaky_relu: x, or
    alpha * x where x < 0. sigmoid: 1 / (1 + exp(-x)), with no warning and no inf for any x. hard_sigmoid:
    max(0, min(1, alpha * x + beta)). hard_swish: x * max(0, min(1, x / 6 + 0.5)). silu: x * sigmoid(x), computed
    as x / (1 + exp(-x)). In place, numpy's hard_swish and silu take one x-sized temporary, leaky_relu a boolean
    mask.
    """
    _activation_kind("kind", kind, False)
    _output(out, _blocked("x", x))
    _in_place(x, out)
    t = _integer("threads", threads, 1)
    # numpy's exp is vectorized for the host's widest ISA, the library's (built for any x86) is not: on one thread
    # numpy's sigmoid is the faster (docs/design.md, "Where a graph's time went").
    numpy_first = kind in ("sigmoid", "silu") and t == 1
    if numpy_first or not graph_ops.activation(x, out, kind, float(alpha), float(beta), threads=t):
        _numpy_activation(x, out, kind, alpha, beta)


def _numpy_activation(x: np.ndarray, out: np.ndarray, kind: str, alpha: float, beta: float) -> None:
    """activation in numpy, on checked arguments (out is x or apart from it)."""
    in_place = _in_place(x, out)
    a, b = float(alpha), float(beta)
    if kind == "relu":
        np.maximum(x, 0.0, out=out)
    elif kind == "clip":
        np.minimum(np.maximum(x, a, out=out), b, out=out)
    elif kind == "leaky_relu":
        if not in_place:
            np.copyto(out, x)
        np.multiply(out, a, out=out, where=out < 0)
    elif kind == "sigmoid":
        _logistic_denominator(x, out)
        np.divide(1.0, out, out=out)
    elif kind == "hard_sigmoid":
        np.multiply(x, a, out=out)
        np.add(out, b, out=out)
        np.clip(out, 0.0, 1.0, out=out)
    elif kind == "silu":
        denominator = np.empty_like(x) if in_place else out
        _logistic_denominator(x, denominator)
        np.divide(x, denominator, out=out)
    else:
        gate = np.empty_like(x) if in_place else out
        np.multiply(x, np.float32(1 / 6), out=gate)
        np.add(gate, 0.5, out=gate)
        np.clip(gate, 0.0, 1.0, out=gate)
        np.multiply(x, gate, out=out)


def add(
    a: np.ndarray,
    b: np.ndarray,
    out: np.ndarray,
    *,
    act: str | None = None,
    alpha: float = 0.0,
    beta: float = 0.0,
    threads: int = 1,
) -> None:
    """out = act(a + b) elementwise (see activation; None: the sum), all of one shape; out may be a or b."""
    shape = _blocked("a", a)
    if _blocked("b", b) != shape:
        raise ValueError(f"b must have a's shape {shape}, got {b.shape}")
    _output(out, shape)
    _activation_kind("act", act, True)
    t = _integer("threads", threads, 1)
    if not graph_ops.add(a, b, out, act, float(alpha), float(beta), threads=t):
        np.add(a, b, out=out)
        if act is not None:
            _numpy_activation(out, out, act, alpha, beta)


def scale_channels(x: np.ndarray, scale: np.ndarray, out: np.ndarray, *, threads: int = 1) -> None:
    """out = x times a per-(image, channel) scale: ONNX Mul of x (N, C, H, W) by scale (N, C, 1, 1).

    scale is (N, C) or (C,) (the same for every image), any float dtype (rounded to float32 first); C sets the real
    channels, and the padded lanes are multiplied by zero. out may be x itself.
    """
    shape = _blocked("x", x)
    _output(out, shape)
    if isinstance(scale, np.ndarray) and scale.ndim not in (1, 2):
        raise ValueError(f"scale must have shape ({shape[0]}, C) or (C,), got {scale.shape}")
    rows = (shape[0],) if isinstance(scale, np.ndarray) and scale.ndim == 2 else ()
    s = _per_channel("scale", scale, rows, shape[1], shape[4])
    if not graph_ops.scale_channels(x, s, out, threads=_integer("threads", threads, 1)):
        np.multiply(x, s, out=out)


def scale_shift(
    x: np.ndarray,
    scale: np.ndarray,
    shift: np.ndarray,
    out: np.ndarray,
    *,
    act: str | None = None,
    alpha: float = 0.0,
    beta: float = 0.0,
    threads: int = 1,
) -> None:
    """out = act(x * scale + shift) per channel, rounded after each step (ONNX Mul then Add by (C, 1, 1) constants,
    or a BatchNormalization folded into them, then the activation `act`: see activation; None: none).

    scale and shift are (C,), any float dtype (rounded to float32 first); the padded lanes become act(0). out may
    be x itself.
    """
    shape = _blocked("x", x)
    _output(out, shape)
    s = _per_channel("scale", scale, (), shape[1], shape[4])
    t = _per_channel("shift", shift, (), shape[1], shape[4])
    if shift.shape != scale.shape:
        raise ValueError(f"shift must have scale's shape {scale.shape}, got {shift.shape}")
    _activation_kind("act", act, True)
    if not graph_ops.scale_shift(x, s, t, out, act, float(alpha), float(beta), threads=_integer("threads", threads, 1)):
        _numpy_scale_shift(x, s, t, out, act, alpha, beta)


def _numpy_scale_shift(
    x: np.ndarray, s: np.ndarray, t: np.ndarray, out: np.ndarray, act: str | None, alpha: float, beta: float
) -> None:
    """scale_shift in numpy, on checked arguments: s and t (1, CB, 1, 1, L), zero past the real channels."""
    np.multiply(x, s, out=out)
    np.add(out, t, out=out)
    if act is not None:
        _numpy_activation(out, out, act, alpha, beta)


def channel_shuffle(x: np.ndarray, out: np.ndarray, *, channels: int, groups: int, threads: int = 1) -> None:
    """out = ShuffleNet's channel shuffle of x: Reshape (N, g, C/g, H, W), Transpose (0, 2, 1, 3, 4), Reshape back.

    Output channel k * g + i is input channel i * (C / g) + k, C = `channels` (a multiple of `groups`, not
    necessarily of the lanes). out's padded lanes are set to zero. numpy's is one gather, through an x-sized
    temporary; out must not overlap x.
    """
    shape = _blocked("x", x)
    _output(out, shape)
    c = _channel_count("channels", channels, shape[1], shape[4])
    g = _integer("groups", groups, 1)
    if c % g:
        raise ValueError(f"channels must be a multiple of groups, got {c} channels in {g} groups")
    _disjoint(x, out)
    if not graph_ops.channel_shuffle(x, out, c, g, threads=_integer("threads", threads, 1)):
        _numpy_channel_shuffle(x, out, c, g)


def _numpy_channel_shuffle(x: np.ndarray, out: np.ndarray, c: int, g: int) -> None:
    """channel_shuffle in numpy, on checked arguments."""
    lanes = x.shape[4]
    target = np.arange(c)
    k, i = np.divmod(target, g)
    source = i * (c // g) + k
    # (N, CB, L, H, W) views: adjacent block and lane indices make numpy move whole channel planes, block by block.
    planes = out.transpose(0, 1, 4, 2, 3)
    planes[:, target // lanes, target % lanes] = x.transpose(0, 1, 4, 2, 3)[:, source // lanes, source % lanes]
    _padded_lanes(out, c).fill(0.0)


def copy_channels(x: np.ndarray, out: np.ndarray, offset: int, channels: int, *, threads: int = 1) -> None:
    """out's channels [offset, offset + channels) = x's channels [0, channels): one input of a Concat on channels.

    Leaves the rest of out, padded lanes included, untouched; x's padded lanes are never read. Any offset, aligned
    to the lanes or not; numpy's is at most six strided copies. out must not overlap x.
    """
    shape = _blocked("x", x)
    c = _channel_count("channels", channels, shape[1], shape[4])
    target = _blocked("out", out)
    start = _integer("offset", offset, 0)
    if target[0] != shape[0] or target[2:] != shape[2:] or start + c > target[1] * target[4]:
        raise ValueError(
            f"out must have shape ({shape[0]}, CB, {shape[2]}, {shape[3]}, {shape[4]}) with CB * {shape[4]} >= "
            f"offset + channels = {start + c}, got {target}"
        )
    if not out.flags.writeable:
        raise ValueError("out must be writeable, got a read-only array")
    _disjoint(x, out)
    if not graph_ops.copy_channels(x, out, start, c, threads=_integer("threads", threads, 1)):
        _numpy_copy_channels(x, out, start, c)


def _numpy_copy_channels(x: np.ndarray, out: np.ndarray, offset: int, c: int) -> None:
    """copy_channels in numpy, on checked arguments."""
    for (src_blocks, src_lanes), (dst_blocks, dst_lanes) in _channel_runs(x.shape[4], 0, offset, c):
        out[:, dst_blocks, :, :, dst_lanes] = x[:, src_blocks, :, :, src_lanes]
