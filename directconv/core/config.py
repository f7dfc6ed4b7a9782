"""KernelConfig: everything that selects one variant of the direct-convolution kernel.

Register-level fields (isa, cob, wob) are compile-time constants of the generated C. Cache-level and threading
fields (cib, rows, parallel, threads) are run-time arguments of the same compiled code, so changing them never
costs a compilation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from directconv.core import checks
from directconv.core.isa import ISAS, get_isa
from directconv.core.shape import LANE_KINDS, ConvShape, kernel_kind, single_row_by_tiles, split_units

PARALLEL_AXES = ("co", "rows")
UNROLLS = (1, 2, 4, 8)
CONFIG_VERSION = 1


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> None:
    checks.integer(f"KernelConfig.{name}", value, low, high)


@dataclass(frozen=True)
class KernelConfig:
    """One kernel variant.

    isa:      instruction set of the generated code (see kernels.isa.ISAS); fixes the vector width `lanes`.
    cob:      C_o,b, output channels per register block: a multiple of `lanes`.
    wob:      W_o,b, output columns per register block. cob/lanes * wob accumulator vectors live in registers.
    cib:      C_i,b, input channels per cache block (a multiple of `lanes`); None: all input channels at once.
    rows:     output rows per parallel task; None: all rows of a channel block in one task.
    parallel: the axis split between threads: "co" (output-channel blocks) or "rows" (output rows).
    threads:  OpenMP threads.
    unroll:   unroll factor of the input-channel loop (compile-time). More is not always better: past the
              register budget GCC hoists loads of later iterations and spills accumulators.
    """

    isa: str
    cob: int
    wob: int
    cib: int | None = None
    rows: int | None = None
    parallel: str = "co"
    threads: int = 1
    unroll: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.isa, str) or self.isa not in ISAS:
            raise ValueError(f"KernelConfig.isa must be one of {sorted(ISAS)}, got {self.isa!r}")
        lanes = get_isa(self.isa).lanes
        _check_int("cob", self.cob, lanes, 16 * lanes)
        if self.cob % lanes:
            raise ValueError(
                f"KernelConfig.cob (C_o,b) must be a multiple of the {self.isa} vector width {lanes}, got {self.cob}"
            )
        _check_int("wob", self.wob, 1, 64)
        if self.cib is not None:
            _check_int("cib", self.cib, lanes, 1 << 16)
            if self.cib % lanes:
                raise ValueError(
                    f"KernelConfig.cib (C_i,b) must be a multiple of the {self.isa} vector width {lanes}, "
                    f"got {self.cib}"
                )
        if self.rows is not None:
            _check_int("rows", self.rows, 1, 1 << 16)
        if self.parallel not in PARALLEL_AXES:
            raise ValueError(f"KernelConfig.parallel must be one of {PARALLEL_AXES}, got {self.parallel!r}")
        _check_int("threads", self.threads, 1, 1024)
        if self.unroll not in UNROLLS:
            raise ValueError(f"KernelConfig.unroll must be one of {UNROLLS}, got {self.unroll!r}")
        accumulators = (self.cob // lanes) * self.wob
        if accumulators > 4 * get_isa(self.isa).registers:
            raise ValueError(
                f"KernelConfig cob={self.cob}, wob={self.wob} needs {accumulators} accumulator vectors, more than "
                f"4x the {get_isa(self.isa).registers} registers of {self.isa}: the compiler would spill nearly all"
            )

    @property
    def lanes(self) -> int:
        return get_isa(self.isa).lanes

    @property
    def vectors(self) -> int:
        """Vector registers per output column of a register block (C_o,b / lanes)."""
        return self.cob // self.lanes

    def compile_key(self) -> tuple[str, int, int, int]:
        """The fields that are compiled in: configs equal here share one binary."""
        return (self.isa, self.cob, self.wob, self.unroll)

    def replace(self, **changes: Any) -> KernelConfig:
        return KernelConfig(**{**asdict(self), **changes})

    def check_fits(self, shape: ConvShape) -> None:
        """Raise ValueError if this config cannot run `shape` (blocks larger than the layer, or a field the
        layer's kernel kind does not have: see core.shape.kernel_kind)."""
        lanes = self.lanes
        kind = kernel_kind(shape, lanes)
        co = shape.cog if kind == "grouped" else shape.co  # a grouped layer's register block stays in its group
        ci = shape.cig if kind == "grouped" else shape.ci
        co_padded = -(-co // lanes) * lanes
        ci_padded = -(-ci // lanes) * lanes
        per = " per group" if kind == "grouped" else ""
        problems = []
        if self.cob > co_padded:
            problems.append(f"C_o,b={self.cob} exceeds the layer's {co} output channels{per} (padded to {co_padded})")
        view = shape.kernel_view()
        if self.wob > view.wo:
            problems.append(f"W_o,b={self.wob} exceeds the layer's output width {view.wo}")
        if kind in LANE_KINDS:
            # Each output vector reads only its own groups' inputs: there is no input-channel loop to block or unroll.
            if self.cib is not None:
                problems.append(f"C_i,b={self.cib} is given, but a {kind} kernel has no input-channel blocking (None)")
            if self.unroll != 1:
                problems.append(f"unroll={self.unroll} is given, but a {kind} kernel has no input-channel loop (1)")
        elif self.cib is not None and self.cib > ci_padded:
            problems.append(f"C_i,b={self.cib} exceeds the layer's {ci} input channels{per} (padded to {ci_padded})")
        # rows counts output rows, or in a kernel of one output row its register tiles (core.shape.split_units).
        tiles = split_units(view, self.wob, lanes) if single_row_by_tiles(view, lanes) else 0
        if self.rows is not None and self.rows > max(shape.ho, tiles):
            what = f"output height {shape.ho}" + (f" and the {tiles} register tiles of its one row" if tiles else "")
            problems.append(f"rows={self.rows} exceeds the layer's {what}")
        if problems:
            raise ValueError(f"config {self.to_dict()} does not fit layer {shape.describe()}: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return {"version": CONFIG_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: Any) -> KernelConfig:
        """Build from a plain dict (e.g. read from YAML), refusing unknown keys and wrong types."""
        if not isinstance(data, dict):
            raise TypeError(f"a KernelConfig is read from a dict, got {type(data).__name__}")
        data = dict(data)
        version = data.pop("version", CONFIG_VERSION)
        if version != CONFIG_VERSION:
            raise ValueError(f"KernelConfig version {CONFIG_VERSION} expected, got {version!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown KernelConfig keys {unknown}; expected a subset of {sorted(known)}")
        missing = sorted(k for k in ("isa", "cob", "wob") if k not in data)
        if missing:
            raise ValueError(f"KernelConfig is missing required keys {missing}")
        return cls(**data)
