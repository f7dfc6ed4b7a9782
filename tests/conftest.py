"""Shared fixtures: random tensors, study databases, allocation peaks, and skipping compiler tests where no C
compiler exists."""

from __future__ import annotations

import os
import shutil
import tempfile
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from directconv.kernels.compiler import CompilerNotFoundError, find_compiler


def _have_compiler() -> str | None:
    try:
        find_compiler()
    except CompilerNotFoundError as exc:
        return str(exc)
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _have_compiler()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=f"needs a C compiler: {reason}")
    for item in items:
        if "compiler" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20180710)


def _random_layer(rng: np.random.Generator, n: int, ci: int, co: int, h: int, w: int, kh: int, kw: int):
    x = rng.standard_normal((n, ci, h, w)).astype(np.float32)
    wt = rng.standard_normal((co, ci, kh, kw)).astype(np.float32)
    bias = rng.standard_normal(co).astype(np.float32)
    return x, wt, bias


@pytest.fixture
def random_layer():
    """random_layer(rng, n, ci, co, h, w, kh, kw) -> (x NCHW, w OIHW, bias), float32 standard normal."""
    return _random_layer


@pytest.fixture
def url(tmp_path) -> Iterator[str]:
    """A study database in memory-backed storage where there is one: SQLite commits there cost no disk sync."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield f"sqlite:///{tmp_path / 'study.db'}"
        return
    folder = Path(tempfile.mkdtemp(prefix="directconv-test-", dir=shm))
    try:
        yield f"sqlite:///{folder / 'study.db'}"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _peak_bytes(fn: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - before


@pytest.fixture
def peak_bytes() -> Callable[[Callable[[], object]], int]:
    """peak_bytes(fn) -> the most bytes Python-visible allocations held above the start while fn ran."""
    return _peak_bytes
