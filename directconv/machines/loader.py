"""Read, validate and write machine descriptions: one YAML file per CPU, checked against machines/schema.json.

schema.json states the rule of every field and is enforced with jsonschema through directconv.core.schema, which
words every problem; this module adds the ISA names of directconv.core.isa to it, gathers the missing sources into
one problem and checks the cross-field rules a JSON Schema cannot state (see `_CROSS_FIELD_RULES`).
Every problem of a description is reported at once: one `MachineError` names the file and, for each problem sorted
by field, the field, what was expected and what was found.

Where machines come from:
  * bundled: the *.yaml files of the package `directconv.machines` (this folder), read with importlib.resources;
  * user: `machines_dir()`, for descriptions written by the probe or by hand. A user file shadows the bundled
    description with the same id.

YAML is read with yaml.safe_load only, and compiler flags must match an allowlist (schema.json; Machine checks it too),
because a description's flags end up on a compiler command line.
"""

from __future__ import annotations

import copy
import functools
import itertools
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from jsonschema.protocols import Validator

from directconv.core.files import write_atomic
from directconv.core.isa import ISAS, SCALABLE_ISAS
from directconv.core.paths import machines_dir
from directconv.core.schema import (
    DocumentError,
    Problem,
    as_json,
    build_validator,
    find_problems,
    load_yaml,
    must,
    report,
)
from directconv.machines.machine import Cache, Machine, optional_defaults, schema

__all__ = [
    "ID_PATTERN",
    "MachineEntry",
    "MachineError",
    "bundled_machines",
    "dump_machine",
    "list_machines",
    "load_machine",
    "machine_to_data",
    "parse_machine",
    "save_machine",
    "user_machines",
]

PACKAGE = "directconv.machines"
SUFFIXES = (".yaml", ".yml")

# schema.json's pattern of an id, for code that checks a name outside a description (always with re.fullmatch).
ID_PATTERN: str = schema()["properties"]["id"]["pattern"]


class MachineError(DocumentError):
    """A machine description could not be found, read or validated; the message says where, what and why.

    `problems` holds one sentence per problem found (empty when the file could not be found or read)."""


# ---- The validator: schema.json, with the ISA names of core.isa ----------------------------------------------------

MAX_CHARS = 1 << 20  # a description is a few KiB of text


@functools.cache
def _validator() -> Validator:
    """A validator of schema.json, with `isa` limited to the ISAs a description may name."""
    document = copy.deepcopy(schema())
    document["properties"]["isa"]["enum"] = [*ISAS, *SCALABLE_ISAS]
    return build_validator(document)


# The order in which a missing source is named: schema.json's sources.required, then the optional numbers.
_SOURCE_ORDER: tuple[str, ...] = (*schema()["properties"]["sources"]["required"], *schema()["dependentSchemas"])


def _unsourced(names: Sequence[str]) -> Problem:
    first = names[0]
    return Problem(
        ("sources",),
        (
            f"field 'sources' must say where every number came from, but has no entry for {', '.join(names)}; add e.g. "
            f'`{first}: "<document, section>"` or `{first}: probed`'
        ),
    )


def _is_unsourced(problem: Problem) -> bool:
    return problem.keyword == "required" and problem.path[:-1] == ("sources",)


def _schema_problems(data: Mapping[str, Any]) -> list[Problem]:
    """Every violation of schema.json, each as one Problem, the missing sources gathered into one."""
    problems = find_problems(_validator(), data)
    unsourced = sorted({str(p.path[-1]) for p in problems if _is_unsourced(p)}, key=_SOURCE_ORDER.index)
    return [p for p in problems if not _is_unsourced(p)] + ([_unsourced(unsourced)] if unsourced else [])


# ---- Cross-field rules: what schema.json cannot say ----------------------------------------------------------------


