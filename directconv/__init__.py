"""directconv: zero-memory-overhead direct convolutions for CPUs.

After Zhang, Franchetti and Low, "High Performance Zero-Memory Overhead Direct Convolutions" (ICML 2018): a
register-blocked C kernel on channel-blocked (NCHWc) activations, generated and compiled per configuration.
"""

from __future__ import annotations

from directconv.nn.api import (
    BlockedTensor,
    PackedWeights,
    available_threads,
    conv2d,
    conv2d_blocked,
    from_blocked,
    pack_weights,
    to_blocked,
)
from directconv.core.config import KernelConfig
from directconv.nn.layer import Conv2d
from directconv.nn.pool import MaxPool2d
from directconv.nn.sequential import Sequential
from directconv.kernels.reference import conv2d_reference
from directconv.core.shape import ConvShape

from directconv.core.version import __version__


_LAZY = {"tune": "tuning", "Tuned": "tuning", "choose_config": "select", "default_config": "select", "Choice": "select",
         "UntunedWarning": "select"}


def __getattr__(name: str):
    # Host detection, the config store and the tuner (Optuna, SQLAlchemy) load on first use, not on import.
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(f"directconv.tuner.{_LAZY[name]}"), name)
    if name == "networks":  # the bundled network definitions (dc.networks.build("resnet50"))
        return importlib.import_module("directconv.nn.networks")
    raise AttributeError(f"module 'directconv' has no attribute {name!r}")

__all__ = [
    "BlockedTensor",
    "Choice",
    "ConvShape",
    "Conv2d",
    "KernelConfig",
    "MaxPool2d",
    "PackedWeights",
    "Sequential",
    "available_threads",
    "conv2d",
    "conv2d_blocked",
    "choose_config",
    "conv2d_reference",
    "default_config",
    "from_blocked",
    "pack_weights",
    "to_blocked",
    "tune",
    "Tuned",
    "UntunedWarning",
    "__version__",
]
