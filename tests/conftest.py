"""Shared fixtures: random tensors, and skipping compiler tests where no C compiler exists."""

from __future__ import annotations

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
