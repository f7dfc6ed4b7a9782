"""The geometry of one convolution layer, independent of batch size and of any blocking."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any


def _pair(value: Any, what: str) -> tuple[int, int]:
    """Accept an int or a pair of ints, as torch does for stride and padding."""
    if isinstance(value, (int,)) and not isinstance(value, bool):
        return int(value), int(value)
    if (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        return int(value[0]), int(value[1])
    raise TypeError(f"{what} must be an int or a pair of ints, got {value!r}")


def normalize_stride(stride: Any) -> tuple[int, int]:
    sh, sw = _pair(stride, "stride")
    if sh < 1 or sw < 1:
        raise ValueError(f"stride must be >= 1 on both axes, got (stride_h={sh}, stride_w={sw})")
    return sh, sw


def normalize_dilation(dilation: Any) -> tuple[int, int]:
    dh, dw = _pair(dilation, "dilation")
    if dh < 1 or dw < 1:
        raise ValueError(f"dilation must be >= 1 on both axes, got (dilation_h={dh}, dilation_w={dw})")
    return dh, dw


def normalize_groups(groups: Any) -> int:
    if not isinstance(groups, int) or isinstance(groups, bool):
        raise TypeError(f"groups must be an int, got {groups!r}")
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}")
    return groups


def normalize_padding(padding: Any) -> tuple[int, int, int, int]:
    """Padding as (top, bottom, left, right).

    Accepts an int (all sides), a pair (height, width: both sides of each axis alike, as torch does) or a
    4-tuple (top, bottom, left, right) for asymmetric padding.
    """
    if isinstance(padding, (tuple, list)) and len(padding) == 4:
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in padding):
            raise TypeError(f"padding must hold ints, got {padding!r}")
        pt, pb, pl, pr = (int(v) for v in padding)
    else:
        try:
            ph, pw = _pair(padding, "padding")
        except TypeError:
            raise TypeError(
                f"padding must be an int, a pair (h, w) or a 4-tuple (top, bottom, left, right), got {padding!r}"
            ) from None
        pt, pb, pl, pr = ph, ph, pw, pw
    if min(pt, pb, pl, pr) < 0:
        raise ValueError(f"padding must be >= 0 on every side, got (top={pt}, bottom={pb}, left={pl}, right={pr})")
    return pt, pb, pl, pr


@dataclass(frozen=True)
class ConvShape:
    """A 2-D convolution: C_i input channels of H x W, C_o filters of kh x kw, per-axis stride, per-side padding,
    per-axis dilation, and `groups`: the channels split into that many independent convolutions of C_i/groups
    inputs and C_o/groups outputs each (groups = C_i is a depthwise layer).

    Batch size is not part of the shape: one compiled kernel serves any batch.
    """

    ci: int
    co: int
    h: int
    w: int
    kh: int
    kw: int
    sh: int = 1
    sw: int = 1
    pt: int = 0
    pb: int = 0
    pl: int = 0
    pr: int = 0
    dh: int = 1
    dw: int = 1
    groups: int = 1

    def __post_init__(self) -> None:
        for name in FIELDS:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"ConvShape.{name} must be an int, got {value!r}")
        for name in ("ci", "co", "h", "w", "kh", "kw"):
            if getattr(self, name) < 1:
                raise ValueError(f"ConvShape.{name} must be >= 1, got {getattr(self, name)} (empty dimension)")
        if self.sh < 1 or self.sw < 1:
            raise ValueError(f"stride must be >= 1 on both axes, got (stride_h={self.sh}, stride_w={self.sw})")
        if min(self.pt, self.pb, self.pl, self.pr) < 0:
            raise ValueError(
                f"padding must be >= 0, got (top={self.pt}, bottom={self.pb}, left={self.pl}, right={self.pr})"
            )
        if self.dh < 1 or self.dw < 1:
            raise ValueError(f"dilation must be >= 1 on both axes, got (dilation_h={self.dh}, dilation_w={self.dw})")
        if self.groups < 1:
            raise ValueError(f"groups must be >= 1, got {self.groups}")
        if self.ci % self.groups or self.co % self.groups:
            raise ValueError(
                f"groups={self.groups} must divide both channel counts, got C_i={self.ci} and C_o={self.co}"
            )
        if self.ekh > self.h + self.pt + self.pb or self.ekw > self.w + self.pl + self.pr:
            dilated = f" (kernel {self.kh}x{self.kw} at dilation {self.dh}x{self.dw})" if self.dilated else ""
            raise ValueError(
                f"kernel {self.ekh}x{self.ekw}{dilated} is larger than the padded input "
                f"{self.h + self.pt + self.pb}x{self.w + self.pl + self.pr} "
                f"(input {self.h}x{self.w}, padding top={self.pt} bottom={self.pb} left={self.pl} right={self.pr})"
            )

    @classmethod
    def from_args(
        cls,
        ci: int,
        co: int,
        h: int,
        w: int,
        kh: int,
        kw: int,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
        groups: Any = 1,
    ) -> ConvShape:
        sh, sw = normalize_stride(stride)
        pt, pb, pl, pr = normalize_padding(padding)
        dh, dw = normalize_dilation(dilation)
        g = normalize_groups(groups)
        return cls(
            ci=ci, co=co, h=h, w=w, kh=kh, kw=kw, sh=sh, sw=sw, pt=pt, pb=pb, pl=pl, pr=pr, dh=dh, dw=dw, groups=g
        )

    @property
    def cig(self) -> int:
        """Input channels per group (1 for a depthwise layer)."""
        return self.ci // self.groups

    @property
    def cog(self) -> int:
        """Output channels per group (the channel multiplier of a depthwise layer)."""
        return self.co // self.groups

    @property
    def dilated(self) -> bool:
        return (self.dh, self.dw) != (1, 1)

    @property
    def ekh(self) -> int:
        """Height the kernel spans on the input: kh taps dh apart."""
        return (self.kh - 1) * self.dh + 1

    @property
    def ekw(self) -> int:
        return (self.kw - 1) * self.dw + 1

    @property
    def ho(self) -> int:
        return (self.h + self.pt + self.pb - self.ekh) // self.sh + 1

    @property
    def wo(self) -> int:
        return (self.w + self.pl + self.pr - self.ekw) // self.sw + 1

    def kernel_view(self) -> ConvShape:
        """The geometry the kernel is generated for: a 1x1, stride-1, unpadded layer is a matrix product over all
        H*W pixels, and its blocked activations [C/c][H][W][c] are byte for byte [C/c][1][H*W][c]; one long row
        leaves one partial register tile per channel block instead of one per row."""
        pads = (self.pt, self.pb, self.pl, self.pr)
        if (self.kh, self.kw, self.sh, self.sw) == (1, 1, 1, 1) and not any(pads) and self.h > 1:
            return ConvShape(ci=self.ci, co=self.co, h=1, w=self.h * self.w, kh=1, kw=1, groups=self.groups)
        return self

    def flops(self, batch: int = 1) -> int:
        """Multiply-adds counted as two FLOPs, padding included (the convention of every peer benchmark)."""
        return 2 * batch * self.co * self.cig * self.kh * self.kw * self.ho * self.wo

    def executed_flops(self, batch: int = 1) -> int:
        """flops() without the taps that fall in the padding: the multiply-adds the kernels run (they skip the
        others), so the FMA peak bounds this count's rate, not the nominal one's."""
        return 2 * batch * self.co * self.cig * sum(taps_inside(self, "rows")) * sum(taps_inside(self, "cols"))

    def conv_arguments(self) -> dict[str, Any]:
        """stride, padding, dilation and groups as conv2d, pack_weights and conv2d_reference take them."""
        return {
            "stride": (self.sh, self.sw),
            "padding": (self.pt, self.pb, self.pl, self.pr),
            "dilation": (self.dh, self.dw),
            "groups": self.groups,
        }

    def to_dict(self) -> dict[str, int]:
        """Every field; dilation and groups only where they are not 1, so that plain layers read as they always
        did (config stores written before grouped layers existed stay valid and keep their keys)."""
        return {k: getattr(self, k) for k in FIELDS if k in BASE_FIELDS or getattr(self, k) != 1}

    def describe(self) -> str:
        pad = (self.pt, self.pb, self.pl, self.pr)
        extra = (f" d{self.dh}x{self.dw}" if self.dilated else "") + (f" g{self.groups}" if self.groups > 1 else "")
        return (
            f"{self.ci}->{self.co} {self.h}x{self.w} k{self.kh}x{self.kw} s{self.sh}x{self.sw} "
            f"p{','.join(map(str, pad))}{extra} -> {self.ho}x{self.wo}"
        )


BASE_FIELDS = ("ci", "co", "h", "w", "kh", "kw", "sh", "sw", "pt", "pb", "pl", "pr")
FIELDS = (*BASE_FIELDS, "dh", "dw", "groups")

KernelKind = str  # one of KERNEL_KINDS
KERNEL_KINDS = ("plain", "grouped", "grouped-window", "depthwise", "grouped-packed")
LANE_KINDS = ("depthwise", "grouped-packed")  # the kinds whose vectors hold several groups (kernels/codegen_lanes.py)
BROADCAST_KINDS = ("plain", "grouped", "grouped-window")  # the paper's broadcast kernel (kernels/codegen.py)

# A grouped layer whose groups are not whole vectors runs the broadcast kernel over input windows when that does
# less than this many times the layer's multiply-adds (zeros included); above it, the lane-wise kernel, which does
# none in vain but shuffles an input vector per multiply-add. The lane-wise kernel reuses each shuffled pixel for
# every tap of a filter row, so with a filter it wins sooner (measured on Zen 4: benchmarks/window_ab.py,
# docs/design.md, "Groups that are not whole vectors").
WINDOW_MAX_OVERHEAD = 1.8  # 1x1 layers
WINDOW_MAX_OVERHEAD_FILTER = 1.6  # layers with a filter


def kernel_kind(shape: ConvShape, lanes: int) -> KernelKind:
    """Which generated kernel runs `shape` on vectors of `lanes` floats.

    plain:          groups = 1: every output vector reduces over all input channels (kernels/codegen.py).
    grouped:        each group's input and output channels are whole vectors, so a group is a plain convolution over
                    its own channel blocks (the same generator, run per group).
    grouped-window: groups that are not whole vectors but wide enough: the same broadcast kernel, each register
                    block reducing over the window of input blocks that holds its groups' channels (input_windows),
                    its weights zero outside its own groups, where the windows cost less than
                    WINDOW_MAX_OVERHEAD (1x1) or WINDOW_MAX_OVERHEAD_FILTER times the layer's multiply-adds.
    depthwise:      one input channel per group (groups = C_i; C_o = k * C_i with channel multiplier k): each output
                    vector multiplies input vectors lane by lane, no broadcast (kernels/codegen_lanes.py).
    grouped-packed: the other groups narrower than a vector (or not whole vectors): one vector holds several groups
                    and each input channel of a group reaches its lanes by a shuffle (kernels/codegen_lanes.py).
    """
    if shape.groups == 1:
        return "plain"
    if shape.cig % lanes == 0 and shape.cog % lanes == 0:
        return "grouped"
    if shape.cig == 1:
        return "depthwise"
    if window_overhead(shape, lanes, 1) < window_limit(shape):
        return "grouped-window"
    return "grouped-packed"


def window_limit(shape: ConvShape) -> float:
    """The window overhead below which `shape` runs the grouped-window kernel (see WINDOW_MAX_OVERHEAD)."""
    return WINDOW_MAX_OVERHEAD if shape.kh * shape.kw == 1 else WINDOW_MAX_OVERHEAD_FILTER


def tap_inside(shape: ConvShape, axis: str, o: int, n: int) -> bool:
    """Whether filter tap n of output row ("rows") or column ("cols") o reads inside the input, not its padding."""
    if axis == "rows":
        return 0 <= o * shape.sh - shape.pt + n * shape.dh < shape.h
    return 0 <= o * shape.sw - shape.pl + n * shape.dw < shape.w


@functools.cache  # asked for every tile the model ranks
def taps_inside(shape: ConvShape, axis: str) -> tuple[int, ...]:
    """For each output row ("rows") or column ("cols"), how many of its filter taps fall inside the input."""
    out, k = (shape.ho, shape.kh) if axis == "rows" else (shape.wo, shape.kw)
    return tuple(sum(tap_inside(shape, axis, o, n) for n in range(k)) for o in range(out))


@functools.cache  # the model asks for every tile it ranks; the answer depends on the three arguments only
def input_windows(shape: ConvShape, lanes: int, vectors: int) -> tuple[tuple[int, int], ...]:
    """(first, end) input block of each register block of `vectors` output vectors in a grouped layer: the blocks
    that hold the channels of every group the register block's output channels belong to."""
    cob, nbo = vectors * lanes, -(-shape.co // lanes)
    windows = []
    for j in range(-(-nbo // vectors)):
        first_out, last_out = j * cob, min(shape.co, (j + 1) * cob) - 1
        first_in, end_in = first_out // shape.cog * shape.cig, (last_out // shape.cog + 1) * shape.cig
        windows.append((first_in // lanes, -(-end_in // lanes)))
    return tuple(windows)


def window_overhead(shape: ConvShape, lanes: int, vectors: int) -> float:
    """Multiply-adds the window kernel runs (every lane of its vectors over every channel of its windows) over those
    of the lane-wise kernel (every lane over its group's C_i / groups channels)."""
    nbo = -(-shape.co // lanes)
    done = sum(
        min(vectors, nbo - j * vectors) * (end - first) * lanes
        for j, (first, end) in enumerate(input_windows(shape, lanes, vectors))
    )
    return done / (nbo * shape.cig)


def mean_window(shape: ConvShape, lanes: int) -> int:
    """Input channels a one-vector register block's window holds, on average over the layer's blocks (zeros
    included): what a grouped-window layer's filters reduce over in the model (model/broadcast.WindowKernel)."""
    return round(window_overhead(shape, lanes, 1) * shape.cig)


def reads_nchw(shape: ConvShape, lanes: int) -> bool:
    """Whether the kernel of `shape` reads its input as NCHW (kernels/codegen.py's dc_conv_fused_x): a plain layer
    whose C_i channels fit one block of `lanes`, as a network's first layer (3 channels of an image) does. Such an
    input needs no conversion, and the kernel reads C_i planes instead of blocks padded to the lanes."""
    return kernel_kind(shape, lanes) == "plain" and shape.ci <= lanes


def split_units(shape: ConvShape, wob: int | None, lanes: int) -> int:
    """What a rows split divides: the output rows, or, in a layer of one output row (a 1x1 layer's plane as one
    line, ConvShape.kernel_view), its register tiles of `wob` columns, as kernels/codegen.py's driver does:
    the largest `rows` of a configuration that means anything.

    Lane-wise layers keep one task per block and row (kernels/codegen_lanes.py): a task of a few tiles would re-read
    all its block's weight vectors (hundreds in a grouped 1x1 layer) for a few pixels, a cost the lane-wise estimate
    does not see; with tiles counted, ShuffleNet ran slower at 2 threads (docs/design.md, "A layer of one row splits
    by tiles")."""
    return -(-shape.wo // wob) if wob is not None and single_row_by_tiles(shape, lanes) else shape.ho


def single_row_by_tiles(shape: ConvShape, lanes: int) -> bool:
    """Whether a rows split of `shape` (a kernel view) divides its one output row by register tiles."""
    return shape.ho == 1 and kernel_kind(shape, lanes) not in LANE_KINDS
