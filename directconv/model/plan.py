"""What the model returns: a configuration with the reason for every parameter, and a pruned search space."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from directconv.core.config import KernelConfig


@dataclass(frozen=True)
class Reason:
    """Why one parameter has its value: the constraint or trade-off that bound it, with the numbers involved."""

    parameter: str
    value: Any
    why: str

    def __str__(self) -> str:
        return f"{self.parameter} = {self.value}: {self.why}"


@dataclass(frozen=True)
class Plan:
    config: KernelConfig
    reasons: tuple[Reason, ...]
    predicted_gflops: float
    machine_id: str
    kind: str = "plain"  # the kernel that runs the layer (core.shape.kernel_kind)
    bound: str = "compute"  # what sets the estimate: "compute", "memory" or "peak" (model/roofline.py)

    def explain(self) -> str:
        bound = "at the FMA peak" if self.bound == "peak" else f"{self.bound}-bound"
        lines = [
            f"plan for machine {self.machine_id}: {self.kind} kernel, {bound}, predicted "
            f"{self.predicted_gflops:.1f} GFLOP/s"
        ]
        lines += [f"  {reason}" for reason in self.reasons]
        return "\n".join(lines)


@dataclass(frozen=True)
class SearchSpace:
    """The configurations worth measuring, best predicted first, and what was cut to get there."""

    configs: tuple[KernelConfig, ...]
    predicted_gflops: tuple[float, ...]
    unpruned_size: int
    cuts: tuple[str, ...] = field(default_factory=tuple)

    def __len__(self) -> int:
        return len(self.configs)

    @property
    def reduction(self) -> float:
        return self.unpruned_size / max(1, len(self.configs))
