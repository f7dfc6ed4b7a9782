"""Describe the host CPU: identity, ISA, caches and cores (detection), and FMA latency, throughput, clock and peak
(C microbenchmarks); assemble them into a machine description, match it against the bundled ones, and fingerprint
the host for the tuner's config store.

Detection functions take text and dicts (a /proc/cpuinfo dump, a sysfs tree) so tests replay recorded hosts; only
`host_facts()` and `measure()` touch this machine.
"""

from __future__ import annotations

from directconv.probe.describe import Performance, default_id, describe
from directconv.probe.facts import HostFacts, RawHost, facts_from_raw, host_facts, read_raw, usable_cpus
from directconv.probe.fingerprint import fingerprint, fingerprint_id
from directconv.probe.match import Comparison, MatchResult, best_match, compare, why_not
from directconv.probe.measure import DEFAULT, QUICK, Budget, FmaProbe, Stat, measure

__all__ = [
    "DEFAULT",
    "QUICK",
    "Budget",
    "Comparison",
    "FmaProbe",
    "HostFacts",
    "MatchResult",
    "Performance",
    "RawHost",
    "Stat",
    "best_match",
    "compare",
    "default_id",
    "describe",
    "facts_from_raw",
    "fingerprint",
    "fingerprint_id",
    "host_facts",
    "measure",
    "read_raw",
    "usable_cpus",
    "why_not",
]
