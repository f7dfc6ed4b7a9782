"""Read, validate and write machine descriptions: one YAML file per CPU, checked against machines/schema.json.

The rules of schema.json are enforced here in plain Python (no jsonschema at run time), together with the cross-field
rules a JSON Schema cannot state; tests/test_machines.py checks that both say the same thing. Every failure is a
`MachineError` naming the file, the field, what was expected and what was found.

Where machines come from:
  * bundled: the *.yaml files of the package `directconv.machines` (this folder), read with importlib.resources;
  * user: `machines_dir()`, for descriptions written by the probe or by hand. A user file shadows the bundled
    description with the same id.

YAML is read with yaml.safe_load only, and compiler flags must match an allowlist, because a description's flags end
up on a compiler command line.
"""

from __future__ import annotations

import contextlib
import difflib
import itertools
import math
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from directconv.core.files import write_atomic
from directconv.core.paths import machines_dir
from directconv.machines.machine import Cache, Machine

__all__ = [
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

PACKAGE = "directconv.machines"
SUFFIXES = (".yaml", ".yml")


class MachineError(ValueError):
    """A machine description could not be found, read or validated; the message says where, what and why."""


# ---- The rules (schema.json states the same; the test suite compares the two) ---------------------------------------

ISAS: tuple[str, ...] = ("avx512", "avx2", "avx", "neon", "sve", "scalar")
# fp32 lanes per register for fixed-width ISAs; SVE vectors are any multiple of 128 bits.
ISA_LANES: dict[str, int] = {"avx512": 16, "avx2": 8, "avx": 8, "neon": 4, "scalar": 1}
SVE_LANE_MULTIPLE = 4

REQUIRED: tuple[str, ...] = (
    "id", "name", "vendor", "isa", "n_vec", "n_reg", "n_fma", "l_fma", "freq_ghz", "cores", "threads_per_core",
    "caches", "compiler_flags", "sources",
)
OPTIONAL: tuple[str, ...] = ("n_load", "peak_gflops", "notes")
FIELDS: tuple[str, ...] = REQUIRED + OPTIONAL
# Numeric facts: each one present needs a `sources` entry.
SOURCED: tuple[str, ...] = ("n_vec", "n_reg", "n_fma", "l_fma", "freq_ghz", "cores", "threads_per_core", "caches")
SOURCED_IF_PRESENT: tuple[str, ...] = ("n_load", "peak_gflops")
CACHE_FIELDS: tuple[str, ...] = ("level", "size_kib", "ways", "line_bytes", "shared_by_cores")

ID_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
ID_MAX_LENGTH = 64
STRING_MAX_LENGTH = {"name": 200, "vendor": 100}
FLAG_PATTERNS: tuple[str, ...] = (
    r"^-m(arch|tune|cpu|fpu)=[A-Za-z0-9_.+-]+$",
    r"^-m[a-z0-9][a-z0-9-]*$",
    r"^-mprefer-vector-width=(128|256|512)$",
)
MAX_FLAGS = 32
LINE_BYTES: tuple[int, ...] = (16, 32, 64, 128, 256, 512, 1024)
PEAK_KEY_PATTERN = r"^[1-9][0-9]*$"


@dataclass(frozen=True)
class Bound:
    """A numeric field's type and range, as schema.json writes it."""

    integer: bool
    maximum: float
    minimum: float | None = None  # inclusive
    exclusive_minimum: float | None = None

    def admits(self, x: float) -> bool:
        if self.minimum is not None and x < self.minimum:
            return False
        if self.exclusive_minimum is not None and x <= self.exclusive_minimum:
            return False
        return x <= self.maximum

    def expected(self) -> str:
        kind = "integer" if self.integer else "number"
        top = _num(self.maximum)
        if self.minimum == 1 and self.integer:
            return f"a positive integer <= {top}"
        if self.exclusive_minimum == 0:
            return f"a positive {kind} <= {top}"
        low = f">= {_num(self.minimum)}" if self.minimum is not None else f"> {_num(self.exclusive_minimum)}"
        return f"a finite {kind} {low} and <= {top}"


def _num(x: float | None) -> str:
    return str(int(x)) if x is not None and float(x).is_integer() else str(x)


BOUNDS: dict[str, Bound] = {
    "n_vec": Bound(True, 64, minimum=1),
    "n_reg": Bound(True, 256, minimum=1),
    "n_fma": Bound(False, 8, exclusive_minimum=0),
    "l_fma": Bound(False, 64, minimum=1),
    "freq_ghz": Bound(False, 10, exclusive_minimum=0),
    "cores": Bound(True, 4096, minimum=1),
    "threads_per_core": Bound(True, 8, minimum=1),
    "n_load": Bound(False, 8, exclusive_minimum=0),
}
CACHE_BOUNDS: dict[str, Bound] = {
    "level": Bound(True, 4, minimum=1),
    "size_kib": Bound(False, 1e6, exclusive_minimum=0),
    "ways": Bound(True, 1024, minimum=1),
    "shared_by_cores": Bound(True, 4096, minimum=1),
}
PEAK_BOUND = Bound(False, 1e6, exclusive_minimum=0)


# ---- Validation ----------------------------------------------------------------------------------------------------


def _show(value: Any) -> str:
    """`value` as the message shows it: its repr (so strings look like strings), cut short, and its type."""
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{text} ({type(value).__name__})"


class _Checker:
    def __init__(self, origin: str) -> None:
        self.origin = origin

    def fail(self, field: str, expected: str, value: Any, hint: str = "") -> MachineError:
        message = f"{self.origin}: field {field!r} must be {expected}, got {_show(value)}"
        return MachineError(message + (f"; {hint}" if hint else ""))

    def number(self, field: str, value: Any, bound: Bound) -> float:
        # bool is an int in Python; YAML turns `yes`/`on` into True. Neither is a count.
        ok_type = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok_type or not math.isfinite(value) or not bound.admits(value):
            raise self.fail(field, bound.expected(), value)
        if bound.integer and value != int(value):
            raise self.fail(field, bound.expected(), value)
        return float(value)

    def integer(self, field: str, value: Any, bound: Bound) -> int:
        """As `number`, for a Bound with integer=True (JSON Schema's integer: 16.0 counts, 16.5 does not)."""
        return int(self.number(field, value, bound))

    def string(self, field: str, value: Any, max_length: int, pattern: str | None = None, what: str = "") -> str:
        if not isinstance(value, str) or not value.strip() or len(value) > max_length:
            raise self.fail(field, f"a non-empty string of at most {max_length} characters", value)
        if pattern is not None and re.fullmatch(pattern, value) is None:
            raise self.fail(field, what or f"a string matching {pattern}", value)
        return value


def _unknown_key(origin: str, key: Any, allowed: tuple[str, ...], where: str) -> MachineError:
    close = difflib.get_close_matches(str(key), allowed, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return MachineError(f"{origin}: unknown field {where + str(key)!r}: {hint}expected only {', '.join(allowed)}")


def _check_caches(c: _Checker, value: Any, cores: int) -> tuple[Cache, ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= 4:
        raise c.fail("caches", "a list of 1 to 4 cache levels ({level, size_kib, ways, line_bytes, shared_by_cores})",
                     value)
    caches = []
    for i, item in enumerate(value):
        where = f"caches[{i}]"
        if not isinstance(item, Mapping):
            raise c.fail(where, "a mapping with keys " + ", ".join(CACHE_FIELDS), item)
        for key in item:
            if key not in CACHE_FIELDS:
                raise _unknown_key(c.origin, key, CACHE_FIELDS, f"{where}.")
        for key in CACHE_FIELDS:
            if key not in item:
                raise MachineError(f"{c.origin}: missing required field '{where}.{key}'")
        level, ways, shared = (c.integer(f"{where}.{k}", item[k], CACHE_BOUNDS[k])
                               for k in ("level", "ways", "shared_by_cores"))
        size = c.number(f"{where}.size_kib", item["size_kib"], CACHE_BOUNDS["size_kib"])
        line = item["line_bytes"]
        if isinstance(line, float) and line.is_integer():
            line = int(line)
        if isinstance(line, bool) or not isinstance(line, int) or line not in LINE_BYTES:
            raise c.fail(f"{where}.line_bytes", f"a power of two from {LINE_BYTES[0]} to {LINE_BYTES[-1]}", line)
        if shared > cores:
            raise c.fail(f"{where}.shared_by_cores", f"at most cores={cores}", shared)
        caches.append(Cache(level=level, size_kib=size, ways=ways, line_bytes=line, shared_by_cores=shared))
    levels = [x.level for x in caches]
    if sorted(levels) != list(range(1, len(levels) + 1)):
        raise c.fail("caches", "a list with levels 1, 2, ... each once and without gaps (1 = L1 data cache)",
                     levels)
    caches.sort(key=lambda x: x.level)
    for lower, upper in itertools.pairwise(caches):
        if upper.size_kib <= lower.size_kib:
            raise c.fail(
                "caches", "ordered by size, each level larger than the one below (size_kib per instance)",
                {f"L{x.level}": x.size_kib for x in caches},
                "a cache smaller than the level below it (e.g. a memory-side cache) is better left out and mentioned "
                "in notes",
            )
    return tuple(caches)


def _check_flags(c: _Checker, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > MAX_FLAGS:
        raise c.fail("compiler_flags", f"a list of at most {MAX_FLAGS} strings (may be empty)", value)
    for i, flag in enumerate(value):
        if not isinstance(flag, str) or not any(re.fullmatch(p, flag) for p in FLAG_PATTERNS):
            raise c.fail(
                f"compiler_flags[{i}]",
                "a machine flag: -march=NAME, -mtune=NAME, -mcpu=NAME, -mfpu=NAME, -mprefer-vector-width=128|256|512 "
                "or -mFEATURE such as -mavx2 or -mno-avx512f",
                flag,
                "flags reach the compiler command line, so nothing else (no spaces, quotes, ';', '$', -f or -O "
                "options) is accepted",
            )
    return tuple(value)


def _check_peak(c: _Checker, value: Any, threads: int) -> dict[int, float]:
    if not isinstance(value, Mapping):
        raise c.fail("peak_gflops", "a mapping from thread count to measured GFLOP/s", value)
    peak: dict[int, float] = {}
    for key, gflops in value.items():
        # YAML keys are ints; the same file read as JSON has string keys.
        if isinstance(key, str) and re.fullmatch(PEAK_KEY_PATTERN, key):
            n = int(key)
        elif isinstance(key, int) and not isinstance(key, bool) and key >= 1:
            n = key
        else:
            raise c.fail("peak_gflops", "keyed by positive thread counts", key)
        if n > threads:
            raise c.fail(f"peak_gflops.{n}", f"keyed by at most cores * threads_per_core = {threads} threads", n)
        peak[n] = c.number(f"peak_gflops.{n}", gflops, PEAK_BOUND)
    return peak


def _check_sources(c: _Checker, value: Any, data: Mapping[str, Any]) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise c.fail("sources", "a mapping from field name to where its value came from", value)
    allowed = tuple(f for f in FIELDS if f != "sources")
    for key, text in value.items():
        if key not in allowed:
            raise _unknown_key(c.origin, key, allowed, "sources.")
        if not isinstance(text, str) or not text.strip():
            raise c.fail(f"sources.{key}", "a non-empty citation or 'probed'", text)
    needed = SOURCED + tuple(f for f in SOURCED_IF_PRESENT if f in data)
    missing = [f for f in needed if f not in value]
    if missing:
        raise MachineError(
            f"{c.origin}: field 'sources' must say where every number came from, but has no entry for "
            f"{', '.join(missing)}; add e.g. `{missing[0]}: \"<document, section>\"` or `{missing[0]}: probed`"
        )
    return dict(value)


def _validate(data: Any, origin: str, stem: str | None) -> Machine:
    if not isinstance(data, Mapping):
        raise MachineError(
            f"{origin}: a machine description must be a YAML mapping of field names to values, got "
            f"{type(data).__name__}"
        )
    for key in data:
        if key not in FIELDS:
            raise _unknown_key(origin, key, FIELDS, "")
    for key in REQUIRED:
        if key not in data:
            raise MachineError(f"{origin}: missing required field {key!r}; required fields: {', '.join(REQUIRED)}")
    c = _Checker(origin)

    machine_id = c.string("id", data["id"], ID_MAX_LENGTH, ID_PATTERN,
                          "lowercase letters, digits, '-' and '_', starting with a letter or digit")
    if stem is not None and machine_id != stem:
        raise c.fail("id", f"equal to the file name stem {stem!r}", machine_id,
                     f"rename the file to {machine_id}.yaml or set id: {stem}")
    name = c.string("name", data["name"], STRING_MAX_LENGTH["name"])
    vendor = c.string("vendor", data["vendor"], STRING_MAX_LENGTH["vendor"])

    isa = data["isa"]
    if not isinstance(isa, str) or isa not in ISAS:
        raise c.fail("isa", f"one of {', '.join(ISAS)}", isa)
    n_vec, n_reg, cores, threads_per_core = (c.integer(k, data[k], BOUNDS[k])
                                             for k in ("n_vec", "n_reg", "cores", "threads_per_core"))
    n_fma, l_fma, freq_ghz = (c.number(k, data[k], BOUNDS[k]) for k in ("n_fma", "l_fma", "freq_ghz"))
    n_load = c.number("n_load", data["n_load"], BOUNDS["n_load"]) if "n_load" in data else None
    if isa == "sve":
        if n_vec % SVE_LANE_MULTIPLE:
            raise c.fail("n_vec", f"a multiple of {SVE_LANE_MULTIPLE} for isa 'sve' (128-bit granules)", n_vec)
    elif n_vec != ISA_LANES[isa]:
        raise c.fail("n_vec", f"{ISA_LANES[isa]} for isa {isa!r} (fp32 lanes per register)", n_vec)

    caches = _check_caches(c, data["caches"], cores)
    flags = _check_flags(c, data["compiler_flags"])
    peak = _check_peak(c, data["peak_gflops"], cores * threads_per_core) if "peak_gflops" in data else {}
    sources = _check_sources(c, data["sources"], data)
    notes = data.get("notes", "")
    if not isinstance(notes, str):
        raise c.fail("notes", "free text (a string)", notes)

    return Machine(
        id=machine_id, name=name, vendor=vendor, isa=isa, n_vec=n_vec, n_reg=n_reg, n_fma=n_fma, l_fma=l_fma,
        freq_ghz=freq_ghz, cores=cores, threads_per_core=threads_per_core, caches=caches, compiler_flags=flags,
        sources=sources, n_load=n_load, peak_gflops=peak, notes=notes,
    )


def parse_machine(data: dict[str, Any], origin: str) -> Machine:
    """Validate one description given as plain data (e.g. what the probe measured) and build its Machine.

    `origin` names where the data came from in error messages. The id-equals-file-stem rule is checked when a file
    is loaded or saved, not here. Raises MachineError.
    """
    return _validate(data, origin, None)


def _parse_text(text: str, origin: str, stem: str | None) -> Machine:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MachineError(f"{origin}: not valid YAML: {exc}") from None
    return _validate(data, origin, stem)


def _load_file(path: Path) -> Machine:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MachineError(f"{path}: cannot read machine description: {exc}") from None
    return _parse_text(text, str(path), path.stem)


# ---- Where machines live -------------------------------------------------------------------------------------------


def _bundled_files() -> list[Any]:
    root = resources.files(PACKAGE)
    return sorted((f for f in root.iterdir() if f.name.endswith(".yaml") and f.is_file()), key=lambda f: f.name)


def _user_files() -> list[Path]:
    store = machines_dir()
    if not store.is_dir():
        return []
    return sorted((p for p in store.iterdir() if p.suffix in SUFFIXES and p.is_file() and not p.name.startswith(".")),
                  key=lambda p: p.name)


def bundled_machines() -> list[Machine]:
    """The descriptions shipped with directconv, sorted by id. A broken bundled file is a bug: it raises."""
    return [_parse_text(f.read_text(encoding="utf-8"), str(f), f.name.rsplit(".", 1)[0]) for f in _bundled_files()]


def user_machines() -> list[Machine]:
    """The valid descriptions in the user store, sorted by id. Broken files are skipped here; `list_machines()`
    reports them with their errors."""
    return [e.machine for e in list_machines() if e.origin == "user" and e.machine is not None]


@dataclass(frozen=True)
class MachineEntry:
    """One description file as found: its Machine, or the error that kept it from loading (never both)."""

    id: str  # the file stem
    origin: str  # "bundled" or "user"
    path: str
    machine: Machine | None = None
    error: str | None = None
    shadows: bool = False  # a user file whose id is also bundled: load_machine(id) picks this one
    shadowed_by: str | None = None  # for a bundled entry: the user file that overrides it


def list_machines() -> list[MachineEntry]:
    """Every bundled and user description, sorted by id (the user file first where both exist).

    Files that fail to load are listed with their error instead of stopping the listing.
    """
    user: dict[str, MachineEntry] = {}
    for path in _user_files():
        try:
            user.setdefault(path.stem, MachineEntry(path.stem, "user", str(path), machine=_load_file(path)))
        except MachineError as exc:
            user.setdefault(path.stem, MachineEntry(path.stem, "user", str(path), error=str(exc)))
    bundled: dict[str, MachineEntry] = {}
    for f in _bundled_files():
        stem = f.name.rsplit(".", 1)[0]
        shadow = user[stem].path if stem in user else None
        try:
            machine = _parse_text(f.read_text(encoding="utf-8"), str(f), stem)
            bundled[stem] = MachineEntry(stem, "bundled", str(f), machine=machine, shadowed_by=shadow)
        except MachineError as exc:
            bundled[stem] = MachineEntry(stem, "bundled", str(f), error=str(exc), shadowed_by=shadow)
    entries = [MachineEntry(e.id, e.origin, e.path, e.machine, e.error, shadows=e.id in bundled)
               for e in user.values()]
    entries += bundled.values()
    return sorted(entries, key=lambda e: (e.id, e.origin != "user"))


def _looks_like_path(text: str) -> bool:
    return text.endswith(SUFFIXES) or "/" in text or os.sep in text or text.startswith((".", "~"))


def load_machine(path_or_id: str | os.PathLike[str]) -> Machine:
    """Load one description: a path loads that file; an id looks in the user store first, then the bundled ones.

    Raises MachineError when the id is unknown or the file is invalid (a broken user file is not silently
    replaced by the bundled one).
    """
    if isinstance(path_or_id, os.PathLike) or _looks_like_path(path_or_id):
        return _load_file(Path(path_or_id).expanduser())
    machine_id = path_or_id
    if re.fullmatch(ID_PATTERN, machine_id) is None:
        raise MachineError(
            f"{machine_id!r} is neither a machine id (lowercase letters, digits, '-', '_') nor a path to a .yaml file"
        )
    store = machines_dir()
    for suffix in SUFFIXES:
        candidate = store / f"{machine_id}{suffix}"
        if candidate.is_file():
            return _load_file(candidate)
    bundled = resources.files(PACKAGE) / f"{machine_id}.yaml"
    if bundled.is_file():
        return _parse_text(bundled.read_text(encoding="utf-8"), str(bundled), machine_id)
    known = sorted({e.id for e in list_machines()})
    raise MachineError(
        f"unknown machine id {machine_id!r}: expected one of {', '.join(known)}, or a file {store / machine_id}.yaml "
        f"in the user store; `directconv machines` lists them"
    )


# ---- Writing -------------------------------------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    pass


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def _plain(x: float) -> float | int:
    """Integral floats as ints, so 32.0 KiB is written 32."""
    return int(x) if isinstance(x, float) and x.is_integer() else x


def machine_to_data(machine: Machine) -> dict[str, Any]:
    """The description as plain data, keys in schema order; optional fields left out when unset."""
    data: dict[str, Any] = {
        "id": machine.id, "name": machine.name, "vendor": machine.vendor, "isa": machine.isa,
        "n_vec": machine.n_vec, "n_reg": machine.n_reg, "n_fma": _plain(machine.n_fma),
        "l_fma": _plain(machine.l_fma), "freq_ghz": _plain(machine.freq_ghz), "cores": machine.cores,
        "threads_per_core": machine.threads_per_core,
    }
    if machine.n_load is not None:
        data["n_load"] = _plain(machine.n_load)
    data["caches"] = [
        {"level": c.level, "size_kib": _plain(c.size_kib), "ways": c.ways, "line_bytes": c.line_bytes,
         "shared_by_cores": c.shared_by_cores}
        for c in machine.caches
    ]
    data["compiler_flags"] = list(machine.compiler_flags)
    if machine.peak_gflops:
        data["peak_gflops"] = {int(k): _plain(v) for k, v in sorted(machine.peak_gflops.items())}
    data["sources"] = dict(machine.sources)
    if machine.notes:
        data["notes"] = machine.notes
    return data


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


def dump_machine(machine: Machine) -> str:
    """YAML text of the description; `parse_machine(yaml.safe_load(text), ...)` gives back an equal Machine."""
    data = machine_to_data(machine)
    # YAML reads U+0085, U+2028 and U+2029 as line breaks: written raw, they would not read back as written.
    # Escape non-ASCII then; otherwise keep names and notes readable.
    raw_ok = not any(ch in text for text in _strings(data) for ch in "\u0085\u2028\u2029")
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=raw_ok, width=110)


def save_machine(machine: Machine, path: str | os.PathLike[str]) -> Path:
    """Validate and write the description to `path` (which must be named <id>.yaml) atomically: a temporary file in
    the same folder, flushed to disk, then renamed over the target. Creates the folder. Returns the path."""
    target = Path(path).expanduser()
    text = dump_machine(machine)
    if target.suffix not in SUFFIXES:
        raise MachineError(f"{target}: a machine file must end in .yaml, got {target.suffix or 'no suffix'!r}")
    # Validate what would be written, exactly as a later load will read it.
    _parse_text(text, str(target), target.stem)
    # A machine description is no secret, and machine stores may be shared.
    return write_atomic(target, text, mode=0o644)
