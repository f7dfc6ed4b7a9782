"""The typed description of one CPU, as the model reads it. Built by the loader, which validates first.

The optional numbers default to the `default` that machines/schema.json gives them: read from there, so that each
default (and where it comes from) is stated once, beside its rule.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any


@functools.cache
def schema() -> dict[str, Any]:
    """machines/schema.json, parsed. Shared between callers: copy it before changing anything."""
    return json.loads((resources.files(__package__) / "schema.json").read_text(encoding="utf-8"))


def optional_defaults() -> dict[str, float | int]:
    """The optional numeric fields and their defaults, in schema order."""
    return {
        name: int(prop["default"]) if prop["type"] == "integer" else float(prop["default"])
        for name, prop in schema()["properties"].items()
        if "default" in prop
    }


_DEFAULT = optional_defaults()


@functools.cache
def flag_patterns() -> tuple[str, ...]:
    """schema.json's allow-list of machine flags (match with re.fullmatch): they reach a compiler command line."""
    return tuple(branch["pattern"] for branch in schema()["properties"]["compiler_flags"]["items"]["anyOf"])


def is_machine_flag(flag: str) -> bool:
    return any(re.fullmatch(p, flag) for p in flag_patterns())


@dataclass(frozen=True)
class Cache:
    level: int  # 1 = L1 data cache, 2, 3
    size_kib: float  # per instance
    ways: int
    line_bytes: int
    shared_by_cores: int  # cores sharing one instance (1 = private)

    @property
    def size_bytes(self) -> int:
        return int(self.size_kib * 1024)

    @property
    def sets(self) -> int:
        return max(1, self.size_bytes // (self.ways * self.line_bytes))


@dataclass(frozen=True)
class Machine:
    """A CPU as the analytical model sees it. Field names follow the paper's notation (N_vec, N_reg, N_fma, L_fma);
    schema.json documents every field."""

    id: str
    name: str
    vendor: str
    isa: str  # an ISA of directconv.core.isa, or sve
    n_vec: int  # fp32 lanes per vector register
    n_reg: int  # architectural vector registers
    n_fma: float  # FMA instructions issued per cycle (per core)
    l_fma: float  # FMA latency in cycles
    freq_ghz: float  # sustained clock under FMA load
    cores: int
    threads_per_core: int
    caches: tuple[Cache, ...]
    compiler_flags: tuple[str, ...]
    sources: dict[str, str]  # field -> where the number came from (document, "probed", or the fitting benchmark)
    # Optional numbers; a description that leaves one out gets the schema's default.
    n_load: float = _DEFAULT["n_load"]  # vector loads per cycle from L1d
    l2_bytes_per_cycle: float = _DEFAULT["l2_bytes_per_cycle"]  # L2 -> L1d fill bandwidth
    l3_bytes_per_cycle: float = _DEFAULT["l3_bytes_per_cycle"]  # beyond L2 -> L2 fill bandwidth
    dram_gbytes_per_s: float = _DEFAULT["dram_gbytes_per_s"]  # memory bandwidth of the socket
    n_shuffle: float = _DEFAULT["n_shuffle"]  # vector shuffles per cycle
    prefetch_streams: int = int(_DEFAULT["prefetch_streams"])  # sequential streams the prefetchers follow
    latency_slack: float = _DEFAULT["latency_slack"]  # latency bound stretch in short per-tap loops
    one_vector_penalty: float = _DEFAULT["one_vector_penalty"]  # one-vector tiles, where FMAs cannot broadcast
    spill_penalty: float = _DEFAULT["spill_penalty"]  # least slowdown of a tile that spills
    peak_gflops: dict[int, float] = field(default_factory=dict)  # threads -> measured fp32 FMA peak
    call_us: dict[int, float] = field(default_factory=dict)  # threads -> measured fixed cost of one layer call
    # Flag lists tried in order when the local compiler rejects compiler_flags.
    compiler_flag_fallbacks: tuple[tuple[str, ...], ...] = ()
    notes: str = ""

    def __post_init__(self) -> None:
        # The loader checks flags first; this keeps a Machine built any other way from reaching a command line.
        for flags in (self.compiler_flags, *self.compiler_flag_fallbacks):
            for flag in flags:
                if not isinstance(flag, str) or not is_machine_flag(flag):
                    raise ValueError(
                        f"machine {self.id}: compiler flag {flag!r} is not a machine flag (-march=, -mtune=, -mcpu=, "
                        "-mfpu=, -mprefer-vector-width=, -mFEATURE); load descriptions with "
                        "directconv.machines.loader, which validates them"
                    )

    def cache(self, level: int) -> Cache | None:
        for c in self.caches:
            if c.level == level:
                return c
        return None

    @property
    def fma_in_flight(self) -> float:
        """N_vec * N_fma * L_fma: independent fp32 accumulations needed to keep every FMA pipe busy (paper eq. 1)."""
        return self.n_vec * self.n_fma * self.l_fma

    def call_seconds(self, threads: int = 1) -> float:
        """The fixed cost of one layer call on `threads` threads, as probed (that of the most threads measured up to
        `threads`); 0 where the description has none: then no estimate charges it."""
        measured = [t for t in self.call_us if t <= threads]
        return self.call_us[max(measured)] * 1e-6 if measured else 0.0

    def peak(self, threads: int = 1) -> float:
        """fp32 GFLOP/s: measured by probe when known, else 2 * N_fma * N_vec * f * threads (paper, implied)."""
        if threads in self.peak_gflops:
            return self.peak_gflops[threads]
        return 2.0 * self.n_fma * self.n_vec * self.freq_ghz * min(threads, self.cores)
