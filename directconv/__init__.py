"""directconv: zero-memory-overhead direct convolutions for CPUs.

After Zhang, Franchetti and Low, "High Performance Zero-Memory Overhead Direct Convolutions" (ICML 2018): a
register-blocked C kernel on channel-blocked (NCHWc) activations, generated and compiled per configuration.
"""

from __future__ import annotations

from pathlib import Path as _Path

# In a source checkout the subpackages sit beside this folder (kernels/, model/, tuner/, machines/); pyproject.toml
# maps them under `directconv` when installed. Let the same names resolve when running from the checkout.
_checkout = _Path(__file__).resolve().parent.parent
if (_checkout / "pyproject.toml").is_file() and (_checkout / "kernels" / "__init__.py").is_file():
    __path__.append(str(_checkout))

from directconv.api import (  # noqa: E402
    BlockedTensor,
    PackedWeights,
    available_threads,
    conv2d,
    conv2d_blocked,
    from_blocked,
    pack_weights,
    to_blocked,
)
from directconv.kernels.config import KernelConfig  # noqa: E402
from directconv.layer import Conv2d  # noqa: E402
from directconv.pool import MaxPool2d  # noqa: E402
from directconv.sequential import Sequential  # noqa: E402
from directconv.kernels.reference import conv2d_reference  # noqa: E402
from directconv.kernels.shape import ConvShape  # noqa: E402

__version__ = "0.1.0"


_LAZY = {"tune": "tuning", "Tuned": "tuning", "choose_config": "select", "default_config": "select", "Choice": "select",
         "UntunedWarning": "select"}


def __getattr__(name: str):
    # Host detection, the config store and the tuner (Optuna, SQLAlchemy) load on first use, not on import.
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(f"directconv.{_LAZY[name]}"), name)
    if name == "networks":  # the bundled network definitions (dc.networks.build("resnet50"))
        return importlib.import_module("directconv.networks")
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
