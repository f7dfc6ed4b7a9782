"""The register tile of a 1x1 layer's NCHW entry: a matrix product on the NCHW planes (kernels/codegen_pointwise.py).

A 1x1, stride-1, unpadded layer in NCHW is Y[c_o][p] = sum over c_i of W[c_o][c_i] X[c_i][p]: its planes are the
rows of a matrix product, so an NCHW call needs no conversion at all. The tile turns the blocked kernel around:
vectors run along pixels (V vectors of N_vec pixels of a plane) and each weight is broadcast (R output channels),
so a step of the input-channel loop loads V vectors and R scalars for R * V multiply-adds.
"""

from __future__ import annotations

from directconv.core.isa import Isa
from directconv.core.shape import ConvShape, kernel_kind

# Planes of fewer whole runs of a tile (V vectors of pixels) keep the three passes (convert, blocked kernel,
# convert): there the tail tiles (the last partial vector computed again, narrower tiles) and the input panel the
# tiles re-read cost more than the conversions save (measured: docs/design.md, "A 1x1 layer's NCHW call is a matrix
# product").
MIN_RUNS = 4


def is_matrix_product(shape: ConvShape, lanes: int) -> bool:
    """A plain 1x1, stride-1, unpadded layer: its kernel view is one row of H*W pixels (ConvShape.kernel_view)."""
    view = shape.kernel_view()
    return kernel_kind(view, lanes) == "plain" and (view.kh, view.kw, view.h) == (1, 1, 1)


def has_nchw_entry(shape: ConvShape, isa: Isa, cob: int) -> bool:
    """Whether the kernel of `shape` with `cob` output channels per block gets the matrix-product NCHW entry: a
    layer that is_matrix_product whose planes hold at least MIN_RUNS runs of the tile."""
    if not is_matrix_product(shape, isa.lanes):
        return False
    _, v = nchw_tile(isa, cob)
    return shape.h * shape.w >= MIN_RUNS * v * isa.lanes


def nchw_tile(isa: Isa, cob: int) -> tuple[int, int]:
    """(R, V): R output channels (a divisor of C_o,b, so that a tile never straddles two packed weight blocks) by V
    pixel vectors, the most accumulators R * V such that they, the V input vectors of a step and (without a
    multiply-add that broadcasts from memory) one broadcast weight fit the registers; among equals, the fewest
    loads per multiply-add, (R + V) / (R * V)."""
    registers = isa.registers - (0 if isa.fma_broadcast else 1)
    # r * v accumulators + v inputs; r = 1 always fits
    tiles = [(r, registers // (r + 1)) for r in range(1, cob + 1) if cob % r == 0 and registers // (r + 1) >= 1]
    return max(tiles, key=lambda rv: (rv[0] * rv[1], -(rv[0] + rv[1]), rv[0]))


def explain(isa: Isa, cob: int, pixels: int) -> str:
    """The explanation `predict` prints for the NCHW entry of a layer of `pixels` pixels per plane."""
    r, v = nchw_tile(isa, cob)
    run = v * isa.lanes
    loads = "broadcast from memory by the multiply-adds" if isa.fma_broadcast else "one broadcast register"
    return (
        f"1x1 stride 1: an NCHW call is a matrix product on the planes, no conversion: tiles of {r} output channels x "
        f"{v} vectors of {isa.lanes} pixels ({r * v} accumulators + {v} inputs, weights {loads}, <= "
        f"N_reg={isa.registers}); {pixels} pixels per plane = {pixels // run} runs of {run} + {pixels % run} pixels, "
        "a last partial vector computed again from the plane's end"
    )
