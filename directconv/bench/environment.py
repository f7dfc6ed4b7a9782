"""Provenance of a benchmark run: the machine, the compiler and the library versions that produced the numbers."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
from pathlib import Path
from typing import Any

import directconv
from directconv.core.isa import host_isa
from directconv.kernels import compiler

PACKAGES = ("numpy", "scipy", "threadpoolctl", "torch", "onnxruntime", "onnx", "cffi")
THREAD_ENV = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "GOMP_SPINCOUNT")


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's marketing name from /proc/cpuinfo ("model name", or "Hardware"/"CPU part" on ARM)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return platform.processor() or platform.machine()
    for key in ("model name", "Hardware", "Processor", "CPU part"):
        for line in cpuinfo.splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key and value.strip():
                return value.strip()
    return platform.processor() or platform.machine()


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages whose speed or presence shapes the results (None: not installed)."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def blas_info() -> list[dict[str, Any]]:
    """The thread pools threadpoolctl sees (BLAS and OpenMP libraries, their versions and thread counts)."""
    from threadpoolctl import threadpool_info

    keep = ("user_api", "internal_api", "version", "num_threads", "architecture")
    # The library's file name says which build ran; its directory is only where this machine installed it.
    return [
        {**{k: pool.get(k) for k in keep if k in pool}, "library": os.path.basename(pool.get("filepath") or "")}
        for pool in threadpool_info()
    ]


def metadata() -> dict[str, Any]:
    """What a reader of the results needs to know to compare them with another run."""
    try:
        found = compiler.find_compiler()
        cc: dict[str, str] | str = {"path": found.path, "version": found.version}
    except compiler.CompilerNotFoundError as exc:
        cc = str(exc)
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "isa": host_isa(),
        "available_threads": directconv.available_threads(),
        "compiler": cc,
        "directconv": directconv.__version__,
        "python": platform.python_version(),
        "versions": package_versions(),
        "thread_env": {k: os.environ.get(k) for k in THREAD_ENV},
        # Other work on the machine is the main source of noise, at 2 threads on 2 cores above all.
        "load_average": _load_average(),
    }


def _load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None
