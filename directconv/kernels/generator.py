"""The C source of the kernel that runs a layer: one entry point over the generators of every kernel kind."""

from __future__ import annotations

from directconv.core.config import KernelConfig
from directconv.core.isa import get_isa
from directconv.core.shape import ConvShape, kernel_kind
from directconv.kernels import codegen, codegen_lanes


def generate(config: KernelConfig, shape: ConvShape, *, pin: bool = True) -> str:
    """Plain and grouped layers broadcast input channels (codegen); depthwise and narrow-group layers multiply lane
    by lane (codegen_lanes). See core.shape.kernel_kind; pin as in codegen.generate."""
    if kernel_kind(shape, get_isa(config.isa).lanes) in ("plain", "grouped"):
        return codegen.generate(config, shape, pin=pin)
    return codegen_lanes.generate(config, shape, pin=pin)
