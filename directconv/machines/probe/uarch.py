"""A CPU's microarchitecture from its identity (vendor, family, model, stepping; AArch64: implementer and part),
read from the table microarchitectures.yaml beside this file, each row with its source.

archspec names a CPU from its flags, which a hypervisor may trim (a Zen 3 guest without one flag is archspec's
"zen2"); the identity the kernel prints survives virtualization. The probe names a host from this table first.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

from directconv.core import schema
from directconv.machines.probe.cpuinfo import CpuInfo

TABLE = "microarchitectures.yaml"


class TableError(schema.DocumentError):
    """The bundled microarchitecture table is malformed (a packaging error)."""


@dataclass(frozen=True)
class Microarchitecture:
    name: str
    source: str


@dataclass(frozen=True)
class _Row:
    vendor_id: str
    family: int
    models: tuple[tuple[int, int], ...]
    steppings: tuple[int, int] | None
    uarch: Microarchitecture


@functools.cache
def _rows() -> tuple[_Row, ...]:
    text = resources.files(__package__).joinpath(TABLE).read_text(encoding="utf-8")
    data = schema.load_yaml(text, TABLE, TableError, max_chars=1 << 20)
    validator = schema.build_validator(schema.read_schema(__package__, "microarchitectures.schema.json"))
    problems = schema.find_problems(validator, data)
    if problems:
        raise TableError(*schema.report(TABLE, problems))
    return tuple(
        _Row(
            vendor_id=row["vendor_id"],
            family=row["family"],
            models=tuple((first, last) for first, last in row["models"]),
            steppings=(row["steppings"][0], row["steppings"][1]) if "steppings" in row else None,
            uarch=Microarchitecture(row["name"], row["source"]),
        )
        for row in data["cpus"]
    )


def _number(text: str) -> int | None:
    """A /proc/cpuinfo number: decimal on x86 ("25"), hexadecimal on AArch64 ("0xd0c")."""
    try:
        return int(text, 0)
    except ValueError:
        return None


def identify(cpu: CpuInfo) -> Microarchitecture | None:
    """The microarchitecture of the CPU `cpu` describes, or None when the table has no row for its identity."""
    family, model, stepping = _number(cpu.family), _number(cpu.model), _number(cpu.stepping)
    if family is None or model is None:
        return None
    for row in _rows():
        if row.vendor_id != cpu.vendor_id or row.family != family:
            continue
        if not any(first <= model <= last for first, last in row.models):
            continue
        if row.steppings is not None and (stepping is None or not row.steppings[0] <= stepping <= row.steppings[1]):
            continue
        return row.uarch
    return None
