"""The config store: the best tuned configuration per (machine, layer shape, threads), as YAML production reads
(written in YAML's JSON form, which json parses without PyYAML's leftovers in the heap: docs/design.md).

Files: one per machine fingerprint, `<machine id>-<fingerprint id>.yaml`, in the user store (written by the tuner)
or bundled in directconv/machines/tuned/ (read-only). Lookup reads the user store first, then the bundled one.
Everything read is validated before it can reach the code generator or a compiler command line: against
store.schema.json (every field's type, bounds and size limits), then the rules between fields in code.
Writes hold a file lock across read-modify-write and replace the file atomically, so concurrent tuners finishing at
once leave one valid file holding the best of both.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import functools
import json
import os
import re
import threading
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from jsonschema.protocols import Validator

from directconv.core import schema
from directconv.core.config import KernelConfig
from directconv.core.files import write_atomic
from directconv.core.paths import store_dir
from directconv.core.shape import ConvShape, kernel_kind

_SCHEMA = schema.read_schema(__package__, "store.schema.json")
FORMAT: str = _SCHEMA["properties"]["format"]["const"]
_ID = re.compile(_SCHEMA["properties"]["machine"]["pattern"])  # with fullmatch: `$` also matches before a newline
MAX_CHARS = 16 << 20  # a store file's text: some 700 characters an entry, at most 10000 entries (store.schema.json)


# The generator version that introduced the grouped-window kernel kind (Entry.measured_todays_kernel).
WINDOW_GENERATOR = 3


class StoreError(schema.DocumentError):
    """A store file that cannot be used: names the file and every problem (`problems`: one sentence each)."""


@dataclass(frozen=True)
class Entry:
    layer: str  # suite name, network:step for a network's other convolutions, or "" for any other shape
    shape: ConvShape
    threads: int
    config: KernelConfig
    gflops: float
    spread: float
    percent_of_peak: float
    trials: int
    date: str
    directconv_version: str
    generator_version: int
    compiler: str
    flags: tuple[str, ...]

    def key(self) -> tuple[ConvShape, int]:
        return (self.shape, self.threads)

    def measured_todays_kernel(self) -> bool:
        """Whether the entry timed the kernel kind that runs its shape today: from generator 3 on, grouped layers
        whose groups are not whole vectors but wide enough run the grouped-window kernel (core.shape.kernel_kind);
        an earlier entry for such a shape timed the lane-wise kernel, whose best tile says nothing about it."""
        return self.generator_version >= WINDOW_GENERATOR or kernel_kind(self.shape, self.config.lanes) != (
            "grouped-window"
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = self.shape.to_dict()
        d["config"] = self.config.to_dict()
        d["flags"] = list(self.flags)
        return d


@dataclass(frozen=True)
class StoreFile:
    path: Path
    machine: str
    fingerprint_id: str
    fingerprint: dict[str, Any]
    entries: tuple[Entry, ...]
    bundled: bool = False


def _bundled_files() -> list[Path]:
    try:
        root = resources.files("directconv.machines").joinpath("tuned")
    except ModuleNotFoundError:
        return []
    if not root.is_dir():
        return []
    return sorted(Path(str(p)) for p in root.iterdir() if p.name.endswith(".yaml"))


# ---------------------------------------------------------------------------------------------- validation


@functools.cache
def _validator() -> Validator:
    return schema.build_validator(_SCHEMA)


def _entry(i: int, raw: dict[str, Any]) -> tuple[Entry | None, list[schema.Problem]]:
    """The Entry of one entry that passed the schema, or the cross-field rules it breaks."""
    at = ("entries", i)
    try:
        shape = ConvShape(**{k: int(v) for k, v in raw["shape"].items()})
    except ValueError as exc:  # a kernel larger than the padded input: every field alone passed the schema
        return None, [schema.wrong((*at, "shape"), f"not a layer: {exc}")]
    try:
        config = KernelConfig.from_dict(raw["config"])
        config.check_fits(shape)
    except (TypeError, ValueError) as exc:
        return None, [schema.wrong((*at, "config"), str(exc))]
    threads = int(raw["threads"])
    if config.threads != threads:
        return None, [
            schema.must(
                (*at, "config", "threads"),
                f"the entry's threads, {threads}",
                config.threads,
                "an entry records the thread count its configuration was measured at",
            )
        ]
    entry = Entry(
        layer=raw["layer"],
        shape=shape,
        threads=threads,
        config=config,
        gflops=float(raw["gflops"]),
        spread=float(raw["spread"]),
        percent_of_peak=float(raw["percent_of_peak"]),
        trials=int(raw["trials"]),
        date=raw["date"],
        directconv_version=raw["directconv_version"],
        generator_version=int(raw["generator_version"]),
        compiler=raw["compiler"],
        flags=tuple(raw["flags"]),
    )
    return entry, []


def parse_store(text: str, path: Path, *, bundled: bool = False) -> StoreFile:
    """Validate a store file's text (read by json, or a safe YAML loader only) against store.schema.json, then the
    rules between fields; raise StoreError naming the file and, sorted by field, every problem found."""
    raw = schema.load_yaml(text, str(path), StoreError, MAX_CHARS)
    problems = schema.find_problems(_validator(), raw)
    broken = {p.path[:2] for p in problems}  # the document, a top-level field, or one entry
    entries: list[Entry] = []
    if () not in broken and ("entries",) not in broken:
        for i, item in enumerate(raw["entries"]):
            if ("entries", i) not in broken:
                entry, wrongs = _entry(i, item)
                problems += wrongs
                entries += [entry] if entry is not None else []
    if problems:
        raise StoreError(*schema.report(str(path), problems))
    return StoreFile(path, raw["machine"], raw["fingerprint_id"], raw["fingerprint"], tuple(entries), bundled)


# Parsed files by (path, bundled), with the (mtime_ns, size, inode) they were read at: building a deep network
# looks up one layer after another, and re-parsing every YAML file each time cost seconds per network.
_parsed: dict[tuple[Path, bool], tuple[tuple[int, int, int], StoreFile]] = {}
_parsed_lock = threading.Lock()


def read_store(path: Path, *, bundled: bool = False) -> StoreFile:
    """A validated store file; parsed again only when the file changed (writes replace it: a new inode)."""
    try:
        st = path.stat()
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        with _parsed_lock:
            hit = _parsed.get((path, bundled))
        if hit is not None and hit[0] == stamp:
            return hit[1]
        text = path.read_text()
    except OSError as exc:
        raise StoreError(f"{path}: cannot be read: {exc}") from None
    parsed = parse_store(text, path, bundled=bundled)
    with _parsed_lock:
        _parsed[(path, bundled)] = (stamp, parsed)
    return parsed


def store_files(store: str | Path | None = None) -> Iterator[StoreFile | StoreError]:
    """Every store file, user store first then bundled; a broken file is yielded as its error, not raised."""
    user = store_dir(store)
    paths = [(p, False) for p in sorted(user.glob("*.yaml"))] if user.is_dir() else []
    paths += [(p, True) for p in _bundled_files()]
    for path, bundled in paths:
        try:
            yield read_store(path, bundled=bundled)
        except StoreError as exc:
            yield exc


# ---------------------------------------------------------------------------------------------- lookup


@dataclass(frozen=True)
class Found:
    entry: Entry
    file: StoreFile


def entries_for(fingerprint_id: str, store: str | Path | None = None) -> list[Found]:
    """All valid entries tuned on machines with this fingerprint (user store entries shadow bundled ones)."""
    seen: set[tuple[ConvShape, int]] = set()
    found = []
    for item in store_files(store):
        if isinstance(item, StoreError):
            warnings.warn(f"ignoring a broken config store file: {item}", stacklevel=2)
            continue
        if item.fingerprint_id != fingerprint_id:
            continue
        for entry in item.entries:
            if entry.key() not in seen:
                seen.add(entry.key())
                found.append(Found(entry, item))
    return found


def lookup(shape: ConvShape, threads: int, fingerprint_id: str, store: str | Path | None = None) -> Found | None:
    """The tuned entry for exactly this shape and thread count on this fingerprint, if any."""
    for f in entries_for(fingerprint_id, store):
        if f.entry.shape == shape and f.entry.threads == threads:
            return f
    return None


def foreign_entries(
    shape: ConvShape, threads: int, fingerprint_id: str, store: str | Path | None = None
) -> list[Found]:
    """Entries for this shape tuned on *other* fingerprints: never used, but worth a warning that shows both."""
    out = []
    for item in store_files(store):
        if isinstance(item, StoreError) or item.fingerprint_id == fingerprint_id:
            continue
        out += [Found(e, item) for e in item.entries if e.shape == shape and e.threads == threads]
    return out


# ---------------------------------------------------------------------------------------------- writing


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def dump_store(machine: str, fingerprint_id: str, fingerprint: dict[str, Any], entries: list[Entry]) -> str:
    doc = {
        "format": FORMAT,
        "machine": machine,
        "fingerprint_id": fingerprint_id,
        "fingerprint": fingerprint,
        "entries": [e.to_dict() for e in sorted(entries, key=lambda e: (e.layer, str(e.shape), e.threads))],
    }
    # YAML in its JSON form: schema.load_yaml reads it with json, which leaves the heap as it found it (PyYAML's
    # transient objects stayed in a process's memory: docs/design.md, "The config store's memory").
    return json.dumps(doc, indent=1) + "\n"


def store_path(machine: str, fingerprint_id: str, store: str | Path | None = None) -> Path:
    if not _ID.fullmatch(machine):
        raise ValueError(f"machine id {machine!r} is not a valid file name")
    return store_dir(store) / f"{machine}-{fingerprint_id}.yaml"


def record(
    entry: Entry, *, machine: str, fingerprint_id: str, fingerprint: dict[str, Any], store: str | Path | None = None
) -> tuple[bool, Path]:
    """Add `entry` unless a faster one for the same (shape, threads) and today's kernel is there; returns (written,
    path)."""
    path = store_path(machine, fingerprint_id, store)
    with _locked(path):
        entries: list[Entry] = []
        if path.exists():
            try:
                entries = list(read_store(path).entries)
            except StoreError as exc:
                # Keep the unreadable file for its owner to inspect; start a fresh one beside it.
                aside = path.with_name(f"{path.name}.corrupt-{dt.datetime.now():%Y%m%d%H%M%S}")
                os.replace(path, aside)
                warnings.warn(f"{exc}; moved aside to {aside.name}", stacklevel=2)
        old = next((e for e in entries if e.key() == entry.key()), None)
        if old is not None and old.gflops >= entry.gflops and old.measured_todays_kernel():
            return False, path
        entries = [e for e in entries if e.key() != entry.key()] + [entry]
        write_atomic(path, dump_store(machine, fingerprint_id, fingerprint, entries))
    return True, path
