"""Machine descriptions: one YAML file per CPU (bundled here, or in the user's machine store) and their loader; host
detection (probe/, host.py, toolchain.py) beside them.

The public API: `Machine` and `Cache` (what the model reads), `load_machine`, `bundled_machines`, `user_machines`,
`list_machines` (with the errors of broken files), `parse_machine`, `dump_machine`, `save_machine`,
and `MachineError`. The rules a description must follow are in schema.json beside this file.

The names load on first use: a process that only runs kernels (which ask machines.toolchain for the compiler)
need not import the loader and its schema validator.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from directconv.machines.loader import (
        MachineEntry,
        MachineError,
        bundled_machines,
        dump_machine,
        list_machines,
        load_machine,
        parse_machine,
        save_machine,
        user_machines,
    )
    from directconv.machines.machine import Cache, Machine

_HOMES = {
    "Cache": "machine",
    "Machine": "machine",
    "MachineEntry": "loader",
    "MachineError": "loader",
    "bundled_machines": "loader",
    "dump_machine": "loader",
    "list_machines": "loader",
    "load_machine": "loader",
    "parse_machine": "loader",
    "save_machine": "loader",
    "user_machines": "loader",
}

__all__ = [
    "Cache",
    "Machine",
    "MachineEntry",
    "MachineError",
    "bundled_machines",
    "dump_machine",
    "list_machines",
    "load_machine",
    "parse_machine",
    "save_machine",
    "user_machines",
]


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(f"directconv.machines.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'directconv.machines' has no attribute {name!r}")
