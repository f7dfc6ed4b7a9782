"""Whole networks as chains of steps (package data directconv/nn/networks.yaml), and building them to run.

A definition is shapes only: the input (channels, size) and an ordered list of convolutions and max-pools, each
step's output being the next step's input. Loading checks the file (format, fields, types, that the shapes
chain) and names the network, step and field of anything wrong. `build` turns a definition into a runnable
directconv.Sequential with random He-initialised weights, for benchmarks and tests.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any

import numpy as np
import yaml

from directconv.core.shape import ConvShape
from directconv.nn.layer import Conv2d
from directconv.nn.pool import MaxPool2d, check_pool, pool_output_size
from directconv.nn.sequential import Sequential

__all__ = [
    "Built",
    "ConvStep",
    "Network",
    "NetworkError",
    "PoolStep",
    "build",
    "get_network",
    "he_weights",
    "load_networks",
    "networks",
]

FORMAT = "directconv-networks"
VERSION = 1
DATA_FILE = "networks.yaml"

_CONV_FIELDS = ("name", "op", "Ci", "Co", "kernel", "stride", "pad", "relu")
_POOL_FIELDS = ("name", "op", "kernel", "stride", "pad")


class NetworkError(ValueError):
    """A network definition that cannot be used: the message names the file, network, step and field."""


@dataclass(frozen=True)
class ConvStep:
    """A square convolution with bias, optionally followed by ReLU."""

    name: str
    ci: int
    co: int
    kernel: int
    stride: int
    pad: int
    relu: bool

    def shape(self, height: int, width: int) -> ConvShape:
        return ConvShape.from_args(self.ci, self.co, height, width, self.kernel, self.kernel, self.stride, self.pad)


@dataclass(frozen=True)
class PoolStep:
    """A square max-pool; padding acts as -infinity, output sizes round down."""

    name: str
    kernel: int
    stride: int
    pad: int

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        return (pool_output_size(height, self.kernel, self.stride, self.pad),
                pool_output_size(width, self.kernel, self.stride, self.pad))


Step = ConvStep | PoolStep


@dataclass(frozen=True)
class Network:
    """A chain of steps on a channels x size x size input (checked to chain when made by load_networks)."""

    name: str
    channels: int
    size: int
    steps: tuple[Step, ...]
    note: str = ""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(step.name for step in self.steps)

    def activations(self) -> tuple[tuple[int, int, int], ...]:
        """(channels, height, width) of the input and of every step's output: len(steps) + 1 entries."""
        c, h, w = self.channels, self.size, self.size
        sizes = [(c, h, w)]
        for step in self.steps:
            if isinstance(step, ConvStep):
                s = step.shape(h, w)
                c, h, w = s.co, s.ho, s.wo
            else:
                h, w = step.output_size(h, w)
            sizes.append((c, h, w))
        return tuple(sizes)

    def conv_shapes(self) -> tuple[tuple[ConvStep, ConvShape], ...]:
        """Every convolution with its layer shape at this network's input size."""
        return tuple((step, step.shape(h, w)) for step, (_, h, w) in zip(self.steps, self.activations())
                     if isinstance(step, ConvStep))

    def flops(self, batch: int = 1) -> int:
        """FLOPs of the convolutions (ConvShape.flops: multiply-adds count two); pools and ReLUs are not counted."""
        return sum(shape.flops(batch) for _, shape in self.conv_shapes())

    def with_input(self, size: int | None = None, steps: int | None = None) -> Network:
        """This network on a size x size input and/or cut after its first `steps` steps (checked again)."""
        if steps is not None and not (isinstance(steps, int) and not isinstance(steps, bool) and
                                      1 <= steps <= len(self.steps)):
            raise ValueError(f"steps must be an int in 1..{len(self.steps)} ({self.name} has {len(self.steps)} "
                             f"steps), got {steps!r}")
        if size is not None and not (isinstance(size, int) and not isinstance(size, bool) and size >= 1):
            raise ValueError(f"input size must be a positive int, got {size!r}")
        cut = replace(self, size=self.size if size is None else size, steps=self.steps[:steps])
        _check_chain(cut, f"{self.name} on a {cut.size}x{cut.size} input")
        return cut


# ---------------------------------------------------------------------------------------------- loading


