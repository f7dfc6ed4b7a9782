"""Instruction sets the code generator targets, and which of them this host can run.

Architecture facts here are those the generated C needs (vector width, architectural register count, compiler
flags that enable the instructions). Per-CPU numbers such as FMA latency or cache sizes belong to the machine
descriptions in machines/, never here.
"""

from __future__ import annotations

import functools
import platform
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Isa:
    name: str
    lanes: int  # fp32 elements per vector register
    registers: int  # architectural vector registers
    fma: bool  # fused multiply-add instructions exist
    flags: tuple[str, ...]  # compiler flags that enable the instructions (never -march=native: see cross-compiling)
    cpu_features: tuple[str, ...]  # /proc/cpuinfo flags the host must show to run the code
    # GCC inline-asm constraint naming a vector register of this ISA (x86: "x", AArch64: "w"); None for scalar.
    register_constraint: str | None = None
    # A multiply-add can take its scalar operand straight from memory or a lane (AVX-512 {1toN} embedded
    # broadcast, NEON fmla by element); without it every broadcast input is an instruction of its own.
    fma_broadcast: bool = False
    # The architecture the code runs on, in GNU spelling; None: portable C that builds for any architecture.
    arch: str | None = None


ISAS: dict[str, Isa] = {
    isa.name: isa
    for isa in (
        Isa(
            "avx512",
            16,
            32,
            True,
            ("-mavx512f", "-mavx512vl", "-mfma", "-mprefer-vector-width=512"),
            ("avx512f", "fma"),
            "v",
            fma_broadcast=True,
            arch="x86_64",
        ),
        Isa("avx2", 8, 16, True, ("-mavx2", "-mfma"), ("avx2", "fma"), "x", arch="x86_64"),
        Isa("avx", 8, 16, False, ("-mavx",), ("avx",), "x", arch="x86_64"),
        # No feature to check: Advanced SIMD is part of the AArch64 base architecture.
        Isa("neon", 4, 32, True, (), (), "w", fma_broadcast=True, arch="aarch64"),
        Isa("scalar", 1, 16, False, (), ()),
    )
}

# ISAs a CPU description may name that have no kernel generator yet, with the granule of their vector length in
# fp32 lanes: SVE vectors are any multiple of 128 bits.
SCALABLE_ISAS: dict[str, int] = {"sve": 4}

# Best first: the order in which a host's ISAs are preferred.
PREFERENCE: tuple[str, ...] = ("avx512", "avx2", "avx", "neon", "scalar")


def get_isa(name: str) -> Isa:
    try:
        return ISAS[name]
    except KeyError:
        raise ValueError(f"unknown ISA {name!r}: expected one of {', '.join(PREFERENCE)}") from None


def _cpuinfo_flags(text: str) -> set[str]:
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def isas_from_cpuinfo(text: str, machine: str) -> tuple[str, ...]:
    """The ISAs a CPU can run, best first, from a /proc/cpuinfo dump and the `uname -m` machine name."""
    flags = _cpuinfo_flags(text)
    arch = {"AMD64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    return tuple(
        name
        for name in PREFERENCE
        if ISAS[name].arch in (None, arch) and all(f in flags for f in ISAS[name].cpu_features)
    )


@functools.cache
def host_isas() -> tuple[str, ...]:
    """The ISAs this host runs, best first (always ends with "scalar")."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    return isas_from_cpuinfo(text, platform.machine())


def host_isa() -> str:
    return host_isas()[0]
