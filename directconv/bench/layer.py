"""The per-layer problem: one suite layer's input and weights, the float64 answer, and how an output is judged."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from directconv.bench.base import Check, ConfigSource, compare
from directconv.bench.runner import Case
from directconv.core.shape import ConvShape
from directconv.core.suite import Layer
from directconv.kernels.reference import reference_for, tolerance

FLOAT64 = "float64 reference"


@dataclass(frozen=True)
class LayerProblem:
    """One layer's data: NCHW input of batch 1 and OIHW weights, float32, uniform in [-1, 1) from `seed`, and
    where directconv's implementations take their configuration from (`source`)."""

    layer: Layer
    x: np.ndarray
    w: np.ndarray
    source: ConfigSource = "store"

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

    @property
    def dilation(self) -> tuple[int, int]:
        return self.shape.dh, self.shape.dw

    @property
    def groups(self) -> int:
        return self.shape.groups

    @classmethod
    def make(cls, layer: Layer, seed: int = 0, source: ConfigSource = "store") -> LayerProblem:
        """Random data for `layer`; the weights are (C_o, C_i/groups, kh, kw), as every framework takes them."""
        s = layer.shape
        rng = np.random.default_rng(seed)
        x = rng.uniform(-1.0, 1.0, size=(1, s.ci, s.h, s.w)).astype(np.float32)
        w = rng.uniform(-1.0, 1.0, size=(s.co, s.cig, s.kh, s.kw)).astype(np.float32)
        return cls(layer, x, w, source)

    def reference(self) -> np.ndarray:
        """The float64 answer (computed on every call: the caller keeps it as long as it needs it)."""
        return reference_for(self.shape, self.x, self.w)

    def case(self) -> Case[LayerProblem]:
        """The problem ready to run: every implementation judged against the float64 answer, computed now."""
        reference = self.reference()
        return Case(
            self.layer.name, self.shape.flops(), self, lambda y: check_output(y, reference, self.shape), FLOAT64
        )


def check_output(y: Any, reference: np.ndarray, shape: ConvShape) -> Check:
    """Judge output `y` (anything np.asarray accepts) against the float64 reference of `shape`.

    The tolerance is kernels.reference.tolerance(C_i/groups, kh, kw) relative to the largest |reference| value: the
    same bound the kernel tests use, loose enough for any fp32 summation order, tight enough to catch a lost tap. An
    output sums over its own group's C_i/groups channels only, so that is the length the bound is set for.
    """
    return compare(y, reference, tolerance(shape.cig, shape.kh, shape.kw))