def _field(row: Mapping[str, Any], key: str, where: str, kind: type, minimum: int | None = None) -> Any:
    value = row[key]
    # bool is an int to Python but never a size here (and `relu: 1` is a typo for true): refuse both confusions.
    if kind is int and (not isinstance(value, int) or isinstance(value, bool)):
        raise NetworkError(f"{where}: field {key!r} must be an integer, got {value!r}")
    if kind is not int and not isinstance(value, kind):
        raise NetworkError(f"{where}: field {key!r} must be {kind.__name__}, got {value!r}")
    if minimum is not None and value < minimum:
        raise NetworkError(f"{where}: field {key!r} must be >= {minimum}, got {value}")
    return value


def _parse_step(row: Any, where: str) -> Step:
    if not isinstance(row, Mapping):
        raise NetworkError(f"{where}: a step must be a mapping with an 'op' (conv or maxpool), got {row!r}")
    op = row.get("op")
    if op not in ("conv", "maxpool"):
        raise NetworkError(f"{where}: field 'op' must be 'conv' or 'maxpool', got {op!r}")
    fields = _CONV_FIELDS if op == "conv" else _POOL_FIELDS
    missing = [k for k in fields if k not in row]
    unknown = [k for k in row if k not in fields]
    if missing or unknown:
        raise NetworkError(f"{where}: a {op} step has exactly the fields {', '.join(fields)}; "
                           + "; ".join(p for p in (f"missing {', '.join(missing)}" if missing else "",
                                                   f"unknown {', '.join(map(str, unknown))}" if unknown else "") if p))
    name = row["name"]
    if not isinstance(name, str) or not name:
        raise NetworkError(f"{where}: field 'name' must be a non-empty string, got {name!r}")
    where = f"{where} ({name!r})"
    kernel = _field(row, "kernel", where, int, 1)
    stride = _field(row, "stride", where, int, 1)
    pad = _field(row, "pad", where, int, 0)
    if op == "conv":
        return ConvStep(name, _field(row, "Ci", where, int, 1), _field(row, "Co", where, int, 1), kernel, stride, pad,
                        _field(row, "relu", where, bool))
    try:
        check_pool(kernel, stride, pad)
    except ValueError as exc:
        raise NetworkError(f"{where}: {exc}") from None
    return PoolStep(name, kernel, stride, pad)


def _check_chain(network: Network, where: str) -> None:
    c, h, w = network.channels, network.size, network.size
    seen: set[str] = set()
    for i, step in enumerate(network.steps):
        at = f"{where}, step {i} ({step.name!r})"
        if step.name in seen:
            raise NetworkError(f"{at}: step names must be unique within a network, {step.name!r} is used twice")
        seen.add(step.name)
        try:
            if isinstance(step, ConvStep):
                if step.ci != c:
                    before = "the input" if i == 0 else f"step {i - 1} ({network.steps[i - 1].name!r})"
                    raise NetworkError(f"{at}: field 'Ci' must be {c}, the channels of {before}, got {step.ci}")
                s = step.shape(h, w)
                c, h, w = s.co, s.ho, s.wo
            else:
                h, w = step.output_size(h, w)
        except NetworkError:
            raise
        except ValueError as exc:  # a window larger than its padded input
            raise NetworkError(f"{at}, on a {c}x{h}x{w} input: {exc}") from None


def _parse_network(name: str, body: Any, where: str) -> Network:
    where = f"{where}: network {name!r}"
    if not isinstance(body, Mapping):
        raise NetworkError(f"{where}: expected a mapping with 'input' and 'steps', got {body!r}")
    unknown = [k for k in body if k not in ("input", "steps", "note")]
    if unknown or "input" not in body or "steps" not in body:
        raise NetworkError(f"{where}: expected the keys input, steps (and optionally note), got {', '.join(body)}")
    inp = body["input"]
    if not isinstance(inp, Mapping) or set(inp) != {"channels", "size"}:
        raise NetworkError(f"{where}: 'input' must be {{channels: C, size: S}}, got {inp!r}")
    channels = _field(inp, "channels", f"{where}, input", int, 1)
    size = _field(inp, "size", f"{where}, input", int, 1)
    rows = body["steps"]
    if not isinstance(rows, list) or not rows:
        raise NetworkError(f"{where}: 'steps' must be a non-empty list, got {rows!r}")
    steps = tuple(_parse_step(row, f"{where}, step {i}") for i, row in enumerate(rows))
    note = body.get("note", "")
    if not isinstance(note, str):
        raise NetworkError(f"{where}: 'note' must be a string, got {note!r}")
    network = Network(name, channels, size, steps, note)
    _check_chain(network, where)
    return network


