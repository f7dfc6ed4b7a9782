"""directconv: zero-memory-overhead direct convolutions for CPUs.

After Zhang, Franchetti and Low, "High Performance Zero-Memory Overhead Direct Convolutions" (ICML 2018): a
register-blocked C kernel on channel-blocked (NCHWc) activations, generated and compiled per configuration.
"""

from __future__ import annotations

from directconv.api import (
    BlockedTensor,
    PackedWeights,
    available_threads,
    conv2d,
    conv2d_blocked,
    from_blocked,
    pack_weights,
    to_blocked,
)
from directconv.kernels.config import KernelConfig
from directconv.kernels.reference import conv2d_reference
from directconv.kernels.shape import ConvShape
from directconv.model.default import default_config

__version__ = "0.1.0"

__all__ = [
    "BlockedTensor",
    "ConvShape",
    "KernelConfig",
    "PackedWeights",
    "available_threads",
    "conv2d",
    "conv2d_blocked",
    "conv2d_reference",
    "default_config",
    "from_blocked",
    "pack_weights",
    "to_blocked",
    "__version__",
]
