"""A machine fingerprint: the facts that decide whether a tuned kernel configuration still applies on a host.

The tuner and the config store key their results by `fingerprint_id(fingerprint())`: results move freely between
hosts with equal fingerprints, and never between different ones. The fingerprint holds what changes the best kernel
(the exact CPU model and stepping, the vector features we generate code for, the caches, the core count), and
nothing that changes from boot to boot (clock readings, microcode, bogomips) or that a VM may report wrongly on its
own (the archspec name: a VM hiding one flag turns a Zen 3 into "zen2").
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from directconv.machines.probe.facts import HostFacts, host_facts

FINGERPRINT_VERSION = 1  # bump when the fields change: an old id then never equals a new one by accident

# /proc/cpuinfo flags that change the code we generate or the speed of the FMAs we time (x86, then aarch64).
RELEVANT_FEATURES = frozenset(
    {
        "avx",
        "avx2",
        "fma",
        "f16c",
        "avx512f",
        "avx512vl",
        "avx512bw",
        "avx512dq",
        "avx512cd",
        "avx512_vnni",
        "avx512_bf16",
        "avx512_fp16",
        "amx_tile",
        "amx_bf16",
        "amx_int8",
        "asimd",
        "asimdhp",
        "asimddp",
        "fphp",
        "bf16",
        "i8mm",
        "sve",
        "sve2",
        "sme",
    }
)


def fingerprint(facts: HostFacts | None = None) -> dict[str, Any]:
    """The fingerprint of `facts` (default: this host) as a JSON-ready dict with sorted, plain values.

    Keys: version, arch, vendor, model_name, family, model, stepping (on aarch64: implementer, part, rNpM),
    features (sorted relevant flags), caches (level, size_kib, ways, line_bytes per level), packages, cores (per
    package), threads_per_core.
    """
    facts = facts or host_facts()
    cpu = facts.cpu
    return {
        "version": FINGERPRINT_VERSION,
        "arch": cpu.arch,
        "vendor": cpu.vendor,
        "model_name": cpu.model_name,
        "family": cpu.family,
        "model": cpu.model,
        "stepping": cpu.stepping,
        "features": sorted(RELEVANT_FEATURES & cpu.flags),
        "caches": [
            {"level": c.level, "size_kib": float(c.size_kib), "ways": c.ways, "line_bytes": c.line_bytes}
            for c in facts.caches
        ],
        "packages": facts.topology.packages,
        "cores": facts.topology.cores_per_package,
        "threads_per_core": facts.topology.threads_per_core,
    }


def fingerprint_id(fp: dict[str, Any]) -> str:
    """A short stable id of a fingerprint: 16 hex digits of the SHA-256 of its canonical JSON (sorted keys, no
    whitespace), so equal fingerprints give equal ids on any Python and any platform."""
    canonical = json.dumps(fp, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
