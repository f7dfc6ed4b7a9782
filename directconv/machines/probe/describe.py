"""Assemble a machine description (a validated `Machine`) from host facts and measured FMA performance.

The description rounds the measured latency and throughput to what a core can have (whole cycles; halves of an FMA
pipe) because the model sizes register blocks from them; the measured values themselves, with their spread, go into
`notes`, so nothing measured is lost. The numbers the probe does not measure (loads per cycle, L2 bandwidth, the
model's fitted factors) are borrowed from the bundled description of the same core when one matches, and otherwise
left to the schema's defaults.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field
from typing import Any

from directconv.core.isa import get_isa
from directconv.machines.loader import bundled_machines, parse_machine
from directconv.machines.machine import Machine, is_machine_flag, optional_defaults
from directconv.machines.probe.facts import HostFacts
from directconv.machines.probe.match import best_match
from directconv.machines.probe.uarch import identify
from directconv.machines.toolchain import find_compiler

SYSFS_SOURCE = "/sys/devices/system/cpu"
CPUINFO_SOURCE = "/proc/cpuinfo"


@dataclass(frozen=True)
class Performance:
    """Per-core FMA facts of one host, the fixed cost of a call and the bandwidths of its caches and memory: measured
    by the probe (tuner.fma.measure, nn.calls.measure_call_us, tuner.bandwidth.measure_levels), or given (tests,
    recorded hosts)."""

    l_fma: float  # cycles
    n_fma: float  # FMAs per cycle
    freq_ghz: float  # sustained, under FMA load
    peak_gflops: dict[int, float] = field(default_factory=dict)  # threads -> GFLOP/s
    call_us: dict[int, float] = field(default_factory=dict)  # threads -> fixed cost of one layer call
    bandwidth: dict[str, dict[int, float]] = field(default_factory=dict)  # "L2"/"L3"/"memory" -> threads -> GB/s
    note: str = ""  # the measurement in words, for the description's notes


def round_latency(cycles: float) -> int:
    """FMA latency as a whole number of cycles (at least 1): pipelines have integer depths."""
    return max(1, round(cycles))


def round_throughput(per_cycle: float) -> float:
    """FMAs per cycle to the nearest half (at least 0.5): a core has whole FMA pipes, or a pipe shared by two
    (double-pumped halves, or a unit shared between cores)."""
    return max(0.5, round(per_cycle * 2) / 2)


def default_id(facts: HostFacts) -> str:
    """`host-<microarchitecture>`: the name the identity table gives the CPU (probe.uarch), else archspec's,
    lowercased to the characters a machine id allows."""
    identified = identify(facts.cpu)
    name = identified.name if identified is not None else facts.archspec.name
    name = re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-") or "unknown"
    return f"host-{name}"[:64]


def _naming(facts: HostFacts) -> str:
    """Which microarchitecture the identity says and which archspec's flag-based detection says, in words."""
    identified = identify(facts.cpu)
    if identified is None:
        return f"archspec names it {facts.archspec.name!r} (its identity is not in the probe's table)."
    return (
        f"identified as {identified.name!r} from its identity ({identified.source}); archspec names it "
        f"{facts.archspec.name!r} from its flags."
    )


def _compiler_flags(facts: HostFacts) -> tuple[tuple[str, ...], str]:
    """(flags, where they came from): archspec's flags for the detected target and the installed compiler where it
    knows them, else the ISA's own flags."""
    isa = get_isa(facts.isa)
    try:
        compiler = find_compiler()
    except RuntimeError:
        compiler = None
    if compiler is not None:
        banner = compiler.version
        kind = "clang" if "clang" in banner.lower() else "gcc"
        versions = re.findall(r"\d+\.\d+(?:\.\d+)?", banner)
        if versions:
            flags = facts.archspec.compiler_flags(kind, versions[-1] if kind == "gcc" else versions[0])
            # The loader admits only machine flags; archspec's come from its own data, so check rather than trust.
            if flags and all(is_machine_flag(f) for f in flags):
                return flags, f"archspec {facts.archspec.version} ({facts.archspec.name}, {kind} {versions[-1]})"
    return tuple(isa.flags), f"core.isa ({isa.name})"


