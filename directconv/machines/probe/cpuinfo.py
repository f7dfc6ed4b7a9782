"""CPU identity from /proc/cpuinfo text, and archspec's name for it.

Everything here takes text (or parsed values) and returns values, so tests replay recorded dumps of machines they do
not run on. The archspec name is kept beside the raw identity, never instead of it: in a VM archspec can only see
the flags the hypervisor passes through, and names a Zen 3 "zen2" or a Sapphire Rapids "icelake".
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import archspec
import archspec.cpu

# x86 vendor_id strings as the kernel prints them, and the short names machine descriptions use.
_X86_VENDORS = {
    "GenuineIntel": "Intel",
    "AuthenticAMD": "AMD",
    "HygonGenuine": "Hygon",
    "CentaurHauls": "Centaur",
    "  Shanghai  ": "Zhaoxin",
}


@dataclass(frozen=True)
class CpuInfo:
    """The first processor entry of /proc/cpuinfo, as values.

    On aarch64 the kernel prints no model name or family: `family`, `model` and `stepping` hold the implementer,
    the part number and "r<variant>p<revision>", which identify the core just as uniquely.
    """

    arch: str  # `uname -m`: x86_64, aarch64
    vendor: str  # short name: Intel, AMD, ARM, Ampere...
    vendor_id: str  # as printed: GenuineIntel, AuthenticAMD, 0x41
    model_name: str  # "" where the kernel prints none (aarch64)
    family: str
    model: str
    stepping: str
    flags: frozenset[str]
    logical_cpus: int  # processor entries in the whole file
    cores_per_package: int | None  # x86 "cpu cores", for when /sys hides the topology
    siblings: int | None  # x86 "siblings" (logical CPUs per package)


def entries(text: str) -> list[dict[str, str]]:
    """The processor entries of a /proc/cpuinfo dump, each a dict of its `key : value` lines (keys stripped)."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            if current:
                blocks.append(current)
                current = {}
            continue
        current[key.strip()] = value.strip()
    if current:
        blocks.append(current)
    return [b for b in blocks if "processor" in b]


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _archspec_arm_vendor(implementer: str) -> str:
    """archspec's vendor name for an aarch64 `CPU implementer` code ("0x41" -> "ARM"), the code if unknown."""
    from archspec.cpu.schema import TARGETS_JSON

    table: dict[str, str] = TARGETS_JSON["conversions"]["arm_vendors"]
    return table.get(implementer.lower(), implementer) if implementer else "generic"


def arm_vendor(implementer: str) -> str:
    """The vendor of an aarch64 `CPU implementer` code, spelled as machine descriptions spell it ("0x41" -> "Arm")."""
    name = _archspec_arm_vendor(implementer)
    return {"ARM": "Arm", "generic": "unknown"}.get(name, name)


def parse_cpuinfo(text: str, arch: str) -> CpuInfo:
    """Parse a /proc/cpuinfo dump taken on a machine whose `uname -m` is `arch`.

    Raises ValueError when the text holds no processor entry (not a /proc/cpuinfo dump).
    """
    blocks = entries(text)
    if not blocks:
        raise ValueError(
            f"no 'processor : N' entry in the {len(text)} characters given: expected the text of /proc/cpuinfo"
        )
    first = blocks[0]
    if arch in ("aarch64", "arm64"):
        implementer = first.get("CPU implementer", "")
        variant = first.get("CPU variant", "0x0")
        revision = first.get("CPU revision", "0")
        return CpuInfo(
            arch="aarch64",
            vendor=arm_vendor(implementer),
            vendor_id=implementer,
            model_name=first.get("model name", ""),
            family=implementer,
            model=first.get("CPU part", ""),
            stepping=f"r{int(variant, 16) if variant.startswith('0x') else variant}p{revision}",
            flags=frozenset(first.get("Features", "").split()),
            logical_cpus=len(blocks),
            cores_per_package=None,
            siblings=None,
        )
    vendor_id = first.get("vendor_id", "")
    return CpuInfo(
        arch=arch,
        vendor=_X86_VENDORS.get(vendor_id, vendor_id or "unknown"),
        vendor_id=vendor_id,
        model_name=re.sub(r"\s+", " ", first.get("model name", "")).strip(),
        family=first.get("cpu family", ""),
        model=first.get("model", ""),
        stepping=first.get("stepping", ""),
        flags=frozenset(first.get("flags", "").split()),
        logical_cpus=len(blocks),
        cores_per_package=_int_or_none(first.get("cpu cores")),
        siblings=_int_or_none(first.get("siblings")),
    )