def _lanes_match_isa(data: Mapping[str, Any], stem: str | None) -> list[Problem]:
    isa, n_vec = data["isa"], data["n_vec"]
    if isa in SCALABLE_ISAS:
        granule = SCALABLE_ISAS[isa]
        if n_vec % granule == 0:
            return []
        return [must(("n_vec",), f"a multiple of {granule} for isa {isa!r} (128-bit granules)", n_vec)]
    lanes = ISAS[isa].lanes
    if n_vec == lanes:
        return []
    return [
        must(
            ("n_vec",),
            f"{lanes} for isa {isa!r} (fp32 lanes per register, directconv.core.isa)",
            n_vec,
            "set n_vec to the lanes of the isa, or name the isa whose registers hold that many fp32",
        )
    ]


def _cache_levels(data: Mapping[str, Any], stem: str | None) -> list[Problem]:
    levels = [c["level"] for c in data["caches"]]
    if sorted(levels) != list(range(1, len(levels) + 1)):
        return [
            must(("caches",), "a list with levels 1, 2, ... each once and without gaps (1 = L1 data cache)", levels)
        ]
    by_level = sorted(data["caches"], key=lambda c: c["level"])
    for lower, upper in itertools.pairwise(by_level):
        if upper["size_kib"] <= lower["size_kib"]:
            sizes = {f"L{c['level']}": c["size_kib"] for c in by_level}
            return [
                must(
                    ("caches",),
                    "ordered by size, each level larger than the one below (size_kib per instance)",
                    sizes,
                    "a cache smaller than the level below it (e.g. a memory-side cache) is better left "
                    "out and mentioned in notes",
                )
            ]
    return []


def _cache_sharing(data: Mapping[str, Any], stem: str | None) -> list[Problem]:
    cores = data["cores"]
    return [
        must(("caches", i, "shared_by_cores"), f"at most cores={cores}", c["shared_by_cores"])
        for i, c in enumerate(data["caches"])
        if c["shared_by_cores"] > cores
    ]


def _thread_keys(field: str) -> _CrossFieldRule:
    """The rule that `field`'s thread counts are at most cores * threads_per_core."""

    def rule(data: Mapping[str, Any], stem: str | None) -> list[Problem]:
        threads = data["cores"] * data["threads_per_core"]
        return [
            must((field, key), f"keyed by at most cores * threads_per_core = {threads} threads", int(key))
            for key in data[field]
            if int(key) > threads
        ]

    return rule


def _id_is_stem(data: Mapping[str, Any], stem: str | None) -> list[Problem]:
    if stem is None or data["id"] == stem:
        return []
    return [
        must(
            ("id",),
            f"equal to the file name stem {stem!r}",
            data["id"],
            f"rename the file to {data['id']}.yaml or set id: {stem}",
        )
    ]


_CrossFieldRule = Callable[[Mapping[str, Any], str | None], list[Problem]]
# Each rule with the fields it reads: it runs only when all of them are present and passed the schema.
_CROSS_FIELD_RULES: tuple[tuple[tuple[str, ...], _CrossFieldRule], ...] = (
    (("isa", "n_vec"), _lanes_match_isa),
    (("caches",), _cache_levels),
    (("caches", "cores"), _cache_sharing),
    (("peak_gflops", "cores", "threads_per_core"), _thread_keys("peak_gflops")),
    (("call_us", "cores", "threads_per_core"), _thread_keys("call_us")),
    (("id",), _id_is_stem),
)


def _cross_field_problems(data: Mapping[str, Any], stem: str | None, broken: set[Any]) -> list[Problem]:
    problems: list[Problem] = []
    for needs, rule in _CROSS_FIELD_RULES:
        if all(name in data and name not in broken for name in needs):
            problems += rule(data, stem)
    return problems


# ---- Validation ----------------------------------------------------------------------------------------------------


