"""The named layer suite (directconv/core/layers.yaml): shapes of classic CNN convolution layers."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

import yaml

from directconv.core.shape import ConvShape

NETWORKS = ("alexnet", "vgg16", "resnet50", "googlenet")


@dataclass(frozen=True)
class Layer:
    name: str  # network:layer
    shape: ConvShape

    @property
    def network(self) -> str:
        return self.name.split(":", 1)[0]


@functools.cache
def suite() -> tuple[Layer, ...]:
    text = resources.files(__package__).joinpath("layers.yaml").read_text()
    layers = []
    for row in yaml.safe_load(text)["layers"]:
        shape = ConvShape.from_args(
            row["Ci"], row["Co"], row["H"], row["W"], row["kh"], row["kw"], stride=row["stride"], padding=row["pad"]
        )
        layers.append(Layer(row["name"], shape))
    return tuple(layers)


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
