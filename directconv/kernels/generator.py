"""The C source of the kernel that runs a layer: one entry point over the generators of every kernel kind."""

from __future__ import annotations

from directconv.core.config import KernelConfig
from directconv.core.isa import get_isa
from directconv.core.shape import BROADCAST_KINDS, ConvShape, kernel_kind
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
