"""directconv on a whole network, two ways: its Sequential on NCHW, and on a pre-blocked input."""

from __future__ import annotations

from collections import Counter

import numpy as np

import directconv
from directconv.bench.base import Impl, Prepared
from directconv.bench.network import NetworkProblem, build_model
from directconv.kernels import layout
from directconv.nn.sequential import Sequential


def config_sources(model: Sequential) -> str:
    """Where the convolutions' configurations came from (directconv.tuner.select), counted."""
    counts = Counter(step.source for step in model.steps if isinstance(step, directconv.Conv2d))
    return "configurations: " + ", ".join(f"{n} {source}" for source, n in counts.most_common())


def _working_memory(model: Sequential, problem: NetworkProblem, *, nchw: bool) -> int:
    plan = model.plan(problem.network.channels, problem.network.size, problem.network.size)
    return 4 * sum(plan.buffer_floats(1, nchw=nchw))


def prepare_nchw(problem: NetworkProblem, threads: int) -> Prepared:
    """NCHW in, NCHW out: the Sequential's one conversion in and one out are part of every call."""
    model = build_model(problem)
    x = problem.x

    def call() -> np.ndarray:
        return model(x)

    return Prepared(
        call, np.asarray, extra_memory_bytes=_working_memory(model, problem, nchw=True), note=config_sources(model)
    )


def prepare_blocked(problem: NetworkProblem, threads: int) -> Prepared:
    """Blocked in, blocked out into a preallocated result: a call allocates only the Sequential's two buffers."""
    model = build_model(problem)
    n = problem.network
    plan = model.plan(n.channels, n.size, n.size)
    xb = directconv.to_blocked(problem.x, isa=plan.isa, threads=threads)
    last = plan.outputs[-1]
    out = directconv.BlockedTensor(layout.empty_aligned(last.blocked_shape(1, plan.lanes), zero=True), last.channels)

    def call() -> directconv.BlockedTensor:
        return model.forward_blocked(xb, out=out)

    return Prepared(
        call,
        directconv.from_blocked,
        extra_memory_bytes=_working_memory(model, problem, nchw=False),
        note=config_sources(model),
    )


IMPLS: tuple[Impl[NetworkProblem], ...] = (
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
