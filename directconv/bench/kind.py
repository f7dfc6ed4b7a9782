"""What a bench is, for the flow of `directconv bench` (session.py): the Request it runs, the Group of results
each of its tables shows, and the Kind that says what is its own (per layer, end to end).

Kept apart from the flow so that a bench's modules import no more than this: the memory child (memory.py) loads
the end-to-end implementations, and every module it imports counts in the memory it measures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from directconv.bench.base import ConfigSource, Impl, Registry
from directconv.bench.report import Report
from directconv.bench.results import Result
from directconv.bench.runner import DEFAULT, Settings
from directconv.tuner.peak import Peak

DEFAULT_THREADS = (1, 2)


@dataclass(frozen=True)
class Request:
    """What the command line asks for (see cli/bench.py for the options)."""

    layers: tuple[str, ...] = ()
    networks: tuple[str, ...] = ()
    end_to_end: bool = False
    input_size: int | None = None
    steps: int | None = None
    threads: tuple[int, ...] = DEFAULT_THREADS
    impls: tuple[str, ...] = ()
    settings: Settings = DEFAULT
    quick: bool = False
    json: Path | None = None
    seed: int = 0
    source: ConfigSource = "store"


@dataclass(frozen=True)
class Group:
    """What one table shows: its results, their JSON records, the table's text, the bench's own failures (beyond
    directconv implementations that are not ok), and the document sections as they stand after it."""

    results: list[Result]
    records: list[dict[str, Any]]
    text: str
    failures: list[str] = field(default_factory=list)
    sections: dict[str, Any] = field(default_factory=dict)


Groups = Callable[[Request, Sequence[Impl[Any]], dict[int, Peak]], Iterator[Group]]
# The summary's text (None: no summary) and the document sections it fills.
Finish = Callable[[list[Result], Sequence[Impl[Any]], dict[int, Peak]], tuple[str | None, dict[str, Any]]]


def _no_remarks(impls: Sequence[Impl[Any]]) -> list[str]:
    return []


def _no_summary(
    results: list[Result], impls: Sequence[Impl[Any]], peaks: dict[int, Peak]
) -> tuple[str | None, dict[str, Any]]:
    return None, {}


@dataclass(frozen=True)
class Kind:
    """One bench: its JSON format, implementations and report, and the steps of the flow that are its own.

    options: the settings fields that say what is run; raises ValueError, before anything is measured, for a
    request the bench cannot run. groups: runs the cases, yielding after each table. sections: the document's
    sections of its own, None until a group or `finish` fills them. remarks: legend notes for the implementations
    available. finish: the summary's text (printed last) and the sections it fills. show_peaks: print the FMA
    peaks up front.
    """

    format: str
    registry: Registry[Any]
    report: Report
    options: Callable[[Request], dict[str, Any]]
    groups: Groups
    sections: tuple[str, ...] = ()
    remarks: Callable[[Sequence[Impl[Any]]], list[str]] = _no_remarks
    finish: Finish = _no_summary
    show_peaks: bool = False
