"""Whole networks as chains of steps (package data directconv/nn/networks.yaml), and building them to run.

A definition is shapes only: the input (channels, size) and an ordered list of convolutions and max-pools, each
step's output being the next step's input. Loading checks the file against networks.schema.json (format, fields,
types, bounds), then that the shapes chain, and names the field (network, step) of everything wrong. `build` turns
a definition into a runnable directconv.Sequential with random He-initialised weights, for benchmarks and tests.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any

import numpy as np
from jsonschema.protocols import Validator

from directconv.core import schema
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

DATA_FILE = "networks.yaml"
MAX_CHARS = 1 << 20  # a networks file's text; the bundled one is some 20 KiB
_SCHEMA = schema.read_schema(__package__, "networks.schema.json")
FORMAT: str = _SCHEMA["properties"]["format"]["const"]
VERSION: int = _SCHEMA["properties"]["version"]["const"]


class NetworkError(schema.DocumentError):
    """A network definition that cannot be used: the message names the file and the field (network, step) of every
    problem; `problems` holds one sentence each."""


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
        return (
            pool_output_size(height, self.kernel, self.stride, self.pad),
            pool_output_size(width, self.kernel, self.stride, self.pad),
        )


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
        return tuple(
            (step, step.shape(h, w))
            for step, (_, h, w) in zip(self.steps, self.activations()[:-1], strict=True)
            if isinstance(step, ConvStep)
        )

    def flops(self, batch: int = 1) -> int:
        """FLOPs of the convolutions (ConvShape.flops: multiply-adds count two); pools and ReLUs are not counted."""
        return sum(shape.flops(batch) for _, shape in self.conv_shapes())

    def with_input(self, size: int | None = None, steps: int | None = None) -> Network:
        """This network on a size x size input and/or cut after its first `steps` steps (checked again)."""
        if steps is not None and not (
            isinstance(steps, int) and not isinstance(steps, bool) and 1 <= steps <= len(self.steps)
        ):
            raise ValueError(
                f"steps must be an int in 1..{len(self.steps)} ({self.name} has {len(self.steps)} steps), got {steps!r}"
            )
        if size is not None and not (isinstance(size, int) and not isinstance(size, bool) and size >= 1):
            raise ValueError(f"input size must be a positive int, got {size!r}")
        cut = replace(self, size=self.size if size is None else size, steps=self.steps[:steps])
        _check_chain(cut, f"{self.name} on a {cut.size}x{cut.size} input")
        return cut


# ---------------------------------------------------------------------------------------------- loading


@functools.cache
def _validator() -> Validator:
    return schema.build_validator(_SCHEMA)


def _step(row: Mapping[str, Any]) -> Step:
    """The step of a row that passed the schema (integral floats such as 3.0 pass it, hence the ints)."""
    if row["op"] == "conv":
        return ConvStep(
            row["name"],
            int(row["Ci"]),
            int(row["Co"]),
            int(row["kernel"]),
            int(row["stride"]),
            int(row["pad"]),
            row["relu"],
        )
    return PoolStep(row["name"], int(row["kernel"]), int(row["stride"]), int(row["pad"]))


def _network(name: str, body: Mapping[str, Any]) -> Network:
    """The network of a body that passed the schema."""
    inp = body["input"]
    steps = tuple(_step(row) for row in body["steps"])
    return Network(name, int(inp["channels"]), int(inp["size"]), steps, body.get("note", ""))


def _output(step: Step, c: int, h: int, w: int) -> tuple[int, int, int]:
    """(channels, height, width) out of `step` on a c x h x w input; ValueError if its window does not fit."""
    if isinstance(step, ConvStep):
        s = step.shape(h, w)
        return s.co, s.ho, s.wo
    return (c, *step.output_size(h, w))


def _pool_padding(step: Step, at: schema.FieldPath) -> list[schema.Problem]:
    if isinstance(step, ConvStep):
        return []
    try:
        check_pool(step.kernel, step.stride, step.pad)
    except ValueError as exc:
        return [schema.wrong((*at, "pad"), str(exc))]
    return []


def _chain_problems(network: Network, where: schema.FieldPath = ()) -> list[schema.Problem]:
    """What keeps the steps from chaining on the network's input, each at its step's path below `where`: names used
    twice, a Ci that is not the channels received, a pool padded by more than half its window, and the first window
    larger than its padded input (the sizes after it are unknown)."""
    problems: list[schema.Problem] = []
    c, h, w = network.channels, network.size, network.size
    first: dict[str, int] = {}  # step index by name
    for i, step in enumerate(network.steps):
        at = (*where, "steps", i)
        if first.setdefault(step.name, i) != i:
            problems.append(
                schema.must(
                    (*at, "name"),
                    "unique within the network",
                    step.name,
                    f"step {first[step.name]} is named {step.name!r} too",
                )
            )
        if isinstance(step, ConvStep) and step.ci != c:
            before = "the input" if i == 0 else f"step {i - 1} ({network.steps[i - 1].name!r})"
            problems.append(schema.must((*at, "Ci"), f"{c}, the channels of {before}", step.ci))
        problems += _pool_padding(step, at)
        try:
            c, h, w = _output(step, c, h, w)
        except ValueError as exc:
            problems.append(schema.wrong(at, f"step {step.name!r} cannot run on its {c}x{h}x{w} input: {exc}"))
            break
    return problems


def _check_chain(network: Network, origin: str) -> None:
    problems = _chain_problems(network)
    if problems:
        raise NetworkError(*schema.report(origin, problems))


def load_networks(text: str, source: str = DATA_FILE) -> dict[str, Network]:
    """Parse and check the text of a networks file against networks.schema.json, then check that every network's
    steps chain; NetworkError (a ValueError) names the file and, sorted by field, every problem found."""
    data = schema.load_yaml(text, source, NetworkError, MAX_CHARS)
    problems = schema.find_problems(_validator(), data)
    broken = {p.path[:2] for p in problems}  # the document, a top-level field, or one network
    found: dict[str, Network] = {}
    if () not in broken and ("networks",) not in broken:
        for name, body in data["networks"].items():
            if ("networks", name) not in broken:
                found[name] = _network(name, body)
                problems += _chain_problems(found[name], ("networks", name))
    if problems:
        raise NetworkError(*schema.report(source, problems))
    return found


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


def sequential(
    network: Network, weights: tuple[tuple[np.ndarray, np.ndarray], ...], *, threads: int | None = None
) -> Sequential:
    """The Sequential of `network` holding `weights` (one (OIHW, bias) pair per convolution), bound for the
    network's input size (every kernel chosen and compiled now, not at the first call)."""
    convs = [s for s in network.steps if isinstance(s, ConvStep)]
    if len(weights) != len(convs):
        raise ValueError(f"{network.name} has {len(convs)} convolutions, got {len(weights)} weight pairs")
    pairs = iter(weights)
    steps: list[Conv2d | MaxPool2d] = []
    for step, (_, h, w) in zip(network.steps, network.activations()[:-1], strict=True):
        if isinstance(step, ConvStep):
            weight, bias = next(pairs)
            steps.append(
                Conv2d(
                    weight,
                    bias,
                    stride=step.stride,
                    padding=step.pad,
                    activation="relu" if step.relu else None,
                    threads=threads,
                    input_size=(h, w),
                )
            )
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
