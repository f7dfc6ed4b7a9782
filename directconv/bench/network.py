"""The end-to-end problem: a whole network (directconv.nn.networks) with its weights and input, the float64 answer
directconv is judged by, and the answer its peers are judged by.

A NetworkSpec is what it takes to rebuild the same problem in another process (the memory measurement runs each
implementation in a child, see memory.py): network, thread count, seed and the optional cuts for quick runs.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

import directconv
from directconv.bench.base import Check, compare
from directconv.bench.runner import Case
from directconv.kernels.reference import conv2d_reference, tolerance
from directconv.nn.networks import ConvStep, Network, get_network, he_weights, sequential
from directconv.nn.sequential import Sequential

Weights = tuple[tuple[np.ndarray, np.ndarray], ...]
OURS = "directconv-nchw output"
FLOAT64 = "float64 step-by-step reference"


@dataclass(frozen=True)
class NetworkSpec:
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
    def from_json(cls, text: str) -> NetworkSpec:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class NetworkProblem:
    """A network's definition, He-initialised weights and zero biases (networks.he_weights), and a standard
    normal NCHW input of batch 1, all from the spec's seed. Every implementation builds its own model from these
    in its prepare (directconv's may come built: see `model`)."""

    spec: NetworkSpec
    network: Network
    weights: Weights
    x: np.ndarray
    # directconv's model when already built: the benchmark builds it once for the reference and both directconv
    # implementations (building binds every layer, which takes seconds on a deep network).
    model: Sequential | None = None

    @classmethod
    def make(cls, spec: NetworkSpec) -> NetworkProblem:
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


def network_tolerance(network: Network) -> float:
    """Relative error bound (to the largest |output|) of an fp32 run of the whole chain against float64.

    Each convolution may add kernels.reference.tolerance(ci, k, k) of the activations' scale; He-initialised
    weights keep that scale from layer to layer, and ReLU and max-pool move no value by more than the error it
    already has, so the steps' bounds add up.
    """
    return sum(tolerance(step.ci, step.kernel, step.kernel) for step in network.steps if isinstance(step, ConvStep))


def build_model(problem: NetworkProblem) -> Sequential:
    """directconv's Sequential for the problem (problem.model if built), every kernel chosen and compiled now.
    Untuned layers run the model's configuration: counted in the report (network_ours.config_sources), not
    warned about one by one."""
    if problem.model is not None:
        return problem.model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", directconv.UntunedWarning)
        return sequential(problem.network, problem.weights, threads=problem.spec.threads)


def make_case(spec: NetworkSpec) -> tuple[Case[NetworkProblem], Check]:
    """The problem of `spec` with directconv's model built, ready to run; and directconv's check against float64.

    Peers are judged against directconv's own output, with room for both sides' rounding; if directconv itself
    is wrong, everyone is judged against float64 instead, so that its failure cannot pass as theirs.
    """
    problem = NetworkProblem.make(spec)
    model = build_model(problem)
    problem = replace(problem, model=model)
    tol = network_tolerance(problem.network)
    exact = float64_reference(problem.network, problem.weights, problem.x)
    ours = model(problem.x)
    verified = compare(ours, exact, tol)
    reference, ref_tol, ref_name = (ours, 2 * tol, OURS) if verified.correct else (exact, tol, FLOAT64)
    del exact
    case = Case(problem.network.name, problem.flops, problem, lambda y: compare(y, reference, ref_tol), ref_name)
    return case, verified
