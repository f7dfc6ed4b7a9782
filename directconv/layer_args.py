"""Command-line options that name layers: --layer NAME (repeatable), --network NAME, or an explicit shape."""

from __future__ import annotations

import argparse

from directconv.kernels.shape import ConvShape
from directconv.layers import Layer, get_layer, network_layers


def add_layer_options(p: argparse.ArgumentParser, *, shape_options: bool = False) -> None:
    p.add_argument("--layer", action="append", default=[], metavar="NAME",
                   help="suite layer, e.g. vgg16:conv3_2 (repeatable)")
    p.add_argument("--network", action="append", default=[], choices=("alexnet", "vgg16", "resnet50", "googlenet"),
                   help="every convolution layer of a network (repeatable)")
    if shape_options:
        g = p.add_argument_group("explicit shape (instead of --layer)")
        for name in ("ci", "co", "h", "w", "kh", "kw"):
            g.add_argument(f"--{name}", type=int)
        g.add_argument("--stride", type=int, default=1)
        g.add_argument("--pad", type=int, default=0)


def selected_layers(args: argparse.Namespace, *, required: bool = True) -> list[Layer]:
    layers = [get_layer(name) for name in args.layer]
    for network in args.network:
        layers += [layer for layer in network_layers(network) if layer not in layers]
    dims = [getattr(args, n, None) for n in ("ci", "co", "h", "w", "kh", "kw")]
    if any(d is not None for d in dims):
        if any(d is None for d in dims):
            raise ValueError("an explicit shape needs all of --ci --co --h --w --kh --kw")
        shape = ConvShape.from_args(*dims, stride=args.stride, padding=args.pad)  # type: ignore[arg-type]
        layers.append(Layer(shape.describe(), shape))
    if required and not layers:
        raise ValueError("name at least one layer: --layer NAME, --network NAME (or an explicit shape)")
    return layers
