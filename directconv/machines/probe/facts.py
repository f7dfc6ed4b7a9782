"""Everything the probe learns about a host without timing it: identity, ISA, topology, caches.

A `RawHost` is what gets read from the machine (the `uname -m` name, /proc/cpuinfo text, a few sysfs files),
uninterpreted: it is what a fixture records and what a user can send in a bug report. `HostFacts` is its parse.
`host_facts()` reads this machine once per process.
"""

from __future__ import annotations

import functools
import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from directconv.core.isa import isas_from_cpuinfo
from directconv.machines.machine import Cache
from directconv.machines.probe import sysfs
from directconv.machines.probe.cpuinfo import ArchspecIdentity, CpuInfo, archspec_for, host_archspec, parse_cpuinfo

RAW_FORMAT = 1


@dataclass(frozen=True)
class RawHost:
    """The unparsed inputs of detection."""

    machine: str  # `uname -m`
    cpuinfo: str  # text of /proc/cpuinfo
    sysfs: dict[str, str]  # sysfs.read_tree() of /sys/devices/system/cpu

    def to_json(self) -> str:
        return json.dumps(
            {"format": RAW_FORMAT, "machine": self.machine, "cpuinfo": self.cpuinfo, "sysfs": self.sysfs},
            indent=1,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str, origin: str = "<string>") -> RawHost:
        """Parse `to_json` output. Raises ValueError naming `origin` when the text is not such a record."""
        try:
            data: Any = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{origin}: not JSON ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != RAW_FORMAT:
            raise ValueError(
                f"{origin}: expected a probe host record with format {RAW_FORMAT}, got "
                f"{data.get('format') if isinstance(data, dict) else type(data).__name__!r}"
            )
        return cls(str(data["machine"]), str(data["cpuinfo"]), {str(k): str(v) for k, v in data["sysfs"].items()})


def read_raw(cpuinfo: Path = Path("/proc/cpuinfo"), root: Path = sysfs.ROOT) -> RawHost:
    """Read this machine's detection inputs."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        text = ""
    return RawHost(platform.machine(), text, sysfs.read_tree(root))


@dataclass(frozen=True)
class HostFacts:
    cpu: CpuInfo
    archspec: ArchspecIdentity
    isas: tuple[str, ...]  # ISAs the host runs, best first (kernels.isa)
    topology: sysfs.Topology
    caches: tuple[Cache, ...]
    notes: tuple[str, ...]  # assumptions made where the host reported nothing

    @property
    def isa(self) -> str:
        return self.isas[0]


def facts_from_raw(raw: RawHost, identity: ArchspecIdentity | None = None) -> HostFacts:
    """Parse a RawHost. `identity` overrides the archspec target computed from the cpuinfo text (the live host
    passes archspec's own detection)."""
    cpu = parse_cpuinfo(raw.cpuinfo, raw.machine)
    topo = sysfs.topology(raw.sysfs, fallback_cpus=cpu.logical_cpus)
    caches, notes = sysfs.caches(raw.sysfs, topo)
    return HostFacts(
        cpu=cpu,
        archspec=identity or archspec_for(cpu),
        isas=isas_from_cpuinfo(raw.cpuinfo, raw.machine),
        topology=topo,
        caches=caches,
        notes=notes,
    )


@functools.cache
def host_facts() -> HostFacts:
    """This machine's facts, read once per process."""
    return facts_from_raw(read_raw(), identity=host_archspec())


def usable_cpus(facts: HostFacts) -> tuple[int, ...]:
    """One logical CPU per physical core of one package, among those this process may run on (its affinity mask,
    e.g. a container's cpuset): where the peak threads go. One package, because a machine description is one
    socket."""
    try:
        allowed: set[int] | None = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        allowed = None
    topo = facts.topology
    per_core = topo.one_cpu_per_core(allowed) or topo.one_cpu_per_core()
    package = topo.package_of(per_core[0])
    return tuple(cpu for cpu in per_core if topo.package_of(cpu) == package)
