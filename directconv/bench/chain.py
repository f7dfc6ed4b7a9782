"""End-to-end problems: a whole network (directconv.nn.networks) with its weights and input, the float64 answer it
is judged by, and directconv run on it two ways.

A ChainSpec is what it takes to rebuild the same problem in another process (the memory measurement runs each
implementation in a child, see memory.py): network, thread count, seed and the optional cuts for quick runs.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

import directconv
from directconv.kernels import layout
from directconv.kernels.reference import conv2d_reference, tolerance
from directconv.nn.networks import ConvStep, Network, get_network, he_weights, sequential
from directconv.nn.sequential import Sequential

from directconv.bench.base import Impl, Prepared

Weights = tuple[tuple[np.ndarray, np.ndarray], ...]


@dataclass(frozen=True)
class ChainSpec:
    """Which network, on how many threads, from which seed; input_size and steps cut it down for quick runs."""

    network: str
    threads: int
    seed: int = 0
    input_size: int | None = None
    steps: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> ChainSpec:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class ChainProblem:
    """A network's definition, He-initialised weights and zero biases (networks.he_weights), and a standard
    normal NCHW input of batch 1, all from the spec's seed. Every implementation builds its own model from these
    in its prepare (directconv's may come built: see `model`)."""

    spec: ChainSpec
    network: Network
    weights: Weights
    x: np.ndarray
    # directconv's model when already built: the benchmark builds it once for the reference and both directconv
    # implementations (building binds every layer, which takes seconds on a deep network).
    model: Sequential | None = None

    @classmethod
    def make(cls, spec: ChainSpec) -> ChainProblem:
        network = get_network(spec.network)
        if spec.input_size is not None or spec.steps is not None:
            network = network.with_input(spec.input_size, spec.steps)
        x = np.random.default_rng((spec.seed, 1)).standard_normal(
            (1, network.channels, network.size, network.size), dtype=np.float32
        )
        return cls(spec, network, he_weights(network, spec.seed), x)

    @property
    def flops(self) -> int:
        return self.network.flops()


def maxpool_reference(x: np.ndarray, kernel: int, stride: int, padding: int) -> np.ndarray:
    """NCHW max-pool in numpy, padding acting as -infinity (float64 in, float64 out)."""
    padded = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)), constant_values=-np.inf)
    windows = sliding_window_view(padded, (kernel, kernel), axis=(2, 3))[:, :, ::stride, ::stride]
    return windows.max(axis=(4, 5))


def float64_reference(network: Network, weights: Weights, x: np.ndarray) -> np.ndarray:
    """The network's answer computed step by step in float64 (conv2d_reference, numpy max-pool, ReLU)."""
    y = np.asarray(x, dtype=np.float64)
    pairs = iter(weights)
    for step in network.steps:
        if isinstance(step, ConvStep):
            w, b = next(pairs)
            y = conv2d_reference(y, w, b, stride=step.stride, padding=step.pad)
            if step.relu:
                np.maximum(y, 0.0, out=y)
        else:
            y = maxpool_reference(y, step.kernel, step.stride, step.pad)
    return y


def chain_tolerance(network: Network) -> float:
    """Relative error bound (to the largest |output|) of an fp32 run of the whole chain against float64.

    Each convolution may add kernels.reference.tolerance(ci, k, k) of the activations' scale; He-initialised
    weights keep that scale from layer to layer, and ReLU and max-pool move no value by more than the error it
    already has, so the steps' bounds add up.
    """
    return sum(tolerance(step.ci, step.kernel, step.kernel) for step in network.steps if isinstance(step, ConvStep))


def config_sources(model: Sequential) -> str:
    """Where the convolutions' configurations came from (directconv.tuner.select), counted."""
    counts = Counter(step.source for step in model.steps if isinstance(step, directconv.Conv2d))
    return "configurations: " + ", ".join(f"{n} {source}" for source, n in counts.most_common())


def build_model(problem: ChainProblem) -> Sequential:
    """directconv's Sequential for the problem (problem.model if built), every kernel chosen and compiled now.
    Untuned layers run the model's configuration: counted in the report (config_sources), not warned about one
    by one."""
    if problem.model is not None:
        return problem.model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", directconv.UntunedWarning)
        return sequential(problem.network, problem.weights, threads=problem.spec.threads)


def _working_memory(model: Sequential, problem: ChainProblem, *, nchw: bool) -> int:
    plan = model.plan(problem.network.channels, problem.network.size, problem.network.size)
    return 4 * sum(plan.buffer_floats(1, nchw=nchw))


def prepare_nchw(problem: ChainProblem, threads: int) -> Prepared:
    """NCHW in, NCHW out: the Sequential's one conversion in and one out are part of every call."""
    model = build_model(problem)
    x = problem.x

    def call() -> np.ndarray:
        return model(x)

    return Prepared(call, np.asarray, extra_memory_bytes=_working_memory(model, problem, nchw=True),
                    note=config_sources(model))


def prepare_blocked(problem: ChainProblem, threads: int) -> Prepared:
    """Blocked in, blocked out into a preallocated result: a call allocates only the Sequential's two buffers."""
    model = build_model(problem)
    n = problem.network
    plan = model.plan(n.channels, n.size, n.size)
    xb = directconv.to_blocked(problem.x, isa=plan.isa, threads=threads)
    last = plan.outputs[-1]
    out = directconv.BlockedTensor(layout.empty_aligned(last.blocked_shape(1, plan.lanes), zero=True), last.channels)

    def call() -> directconv.BlockedTensor:
        return model.forward_blocked(xb, out=out)

    return Prepared(call, directconv.from_blocked, extra_memory_bytes=_working_memory(model, problem, nchw=False),
                    note=config_sources(model))


IMPLS: tuple[Impl[ChainProblem], ...] = (
    Impl(
        "directconv-nchw",
        "directconv.Sequential on NCHW: one conversion in, every step blocked, one conversion out (in the timing)",
        prepare_nchw,
        peer=False,
    ),
    Impl(
        "directconv-blocked",
        "directconv.Sequential on a pre-blocked input into a preallocated blocked output",
        prepare_blocked,
        peer=False,
    ),
)
