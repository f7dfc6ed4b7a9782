"""The config store: the best tuned configuration per (machine, layer shape, threads), as YAML production reads.

Files: one per machine fingerprint, `<machine id>-<fingerprint id>.yaml`, in the user store (written by the tuner)
or bundled in directconv/machines/tuned/ (read-only). Lookup reads the user store first, then the bundled one.
Everything read is validated field by field before it can reach the code generator or a compiler command line.
Writes hold a file lock across read-modify-write and replace the file atomically, so concurrent tuners finishing at
once leave one valid file holding the best of both.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import math
import os
import re
import tempfile
import threading
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from directconv.core.config import KernelConfig
from directconv.core.files import write_atomic
from directconv.core.paths import store_dir
from directconv.core.shape import ConvShape

FORMAT = "directconv-tuned/1"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_SHAPE_KEYS = ("ci", "co", "h", "w", "kh", "kw", "sh", "sw", "pt", "pb", "pl", "pr")


class StoreError(ValueError):
    """A store file that cannot be used: names the file and the problem."""


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


def _fail(path: Path, where: str, expected: str, got: Any) -> StoreError:
    shown = repr(got)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return StoreError(f"{path}: {where} must be {expected}, got {shown} ({type(got).__name__})")


def _int(path: Path, where: str, value: Any, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise _fail(path, where, f"an integer in [{low}, {high}]", value)
    return value


def _float(path: Path, where: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(path, where, "a finite number", value)
    if not low <= value <= high:
        raise _fail(path, where, f"a number in [{low}, {high}]", value)
    return float(value)


def _text(path: Path, where: str, value: Any, limit: int = 200) -> str:
    if not isinstance(value, str) or len(value) > limit or any(ord(ch) < 32 for ch in value):
        raise _fail(path, where, f"a single-line string of at most {limit} characters", value)
    return value


def _entry(path: Path, i: int, raw: Any) -> Entry:
    where = f"entries[{i}]"
    if not isinstance(raw, dict):
        raise _fail(path, where, "a mapping", raw)
    expected = {f for f in Entry.__dataclass_fields__}
    unknown = sorted(set(raw) - expected)
    missing = sorted(expected - set(raw))
    if unknown:
        raise StoreError(f"{path}: {where} has unknown keys {unknown}; expected {sorted(expected)}")
    if missing:
        raise StoreError(f"{path}: {where} is missing keys {missing}")
    shape_raw = raw["shape"]
    if not isinstance(shape_raw, dict) or sorted(shape_raw) != sorted(_SHAPE_KEYS):
        raise _fail(path, f"{where}.shape", f"a mapping with exactly the keys {list(_SHAPE_KEYS)}", shape_raw)
    dims = {k: _int(path, f"{where}.shape.{k}", shape_raw[k], 0, 1 << 20) for k in _SHAPE_KEYS}
    try:
        shape = ConvShape(**dims)
        config = KernelConfig.from_dict(raw["config"])
        config.check_fits(shape)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"{path}: {where}: {exc}") from None
    threads = _int(path, f"{where}.threads", raw["threads"], 1, 1024)
    if config.threads != threads:
        raise StoreError(f"{path}: {where}: config.threads={config.threads} disagrees with threads={threads}")
    flags = raw["flags"]
    if not isinstance(flags, list):
        raise _fail(path, f"{where}.flags", "a list of strings", flags)
    return Entry(
        layer=_text(path, f"{where}.layer", raw["layer"], 64),
        shape=shape,
        threads=threads,
        config=config,
        gflops=_float(path, f"{where}.gflops", raw["gflops"], 0.0, 1e7),
        spread=_float(path, f"{where}.spread", raw["spread"], 0.0, 1e3),
        percent_of_peak=_float(path, f"{where}.percent_of_peak", raw["percent_of_peak"], 0.0, 1e4),
        trials=_int(path, f"{where}.trials", raw["trials"], 0, 10**7),
        date=_text(path, f"{where}.date", raw["date"], 40),
        directconv_version=_text(path, f"{where}.directconv_version", raw["directconv_version"], 40),
        generator_version=_int(path, f"{where}.generator_version", raw["generator_version"], 0, 10**6),
        compiler=_text(path, f"{where}.compiler", raw["compiler"], 200),
        flags=tuple(_text(path, f"{where}.flags[{j}]", f, 100) for j, f in enumerate(flags)),
    )


def parse_store(text: str, path: Path, *, bundled: bool = False) -> StoreFile:
    """Validate a store file's text (yaml.safe_load only); raise StoreError naming the file and the problem."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise StoreError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise _fail(path, "the document", "a mapping", raw)
    expected = {"format", "machine", "fingerprint_id", "fingerprint", "entries"}
    if set(raw) != expected:
        raise StoreError(f"{path}: top-level keys must be {sorted(expected)}, got {sorted(raw)}")
    if raw["format"] != FORMAT:
        raise _fail(path, "format", repr(FORMAT), raw["format"])
    machine = raw["machine"]
    if not isinstance(machine, str) or not _ID.match(machine):
        raise _fail(path, "machine", "an id of letters, digits, '.', '_' or '-'", machine)
    fid = raw["fingerprint_id"]
    if not isinstance(fid, str) or not re.fullmatch(r"[0-9a-f]{8,64}", fid):
        raise _fail(path, "fingerprint_id", "a hex string", fid)
    if not isinstance(raw["fingerprint"], dict):
        raise _fail(path, "fingerprint", "a mapping", raw["fingerprint"])
    if not isinstance(raw["entries"], list):
        raise _fail(path, "entries", "a list", raw["entries"])
    entries = tuple(_entry(path, i, e) for i, e in enumerate(raw["entries"]))
    return StoreFile(path, machine, fid, raw["fingerprint"], entries, bundled)


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


def foreign_entries(shape: ConvShape, threads: int, fingerprint_id: str, store: str | Path | None = None) -> list[Found]:
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
    return yaml.safe_dump(doc, sort_keys=False, width=120)


def store_path(machine: str, fingerprint_id: str, store: str | Path | None = None) -> Path:
    if not _ID.match(machine):
        raise ValueError(f"machine id {machine!r} is not a valid file name")
    return store_dir(store) / f"{machine}-{fingerprint_id}.yaml"


def record(
    entry: Entry, *, machine: str, fingerprint_id: str, fingerprint: dict[str, Any], store: str | Path | None = None
) -> tuple[bool, Path]:
    """Add `entry` unless a faster one for the same (shape, threads) is there; returns (written, path)."""
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
        if old is not None and old.gflops >= entry.gflops:
            return False, path
        entries = [e for e in entries if e.key() != entry.key()] + [entry]
        write_atomic(path, dump_store(machine, fingerprint_id, fingerprint, entries))
    return True, path
