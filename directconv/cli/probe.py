"""`directconv probe`: describe this host, measure its FMA units, the fixed cost of a layer call and the bandwidth of
its caches and memory, and write a machine description.

The report goes to stderr, the description (YAML) to stdout, so `directconv probe --no-write > host.yaml` keeps just
the description. Exit status 0 on success, 2 on bad arguments or a failed probe (printed by directconv.cli.main).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from pathlib import Path

from directconv.core.paths import machines_dir
from directconv.machines.loader import ID_PATTERN, bundled_machines, dump_machine, save_machine
from directconv.machines.probe import facts as facts_mod
from directconv.machines.probe.describe import default_id, describe
from directconv.machines.probe.facts import HostFacts
from directconv.machines.probe.fingerprint import fingerprint, fingerprint_id
from directconv.machines.probe.match import best_match
from directconv.nn.calls import measure_call_us
from directconv.tuner.bandwidth import measure_levels
from directconv.tuner.fma import DEFAULT, QUICK, FmaProbe, measure


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the probe options to `parser` and make `run` its action (parser.set_defaults(run=...))."""
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK.rounds} short rounds instead of {DEFAULT.rounds}: a few seconds, rougher numbers",
    )
    parser.add_argument(
        "--id", metavar="ID", help="id of the description (default: the --out file stem, else host-<archspec name>)"
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="write the description to FILE, named <id>.yaml (default: <user machine store>/<id>.yaml)",
    )
    where.add_argument("--no-write", action="store_true", help="print the description, write nothing")
    parser.add_argument(
        "--record",
        type=Path,
        metavar="FILE",
        help="also save the raw detection inputs (/proc/cpuinfo, sysfs files) as JSON: for bug reports and tests",
    )
    parser.set_defaults(run=run)


def _machine_id(args: argparse.Namespace, facts: HostFacts) -> str:
    """The id: --id, else the --out file stem, else host-<archspec name>; --out must then be named <id>.yaml."""
    if args.id:
        if args.out is not None and args.out.stem != args.id:
            raise ValueError(
                f"--out {args.out} must be named {args.id}.yaml for --id {args.id} (a description's file name is "
                "its id); rename the file or drop --id"
            )
        return str(args.id)
    if args.out is not None:
        if re.fullmatch(ID_PATTERN, args.out.stem) is None:
            raise ValueError(
                f"--out {args.out}: the file stem {args.out.stem!r} becomes the machine id, which allows only "
                "lowercase letters, digits, '-' and '_'; rename the file or give --id"
            )
        return str(args.out.stem)
    return default_id(facts)


def _kib(size: float) -> str:
    return f"{size / 1024:g} MiB" if size >= 1024 else f"{size:g} KiB"


def render_facts(facts: HostFacts, fp_id: str) -> str:
    """The detected facts in a few lines."""
    cpu, topo, arch = facts.cpu, facts.topology, facts.archspec
    ident = (
        f"family {cpu.family} model {cpu.model} stepping {cpu.stepping}"
        if cpu.arch != "aarch64"
        else f"implementer {cpu.family} part {cpu.model} {cpu.stepping}"
    )
    relevant = sorted(f for f in cpu.flags if f.startswith(("avx", "fma", "amx", "sve", "asimd", "f16c", "fphp")))
    caches = "; ".join(
        f"L{c.level} {_kib(c.size_kib)} {c.ways}-way {c.line_bytes} B lines, "
        + ("private" if c.shared_by_cores == 1 else f"shared by {c.shared_by_cores} cores")
        for c in facts.caches
    )
    lines = [
        f"cpu:      {cpu.model_name or '(no model name)'} ({cpu.vendor}, {cpu.vendor_id} {ident})",
        f"archspec: {arch.name} ({arch.vendor}), {len(arch.features)} features; archspec {arch.version}",
        f"features: {' '.join(relevant) or '(none of interest)'} ({len(cpu.flags)} flags in /proc/cpuinfo)",
        f"isa:      {facts.isa} (host runs {', '.join(facts.isas)})",
        (
            f"cores:    {topo.packages} package(s) x {topo.cores_per_package} cores x {topo.threads_per_core} "
            "thread(s) per core"
        ),
        f"caches:   {caches}",
        f"fingerprint: {fp_id}",
    ]
    lines += [f"note:     {n}" for n in facts.notes]
    return "\n".join(lines)


def render_probe(probe: FmaProbe) -> str:
    """The measurements in a few lines."""
    sweep = "  ".join(f"K={k}: {s.median:.2f}" for k, s in probe.sweep.items())
    peaks = "; ".join(f"{t}T {s}" for t, s in probe.peak_gflops.items())
    lines = [
        f"clock:    {probe.clock_ghz} GHz (1-cycle add chain); {probe.clock_fma_ghz} GHz beside FMAs",
        f"FMA/cyc:  {sweep}",
        f"l_fma:    {probe.l_fma} cycles (dependent {probe.isa} FMA chain)",
        f"n_fma:    {probe.n_fma} FMA/cycle at K={probe.best_k}",
        f"L*N:      {probe.ln} (clock-free: time per dependent FMA / time per FMA at saturation)",
        f"peak:     {peaks} GFLOP/s{'' if probe.pinned else ' (unpinned)'}",
        f"          measured in {probe.seconds:.1f} s",
    ]
    lines += [f"warning:  {w}" for w in probe.warnings]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    err = sys.stderr
    facts = facts_mod.host_facts()
    machine_id = _machine_id(args, facts)
    if args.record is not None:
        args.record.write_text(facts_mod.read_raw().to_json() + "\n")
        print(f"recorded detection inputs to {args.record}", file=err)
    print(render_facts(facts, fingerprint_id(fingerprint(facts))), file=err)

    budget = QUICK if args.quick else DEFAULT
    cpus = facts_mod.usable_cpus(facts)
    print(f"measuring {facts.isa} FMAs on up to {len(cpus)} cores ({'quick' if args.quick else 'full'})...", file=err)
    err.flush()
    probe = measure(facts.isa, cpus, budget)
    print(render_probe(probe), file=err)
    print("measuring the fixed cost of a layer call...", file=err)
    err.flush()
    call_us = measure_call_us(sorted(probe.peak_gflops), isa=facts.isa, rounds=budget.rounds)
    print("call:     " + "; ".join(f"{t}T {us:.1f} us" for t, us in call_us.items()), file=err)
    print("measuring the bandwidth of each level past L1...", file=err)
    err.flush()
    caches = [(c.level, int(c.size_kib * 1024), c.shared_by_cores) for c in facts.caches]
    levels = measure_levels(caches, sorted(probe.peak_gflops), isa=facts.isa, seconds=budget.burst_s * 10)
    for lv in levels:
        rates = "; ".join(f"{t}T {g:.1f}" for t, g in lv.gbytes_per_s.items())
        print(f"{lv.level + ':':9} {rates} GB/s (copy loop over {lv.total_bytes / (1 << 20):.1f} MiB)", file=err)

    performance = dataclasses.replace(
        probe.performance(), call_us=call_us, bandwidth={lv.level: lv.gbytes_per_s for lv in levels}
    )
    machine = describe(facts, performance, machine_id=machine_id)
    print(best_match(machine, bundled_machines()).explain(), file=err)
    err.flush()
    sys.stdout.write(dump_machine(machine))
    sys.stdout.flush()
    if not args.no_write:
        target = args.out if args.out is not None else machines_dir() / f"{machine.id}.yaml"
        print(f"wrote {save_machine(machine, target)}", file=err)
    return 0
