"""`directconv machines`: list the machine descriptions (bundled and user), or show one in full."""

from __future__ import annotations

import argparse
import json
from typing import Any

from directconv.core.paths import machines_dir
from directconv.machines import MachineEntry, dump_machine, list_machines, load_machine
from directconv.machines.loader import machine_to_data


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "id",
        nargs="?",
        metavar="ID_OR_PATH",
        help="show this machine's full description (every number with its source) instead of the list",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table (a list of machines)")
    p.set_defaults(run=run)


def _where(entry: MachineEntry) -> str:
    if entry.origin == "user":
        return f"user: {entry.path}" + (" (shadows bundled)" if entry.shadows else "")
    return "bundled" + (" (shadowed by user file)" if entry.shadowed_by else "")


def _entry_json(entry: MachineEntry) -> dict[str, Any]:
    listing = {
        "origin": entry.origin,
        "path": entry.path,
        "shadows": entry.shadows,
        "shadowed_by": entry.shadowed_by,
        "error": entry.error,
    }
    if entry.machine is None:
        return {"id": entry.id, **listing}
    m = entry.machine
    return {**machine_to_data(m), "fma_in_flight": m.fma_in_flight, "peak_gflops_per_core": m.peak(1), **listing}


def _table(entries: list[MachineEntry]) -> str:
    header = ("ID", "NAME", "ISA", "N_VEC x N_REG", "N_FMA", "L_FMA", "FMA IN FLIGHT", "GFLOP/S/CORE", "FROM")
    rows = []
    for e in entries:
        m = e.machine
        if m is None:
            rows.append((e.id, "(cannot load: see below)", "-", "-", "-", "-", "-", "-", _where(e)))
        else:
            rows.append(
                (
                    m.id,
                    m.name,
                    m.isa,
                    f"{m.n_vec} x {m.n_reg}",
                    f"{m.n_fma:g}",
                    f"{m.l_fma:g}",
                    f"{m.fma_in_flight:g}",
                    f"{m.peak(1):.1f}",
                    _where(e),
                )
            )
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    numeric = {3, 4, 5, 6, 7}
    lines = [
        "  ".join(
            c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in (header, *rows)
    ]
    lines.append("")
    lines.append(
        "FMA IN FLIGHT = N_vec * N_fma * L_fma, the independent fp32 accumulations that keep every FMA pipe "
        "busy (paper eq. 1);"
    )
    lines.append("GFLOP/S/CORE = measured 1-thread peak where the description has one, else 2 * N_fma * N_vec * freq.")
    lines.append(f"User store: {machines_dir()} (a user file shadows the bundled description with the same id).")
    broken = [e for e in entries if e.error]
    if broken:
        lines.append("")
        lines.append("Files that could not be loaded:")
        lines.extend(f"  {e.error}" for e in broken)
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.id:
        machine = load_machine(args.id)
        if args.json:
            data = {
                **machine_to_data(machine),
                "fma_in_flight": machine.fma_in_flight,
                "peak_gflops_per_core": machine.peak(1),
            }
            print(json.dumps(data, indent=2))
        else:
            print(dump_machine(machine), end="")
        return 0
    entries = list_machines()
    if args.json:
        print(json.dumps([_entry_json(e) for e in entries], indent=2))
    else:
        print(_table(entries))
    return 0
