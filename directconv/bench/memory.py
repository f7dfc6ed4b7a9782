"""Memory high-water mark of one implementation running a whole network, measured in a process of its own.

The child (`python -m directconv.bench.memory SPEC`) builds only that implementation's model, runs it once to
warm up (first-call allocations, thread pools, caches), resets the kernel's high-water mark by writing "5" to
/proc/self/clear_refs, reads VmRSS, runs the network once more and reads VmHWM. Reported: the peak RSS of the
process (interpreter and libraries included: what a service running this network would need) and the growth
during inference (VmHWM minus VmRSS before the run: the working memory of one inference, beyond what stays
allocated between calls). A process of its own keeps one implementation's memory out of another's figures.
The kernel batches its RSS counters, so both figures are exact to a few hundred KiB only.
Linux only: elsewhere, or when /proc does not allow it, the figures are "n/a" with the reason.
The ONNX-model bench (onnx_model.py) measures the same way with a child of its own: run_child and peak_of.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import directconv
from directconv.bench.base import Registry
from directconv.bench.network import NetworkProblem, NetworkSpec
from directconv.bench.results import MemoryUsage

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")
RESET_PEAK = "5"  # clear_refs value that resets VmHWM to the current RSS (Linux 4.0+)
TIMEOUT_SECONDS = 900
# glibc raises its mmap threshold to the size of each large block freed, after which blocks that size come from the
# heap and stay resident once freed: the warm-up's working memory would then already count in VmRSS before the run
# and the growth would read 0 for everyone. A fixed threshold (glibc's initial 128 KiB) keeps large blocks mapped
# and unmapped with their allocation. Only the child runs with it; it changes no timing.
CHILD_ENV = {"MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}


def parse_status(text: str) -> dict[str, int]:
    """VmHWM and VmRSS in bytes from the text of /proc/<pid>/status (keys missing when the kernel omits them)."""
    found = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            number, _, unit = value.strip().partition(" ")
            if unit.strip() != "kB":
                raise ValueError(f"/proc status line {line!r}: expected a size in kB")
            found[key] = int(number) * 1024
    return found


def unavailable_reason() -> str | None:
    """None if this system can measure high-water marks, else why not."""
    if not STATUS.is_file():
        return f"{STATUS} does not exist (not Linux)"
    if not CLEAR_REFS.exists():
        return f"{CLEAR_REFS} does not exist: the peak cannot be reset after the warm-up"
    if not {"VmHWM", "VmRSS"} <= set(parse_status(STATUS.read_text())):
        return f"{STATUS} shows no VmHWM/VmRSS"
    return None


def _child(registry: Registry[NetworkProblem], spec: NetworkSpec, impl_name: str) -> dict[str, Any]:
    """In the child: build, warm up, reset the peak, run once, report (see the module docstring)."""
    (impl,) = registry.select([impl_name])
    problem = NetworkProblem.make(spec)
    prepared = impl.prepare(problem, spec.threads)
    # Every implementation copied the weights into its own model; dropping the originals leaves that model's
    # memory only (the input stays: the call refers to it).
    del problem
    return peak_of(prepared.call).to_dict()


def peak_of(call: Callable[[], object]) -> MemoryUsage:
    """In a child: run `call` once to warm up, reset the peak, run it again; the peak RSS during that run and its
    growth over the RSS just before it (see the module docstring). Needs unavailable_reason() to be None."""
    result = call()
    del result
    CLEAR_REFS.write_text(RESET_PEAK)
    before = parse_status(STATUS.read_text())
    result = call()
    after = parse_status(STATUS.read_text())
    del result
    return MemoryUsage(after["VmHWM"], after["VmHWM"] - before["VmRSS"], before["VmRSS"])


def _package_root() -> str:
    # The child must import this very directconv (a source checkout as much as an installed one).
    return str(Path(directconv.__file__).resolve().parent.parent)


def measure_memory(spec: NetworkSpec, impl_name: str, timeout: float = TIMEOUT_SECONDS) -> MemoryUsage | str:
    """The memory of `impl_name` on `spec`, measured in a child process; a string saying why where it cannot be."""
    data = run_child("directconv.bench.memory", [spec.to_json(), impl_name], timeout)
    if isinstance(data, str):
        return data
    return MemoryUsage(data["peak_rss_bytes"], data["growth_bytes"], data["rss_before_bytes"])


def run_child(module: str, args: Sequence[str], timeout: float = TIMEOUT_SECONDS) -> dict[str, Any] | str:
    """Run `python -m module *args` with CHILD_ENV and this directconv importable, and return the JSON object on
    the last line it prints; a string saying why instead where memory cannot be measured, or the child failed or
    took longer than `timeout` seconds."""
    reason = unavailable_reason()
    if reason is not None:
        return reason
    env = {**os.environ, **CHILD_ENV}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_package_root(), env.get("PYTHONPATH")) if p)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=timeout, env=env
        )
    except subprocess.TimeoutExpired:
        return f"the child process took longer than {timeout:.0f} s"
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        return f"the child process failed (exit {proc.returncode}): {lines[-1] if lines else 'no output'}"
    data: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return data


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m directconv.bench.memory SPEC_JSON IMPL", file=sys.stderr)
        return 2
    # Imported here, in the child only: the end-to-end bench imports this module to measure memory with it.
    from directconv.bench.end_to_end import REGISTRY

    print(json.dumps(_child(REGISTRY, NetworkSpec.from_json(argv[0]), argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
