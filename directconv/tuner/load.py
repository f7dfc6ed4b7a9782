"""How much of the machine other processes took while we measured: the first thing to read when figures look odd.

On a machine with T cores, a benchmark at T threads shares its cores with whatever else runs, and OpenMP codes,
which wait at barriers for their slowest thread, can slow down several-fold. This meter reads the system-wide busy
time from /proc/stat (time stolen by a hypervisor included) and subtracts this process's own CPU time. Linux only;
elsewhere it reports None.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

# Columns of the /proc/stat "cpu" line: user nice system idle iowait irq softirq steal (guest is inside user).
# Busy is all but idle and iowait.
_BUSY_COLUMNS = (0, 1, 2, 5, 6, 7)


def parse_busy_seconds(stat_text: str, ticks_per_second: float) -> float | None:
    """Busy CPU seconds of all CPUs together since boot, from the text of /proc/stat (None if not found)."""
    for line in stat_text.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            values = [int(v) for v in fields[1:]]
            return sum(values[i] for i in _BUSY_COLUMNS if i < len(values)) / ticks_per_second
    return None


def _system_busy_seconds() -> float | None:
    try:
        return parse_busy_seconds(Path("/proc/stat").read_text(), float(os.sysconf("SC_CLK_TCK")))
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class _Snapshot:
    wall: float
    system_busy: float | None
    own: float


def _snapshot() -> _Snapshot:
    return _Snapshot(time.perf_counter(), _system_busy_seconds(), time.process_time())


class LoadMeter:
    """Started at construction; `other_cpus()` is the average number of CPUs kept busy by anything but this
    process since then (0.0 on an idle machine, about 1.0 if another process ran flat out on one core)."""

    def __init__(self) -> None:
        self._start = _snapshot()

    def other_cpus(self) -> float | None:
        end = _snapshot()
        if self._start.system_busy is None or end.system_busy is None:
            return None
        wall = end.wall - self._start.wall
        if wall <= 0:
            return None
        others = (end.system_busy - self._start.system_busy) - (end.own - self._start.own)
        # /proc/stat counts in ticks (10 ms): small negative values are rounding, not negative load.
        return max(0.0, others / wall)
