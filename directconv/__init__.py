"""directconv: zero-memory-overhead direct convolutions for CPUs.

After Zhang, Franchetti and Low, "High Performance Zero-Memory Overhead Direct Convolutions" (ICML 2018): a
register-blocked C kernel on channel-blocked (NCHWc) activations, generated and compiled per configuration.
"""

from __future__ import annotations

from directconv.core.config import KernelConfig
from directconv.core.shape import ConvShape
from directconv.core.suite import get_layer, network_layers
from directconv.core.version import __version__
from directconv.kernels.reference import conv2d_reference
from directconv.nn.api import (
    BlockedTensor,
    PackedWeights,
    available_threads,
    conv2d,
    conv2d_blocked,
    conv2d_nchw,
    from_blocked,
    pack_weights,
    release_buffers,
    to_blocked,
)
from directconv.nn.layer import Conv2d
from directconv.nn.pool import MaxPool2d
from directconv.nn.sequential import Sequential

# Loaded on first use, not on import, so that a process that only runs layers carries none of them: machine
# descriptions (jsonschema), the model, the tuner and the config store (Optuna, SQLAlchemy), this machine's
# description (reads the OS, loads archspec) and its measured FMA peak (compiles a loop).
_LAZY = {
    "MachineError": "directconv.machines.loader",
    "bundled_machines": "directconv.machines.loader",
    "load_machine": "directconv.machines.loader",
    "machine_to_data": "directconv.machines.loader",
    "parse_machine": "directconv.machines.loader",
    "estimate_config": "directconv.model",
    "predict": "directconv.model",
    "search_space": "directconv.model",
    "tile_efficiency": "directconv.model",
    "tune": "directconv.tuner.tuning",
    "Tuned": "directconv.tuner.tuning",
    "choose_config": "directconv.tuner.select",
    "default_config": "directconv.tuner.select",
    "Choice": "directconv.tuner.select",
    "UntunedWarning": "directconv.tuner.select",
    "host": "directconv.machines.host",
    "measure_peaks": "directconv.tuner.peak",
    "load_onnx": "directconv.graph",
    "Model": "directconv.graph",
    "OnnxModelError": "directconv.graph",
}


def __getattr__(name: str):
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
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
    "conv2d_nchw",
    "release_buffers",
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
    # the layer suite, machine descriptions, this machine and the model
    "MachineError",
    "bundled_machines",
    "estimate_config",
    "get_layer",
    "host",
    "load_machine",
    "machine_to_data",
    "measure_peaks",
    "network_layers",
    "parse_machine",
    "predict",
    "search_space",
    "tile_efficiency",
    # ONNX models
    "Model",
    "OnnxModelError",
    "load_onnx",
]
