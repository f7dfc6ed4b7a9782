"""The geometry of one convolution layer, independent of batch size and of any blocking."""

from __future__ import annotations

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
    """A 2-D convolution: C_i input channels of H x W, C_o filters of kh x kw, per-axis stride, per-side padding.

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

    def __post_init__(self) -> None:
        for name in ("ci", "co", "h", "w", "kh", "kw", "sh", "sw", "pt", "pb", "pl", "pr"):
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
        if self.kh > self.h + self.pt + self.pb or self.kw > self.w + self.pl + self.pr:
            raise ValueError(
                f"kernel {self.kh}x{self.kw} is larger than the padded input "
                f"{self.h + self.pt + self.pb}x{self.w + self.pl + self.pr} "
                f"(input {self.h}x{self.w}, padding top={self.pt} bottom={self.pb} left={self.pl} right={self.pr})"
            )

    @classmethod
    def from_args(
        cls, ci: int, co: int, h: int, w: int, kh: int, kw: int, stride: Any = 1, padding: Any = 0
    ) -> ConvShape:
        sh, sw = normalize_stride(stride)
        pt, pb, pl, pr = normalize_padding(padding)
        return cls(ci=ci, co=co, h=h, w=w, kh=kh, kw=kw, sh=sh, sw=sw, pt=pt, pb=pb, pl=pl, pr=pr)

    @property
    def ho(self) -> int:
        return (self.h + self.pt + self.pb - self.kh) // self.sh + 1

    @property
    def wo(self) -> int:
        return (self.w + self.pl + self.pr - self.kw) // self.sw + 1

    def kernel_view(self) -> ConvShape:
        """The geometry the kernel is generated for: a 1x1, stride-1, unpadded layer is a matrix product over all
        H*W pixels, and its blocked activations [C/c][H][W][c] are byte for byte [C/c][1][H*W][c]; one long row
        leaves one partial register tile per channel block instead of one per row."""
        pads = (self.pt, self.pb, self.pl, self.pr)
        if (self.kh, self.kw, self.sh, self.sw) == (1, 1, 1, 1) and not any(pads) and self.h > 1:
            return ConvShape(ci=self.ci, co=self.co, h=1, w=self.h * self.w, kh=1, kw=1)
        return self

    def flops(self, batch: int = 1) -> int:
        """Multiply-adds counted as two FLOPs, padding included (the convention of every peer benchmark)."""
        return 2 * batch * self.co * self.ci * self.kh * self.kw * self.ho * self.wo

    def to_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in ("ci", "co", "h", "w", "kh", "kw", "sh", "sw", "pt", "pb", "pl", "pr")}

    def describe(self) -> str:
        pad = (self.pt, self.pb, self.pl, self.pr)
        return (
            f"{self.ci}->{self.co} {self.h}x{self.w} k{self.kh}x{self.kw} s{self.sh}x{self.sw} "
            f"p{','.join(map(str, pad))} -> {self.ho}x{self.wo}"
        )
