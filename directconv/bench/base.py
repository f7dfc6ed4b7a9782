"""What every benchmarked implementation provides, and how its answer is judged.

An implementation turns a Problem (one layer's input and weights) and a thread count into a Prepared: a
callable that does one convolution, plus whatever it costs in memory. All set-up that a user does once (packing
weights, building a session, allocating output buffers) happens in `prepare`, never in the timed call.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np

from directconv.kernels.reference import conv2d_reference, tolerance
from directconv.core.shape import ConvShape
from directconv.core.suite import Layer

INSTALL_HINT = "pip install 'directconv[bench]'"


@dataclass(frozen=True)
class Problem:
    """One layer's data: NCHW input of batch 1 and OIHW weights, float32, uniform in [-1, 1) from `seed`."""

    layer: Layer
    x: np.ndarray
    w: np.ndarray

    @property
    def shape(self) -> ConvShape:
        return self.layer.shape

    @property
    def stride(self) -> tuple[int, int]:
        return self.shape.sh, self.shape.sw

    @property
    def padding(self) -> tuple[int, int, int, int]:
        """(top, bottom, left, right)."""
        s = self.shape
        return s.pt, s.pb, s.pl, s.pr

    @classmethod
    def make(cls, layer: Layer, seed: int = 0) -> Problem:
        s = layer.shape
        rng = np.random.default_rng(seed)
        x = rng.uniform(-1.0, 1.0, size=(1, s.ci, s.h, s.w)).astype(np.float32)
        w = rng.uniform(-1.0, 1.0, size=(s.co, s.ci, s.kh, s.kw)).astype(np.float32)
        return cls(layer, x, w)

    def reference(self) -> np.ndarray:
        """The float64 answer (computed on every call: the caller keeps it as long as it needs it)."""
        return conv2d_reference(self.x, self.w, stride=self.stride, padding=self.padding)


@dataclass
class Prepared:
    """One implementation set up for one layer and thread count.

    call:    does one convolution of the problem's input; this is what is timed. Its return value is whatever
             the implementation naturally produces (an array, a tensor, a BlockedTensor).
    to_nchw: turns a return value of `call` into an NCHW numpy array, for the correctness check only (not timed).
    extra_memory_bytes: working memory the implementation allocates beyond input, weights and output
             (e.g. the im2col matrix), or None where it is not known (a library's internal buffers).
    config:  the kernel configuration, for directconv implementations.
    note:    a short remark for the JSON record (e.g. which BLAS thread limit applied).
    close:   undoes process-wide settings made by prepare (a BLAS thread limit); called once when done.
    """

    call: Callable[[], Any]
    to_nchw: Callable[[Any], np.ndarray]
    extra_memory_bytes: int | None = None
    config: dict[str, Any] | None = None
    note: str = ""
    close: Callable[[], None] | None = field(default=None, repr=False)


P = TypeVar("P")  # what an implementation is prepared for: a Problem (one layer), or a whole network (chain.py)


@dataclass(frozen=True)
class Impl(Generic[P]):
    """A benchmarked implementation.

    requires: modules that must import for it to run; if one does not, the implementation is skipped as not
              installed (any exception on import counts: a broken install must not end the benchmark).
    peer:     True for the libraries directconv is compared against (the summary's best-peer ratio).
    """

    name: str
    legend: str
    prepare: Callable[[P, int], Prepared]
    requires: tuple[str, ...] = ()
    peer: bool = True

    def missing(self) -> str | None:
        """None if every required module imports, else a message naming the first one that does not."""
        for module in self.requires:
            try:
                importlib.import_module(module)
            except Exception as exc:  # see the docstring of `requires`
                return f"{module} ({type(exc).__name__}: {exc})".splitlines()[0][:200]
        return None


@dataclass(frozen=True)
class Check:
    """The verdict on one output: correct if max|y - ref| / max|ref| <= tolerance (and the shape matches)."""

    correct: bool
    max_rel_error: float
    tolerance: float
    problem: str = ""  # why it is wrong, in words, when it is


def check_output(y: Any, reference: np.ndarray, shape: ConvShape) -> Check:
    """Judge output `y` (anything np.asarray accepts) against the float64 reference of `shape`.

    The tolerance is kernels.reference.tolerance(ci, kh, kw) relative to the largest |reference| value: the same
    bound the kernel tests use, loose enough for any fp32 summation order, tight enough to catch a lost tap.
    """
    return compare(y, reference, tolerance(shape.ci, shape.kh, shape.kw))


def compare(y: Any, reference: np.ndarray, tol: float) -> Check:
    """Correct if `y` has the reference's shape, is finite, and max|y - reference| / max|reference| <= tol."""
    y = np.asarray(y)
    if y.shape != reference.shape:
        return Check(False, float("inf"), tol, f"output shape {y.shape}, expected {reference.shape}")
    if not np.all(np.isfinite(y)):
        return Check(False, float("inf"), tol, "output holds NaN or infinity")
    scale = float(np.max(np.abs(reference))) or 1.0
    error = float(np.max(np.abs(y.astype(np.float64) - reference))) / scale
    if error > tol:
        return Check(False, error, tol, f"max relative error {error:.2e} exceeds the tolerance {tol:.2e}")
    return Check(True, error, tol)