@dataclass(frozen=True)
class ArchspecIdentity:
    """archspec's microarchitecture for a CPU, and the compiler flags it recommends for it."""

    name: str  # e.g. zen2, cascadelake, neoverse_n1, x86_64_v3
    vendor: str
    features: frozenset[str]
    version: str  # of archspec, for provenance

    def compiler_flags(self, compiler: str, version: str) -> tuple[str, ...]:
        """archspec's optimization flags for this target with `compiler` `version`, or () when it has none."""
        target = archspec.cpu.TARGETS.get(self.name)
        if target is None:
            return ()
        try:
            return tuple(target.optimization_flags(compiler, version).split())
        except (archspec.cpu.UnsupportedMicroarchitecture, ValueError, KeyError):
            return ()


def _identity(target: archspec.cpu.Microarchitecture) -> ArchspecIdentity:
    return ArchspecIdentity(
        name=target.name,
        vendor=target.vendor,
        features=frozenset(target.features),
        version=getattr(archspec, "__version__", "?"),
    )


def host_archspec() -> ArchspecIdentity:
    """archspec's own detection of this host (`archspec.cpu.host()`, cached by archspec)."""
    return _identity(archspec.cpu.host())


def archspec_for(info: CpuInfo) -> ArchspecIdentity:
    """The target archspec would detect on a machine with this /proc/cpuinfo, computed without being on it.

    Mirrors `archspec.cpu.host()` (archspec 0.2): the compatible targets are those whose vendor and features the CPU
    has; the best generic one is the floor, an aarch64 CPU part narrows the list, and the deepest, most featureful
    descendant wins. archspec reads /proc/cpuinfo itself and offers no entry point for text, hence this replay.
    """
    from archspec.cpu import detect

    arch = "x86_64" if info.arch in ("x86_64", "AMD64") else info.arch
    if arch == "aarch64":
        partial = detect.partial_uarch(
            vendor=_archspec_arm_vendor(info.vendor_id), features=set(info.flags), cpu_part=info.model
        )
    else:
        partial = detect.partial_uarch(vendor=info.vendor_id or "generic", features=set(info.flags))
    check = detect.COMPATIBILITY_CHECKS.get(arch)
    generic = archspec.cpu.generic_microarchitecture(arch)
    if check is None:
        return _identity(generic)
    candidates = [t for t in archspec.cpu.TARGETS.values() if check(partial, t)]
    if not candidates:
        return _identity(generic)

    def depth(t: archspec.cpu.Microarchitecture) -> tuple[int, int]:
        return len(t.ancestors), len(t.features)

    best_generic = max((c for c in candidates if c.vendor == "generic"), key=depth)
    if partial.cpu_part and any(c.cpu_part == partial.cpu_part for c in candidates):
        candidates = [c for c in candidates if c.cpu_part == partial.cpu_part]
    specific = [c for c in candidates if c > best_generic]
    return _identity(max(specific, key=depth) if specific else best_generic)


def features_of_flags(flags: tuple[str, ...] | list[str]) -> tuple[str, frozenset[str]] | None:
    """(archspec name, its CPU features) of the CPU that `flags` target by -march=/-mcpu=, or None when archspec
    knows no such CPU (or the flags name none). Features are spelled as /proc/cpuinfo spells them."""
    for flag in flags:
        key, _, value = flag.partition("=")
        if key in ("-march", "-mcpu") and value:
            return _archspec_by_compiler_name().get(value)
    return None


@functools.cache
def _archspec_by_compiler_name() -> dict[str, tuple[str, frozenset[str]]]:
    """GCC's name of each archspec microarchitecture (znver3, bdver2, skylake-avx512...) -> (name, features)."""
    table: dict[str, tuple[str, frozenset[str]]] = {}
    for target in archspec.cpu.TARGETS.values():
        try:
            flags = target.optimization_flags("gcc", "99.0").split()
        except Exception:  # archspec refuses targets GCC has no flags for; they cannot be named by a flag either
            continue
        for flag in flags:
            key, _, value = flag.partition("=")
            if key in ("-march", "-mcpu") and value and value not in table:
                table[value] = (target.name, frozenset(target.features))
    return table