def load_networks(text: str, source: str = DATA_FILE) -> dict[str, Network]:
    """Parse and check the text of a networks file; NetworkError (a ValueError) names what is wrong and where."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise NetworkError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(data, Mapping) or data.get("format") != FORMAT:
        got = data.get("format") if isinstance(data, Mapping) else type(data).__name__
        raise NetworkError(f"{source}: expected a mapping with format: {FORMAT}, got {got!r}")
    if data.get("version") != VERSION:
        raise NetworkError(f"{source}: this directconv reads version {VERSION}, the file is version "
                           f"{data.get('version')!r}")
    body = data.get("networks")
    if not isinstance(body, Mapping) or not body:
        raise NetworkError(f"{source}: 'networks' must be a non-empty mapping of name -> network, got {body!r}")
    return {str(name): _parse_network(str(name), net, source) for name, net in body.items()}


@functools.cache
def networks() -> dict[str, Network]:
    """The bundled network definitions, by name (loaded and checked once)."""
    return load_networks(resources.files(__package__).joinpath(DATA_FILE).read_text(), DATA_FILE)


def get_network(name: str) -> Network:
    found = networks().get(name)
    if found is None:
        raise ValueError(f"unknown network {name!r}; defined networks: {', '.join(networks())}")
    return found


# ---------------------------------------------------------------------------------------------- building


def he_weights(network: Network, seed: int = 0) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """(OIHW weights, bias) per convolution, in step order: weights normal with std sqrt(2 / (Ci*k*k)) (He et
    al. 2015, which keeps the activations' scale from layer to layer through ReLUs), biases zero. float32."""
    rng = np.random.default_rng(seed)
    out = []
    for step in network.steps:
        if isinstance(step, ConvStep):
            fan_in = step.ci * step.kernel * step.kernel
            w = rng.standard_normal((step.co, step.ci, step.kernel, step.kernel), dtype=np.float32)
            w *= np.float32(np.sqrt(2.0 / fan_in))
            out.append((w, np.zeros(step.co, dtype=np.float32)))
    return tuple(out)


@dataclass(frozen=True)
class Built:
    """A network ready to run: the model, what it is fed, and the weights it holds (for building peers)."""

    model: Sequential
    network: Network
    input_shape: tuple[int, int, int, int]  # NCHW
    weights: tuple[tuple[np.ndarray, np.ndarray], ...]  # (OIHW, bias) per convolution, in step order

    @property
    def names(self) -> tuple[str, ...]:
        return self.network.names

    @property
    def input_size(self) -> int:
        return self.network.size


def sequential(network: Network, weights: tuple[tuple[np.ndarray, np.ndarray], ...], *,
               threads: int | None = None) -> Sequential:
    """The Sequential of `network` holding `weights` (one (OIHW, bias) pair per convolution), bound for the
    network's input size (every kernel chosen and compiled now, not at the first call)."""
    convs = [s for s in network.steps if isinstance(s, ConvStep)]
    if len(weights) != len(convs):
        raise ValueError(f"{network.name} has {len(convs)} convolutions, got {len(weights)} weight pairs")
    pairs = iter(weights)
    steps: list[Conv2d | MaxPool2d] = []
    for step, (_, h, w) in zip(network.steps, network.activations()):
        if isinstance(step, ConvStep):
            weight, bias = next(pairs)
            steps.append(Conv2d(weight, bias, stride=step.stride, padding=step.pad,
                                activation="relu" if step.relu else None, threads=threads, input_size=(h, w)))
        else:
            steps.append(MaxPool2d(step.kernel, step.stride, step.pad))
    model = Sequential(steps, names=network.names)
    model.plan(network.channels, network.size, network.size)
    return model


def build(
    name: str | Network,
    *,
    threads: int | None = None,
    seed: int = 0,
    batch: int = 1,
    input_size: int | None = None,
    steps: int | None = None,
) -> Built:
    """The named network (or a Network) as a Sequential with He-initialised weights from `seed`, zero biases.

    input_size runs it on a smaller (or larger) square input; steps keeps only its first steps: both for quick
    runs. batch only sets Built.input_shape (the kernels serve any batch).
    """
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    network = name if isinstance(name, Network) else get_network(name)
    if input_size is not None or steps is not None:
        network = network.with_input(input_size, steps)
    weights = he_weights(network, seed)
    model = sequential(network, weights, threads=threads)
    return Built(model, network, (batch, network.channels, network.size, network.size), weights)
