"""A one-line progress display for tuning runs: trial n/N, elapsed, remaining, best so far."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60:d}:{seconds % 60:02d}"


class Progress:
    """Redraws one terminal line; on a non-terminal stream it prints a line per update instead (logs stay readable)."""

    def __init__(self, label: str, total: int, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.label = label
        self.total = total
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.start = time.monotonic()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def update(self, done: int, best_gflops: float | None, note: str = "") -> None:
        if not self.enabled:
            return
        elapsed = time.monotonic() - self.start
        remaining = elapsed / done * (self.total - done) if done else 0.0
        width = 24
        filled = int(width * done / max(1, self.total))
        bar = "#" * filled + "-" * (width - filled)
        best = f"{best_gflops:.1f} GFLOP/s" if best_gflops else "-"
        line = (
            f"{self.label} [{bar}] trial {done}/{self.total} elapsed {_clock(elapsed)} "
            f"remaining {_clock(remaining)} best {best} {note}"
        )
        if self.tty:
            self.stream.write("\r" + line[:160].ljust(160))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        """A line of its own (after the bar, which it ends on a terminal)."""
        if not self.enabled:
            return
        self.stream.write(("\n" if self.tty else "") + f"{self.label}: {text}" + ("" if self.tty else "\n"))
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
