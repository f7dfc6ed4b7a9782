"""Measure candidates safely: each runs in a worker subprocess that may crash or hang without ending the tuner."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from directconv.core.config import KernelConfig
from directconv.core.shape import ConvShape
from directconv.tuner.compile import Built
from directconv.tuner.harness import schedule

STATUSES = ("ok", "wrong", "crashed", "timeout", "compile_error", "error")


@dataclass(frozen=True)
class Measurement:
    """One candidate's outcome. Failures are values too: status says which, detail says why."""

    config: KernelConfig
    status: str
    seconds: float | None = None  # the chosen statistic (median by default) of per-call times
    spread: float | None = None  # (p90 - p10) / median of the samples
    samples: int = 0
    gflops: float | None = None
    max_rel_error: float | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class WorkerDied(RuntimeError):
    pass


class _Worker:
    def __init__(self) -> None:
        env = dict(os.environ)
        # The worker must import this same directconv, installed or from a checkout: the folder above the package.
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "directconv.tuner.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    def request(self, payload: dict, timeout: float) -> dict:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps(payload) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise WorkerDied(self._death()) from None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.kill()
            raise TimeoutError(f"no answer within {timeout:.0f} s")
        line = self.proc.stdout.readline()
        if not line:
            raise WorkerDied(self._death())
        return json.loads(line)

    def _death(self) -> str:
        code = self.proc.wait(timeout=10)
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"worker killed by {name}"
        err = (self.proc.stderr.read() if self.proc.stderr else "")[-500:]
        return f"worker exited with code {code}: {err.strip()}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def close(self) -> None:
        if self.proc.poll() is None and self.proc.stdin is not None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()


class Measurer:
    """Runs measurements one at a time in a worker process, replacing the worker whenever a candidate kills it.

    timeout: seconds one candidate may take (correctness check + timing) before it counts as hung.
    statistic: "median" (default, robust on a shared machine) or "min".
    exclusive: held around every measurement, rounds included (the tuner passes locks.measuring, so that nothing
    else on the host compiles or measures meanwhile); default: nothing.
    """

    def __init__(
        self,
        *,
        timeout: float = 60.0,
        min_time: float = 0.2,
        statistic: str = "median",
        exclusive: Callable[[], contextlib.AbstractContextManager[object]] | None = None,
    ) -> None:
        if statistic not in ("median", "min"):
            raise ValueError(f"statistic must be 'median' or 'min', got {statistic!r}")
        self.timeout = timeout
        self.min_time = min_time
        self.statistic = statistic
        self.exclusive = exclusive or contextlib.nullcontext
        self._worker: _Worker | None = None

    def __enter__(self) -> Measurer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()
            self._worker = None

    def measure(self, config: KernelConfig, shape: ConvShape, library: Path) -> Measurement:
        with self.exclusive():
            return self._measure(config, shape, library)

    def _measure(self, config: KernelConfig, shape: ConvShape, library: Path) -> Measurement:
        if self._worker is None:
            self._worker = _Worker()
        payload = {"lib": str(library), "config": config.to_dict(), "shape": shape.to_dict(), "min_time": self.min_time}
        started = time.monotonic()
        try:
            reply = self._worker.request(payload, self.timeout)
        except TimeoutError as exc:
            self._worker = None
            return Measurement(config, "timeout", detail=f"hung: {exc}")
        except WorkerDied as exc:
            self._worker = None
            return Measurement(config, "crashed", detail=str(exc))
        if reply["status"] == "wrong":
            return Measurement(
                config,
                "wrong",
                max_rel_error=reply["max_rel_error"],
                detail=f"max relative error {reply['max_rel_error']:.3g} > tolerance {reply['tolerance']:.3g}",
            )
        if reply["status"] != "ok":
            return Measurement(config, "error", detail=reply.get("detail", "unknown worker error"))
        samples = np.asarray(reply["samples"], dtype=np.float64)
        median = float(np.median(samples))
        seconds = median if self.statistic == "median" else float(samples.min())
        p10, p90 = np.percentile(samples, [10, 90])
        return Measurement(
            config,
            "ok",
            seconds=seconds,
            spread=float((p90 - p10) / median),
            samples=int(samples.size),
            gflops=shape.flops() / seconds / 1e9,
            max_rel_error=reply["max_rel_error"],
            detail=f"{samples.size} runs in {time.monotonic() - started:.1f} s",
        )

    def rounds(
        self,
        configs: Sequence[KernelConfig],
        shape: ConvShape,
        built: Mapping[tuple, Built],
        rounds: int,
        on_round: Callable[[int], None] | None = None,
        *,
        drop_failed: bool = False,
    ) -> list[dict[KernelConfig, float]]:
        """interleaved_rounds over this worker; built: compile_all's result for `configs`."""

        def one(config: KernelConfig) -> Measurement:
            library = built[config.compile_key()].library
            if library is None:
                return Measurement(config, "compile_error", detail=built[config.compile_key()].error[:2000])
            return self.measure(config, shape, library)

        return interleaved_rounds(one, configs, rounds, on_round=on_round, drop_failed=drop_failed)


def interleaved_rounds(
    measure: Callable[[KernelConfig], Measurement],
    configs: Sequence[KernelConfig],
    rounds: int,
    *,
    on_round: Callable[[int], None] | None = None,
    drop_failed: bool = False,
) -> list[dict[KernelConfig, float]]:
    """GFLOP/s of every configuration in each of `rounds` rounds, the order rotating from round to round
    (harness.schedule). Within a round every configuration meets the same machine, so ratios taken inside one round
    carry across the host's phases where absolute figures do not. A configuration that fails in a round is missing
    from that round, and with drop_failed from every later one too (a finalist that crashes now is out, rather than
    paying its crash or timeout again every round). on_round(r) after round r."""
    if rounds < 0:
        raise ValueError(f"`rounds >= 0` must hold, but got rounds={rounds}")
    dropped: set[KernelConfig] = set()
    per_round: list[dict[KernelConfig, float]] = []
    for r, order in enumerate(schedule(configs, rounds)):
        got: dict[KernelConfig, float] = {}
        for config in order:
            if config in dropped:
                continue
            m = measure(config)
            if m.ok and m.gflops is not None:
                got[config] = m.gflops
            elif drop_failed:
                dropped.add(config)
        per_round.append(got)
        if on_round is not None:
            on_round(r)
    return per_round
