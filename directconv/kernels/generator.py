"""The C source of the kernel that runs a layer: one entry point over the generators of every kernel kind."""

from __future__ import annotations

from directconv.core.config import KernelConfig
from directconv.core.isa import get_isa
from directconv.core.shape import BROADCAST_KINDS, LANE_KINDS, ConvShape, kernel_kind
from directconv.kernels import codegen, codegen_lanes, codegen_pointwise
from directconv.model.pointwise import has_nchw_entry


def generate(config: KernelConfig, shape: ConvShape, *, pin: bool = True) -> str:
    """Plain, grouped and grouped-window layers broadcast input channels (codegen), and a plain 1x1 layer also
    gets the NCHW entry of codegen_pointwise; depthwise and narrow-group layers multiply lane by lane
    (codegen_lanes). See core.shape.kernel_kind; pin as in codegen.generate."""
    isa = get_isa(config.isa)
    if kernel_kind(shape, isa.lanes) not in BROADCAST_KINDS:
        return codegen_lanes.generate(config, shape, pin=pin)
    source = codegen.generate(config, shape, pin=pin)
    if has_nchw_entry(shape, isa, config.cob):
        source += "\n" + codegen_pointwise.pointwise_nchw_source(shape, config) + "\n"
    return source


def nchw_scratch(config: KernelConfig, shape: ConvShape) -> int | None:
    """Floats of scratch per thread the kernel's one-pass NCHW entry (dc_conv_nchw) needs, or None where the kernel
    has no such entry: grouped and lane-wise kernels convert each task's blocks in a scratch (none for depthwise
    planes read in place, codegen_planes), plain 1x1 layers on large planes need none (codegen_pointwise)."""
    isa = get_isa(config.isa)
    kind = kernel_kind(shape, isa.lanes)
    if kind == "grouped":
        return codegen.grouped_scratch_floats(shape, config)
    if kind in LANE_KINDS:
        return codegen_lanes.nchw_scratch_floats(shape, config)
    return 0 if kind == "plain" and has_nchw_entry(shape, isa, config.cob) else None