def describe(facts: HostFacts, perf: Performance, *, machine_id: str | None = None, date: str | None = None) -> Machine:
    """A validated Machine for the host of `facts` with performance `perf`.

    `machine_id` defaults to `default_id(facts)`; `date` (ISO, default today) goes into the notes. Raises
    `MachineError` (from the loader) if the result breaks a rule of the machine schema.
    """
    isa = get_isa(facts.isa)
    cpu = facts.cpu
    topo = facts.topology
    flags, flags_source = _compiler_flags(facts)
    identity = (
        f"{cpu.vendor_id} family {cpu.family} model {cpu.model} stepping {cpu.stepping}"
        if cpu.arch != "aarch64"
        else f"implementer {cpu.family} part {cpu.model} {cpu.stepping}"
    )
    name = cpu.model_name or f"{cpu.vendor} {facts.archspec.name}"
    l_fma = round_latency(perf.l_fma)
    n_fma = round_throughput(perf.n_fma)
    notes = [
        (f"Probed on {date or datetime.date.today().isoformat()}: {name} ({identity}); {_naming(facts)}"),
        f"L_fma {perf.l_fma:.2f} rounded to {l_fma}, N_fma {perf.n_fma:.2f} rounded to {n_fma:g}.",
    ]
    if perf.note:
        notes.append(perf.note)
    if perf.peak_gflops:
        # freq_ghz is the one-core clock under FMA load; the all-core peak shows the clock with every core busy.
        threads = max(perf.peak_gflops)
        implied = perf.peak_gflops[threads] / (threads * 2 * isa.lanes * n_fma)
        notes.append(
            f"The {threads}-thread peak implies {implied:.2f} GHz per core at {n_fma:g} FMA/cycle "
            f"(freq_ghz {perf.freq_ghz:.2f} is one core's clock under FMA load)."
        )
    if topo.packages > 1:
        notes.append(f"The host has {topo.packages} packages of {topo.cores_per_package} cores: this describes one.")
    if "hypervisor" in cpu.flags:
        notes.append("Runs in a virtual machine: the clock and peak are the guest's, shared with other tenants.")
    notes.extend(facts.notes)
    sources = {
        "name": CPUINFO_SOURCE,
        "vendor": CPUINFO_SOURCE,
        "isa": f"{CPUINFO_SOURCE} flags (core.isa)",
        "n_vec": f"core.isa ({isa.name})",
        "n_reg": f"core.isa ({isa.name})",
        "n_fma": "probed",
        "l_fma": "probed",
        "freq_ghz": "probed",
        "cores": SYSFS_SOURCE,
        "threads_per_core": SYSFS_SOURCE,
        "caches": SYSFS_SOURCE,
        "compiler_flags": flags_source,
    }
    data: dict[str, Any] = {
        "id": machine_id or default_id(facts),
        "name": name,
        "vendor": cpu.vendor,
        "isa": isa.name,
        "n_vec": isa.lanes,
        "n_reg": isa.registers,
        "n_fma": n_fma,
        "l_fma": l_fma,
        "freq_ghz": round(perf.freq_ghz, 2),
        "cores": topo.cores_per_package,
        "threads_per_core": topo.threads_per_core,
        "caches": [
            {
                "level": c.level,
                "size_kib": c.size_kib,
                "ways": c.ways,
                "line_bytes": c.line_bytes,
                "shared_by_cores": min(c.shared_by_cores, topo.cores_per_package),
            }
            for c in facts.caches
        ],
        "compiler_flags": list(flags),
        "sources": sources,
    }
    if perf.peak_gflops:
        data["peak_gflops"] = {t: round(g, 1) for t, g in perf.peak_gflops.items()}
        sources["peak_gflops"] = "probed"
    if perf.call_us:
        data["call_us"] = {t: round(us, 2) for t, us in perf.call_us.items()}
        sources["call_us"] = "probed"
    notes.extend(_measured_bandwidth(perf, data, sources))
    data["notes"] = "\n".join(notes)
    origin = f"probe of {name}"
    _borrow_unmeasured(data, parse_machine(data, origin))
    return parse_machine(data, origin)


# The description's fields for the levels the probe's copy loop measures (tuner.bandwidth.measure_levels).
_PER_CYCLE_FIELDS = {"L2": "l2_bytes_per_cycle", "L3": "l3_bytes_per_cycle"}


def _measured_bandwidth(perf: Performance, data: dict[str, Any], sources: dict[str, str]) -> list[str]:
    """Set the bandwidths the probe measured (L2 and L3 per core per cycle from one thread, memory in GB/s from the
    most threads) in `data`, and return the note that gives every figure measured."""
    if not perf.bandwidth:
        return []
    for level, by_threads in perf.bandwidth.items():
        if level in _PER_CYCLE_FIELDS and 1 in by_threads:
            data[_PER_CYCLE_FIELDS[level]] = round(by_threads[1] / perf.freq_ghz, 1)
            sources[_PER_CYCLE_FIELDS[level]] = "probed"
        elif level == "memory":
            data["dram_gbytes_per_s"] = round(by_threads[max(by_threads)], 1)
            sources["dram_gbytes_per_s"] = "probed"
    figures = "; ".join(
        f"{level} " + ", ".join(f"{t} thread{'s' if t > 1 else ''} {g:.1f}" for t, g in sorted(by_threads.items()))
        for level, by_threads in perf.bandwidth.items()
    )
    return [
        f"Bandwidth of a copy loop (read one buffer, write another; GB/s, the fastest of short batches): {figures}. "
        "l2_bytes_per_cycle and l3_bytes_per_cycle are one thread's rate over freq_ghz; dram_gbytes_per_s is the "
        "rate of all the threads."
    ]


def _borrow_unmeasured(data: dict[str, Any], probed: Machine) -> None:
    """Give `data` the optional numbers the probe does not measure from the bundled description of the same core
    (probe.match: same ISA, registers, FMA units and L1/L2), with their sources; without one, say they are defaults."""
    unmeasured = [name for name in optional_defaults() if name not in data]
    twin = best_match(probed, bundled_machines()).matched
    notes = [data["notes"]] if data["notes"] else []
    borrowed = [name for name in unmeasured if name in twin.sources] if twin is not None else []
    if twin is not None and borrowed:
        for name in borrowed:
            data[name] = getattr(twin, name)
            data["sources"][name] = f"as the matching bundled description {twin.id}: {twin.sources[name]}"
        notes.append(
            f"Not measured here, borrowed from {twin.id}, the bundled description of the same core: "
            f"{', '.join(borrowed)}."
        )
    defaulted = [name for name in unmeasured if name not in borrowed]
    if defaulted:
        notes.append(f"Not measured here and taken from the schema's defaults: {', '.join(defaulted)}.")
    data["notes"] = "\n".join(notes)
