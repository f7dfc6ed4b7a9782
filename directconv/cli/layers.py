"""Command-line options that name layers (--layer NAME, --network NAME, or an explicit shape) and a machine."""

from __future__ import annotations

import argparse

from directconv.core.shape import ConvShape
from directconv.core.suite import Layer, get_layer, network_layers
from directconv.machines.machine import Machine
from directconv.nn.networks import get_network


def add_layer_options(p: argparse.ArgumentParser, *, shape_options: bool = False) -> None:
    p.add_argument(
        "--layer", action="append", default=[], metavar="NAME", help="suite layer, e.g. vgg16:conv3_2 (repeatable)"
    )
    p.add_argument(
        "--network",
        action="append",
        default=[],
        choices=("alexnet", "vgg16", "resnet50", "googlenet"),
        help="every convolution layer of a network: its suite layers and every other shape of its "
        "chain in directconv/nn/networks.yaml, named network:step (repeatable)",
    )
    if shape_options:
        g = p.add_argument_group("explicit shape (instead of --layer)")
        for name in ("ci", "co", "h", "w", "kh", "kw"):
            g.add_argument(f"--{name}", type=int)
        g.add_argument("--stride", type=int, default=1)
        g.add_argument("--pad", type=int, default=0)


def network_conv_layers(network: str) -> list[Layer]:
    """Every convolution `network` runs: its suite layers, then each further shape of its chain (the layers
    directconv.nn.networks builds, so that a network tuned this way runs tuned end to end), named network:step after
    the first step with that shape."""
    layers = list(network_layers(network))
    shapes = {layer.shape for layer in layers}
    for step, shape in get_network(network).conv_shapes():
        if shape not in shapes:
            shapes.add(shape)
            layers.append(Layer(f"{network}:{step.name}", shape))
    return layers


def selected_layers(args: argparse.Namespace, *, required: bool = True) -> list[Layer]:
    layers = [get_layer(name) for name in args.layer]
    for network in args.network:
        seen = {layer.shape for layer in layers}
        layers += [layer for layer in network_conv_layers(network) if layer.shape not in seen]
    dims: list[int | None] = [getattr(args, n, None) for n in ("ci", "co", "h", "w", "kh", "kw")]
    if any(d is not None for d in dims):
        given = [d for d in dims if d is not None]
        if len(given) != len(dims):
            raise ValueError("an explicit shape needs all of --ci --co --h --w --kh --kw")
        ci, co, h, w, kh, kw = given
        shape = ConvShape.from_args(ci, co, h, w, kh, kw, stride=args.stride, padding=args.pad)
        layers.append(Layer(shape.describe(), shape))
    if required and not layers:
        raise ValueError("name at least one layer: --layer NAME, --network NAME (or an explicit shape)")
    return layers


def add_machine_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--machine", help="bundled machine id or YAML path (default: this host's description)")


def selected_machine(args: argparse.Namespace) -> Machine:
    """The machine --machine names, else this host's description."""
    if args.machine:
        from directconv.machines.loader import load_machine

        return load_machine(args.machine)
    from directconv.machines.host import host

    return host().machine
