"""The register tile of a depthwise layer's NCHW entry: a 2-D convolution on each plane (kernels/codegen_planes.py).

In NCHW a depthwise layer's output plane depends on one input plane only, so an NCHW call needs no conversion: the
vectors run along output rows and each weight is broadcast. A tile is R output rows x V vectors of a row. Each input
row it reads is loaded as whole vectors (input_vectors of them), and the tap vectors are shifted out of them in
registers; each, once made, serves every row of the tile that reads it (up to kh of them), so taller tiles load and
shift less per multiply-add: at stride 1, (R + kh - 1) input rows for R * kh rows of multiply-adds.
"""

from __future__ import annotations

from directconv.core.isa import Isa
from directconv.core.shape import ConvShape, kernel_kind

MAX_ROWS = 8  # taller tiles share each input row among no more output rows (kh at most) and need more registers
MAX_VECTORS = 4


def has_plane_entry(shape: ConvShape, isa: Isa) -> bool:
    """Whether the depthwise kernel of `shape` gets the plane NCHW entry: stride 1 or 2 along rows, and input and
    output rows at least one vector wide, so that every load and store is a whole vector inside its row. Narrower
    planes keep the converting entry, where vectors run along channels."""
    view = shape.kernel_view()
    if kernel_kind(view, isa.lanes) != "depthwise" or isa.lanes < 2:
        return False
    return view.sw in (1, 2) and view.wo >= isa.lanes and view.w >= isa.lanes


def input_vectors(shape: ConvShape, lanes: int, v: int) -> tuple[int, int]:
    """(first, last): the whole input vectors j a tile of v output vectors reads in each input row, vector j holding
    input columns [c * S_w + j * lanes, ... + lanes) for the tile's first output column c."""
    lo = -shape.pl
    hi = (v * lanes - 1) * shape.sw + (shape.kw - 1) * shape.dw - shape.pl
    return lo // lanes, hi // lanes


def kept_weights(shape: ConvShape, isa: Isa) -> int:
    """Broadcast weights held in registers: all kh * kw where they take at most half of them, else none (the
    multiply-adds read them from memory, with a broadcast of their own on ISAs that cannot broadcast in the FMA)."""
    taps = shape.kh * shape.kw
    return taps if taps + 2 <= isa.registers // 2 else 0


def plane_tile(isa: Isa, shape: ConvShape) -> tuple[int, int]:
    """(R, V): the most accumulators R * V that fit the registers beside the kept weights, one input row's whole
    vectors and one shifted tap vector; among equals, the fewest input rows per output row, (R + kh - 1) / R."""
    tiles = []
    for v in range(1, MAX_VECTORS + 1):
        first, last = input_vectors(shape, isa.lanes, v)
        budget = isa.registers - kept_weights(shape, isa) - (last - first + 1) - 1
        tiles += [(r, v) for r in range(1, MAX_ROWS + 1) if r * v <= budget]
    if not tiles:
        return 1, 1  # wide dilated taps on few registers: spills, but correct
    return max(tiles, key=lambda rv: (rv[0] * rv[1], -(rv[0] + shape.kh - 1) / rv[0]))


def explain(isa: Isa, shape: ConvShape) -> str:
    """The explanation `predict` prints for the NCHW entry of a depthwise layer."""
    r, v = plane_tile(isa, shape)
    first, last = input_vectors(shape, isa.lanes, v)
    kept = kept_weights(shape, isa)
    weights = f"{kept} broadcast weights in registers" if kept else "weights read by the multiply-adds"
    return (
        f"depthwise, {shape.wo} output columns >= {isa.lanes} lanes: an NCHW call convolves each plane where it lies, "
        f"no conversion and no scratch: tiles of {r} output rows x {v} vectors of {isa.lanes} columns ({r * v} "
        f"accumulators + {last - first + 1} input vectors per row + {weights}, <= N_reg={isa.registers})"
    )
