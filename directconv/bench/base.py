"""What every benchmarked implementation provides, and how its answer is judged, for any problem (one layer, a
whole network).

An implementation turns a problem and a thread count into a Prepared: a callable that runs the problem once, plus
whatever it costs in memory. All set-up that a user does once (packing weights, building a model or a session,
allocating output buffers) happens in `prepare`, never in the timed call.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

import numpy as np

INSTALL_HINT = "pip install 'directconv[bench]'"

ConfigSource = Literal["store", "model"]  # directconv's configuration: choose_config's, or the model's plan
SOURCES: tuple[ConfigSource, ...] = ("store", "model")


@dataclass(frozen=True)
class Prepared:
    """One implementation set up for one problem and thread count.

    call:    runs the problem once on its input; this is what is timed. Its return value is whatever the
             implementation naturally produces (an array, a tensor, a BlockedTensor).
    to_nchw: turns a return value of `call` into an NCHW numpy array, for the correctness check only (not timed).
    extra_memory_bytes: working memory the implementation allocates beyond input, weights and output
             (e.g. the im2col matrix, a Sequential's two buffers), or None where it is not known (a library's).
    config:  the kernel configuration, for directconv on one layer.
    config_source: where that configuration came from ("tuned", "nearest" or "model"), for directconv.
    note:    a short remark for the JSON record (e.g. which BLAS thread limit applied).
    close:   undoes process-wide settings made by prepare (a BLAS thread limit); called once when done.
    """

    call: Callable[[], Any]
    to_nchw: Callable[[Any], np.ndarray]
    extra_memory_bytes: int | None = None
    config: dict[str, Any] | None = None
    config_source: str | None = None
    note: str = ""
    close: Callable[[], None] | None = field(default=None, repr=False)


P = TypeVar("P")  # what an implementation is prepared for: a LayerProblem or a NetworkProblem


@dataclass(frozen=True)
class Impl(Generic[P]):
    """A benchmarked implementation.

    requires: modules that must import for it to run; if one does not, the implementation is skipped as not
              installed (any exception on import counts: a broken install must not end the benchmark).
    peer:     True for the libraries directconv is compared against; a failing peer does not fail the command.
    nchw:     True if it takes NCHW in and gives NCHW out (conversions, if any, inside its timing); False for a
              kernel timed alone on blocked activations, which is set only against other such kernels.
    """

    name: str
    legend: str
    prepare: Callable[[P, int], Prepared]
    requires: tuple[str, ...] = ()
    peer: bool = True
    nchw: bool = True

    def missing(self) -> str | None:
        """None if every required module imports, else a message naming the first one that does not."""
        for module in self.requires:
            try:
                importlib.import_module(module)
            except Exception as exc:  # see the docstring of `requires`
                return f"{module} ({type(exc).__name__}: {exc})".splitlines()[0][:200]
        return None


@dataclass(frozen=True)
class Registry(Generic[P]):
    """The implementations of one kind of problem, in the order they are reported; `what` names them in errors."""

    impls: tuple[Impl[P], ...]
    what: str = "implementation"

    def names(self) -> tuple[str, ...]:
        return tuple(impl.name for impl in self.impls)

    def select(self, wanted: Sequence[str] | None = None) -> tuple[Impl[P], ...]:
        """The implementations named in `wanted` (all if None or empty), in registry order; ValueError on a typo."""
        if not wanted:
            return self.impls
        unknown = [name for name in wanted if name not in self.names()]
        if unknown:
            raise ValueError(f"unknown {self.what}(s) {', '.join(unknown)}; known: {', '.join(self.names())}")
        return tuple(impl for impl in self.impls if impl.name in wanted)

    def available(self, wanted: Sequence[str] | None = None) -> tuple[tuple[Impl[P], ...], dict[str, str]]:
        """(the selected implementations whose modules import, {name: what is missing} for the others)."""
        available, missing = [], {}
        for impl in self.select(wanted):
            reason = impl.missing()
            if reason is None:
                available.append(impl)
            else:
                missing[impl.name] = reason
        return tuple(available), missing


@dataclass(frozen=True)
class Check:
    """The verdict on one output: correct if max|y - ref| / max|ref| <= tolerance (and the shape matches)."""

    correct: bool
    max_rel_error: float
    tolerance: float
    problem: str = ""  # why it is wrong, in words, when it is


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
