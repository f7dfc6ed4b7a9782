"""Checking a YAML file against its JSON Schema, with every problem worded as one sentence that names its field.

The files users and tools write (machine descriptions, config stores, network definitions) each have a schema file
stating the rule of every field. This module builds a validator from a schema and turns a document's violations
into sentences sorted by field ("field 'caches[1].ways' must be a positive integer <= 1024, got 0 (int)"), which
`report` joins into one message for all problems of a file. The rules a schema cannot state (between fields) stay in
each loader, which words its problems with `must` or `wrong` and reports them with the schema's.

A rule's words come from its `x-expected` (what a value must be) and `x-hint` (how to fix it), else from its const,
enum, type and bounds. The validator follows JSON, not Python: bool is no number, NaN and infinity are refused, and a
pattern's trailing `$` ends the string (ECMA-262), where Python's also matches before a final newline.

Reading is bounded too, since nothing from a file may cause a large allocation unchecked: the text's length, YAML
through yaml.safe_load only, and the values and nesting of the data (YAML aliases can make a short text an endless or
exponentially large tree).
"""

from __future__ import annotations

import difflib
import functools
import itertools
import json
import math
import re
import reprlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import jsonschema
import yaml
from jsonschema.protocols import Validator

__all__ = [
    "MAX_DEPTH",
    "MAX_VALUES",
    "DocumentError",
    "FieldPath",
    "Problem",
    "as_json",
    "build_validator",
    "expected",
    "field_name",
    "find_problems",
    "load_yaml",
    "missing",
    "must",
    "read_schema",
    "report",
    "show",
    "unknown",
    "wrong",
]

FieldPath = tuple[str | int, ...]  # a field's place in a document: ("caches", 1, "ways")

MAX_VALUES = 1_000_000  # values in one document, each use of a YAML alias counted again
MAX_DEPTH = 32  # nesting of one document; directconv's files need fewer than 8 levels
# yaml.safe_load's loader, in C (libyaml) where PyYAML was built with it: the same safe constructor, in a fraction
# of the time.
SAFE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MAX_LISTED = 100  # problems spelled out in one message; the error's `problems` holds them all


class DocumentError(ValueError):
    """A document that cannot be used; the message names where it came from and every problem found.

    `problems` holds one sentence per problem (empty when the document could not be found or read)."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = tuple(problems)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a document: where, the sentence that says what and how to fix it, and the schema keyword
    it broke ("required", "type", ...; "" for a rule checked in code)."""

    path: FieldPath
    text: str
    keyword: str = ""

    def sort_key(self) -> tuple[tuple[bool, Any], ...]:
        # Indices before names at one level never meet; the flag keeps mixed parts comparable anyway.
        return tuple((isinstance(part, str), part) for part in self.path)


# ---- Reading ---------------------------------------------------------------------------------------------------------


def read_schema(package: str, name: str) -> dict[str, Any]:
    """The JSON document `name` shipped in `package`, parsed afresh (callers may change their copy)."""
    return json.loads(resources.files(package).joinpath(name).read_text(encoding="utf-8"))


def load_yaml(text: str, origin: str, error: type[DocumentError], max_chars: int) -> Any:
    """The data of a YAML text, as `as_json` gives it; raises `error` naming `origin` when the text is longer than
    `max_chars`, is not YAML (read with yaml.safe_load only: no tag constructs an object) or makes too large a tree."""
    if len(text) > max_chars:
        raise error(f"{origin}: too long to be read: {len(text)} characters, at most {max_chars} expected")
    # JSON is YAML with the same meaning; json parses it with a fraction of PyYAML's transient objects, which stayed
    # in the heap after a large config store was read (measured: docs/design.md, "The config store's memory").
    as_json_text = text.lstrip().startswith("{")
    try:
        data = json.loads(text) if as_json_text else yaml.load(text, Loader=SAFE_LOADER)  # noqa: S506 - safe loader
    except (yaml.YAMLError, ValueError) as exc:  # ValueError: json's errors, and an integer of over 4300 digits
        raise error(f"{origin}: not valid YAML: {exc}") from None
    except RecursionError:  # both parsers nest collections recursively
        raise error(f"{origin}: not valid YAML: nested too deeply to be read") from None
    return as_json(data, origin, error)


def _json_key(key: Any) -> Any:
    return str(key) if isinstance(key, int) and not isinstance(key, bool) else key


