"""Which kernel runs a layer (core.shape.kernel_kind), and the shape the model plans that kernel's blocks on.

plain and grouped layers run the broadcast kernel of the paper: a grouped layer whose groups are whole vectors is
that kernel run once per group, so the model plans one group (C_i/groups inputs, C_o/groups outputs) and counts
it `groups` times. A grouped-window layer runs it over each register block's window of input blocks
(model/broadcast.py, WindowKernel). depthwise and grouped-packed layers run the lane-wise kernel (model/lanes.py).
"""

from __future__ import annotations

import dataclasses

from directconv.core.shape import ConvShape, kernel_kind, window_limit, window_overhead
from directconv.model.plan import Reason

# The unpruned space's register tiles: up to 8 vectors x 32 columns (with at most 2 * N_reg accumulators).
MAX_UNPRUNED_VECTORS = 8
MAX_UNPRUNED_WIDTH = 32


def group_shape(shape: ConvShape) -> ConvShape:
    """One group of a grouped layer as a plain layer (the layer itself when it has one group)."""
    if shape.groups == 1:
        return shape
    return dataclasses.replace(shape, ci=shape.cig, co=shape.cog, groups=1)


def _dilation(shape: ConvShape) -> str:
    if not shape.dilated:
        return ""
    return (
        f"; dilation {shape.dh}x{shape.dw}: the {shape.kh}x{shape.kw} taps span {shape.ekh}x{shape.ekw} input "
        "pixels (padding, edge tiles and the input window by that extent), the register block as without dilation"
    )


def kind_reason(shape: ConvShape, lanes: int) -> Reason:
    """Which kernel runs `shape` on vectors of `lanes` floats, and why."""
    kind = kernel_kind(shape, lanes)
    g = shape.groups
    if kind == "plain":
        why = (
            f"groups = 1: every output vector reduces over all {shape.ci} input channels, one broadcast input "
            "at a time (the paper's Algorithm 3)"
        )
    elif kind == "grouped":
        why = (
            f"{g} groups of {shape.cig} input -> {shape.cog} output channels, whole vectors of N_vec={lanes}: the "
            f"plain kernel once per group, reducing over the group's {shape.cig} channels; register and cache "
            f"blocks stay within a group (C_o,b <= {shape.cog}, C_i,b <= {shape.cig}), the threads share "
            "groups x output-channel blocks (x rows)"
        )
    elif kind == "grouped-window":
        why = (
            f"{g} groups of {shape.cig} input -> {shape.cog} output channels, not whole vectors of N_vec={lanes}: "
            "the broadcast kernel, each register block reducing over the input blocks that hold its groups' "
            f"channels (weights zero outside the group): {window_overhead(shape, lanes, 1):.2f}x the layer's "
            f"multiply-adds with one-vector blocks (< {window_limit(shape):g}x, so cheaper than a shuffle per "
            "multiply-add in the lane-wise kernel); a taller block spans more groups and widens its window"
        )
    elif kind == "depthwise":
        multiplier = (
            f", {shape.cog} outputs each (channel multiplier {shape.cog}: each input vector is shuffled to its "
            "outputs' lanes)"
            if shape.cog > 1
            else ""
        )
        why = (
            f"groups = C_i = {shape.ci}, one input channel per group{multiplier}: the lane-wise kernel, lane l of an "
            "output vector multiplies lane l of an input vector (no broadcast, no reduction over channels: "
            f"{shape.kh}x{shape.kw} FMAs per output vector), so no C_i,b and no unroll"
        )
    else:
        why = (
            f"{g} groups of {shape.cig} input -> {shape.cog} output channels, narrower than N_vec={lanes} lanes "
            f"(or not whole vectors): one vector holds several groups; per tap and input channel of a group the "
            "input vector is shuffled so that each lane sees its group's channel, then one FMA per accumulator: "
            "the lane-wise kernel, no C_i,b and no unroll"
        )
    return Reason("kind", kind, why + _dilation(shape))
