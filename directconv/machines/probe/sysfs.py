"""Caches and core topology from Linux sysfs (/sys/devices/system/cpu).

`read_tree` copies the few files we use into a dict keyed by path relative to the root ("cpu0/cache/index2/size");
every other function parses such a dict. Tests feed recorded dicts (or trees written from them), so nothing here
needs the machine it describes.

Caches are read from cpu0 only: every core of the CPUs we target has the same caches. (Hybrid parts with two kinds
of core differ; cpu0 is the big core on those, the one the kernels should be tuned for.)
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from directconv.machines.machine import Cache

ROOT = Path("/sys/devices/system/cpu")
CACHE_FILES = (
    "level",
    "type",
    "size",
    "ways_of_associativity",
    "coherency_line_size",
    "number_of_sets",
    "shared_cpu_list",
)
TOPOLOGY_FILES = ("physical_package_id", "die_id", "core_id", "thread_siblings_list")


def parse_cpu_list(text: str) -> tuple[int, ...]:
    """CPU numbers of a kernel cpu list such as "0-3,8,10-11" (empty text: no CPU)."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        try:
            cpus.extend(range(int(first), int(last or first) + 1))
        except ValueError:
            raise ValueError(f"bad CPU list {text!r}: expected comma-separated numbers or ranges like 0-3,8") from None
    return tuple(cpus)


def read_tree(root: Path = ROOT) -> dict[str, str]:
    """The sysfs files this module parses, read from `root`, keyed by relative path, values stripped.

    Missing files are left out (containers and some kernels hide parts of the tree); parsing copes with the gaps.
    """
    files: dict[str, str] = {}

    def grab(rel: str) -> None:
        with contextlib.suppress(OSError):
            files[rel] = (root / rel).read_text().strip()

    grab("online")
    cpus = parse_cpu_list(files.get("online", "")) or tuple(
        sorted(int(p.name[3:]) for p in root.glob("cpu[0-9]*") if p.name[3:].isdigit())
    )
    for cpu in cpus:
        for name in TOPOLOGY_FILES:
            grab(f"cpu{cpu}/topology/{name}")
    for index in sorted((root / "cpu0" / "cache").glob("index[0-9]*")):
        for name in CACHE_FILES:
            grab(f"cpu0/cache/{index.name}/{name}")
    return files


def write_tree(files: Mapping[str, str], root: Path) -> None:
    """Write a dict from `read_tree` back as a directory tree under `root` (to replay it in tests)."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")


@dataclass(frozen=True)
class Topology:
    """Logical CPUs and the physical cores they belong to."""

    core_of: dict[int, tuple[int, int, int]]  # logical CPU -> (package, die, core)
    threads_per_core: int

    @property
    def cpus(self) -> tuple[int, ...]:
        return tuple(sorted(self.core_of))

    @property
    def cores(self) -> int:
        return len(set(self.core_of.values()))

    @property
    def packages(self) -> int:
        return len({package for package, _, _ in self.core_of.values()})

    @property
    def cores_per_package(self) -> int:
        """Physical cores of the largest package: what a machine description calls `cores` (one socket)."""
        per: dict[int, set[tuple[int, int, int]]] = {}
        for core in self.core_of.values():
            per.setdefault(core[0], set()).add(core)
        return max(len(cores) for cores in per.values())

    def package_of(self, cpu: int) -> int:
        return self.core_of[cpu][0]

    def cores_among(self, cpus: Iterable[int]) -> int:
        """Distinct physical cores the given logical CPUs belong to (CPUs this topology does not know count as
        1 / threads_per_core of a core each)."""
        cpus = tuple(cpus)
        known = {self.core_of[c] for c in cpus if c in self.core_of}
        unknown = sum(1 for c in cpus if c not in self.core_of)
        return len(known) + -(-unknown // self.threads_per_core)

    def one_cpu_per_core(self, allowed: Iterable[int] | None = None) -> tuple[int, ...]:
        """The lowest-numbered allowed logical CPU of every core that has one, ordered by (package, die, core):
        where to pin one thread per core, filling the first package first."""
        allowed_set = set(self.core_of) if allowed is None else set(allowed)
        first: dict[tuple[int, int, int], int] = {}
        for cpu in sorted(self.core_of):
            if cpu in allowed_set:
                first.setdefault(self.core_of[cpu], cpu)
        return tuple(first[core] for core in sorted(first))


def topology(files: Mapping[str, str], fallback_cpus: int = 1) -> Topology:
    """The core topology from a `read_tree` dict.

    Without topology files (a container hiding /sys), every one of `fallback_cpus` logical CPUs (the
    /proc/cpuinfo count) is taken to be its own core.
    """
    pattern = re.compile(r"cpu(\d+)/topology/core_id$")
    core_of: dict[int, tuple[int, int, int]] = {}
    siblings: list[int] = []
    for rel, text in files.items():
        match = pattern.match(rel)
        if not match:
            continue
        cpu = int(match.group(1))
        base = f"cpu{cpu}/topology/"
        package = int(files.get(base + "physical_package_id", "0"))
        die = int(files.get(base + "die_id", "0"))
        core_of[cpu] = (package, max(die, 0), int(text))
        if base + "thread_siblings_list" in files:
            siblings.append(len(parse_cpu_list(files[base + "thread_siblings_list"])))
    if not core_of:
        return Topology({cpu: (0, 0, cpu) for cpu in range(max(1, fallback_cpus))}, 1)
    per_core = max(siblings) if siblings else max(1, len(core_of) // len(set(core_of.values())))
    return Topology(core_of, per_core)


def _size_kib(text: str) -> float:
    match = re.fullmatch(r"\s*(\d+)\s*([KMG]?)i?B?\s*", text)
    if not match:
        raise ValueError(f"bad cache size {text!r}: expected a number with an optional K, M or G suffix")
    number, unit = int(match.group(1)), match.group(2)
    return number * {"": 1 / 1024, "K": 1, "M": 1024, "G": 1024 * 1024}[unit]


def caches(files: Mapping[str, str], topo: Topology) -> tuple[tuple[Cache, ...], tuple[str, ...]]:
    """(data and unified caches of cpu0, ordered by level; notes on anything assumed) from a `read_tree` dict.

    Instruction caches are left out: the model only places data. Where the kernel reports no associativity, it is
    derived from the number of sets, else assumed 8-way and said so in the notes.
    """
    found: list[Cache] = []
    notes: list[str] = []
    indexes = sorted({rel.split("/")[2] for rel in files if rel.startswith("cpu0/cache/index")})
    for index in indexes:
        base = f"cpu0/cache/{index}/"

        def get(name: str, base: str = base) -> str | None:
            return files.get(base + name)

        if get("type") == "Instruction" or get("level") is None or get("size") is None:
            continue
        level = int(get("level") or 0)
        size_kib = _size_kib(get("size") or "0")
        line = int(get("coherency_line_size") or 64)
        ways = int(get("ways_of_associativity") or 0)
        sets = int(get("number_of_sets") or 0)
        if ways <= 0 and sets > 0:
            ways = max(1, round(size_kib * 1024 / (sets * line)))
        if ways <= 0:
            ways = 8
            notes.append(f"L{level} associativity not reported by the kernel: assumed 8-way")
        shared_cpus = parse_cpu_list(get("shared_cpu_list") or "0")
        found.append(Cache(level, size_kib, ways, line, max(1, topo.cores_among(shared_cpus))))
    found.sort(key=lambda c: c.level)
    return tuple(found), tuple(notes)
