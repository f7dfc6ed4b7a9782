"""This machine, as the model and the config store see it: a description and a fingerprint.

The description comes from, in order:
  1. the user's probed description of this host (`directconv probe` writes it, id `host-<archspec name>`),
  2. else this host's own facts (ISA, registers, caches, cores read from the OS) with the pipeline facts the model
     cannot read from the OS (N_fma, L_fma, clock) taken from the bundled machine most like it (same ISA, vector
     width, registers and vendor; closest caches),
  3. else those facts with conservative assumptions, said so in `sources`.
Nothing here runs a microbenchmark: that is what `directconv probe` is for.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any

from directconv.machines.loader import MachineError, bundled_machines, user_machines
from directconv.machines.machine import Machine
from directconv.machines.probe.cpuinfo import features_of_flags
from directconv.machines.probe.describe import Performance, default_id, describe
from directconv.machines.probe.facts import HostFacts, host_facts
from directconv.machines.probe.fingerprint import fingerprint, fingerprint_id

# Where no bundled machine resembles the host: one FMA pipe of latency 4 at 2 GHz, a floor any current core beats.
ASSUMED = Performance(l_fma=4, n_fma=1, freq_ghz=2.0)


@dataclass(frozen=True)
class Host:
    machine: Machine
    fingerprint: dict[str, Any]
    fingerprint_id: str
    source: str  # how `machine` was chosen, in words


def _cache_distance(a: Machine, b: Machine) -> float:
    total = 0.0
    for level in (1, 2, 3):
        ca, cb = a.cache(level), b.cache(level)
        if ca and cb:
            total += abs(math.log(ca.size_kib / cb.size_kib))
        elif ca or cb:
            total += 1.0
    return total


def describe_host(facts: HostFacts, bundled: list[Machine], user: list[Machine]) -> tuple[Machine, str]:
    """The description of the host of `facts` (see the module docstring for the order)."""
    probed_id = default_id(facts)
    for m in user:
        if m.id == probed_id and m.isa == facts.isa:
            return m, f"probed description {m.id!r} from the user machine store"
    provisional = describe(facts, ASSUMED)
    alike = [
        m
        for m in bundled
        if (m.isa, m.n_vec, m.n_reg, m.vendor.lower())
        == (provisional.isa, provisional.n_vec, provisional.n_reg, provisional.vendor.lower())
    ]
    if not alike:
        assumed = {
            k: "assumed: no bundled machine is like this host; `directconv probe` measures it"
            for k in ("n_fma", "l_fma", "freq_ghz")
        }
        return (
            dataclasses.replace(provisional, sources={**provisional.sources, **assumed}),
            "this host's facts with assumed FMA pipes (run `directconv probe` for measured ones)",
        )
    like = min(alike, key=lambda m: _cache_distance(m, provisional))
    borrowed = describe(
        facts, Performance(l_fma=like.l_fma, n_fma=like.n_fma, freq_ghz=like.freq_ghz), machine_id=like.id
    )
    sources = {
        **borrowed.sources,
        **{k: f"bundled {like.id}: {like.sources.get(k, '?')}" for k in ("n_fma", "l_fma", "freq_ghz")},
    }
    notes = f"This host's ISA, registers, caches and cores; N_fma, L_fma and clock of the bundled {like.id}."
    return (
        dataclasses.replace(borrowed, sources=sources, notes=notes),
        f"this host's facts with the FMA pipes of bundled {like.id!r} (run `directconv probe` to measure them)",
    )


@functools.cache
def host() -> Host:
    """This machine (read once per process)."""
    facts = host_facts()
    try:
        user = user_machines()
    except MachineError:
        user = []
    machine, source = describe_host(facts, bundled_machines(), user)
    fp = fingerprint(facts)
    return Host(machine, fp, fingerprint_id(fp), source)


# archspec's feature names that /proc/cpuinfo spells otherwise (SSE3 is "pni", Prescott New Instructions).
CPUINFO_SPELLING = {"sse3": "pni"}


def runs_code_for(flags: tuple[str, ...] | list[str]) -> tuple[bool, str]:
    """Whether this host executes code compiled with `flags` (a machine's -march/-mcpu), with the reason.

    The CPU the flags name must have no feature this host's /proc/cpuinfo lacks (archspec knows each CPU's
    features): zen3 runs -march=haswell code, but not -march=bdver2 (FMA4, XOP). Flags naming no CPU archspec
    knows leave the decision to the ISA alone.
    """
    named = features_of_flags(flags)
    if named is None:
        return True, "the flags name no CPU whose features archspec lists"
    name, features = named
    have = set(host_facts().cpu.flags)
    missing = sorted(f for f in features if f not in have and CPUINFO_SPELLING.get(f) not in have)
    if missing:
        return False, f"{name} code may use {', '.join(missing)}, which this host lacks"
    return True, f"this host has every feature of {name}"
