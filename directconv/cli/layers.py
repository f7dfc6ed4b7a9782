"""Command-line options that name layers (--layer NAME, --network NAME, or an explicit shape) and a machine."""

from __future__ import annotations

import argparse
from pathlib import Path

from directconv.core.shape import ConvShape
from directconv.core.suite import NETWORKS, Layer, get_layer, network_layers
from directconv.machines.machine import Machine
from directconv.nn.networks import get_network, networks

DIMENSIONS = ("ci", "co", "h", "w", "kh", "kw")


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1, refused with what was given otherwise."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer (>= 1), got {value}")
    return value


def add_layer_options(p: argparse.ArgumentParser, *, shape_options: bool = False) -> None:
    p.add_argument(
        "--layer", action="append", default=[], metavar="NAME", help="suite layer, e.g. vgg16:conv3_2 (repeatable)"
    )
    p.add_argument(
        "--network",
        action="append",
        default=[],
        choices=NETWORKS,
        help="every convolution layer of a network: its suite layers and, for the networks directconv/nn/networks.yaml "
        "chains, every other shape of its chain, named network:step (repeatable)",
    )
    p.add_argument(
        "--onnx",
        action="append",
        default=[],
        metavar="MODEL",
        help="every distinct convolution of an ONNX model: a .onnx file, or a name of the bundled corpus "
        f"({', '.join(corpus_names())}) (repeatable)",
    )
    if shape_options:
        g = p.add_argument_group("explicit shape (instead of --layer)")
        for name in DIMENSIONS:
            g.add_argument(f"--{name}", type=int)
        g.add_argument("--stride", type=int, default=1)
        g.add_argument("--pad", type=int, default=0)
        g.add_argument(
            "--groups",
            type=positive_int,
            metavar="G",
            help="channel groups, dividing --ci and --co (default 1; --groups equal to --ci is depthwise)",
        )
        g.add_argument("--dilation", type=positive_int, metavar="D", help="spacing of the filter taps (default 1)")


def network_conv_layers(network: str) -> list[Layer]:
    """Every convolution `network` runs: its suite layers, then each further shape of its chain (the layers
    directconv.nn.networks builds, so that a network tuned this way runs tuned end to end), named network:step after
    the first step with that shape."""
    layers = list(network_layers(network))
    if network not in networks():
        return layers  # a suite-only network (its layers are not chained in networks.yaml)
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
    for model in getattr(args, "onnx", []):
        seen = {layer.shape for layer in layers}
        layers += [layer for layer in onnx_layers(model) if layer.shape not in seen]
    shape = explicit_shape(args)
    if shape is not None:
        layers.append(Layer(shape.describe(), shape))
    if required and not layers:
        raise ValueError("name at least one layer: --layer NAME, --network NAME, --onnx MODEL (or an explicit shape)")
    return layers


def corpus_names() -> list[str]:
    """The models `--onnx NAME` finds without a file: directconv.bench.corpus, built from onnx's test data."""
    from directconv.bench.corpus_names import CORPUS_NAMES

    return list(CORPUS_NAMES)


def onnx_source(model: str) -> str | bytes:
    """What `--onnx MODEL` names: the file if one exists, else a model of the bundled corpus (its bytes)."""
    if Path(model).exists() or model not in corpus_names():
        return model
    from directconv.bench.corpus import corpus_bytes

    return corpus_bytes(model)


def onnx_layers(model: str) -> list[Layer]:
    """The distinct convolutions of an ONNX model, named MODEL:node (see graph.conv_layers)."""
    from directconv.graph import conv_layers

    stem = Path(model).stem if Path(model).exists() else model
    return [Layer(f"{stem}:{node}", shape) for node, shape in conv_layers(onnx_source(model))]


def explicit_shape(args: argparse.Namespace) -> ConvShape | None:
    """The shape --ci --co --h --w --kh --kw (with --stride --pad --groups --dilation) describe, None without them."""
    dims: list[int | None] = [getattr(args, n, None) for n in DIMENSIONS]
    groups, dilation = getattr(args, "groups", None), getattr(args, "dilation", None)
    if all(d is None for d in dims):
        if groups is not None or dilation is not None:
            raise ValueError(
                "--groups and --dilation belong to an explicit shape: give --ci --co --h --w --kh --kw too "
                "(a --layer or --network layer carries its own groups and dilation)"
            )
        return None
    missing = [f"--{n}" for n, d in zip(DIMENSIONS, dims, strict=True) if d is None]
    if missing:
        raise ValueError(f"an explicit shape needs all of --ci --co --h --w --kh --kw; missing {' '.join(missing)}")
    ci, co, h, w, kh, kw = (int(d) for d in dims if d is not None)
    try:
        return ConvShape.from_args(
            ci, co, h, w, kh, kw, stride=args.stride, padding=args.pad, dilation=dilation or 1, groups=groups or 1
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"explicit shape: {exc}") from None


def add_machine_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--machine", help="bundled machine id or YAML path (default: this host's description)")


def selected_machine(args: argparse.Namespace) -> Machine:
    """The machine --machine names, else this host's description."""
    if args.machine:
        from directconv.machines.loader import load_machine

        return load_machine(args.machine)
    from directconv.machines.host import host

    return host().machine
