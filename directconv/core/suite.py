"""The named layer suite (directconv/core/layers.yaml): shapes of classic CNN convolution layers."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from directconv.core.shape import ConvShape

# Every network of the suite, in the order they appear in layers.yaml: the values --network accepts.
NETWORKS = (
    "alexnet",
    "vgg16",
    "resnet50",
    "googlenet",
    "mobilenetv2",
    "efficientnetb0",
    "resnext50",
    "alexnet-grouped",
    "deeplabv3",
)

REQUIRED_KEYS = ("name", "Ci", "Co", "H", "W", "kh", "kw", "stride", "pad")
OPTIONAL_KEYS = ("groups", "dilation")  # 1 where absent


@dataclass(frozen=True)
class Layer:
    name: str  # network:layer
    shape: ConvShape

    @property
    def network(self) -> str:
        return self.name.split(":", 1)[0]


def parse_row(row: Any) -> Layer:
    """One row of layers.yaml as a Layer; ValueError naming the row and the key that is missing or unknown."""
    if not isinstance(row, dict):
        raise ValueError(f"layers.yaml: each layer must be a mapping of {', '.join(REQUIRED_KEYS)}, got {row!r}")
    name = row.get("name", "<unnamed>")
    missing = [key for key in REQUIRED_KEYS if key not in row]
    unknown = sorted(set(row) - {*REQUIRED_KEYS, *OPTIONAL_KEYS})
    if missing or unknown:
        raise ValueError(
            f"layers.yaml: layer {name!r} needs the keys {', '.join(REQUIRED_KEYS)} and may have "
            f"{', '.join(OPTIONAL_KEYS)}; missing {missing or 'none'}, unknown {unknown or 'none'}"
        )
    try:
        shape = ConvShape.from_args(
            row["Ci"],
            row["Co"],
            row["H"],
            row["W"],
            row["kh"],
            row["kw"],
            stride=row["stride"],
            padding=row["pad"],
            dilation=row.get("dilation", 1),
            groups=row.get("groups", 1),
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"layers.yaml: layer {name!r}: {exc}") from None
    return Layer(name, shape)


@functools.cache
def suite() -> tuple[Layer, ...]:
    text = resources.files(__package__).joinpath("layers.yaml").read_text()
    return tuple(parse_row(row) for row in yaml.safe_load(text)["layers"])


def get_layer(name: str) -> Layer:
    """Look a layer up by `network:layer` (also accepted: `network_layer`, as in other benchmark suites)."""
    for layer in suite():
        if name in (layer.name, layer.name.replace(":", "_", 1)):
            return layer
    known = ", ".join(layer.name for layer in suite())
    raise ValueError(f"unknown layer {name!r}; known layers: {known}")


def network_layers(network: str) -> tuple[Layer, ...]:
    if network not in NETWORKS:
        raise ValueError(f"unknown network {network!r}; expected one of {', '.join(NETWORKS)}")
    return tuple(layer for layer in suite() if layer.network == network)
