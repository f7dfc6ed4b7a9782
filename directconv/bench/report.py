"""The terminal report of either bench: a legend, the FMA peaks, and tables with one row per implementation.

What differs between the per-layer and the end-to-end bench is data, a Report: the legend's words, the columns
of a timed result (GFLOP/s and % of peak first, or ms per inference first), the columns after them (memory,
error), and the notes under a table. A per-layer table has one block of columns per thread count; an end-to-end
table is printed per thread count.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from directconv.bench.base import INSTALL_HINT, Impl
from directconv.bench.results import FAILED, WRONG, Result
from directconv.tuner.harness import Stats
from directconv.tuner.peak import Peak

NAME_WIDTH = 20
BUSY_WARNING = 0.25  # other load (CPUs) from which the figures measured under it may be skewed

T = TypeVar("T")


@dataclass(frozen=True)
class Column(Generic[T]):
    """A right-aligned column: its title, its width, and the text of its value for one result (or one row)."""

    title: str
    width: int
    value: Callable[[T], str]

    def cell(self, of: T) -> str:
        return f"{self.value(of):>{self.width}}"

    def heading(self) -> str:
        return f"{self.title:>{self.width}}"


@dataclass(frozen=True)
class Report:
    """How one bench shows its results.

    title, missing_label, explanation: the legend's first line, the words before the implementations not
    installed, and what the columns mean. timed: per thread count, the columns of a result checked and timed.
    trailing: once per row, after the thread counts (computed from the row's results). wrong: the text across
    the timed columns of a wrong answer. notes: the lines under the table about one result. by_threads: one
    block of columns per thread count, ruled off and titled (else the table is of one thread count).
    """

    title: str
    missing_label: str
    explanation: str
    timed: tuple[Column[Result], ...]
    trailing: tuple[Column[Sequence[Result]], ...]
    wrong: Callable[[Result], str]
    notes: Callable[[Result], list[str]]
    by_threads: bool

    @property
    def separator(self) -> str:
        return " |" if self.by_threads else " "

    @property
    def trailing_separator(self) -> str:
        return "  " if self.by_threads else " "


def threads_label(t: int) -> str:
    return f"{t} thread" + ("" if t == 1 else "s")


# Beyond this relative difference, a group's header names both the peak of its rounds and the one measured before.
PEAK_PHASE = 0.1


def peak_text(peak: Peak, results: Sequence[Result]) -> str:
    """The FMA peak a group's % of peak are read against: the median of the peaks timed in its rounds (the same
    rounds for every implementation), or the one measured before them where the group was not timed in rounds;
    both where they differ by more than PEAK_PHASE, since the host's phases can make the one before misleading."""
    rounds = next((r.peak_rounds for r in results if r.peak_rounds), ())
    if not rounds:
        return f"FMA peak {peak.gflops:.1f} GFLOP/s"
    median = statistics.median(rounds)
    text = f"FMA peak {median:.1f} GFLOP/s (median of the rounds"
    if abs(peak.gflops / median - 1) > PEAK_PHASE:
        text += f"; {peak.gflops:.1f} measured before them"
    return text + ")"


def gflops_column(width: int) -> Column[Result]:
    return Column("GFLOP/s", width, lambda r: f"{r.gflops:.1f}")


def percent_column() -> Column[Result]:
    return Column("%peak", 6, lambda r: f"{r.percent_of_peak:.0f}%")


def median_column(decimals: int) -> Column[Result]:
    return Column("median ms", 10, lambda r: f"{_stats(r).median * 1e3:.{decimals}f}")


def spread_column(width: int) -> Column[Result]:
    return Column("spread", width, lambda r: f"{100 * _stats(r).spread:.1f}%")


def _stats(r: Result) -> Stats:
    assert r.timing is not None  # a timed column is shown for timed results only
    return r.timing.stats


def legend(report: Report, impls: Sequence[Impl], missing: dict[str, str], remarks: Sequence[str] = ()) -> str:
    lines = [report.title]
    lines += [f"  {impl.name:<{NAME_WIDTH}} {impl.legend}" for impl in impls]
    if missing:
        lines.append(f"{report.missing_label}: {', '.join(missing)}: {INSTALL_HINT}")
        lines += [f"  {name}: cannot import {reason}" for name, reason in missing.items()]
    lines += [f"Note: {remark}" for remark in remarks]
    lines.append(report.explanation)
    return "\n".join(lines)


def peak_line(peaks: dict[int, Peak]) -> str:
    some = next(iter(peaks.values()))
    text = ", ".join(f"{threads_label(t)} {p.gflops:.1f}" for t, p in peaks.items())
    return f"FMA peak ({some.isa}, {some.accumulators} chains, median of {len(some.samples)} runs): {text} GFLOP/s"


def table(report: Report, impl_names: Sequence[str], thread_counts: Sequence[int], results: Sequence[Result]) -> str:
    """One row per implementation that has results, the timed columns per thread count, then the notes."""
    by_key = {(r.impl, r.threads): r for r in results}
    headings = " ".join(column.heading() for column in report.timed)
    lines = []
    if report.by_threads:
        titles = "".join(f"{report.separator}{_thread_title(t, results):^{len(headings)}}" for t in thread_counts)
        lines.append(f"{'':<{NAME_WIDTH}}{titles}")
    trailing = "".join(report.trailing_separator + column.heading() for column in report.trailing)
    lines.append(f"{'implementation':<{NAME_WIDTH}}{(report.separator + headings) * len(thread_counts)}{trailing}")
    notes = []
    for name in impl_names:
        row = [by_key.get((name, t)) for t in thread_counts]
        present = [r for r in row if r is not None]
        if not present:
            continue
        cells = "".join(report.separator + _cell(report, r, len(headings)) for r in row)
        after = "".join(report.trailing_separator + column.cell(present) for column in report.trailing)
        lines.append(f"{name:<{NAME_WIDTH}}{cells}{after}")
        notes += [line for r in present for line in report.notes(r)]
    return "\n".join(lines + notes)


def _cell(report: Report, result: Result | None, width: int) -> str:
    if result is None:
        return f"{'-':^{width}}"
    if result.status == WRONG:
        return f"{report.wrong(result):^{width}}"
    if result.status == FAILED or result.timing is None:
        return f"{'FAILED (see below)':^{width}}"
    return " ".join(column.cell(result) for column in report.timed)


def _thread_title(threads: int, results: Sequence[Result]) -> str:
    other = next((r.other_cpus for r in results if r.threads == threads and r.other_cpus is not None), None)
    return threads_label(threads) + ("" if other is None else f", other load {other:.2f}")
