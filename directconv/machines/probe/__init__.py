"""Describe the host CPU: identity, ISA, caches and cores (detection); assemble them with FMA facts (measured by
directconv.tuner.fma, or borrowed) into a machine description, match it against the bundled ones, and fingerprint
the host for the tuner's config store.

Detection functions take text and dicts (a /proc/cpuinfo dump, a sysfs tree) so tests replay recorded hosts; only
`host_facts()` touches this machine.
"""

from __future__ import annotations

from directconv.machines.probe.describe import Performance, default_id, describe
from directconv.machines.probe.facts import HostFacts, RawHost, facts_from_raw, host_facts, read_raw, usable_cpus
from directconv.machines.probe.fingerprint import fingerprint, fingerprint_id
from directconv.machines.probe.match import Comparison, MatchResult, best_match, compare, why_not

__all__ = [
    "Comparison",
    "HostFacts",
    "MatchResult",
    "Performance",
    "RawHost",
    "best_match",
    "compare",
    "default_id",
    "describe",
    "facts_from_raw",
    "fingerprint",
    "fingerprint_id",
    "host_facts",
    "read_raw",
    "usable_cpus",
    "why_not",
]