def as_json(data: Any, origin: str, error: type[DocumentError]) -> Any:
    """A copy of YAML data as JSON has it: integer mapping keys as strings (YAML reads `peak_gflops: {1: ...}` with
    int keys). Raises `error` naming `origin` when the data holds more than MAX_VALUES values (each use of a YAML
    alias counted again) or nests deeper than MAX_DEPTH (an alias may even contain itself)."""
    counter = itertools.count(1)

    def copy(value: Any, depth: int) -> Any:
        if next(counter) > MAX_VALUES:
            raise error(
                f"{origin}: too large: more than {MAX_VALUES} values, counting each use of a YAML alias; "
                f"write repeated parts out, or split the file"
            )
        if depth > MAX_DEPTH:
            raise error(f"{origin}: nested more than {MAX_DEPTH} levels deep (does a YAML alias refer to itself?)")
        if isinstance(value, Mapping):
            return {_json_key(k): copy(v, depth + 1) for k, v in value.items()}
        if isinstance(value, list):
            return [copy(v, depth + 1) for v in value]
        return value

    return copy(data, 0)


# ---- The validator ---------------------------------------------------------------------------------------------------


def _is_number(checker: Any, value: Any) -> bool:
    """JSON numbers: no bool (YAML reads `yes` as True) and no NaN or infinity (JSON has none; YAML has .nan, .inf)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _is_integer(checker: Any, value: Any) -> bool:
    """JSON Schema's integer: any number without a fractional part (16.0 counts, 16.5 does not)."""
    return _is_number(checker, value) and (isinstance(value, int) or value.is_integer())


@functools.cache
def _regex(pattern: str) -> re.Pattern[str]:
    # JSON Schema patterns are ECMA-262 regexes, whose `$` ends the string; Python's `$` also matches before a final
    # newline ("haswell\n"), so a trailing `$` is read as `\Z`.
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


def _pattern(validator: Any, pattern: str, instance: Any, subschema: Any) -> Iterator[jsonschema.ValidationError]:
    if validator.is_type(instance, "string") and _regex(pattern).search(instance) is None:
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


def build_validator(document: Mapping[str, Any]) -> Validator:
    """A validator for the schema `document`, of the dialect it declares, with JSON's numbers and ECMA-262's `$`.

    Raises jsonschema.SchemaError when the document is not a valid schema. Build it once per schema: it is not cheap.
    """
    base = jsonschema.validators.validator_for(document)
    base.check_schema(document)
    types = base.TYPE_CHECKER.redefine_many({"number": _is_number, "integer": _is_integer})
    cls = jsonschema.validators.extend(base, validators={"pattern": _pattern}, type_checker=types)
    return cls(document)


# ---- Problems, in words ----------------------------------------------------------------------------------------------


