"""Machine descriptions: one YAML file per CPU (bundled here, or in the user's machine store) and their loader.

The public API: `Machine` and `Cache` (what the model reads), `load_machine`, `bundled_machines`, `user_machines`,
`list_machines` (with the errors of broken files), `parse_machine`, `dump_machine`, `save_machine`,
and `MachineError`. The rules a description must follow are in schema.json beside this file.
"""

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
