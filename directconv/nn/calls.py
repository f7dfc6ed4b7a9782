"""The fixed cost of one layer call, measured: what the model adds to every layer's estimate (Machine.call_us).

A small layer's time is not all kernel. `conv2d_blocked` checks its arguments and calls C through cffi, and on more
than one thread OpenMP wakes the other threads and joins them: a large share of a small depthwise layer's call
(measured: docs/design.md, "The Python cost of a call"). `directconv probe` measures it with two loops, timed in
the same interleaved rounds (tuner.harness.interleave; the fastest round of each, as the FMA peak is taken: on a
shared host a round where another tenant holds the second core says nothing about the call):

- the API's cost: `conv2d_blocked` on a layer whose kernel does next to nothing (1x1 filter, one pixel, one vector
  of channels; below the work at which kernels go parallel, so one thread runs it whatever it is given);
- the fork and join of T threads: the bandwidth loop (kernels/stream.py) over one vector on T threads against the
  same loop on one thread, the same call with and without a parallel region.

call_us[T] is the API's cost plus, for T > 1, the difference of the two loops.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from directconv.core import checks
from directconv.core.config import KernelConfig
from directconv.core.isa import get_isa, host_isa
from directconv.kernels import layout
from directconv.nn import api
from directconv.tuner import harness
from directconv.tuner.bandwidth import Traffic, stream_loop

ROUNDS = 15
MIN_TIME = 0.01  # seconds per timed batch


def measure_call_us(
    threads: Sequence[int], *, isa: str | None = None, rounds: int = ROUNDS, min_time: float = MIN_TIME
) -> dict[int, float]:
    """Microseconds of one layer call's fixed cost on each thread count of `threads` (see the module docstring).
    Compiles a tiny kernel and the bandwidth loop on first use."""
    counts = sorted(set(threads))
    for t in counts:
        checks.threads(t)
    if not counts:
        raise ValueError("threads must name at least one thread count, got none")
    isa_name = isa or host_isa()
    lanes = get_isa(isa_name).lanes
    w = np.ones((lanes, lanes, 1, 1), dtype=np.float32)
    config = KernelConfig(isa_name, cob=lanes, wob=1)
    packed = api.pack_weights(w, input_size=(1, 1), config=config)
    x = api.BlockedTensor(layout.empty_aligned((1, 1, 1, 1, lanes), zero=True), lanes)
    out = api.BlockedTensor(layout.empty_aligned((1, 1, 1, 1, lanes), zero=True), lanes)
    one_vector = Traffic(4 * lanes, 4 * lanes)
    calls: dict[str, Callable[[], object]] = {"api": lambda: api.conv2d_blocked(x, packed, out=out)}
    calls |= {f"fork{t}": stream_loop(one_vector, t, isa=isa_name).call for t in {1, *counts}}
    timings = harness.interleave(calls, rounds=rounds, min_time=min_time)
    best = {name: min(t.samples) * 1e6 for name, t in timings.items()}
    return {t: best["api"] + max(0.0, best[f"fork{t}"] - best["fork1"]) for t in counts}