def _build(data: Mapping[str, Any]) -> Machine:
    """The Machine of a valid description: numbers typed as schema.json types them, caches in level order."""
    properties = schema()["properties"]
    numbers: dict[str, Any] = {
        name: int(value) if properties[name]["type"] == "integer" else float(value)
        for name, value in data.items()
        if properties[name]["type"] in ("integer", "number")
    }
    caches = tuple(
        sorted(
            (
                Cache(
                    level=int(c["level"]),
                    size_kib=float(c["size_kib"]),
                    ways=int(c["ways"]),
                    line_bytes=int(c["line_bytes"]),
                    shared_by_cores=int(c["shared_by_cores"]),
                )
                for c in data["caches"]
            ),
            key=lambda c: c.level,
        )
    )
    return Machine(
        id=data["id"],
        name=data["name"],
        vendor=data["vendor"],
        isa=data["isa"],
        caches=caches,
        compiler_flags=tuple(data["compiler_flags"]),
        sources=dict(data["sources"]),
        compiler_flag_fallbacks=tuple(tuple(flags) for flags in data.get("compiler_flag_fallbacks", ())),
        peak_gflops={int(k): float(v) for k, v in data.get("peak_gflops", {}).items()},
        call_us={int(k): float(v) for k, v in data.get("call_us", {}).items()},
        notes=data.get("notes", ""),
        **numbers,
    )


def _validate(data: Any, origin: str, stem: str | None) -> Machine:
    if not isinstance(data, Mapping):
        raise MachineError(
            f"{origin}: a machine description must be a YAML mapping of field names to values, got "
            f"{type(data).__name__}"
        )
    data = as_json(data, origin, MachineError)
    problems = _schema_problems(data)
    broken = {p.path[0] for p in problems if p.path}
    problems += _cross_field_problems(data, stem, broken)
    if problems:
        raise MachineError(*report(origin, problems))
    return _build(data)


def parse_machine(data: Mapping[str, Any], origin: str) -> Machine:
    """Validate one description given as plain data (e.g. what the probe measured) and build its Machine.

    `origin` names where the data came from in error messages. The id-equals-file-stem rule is checked when a file
    is loaded or saved, not here. Raises MachineError with every problem found.
    """
    return _validate(data, origin, None)


def _parse_text(text: str, origin: str, stem: str | None) -> Machine:
    return _validate(load_yaml(text, origin, MachineError, MAX_CHARS), origin, stem)


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
    return sorted(
        (p for p in store.iterdir() if p.suffix in SUFFIXES and p.is_file() and not p.name.startswith(".")),
        key=lambda p: p.name,
    )


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
    entries = [MachineEntry(e.id, e.origin, e.path, e.machine, e.error, shadows=e.id in bundled) for e in user.values()]
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


def _written(machine: Machine, name: str) -> bool:
    """Whether an optional number goes into the file: when it has a source, or differs from its default (and then
    the missing source is reported on saving)."""
    return name in machine.sources or getattr(machine, name) != optional_defaults()[name]


def machine_to_data(machine: Machine) -> dict[str, Any]:
    """The description as plain data, keys in schema order; optional fields left out when unset or defaulted."""
    data: dict[str, Any] = {}
    for name, rule in schema()["properties"].items():
        value = getattr(machine, name)
        if name == "caches":
            data[name] = [
                {
                    "level": c.level,
                    "size_kib": _plain(c.size_kib),
                    "ways": c.ways,
                    "line_bytes": c.line_bytes,
                    "shared_by_cores": c.shared_by_cores,
                }
                for c in value
            ]
        elif name == "compiler_flags":
            data[name] = list(value)
        elif name == "compiler_flag_fallbacks":
            if value:
                data[name] = [list(flags) for flags in value]
        elif name in ("peak_gflops", "call_us"):
            if value:
                data[name] = {int(k): _plain(v) for k, v in sorted(value.items())}
        elif name == "sources":
            data[name] = dict(value)
        elif name == "notes":
            if value:
                data[name] = value
        elif "default" not in rule or _written(machine, name):
            data[name] = _plain(value)
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
