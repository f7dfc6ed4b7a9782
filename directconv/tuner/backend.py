"""Where a study's candidates are built and timed: on this machine, or against recorded outcomes.

The search (tune.py) talks to a Backend only: compile a batch, measure one candidate, time finalists in interleaved
rounds. RealBackend compiles C kernels in parallel and times them one at a time in a worker subprocess (Measurer),
under the host locks. SimulatedBackend answers from a deterministic function of the configuration, as Kernel Tuner's
simulation mode replays recorded runs: the search itself (sampler, seeding, deduplication, claims, failure
recording, resume) runs for real, fast and free of the machine's noise, and every failure a real candidate can
have (crash, hang, compile error, wrong answer) is a recorded Measurement like any other.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from directconv.core.config import KernelConfig
from directconv.core.shape import ConvShape
from directconv.tuner.compile import Built, SourceHook, compile_all
from directconv.tuner.locks import compiling, measuring
from directconv.tuner.measure import Measurement, Measurer, interleaved_rounds

CANDIDATE_TIMEOUT = 120.0  # seconds one candidate may take on the machine before it counts as hung


class Backend(Protocol):
    def compile(self, configs: Sequence[KernelConfig], shape: ConvShape) -> Mapping[tuple, Built]:
        """Every distinct compiled variant among `configs`, keyed by KernelConfig.compile_key(); a failed build is
        a Built without library."""
        ...

    def measure(self, config: KernelConfig, shape: ConvShape, library: Path) -> Measurement:
        """Check and time one candidate built into `library`; any failure is the Measurement's status."""
        ...

    def rounds(
        self, configs: Sequence[KernelConfig], shape: ConvShape, built: Mapping[tuple, Built], rounds: int
    ) -> list[dict[KernelConfig, float]]:
        """GFLOP/s of each configuration in each of `rounds` interleaved rounds (measure.interleaved_rounds); a
        configuration that fails is missing from that round and every later one."""
        ...

    def close(self) -> None: ...


def measure_built(backend: Backend, config: KernelConfig, shape: ConvShape, built: Built) -> Measurement:
    """Measure `config` from its build: a failed build is the candidate's outcome, never measured."""
    if built.library is None:
        return Measurement(config, "compile_error", detail=built.error[:2000])
    return backend.measure(config, shape, built.library)


class RealBackend:
    """This machine: candidates compiled in parallel (the host lock shared), then timed one at a time in a worker
    subprocess that may crash or hang without ending the tuner (the host lock exclusive: see locks).

    timeout: seconds one candidate may take; min_time: seconds of timing per candidate; statistic: "median" or
    "min" (Measurer). source_hook: rewrites a candidate's C source before it is compiled (fault injection, so the
    end-to-end tests can make a real kernel crash, hang, fail to compile or answer wrong).
    """

    def __init__(
        self,
        *,
        timeout: float = CANDIDATE_TIMEOUT,
        min_time: float = 0.2,
        statistic: str = "median",
        source_hook: SourceHook | None = None,
    ) -> None:
        self.source_hook = source_hook
        self.measurer = Measurer(timeout=timeout, min_time=min_time, statistic=statistic, exclusive=measuring)

    def __enter__(self) -> RealBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def compile(self, configs: Sequence[KernelConfig], shape: ConvShape) -> Mapping[tuple, Built]:
        with compiling():
            return compile_all(configs, shape, source_hook=self.source_hook)

    def measure(self, config: KernelConfig, shape: ConvShape, library: Path) -> Measurement:
        return self.measurer.measure(config, shape, library)

    def rounds(
        self, configs: Sequence[KernelConfig], shape: ConvShape, built: Mapping[tuple, Built], rounds: int
    ) -> list[dict[KernelConfig, float]]:
        return self.measurer.rounds(configs, shape, built, rounds, drop_failed=True)

    def close(self) -> None:
        self.measurer.close()


Outcome = Callable[[KernelConfig], Measurement]


class SimulatedBackend:
    """Recorded outcomes instead of the machine: `outcome(config)` is what measuring `config` gives (ok, crashed,
    timeout, wrong, error), called once per measurement.

    compile_errors: compiled variant (KernelConfig.compile_key()) -> the compiler's message, for the variants that
    fail to build; their configurations are never measured, as on the machine. delay: seconds each measurement
    takes, so that a test can interrupt a study in the middle. `measured` lists every configuration measured, in
    order (the study's candidates, then the confirmation rounds').
    """

    def __init__(
        self, outcome: Outcome, *, compile_errors: Mapping[tuple, str] | None = None, delay: float = 0.0
    ) -> None:
        if delay < 0:
            raise ValueError(f"`delay >= 0` must hold, but got delay={delay}")
        self.outcome = outcome
        self.compile_errors = dict(compile_errors or {})
        self.delay = delay
        self.measured: list[KernelConfig] = []

    def __enter__(self) -> SimulatedBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def compile(self, configs: Sequence[KernelConfig], shape: ConvShape) -> Mapping[tuple, Built]:
        keys = dict.fromkeys(c.compile_key() for c in configs)
        return {
            k: Built(None, self.compile_errors[k]) if k in self.compile_errors else Built(Path("<simulated>"))
            for k in keys
        }

    def measure(self, config: KernelConfig, shape: ConvShape, library: Path) -> Measurement:
        self.measured.append(config)
        if self.delay:
            time.sleep(self.delay)
        return self.outcome(config)

    def rounds(
        self, configs: Sequence[KernelConfig], shape: ConvShape, built: Mapping[tuple, Built], rounds: int
    ) -> list[dict[KernelConfig, float]]:
        return interleaved_rounds(
            lambda c: measure_built(self, c, shape, built[c.compile_key()]), configs, rounds, drop_failed=True
        )

    def close(self) -> None:
        pass


def simulated(config: KernelConfig, shape: ConvShape, gflops: float) -> Measurement:
    """A correct measurement of `config` at `gflops` (for a SimulatedBackend's outcome table)."""
    if not gflops > 0:
        raise ValueError(f"`gflops > 0` must hold, but got gflops={gflops} for {config}")
    return Measurement(
        config,
        "ok",
        seconds=shape.flops() / gflops / 1e9,
        spread=0.0,
        samples=1,
        gflops=gflops,
        max_rel_error=0.0,
        detail="simulated",
    )