def field_name(path: FieldPath) -> str:
    """("caches", 1, "ways") -> "caches[1].ways"."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


class _Short(reprlib.Repr):
    """reprlib's bounded repr (a value may be a large list, or an alias-built tree far larger than its text), with
    mappings in their own order, as repr shows them: reprlib sorts their keys."""

    def repr_dict(self, x: dict[Any, Any], level: int) -> str:
        if not x:
            return "{}"
        if level <= 0:
            return "{...}"
        pieces = [
            f"{self.repr1(k, level - 1)}: {self.repr1(v, level - 1)}"
            for k, v in itertools.islice(x.items(), self.maxdict)
        ]
        return "{" + ", ".join(pieces + (["..."] if len(x) > self.maxdict else [])) + "}"


_REPR = _Short()
_REPR.maxlevel = 4
_REPR.maxlist = _REPR.maxtuple = _REPR.maxset = _REPR.maxfrozenset = _REPR.maxdict = 40
_REPR.maxstring = _REPR.maxother = 200


def show(value: Any) -> str:
    """`value` as a message shows it: its repr (so strings look like strings), cut short, and its type."""
    text = _REPR.repr(value) if isinstance(value, (dict, list, tuple, set, frozenset)) else repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{text} ({type(value).__name__})"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


_KINDS = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "boolean": "true or false",
    "null": "null",
    "integer": "an integer",
    "number": "a finite number",
}


def _bounded(kind: str, rule: Mapping[str, Any]) -> str:
    """A number rule in words: "a positive integer <= 256", "a finite number >= 0 and <= 1000"."""
    top = f"<= {_num(rule['maximum'])}" if "maximum" in rule else ""
    if kind == "integer" and rule.get("minimum") == 1:
        return " ".join(("a positive integer", top)).strip()
    if rule.get("exclusiveMinimum") == 0:
        return " ".join((f"a positive {kind}", top)).strip()
    low = ""
    if "minimum" in rule:
        low = f">= {_num(rule['minimum'])}"
    elif "exclusiveMinimum" in rule:
        low = f"> {_num(rule['exclusiveMinimum'])}"
    return " ".join((_KINDS[kind], " and ".join(part for part in (low, top) if part))).strip()


def expected(rule: Mapping[str, Any]) -> str:
    """What a value must be, in words, from its schema rule: its x-expected, else its const, enum, type and bounds."""
    if "x-expected" in rule:
        return str(rule["x-expected"])
    if "const" in rule:
        return repr(rule["const"])
    if "enum" in rule:
        return "one of " + ", ".join(str(x) for x in rule["enum"])
    kind = rule.get("type")
    if kind in ("integer", "number"):
        return _bounded(kind, rule)
    if kind == "string" and "maxLength" in rule:
        empty = "non-empty " if rule.get("minLength", 0) >= 1 else ""
        return f"a {empty}string of at most {rule['maxLength']} characters"
    if isinstance(kind, str) and kind in _KINDS:
        return _KINDS[kind]
    return f"a value of JSON type {kind}"


def must(path: FieldPath, expected: str, value: Any, hint: str = "", keyword: str = "") -> Problem:
    """The problem of a field whose value is not what it must be: "field 'x' must be <expected>, got <value>"."""
    subject = f"field {field_name(path)!r}" if path else "the document"
    text = f"{subject} must be {expected}, got {show(value)}"
    return Problem(path, text + (f"; {hint}" if hint else ""), keyword)


def wrong(path: FieldPath, reason: str) -> Problem:
    """The problem of a field broken by a rule that words its own reason (e.g. a constructor's ValueError)."""
    subject = f"field {field_name(path)!r}" if path else "the document"
    return Problem(path, f"{subject}: {reason}")


def unknown(path: FieldPath, allowed: Sequence[str], keyword: str = "") -> Problem:
    """The problem of a key a mapping may not hold, with the closest allowed key as a suggestion."""
    key = str(path[-1])
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return Problem(path, f"unknown field {field_name(path)!r}: {hint}expected only {', '.join(allowed)}", keyword)


def missing(path: FieldPath, required: Sequence[str]) -> Problem:
    """The problem of a required field left out."""
    return Problem(
        path, f"missing required field {field_name(path)!r}; required fields: {', '.join(required)}", "required"
    )


def _problems_of(error: jsonschema.ValidationError) -> list[Problem]:
    """One jsonschema error as Problems: a missing or unknown key each, else the broken rule at the value's path."""
    path: FieldPath = tuple(error.absolute_path)
    rule = error.schema if isinstance(error.schema, Mapping) else {}
    if "propertyNames" in error.absolute_schema_path:
        # The key itself broke the rule; the error's path is the mapping's.
        key = (*path, str(error.instance))
        if "enum" in rule:
            return [unknown(key, [str(x) for x in rule["enum"]], "propertyNames")]
        return [Problem(key, must(path, f"keyed by {expected(rule)}", error.instance).text, "propertyNames")]
    if error.validator == "required":
        return [missing((*path, n), error.validator_value) for n in error.validator_value if n not in error.instance]
    if error.validator == "additionalProperties" and error.validator_value is False:
        allowed = [str(k) for k in rule.get("properties", {})]
        return [unknown((*path, str(k)), allowed, "additionalProperties") for k in error.instance if k not in allowed]
    return [must(path, expected(rule), error.instance, str(rule.get("x-hint", "")), str(error.validator))]


def find_problems(validator: Validator, data: Any) -> list[Problem]:
    """Every violation of the validator's schema in `data`, each as one Problem, sorted by field."""
    problems = [p for error in validator.iter_errors(data) for p in _problems_of(error)]
    return sorted(problems, key=Problem.sort_key)


def report(origin: str, problems: Iterable[Problem]) -> tuple[str, tuple[str, ...]]:
    """The message of one error for all `problems` and their sentences, sorted by field; a field with several broken
    rules is reported once, by the first of them. One problem reads "<origin>: <sentence>"; several read
    "<origin>: N problems:" and a line "  - <sentence>" for each. Pass both to a DocumentError: `Error(*report(...))`.
    """
    unique: dict[FieldPath, Problem] = {}
    for p in problems:
        unique.setdefault(p.path, p)
    texts = tuple(p.text for p in sorted(unique.values(), key=Problem.sort_key))
    if len(texts) == 1:
        return f"{origin}: {texts[0]}", texts
    listing = "\n".join(f"  - {t}" for t in texts[:_MAX_LISTED])
    if len(texts) > _MAX_LISTED:
        listing += f"\n  - and {len(texts) - _MAX_LISTED} more"
    return f"{origin}: {len(texts)} problems:\n{listing}", texts
