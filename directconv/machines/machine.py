"""The typed description of one CPU, as the model reads it. Built only by the loader, which validates first."""

from __future__ import annotations

from dataclasses import dataclass, field


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
    """A CPU as the analytical model sees it. Field names follow the paper's notation (N_vec, N_reg, N_fma, L_fma)."""

    id: str
    name: str
    vendor: str
    isa: str  # avx512, avx2, avx, neon, sve, scalar
    n_vec: int  # fp32 lanes per vector register
    n_reg: int  # architectural vector registers
    n_fma: float  # FMA instructions issued per cycle (per core)
    l_fma: float  # FMA latency in cycles
    freq_ghz: float  # sustained clock under FMA load
    cores: int
    threads_per_core: int
    caches: tuple[Cache, ...]
    compiler_flags: tuple[str, ...]
    sources: dict[str, str]  # field -> where the number came from (document, or "probed")
    # Optional facts
    n_load: float | None = None  # vector loads per cycle
    peak_gflops: dict[int, float] = field(default_factory=dict)  # threads -> measured fp32 FMA peak
    notes: str = ""

    def cache(self, level: int) -> Cache | None:
        for c in self.caches:
            if c.level == level:
                return c
        return None

    @property
    def fma_in_flight(self) -> float:
        """N_vec * N_fma * L_fma: independent fp32 accumulations needed to keep every FMA pipe busy (paper eq. 1)."""
        return self.n_vec * self.n_fma * self.l_fma

    def peak(self, threads: int = 1) -> float:
        """fp32 GFLOP/s: measured by probe when known, else 2 * N_fma * N_vec * f * threads (paper, implied)."""
        if threads in self.peak_gflops:
            return self.peak_gflops[threads]
        return 2.0 * self.n_fma * self.n_vec * self.freq_ghz * min(threads, self.cores)
