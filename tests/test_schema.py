"""directconv.core.schema: a JSON Schema's violations as sentences naming their field, JSON's numbers and patterns,
one error for all problems of a document, and bounded reading of YAML. On a small schema; the three file kinds that
use it are tested in test_machines.py, test_store.py and test_networks.py."""

from __future__ import annotations

import jsonschema
import pytest

from directconv.core import schema
from directconv.core.schema import DocumentError, Problem

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "count"],
    "properties": {
        "name": {
            "type": "string",
            "pattern": "^[a-z]+$",
            "maxLength": 16,
            "x-expected": "a lowercase word",
            "x-hint": "names become file names",
        },
        "count": {"type": "integer", "minimum": 1, "maximum": 8},
        "ratio": {"type": "number", "minimum": 0, "maximum": 1},
        "kind": {"enum": ["a", "b"]},
        "format": {"const": "small/1"},
        "label": {"type": "string", "minLength": 1, "maxLength": 4},
        "items": {"type": "array", "maxItems": 2, "items": {"type": "integer", "minimum": 0}},
        "by_thread": {"type": "object", "propertyNames": {"pattern": "^[1-9][0-9]*$", "x-expected": "a thread count"}},
    },
}


class SmallError(DocumentError):
    pass


@pytest.fixture(scope="module")
def validator():
    return schema.build_validator(SCHEMA)


def texts(validator, data) -> list[str]:
    return [p.text for p in schema.find_problems(validator, data)]


def test_a_valid_document_has_no_problems(validator):
    assert texts(validator, {"name": "abc", "count": 3, "ratio": 0.5, "kind": "a", "items": [0, 1]}) == []
    assert texts(validator, {"name": "abc", "count": 3.0}) == []  # JSON Schema's integer: no fractional part


@pytest.mark.parametrize("value", [True, False, float("nan"), float("inf"), -float("inf"), 2.5, "2"])
def test_integers_refuse_bool_nan_infinity_fractions_and_strings(validator, value):
    assert texts(validator, {"name": "abc", "count": value}) == [
        f"field 'count' must be a positive integer <= 8, got {schema.show(value)}"
    ]


@pytest.mark.parametrize("value", [True, float("nan"), float("inf")])
def test_numbers_refuse_bool_nan_and_infinity(validator, value):
    assert texts(validator, {"name": "abc", "count": 1, "ratio": value}) == [
        f"field 'ratio' must be a finite number >= 0 and <= 1, got {schema.show(value)}"
    ]


def test_dollar_ends_the_string_even_before_a_trailing_newline(validator):
    # Python's `$` matches before a final newline; JSON Schema's (ECMA-262) does not.
    assert texts(validator, {"name": "abc\n", "count": 1}) == [
        "field 'name' must be a lowercase word, got 'abc\\n' (str); names become file names"
    ]


def test_unknown_keys_get_the_closest_allowed_key_as_suggestion(validator):
    problems = schema.find_problems(validator, {"name": "abc", "count": 1, "cont": 2, "zzz": 3})
    assert [p.text for p in problems] == [
        "unknown field 'cont': did you mean 'count'? expected only name, count, ratio, kind, format, label, items, "
        "by_thread",
        "unknown field 'zzz': expected only name, count, ratio, kind, format, label, items, by_thread",
    ]
    assert {p.keyword for p in problems} == {"additionalProperties"}


def test_rules_in_words_from_const_enum_type_and_bounds(validator):
    data = {"count": 1, "kind": "c", "format": "small/2", "label": "", "items": [1, -1, 2], "by_thread": {"0": 1}}
    assert texts(validator, data) == [
        "field 'by_thread' must be keyed by a thread count, got '0' (str)",
        "field 'format' must be 'small/1', got 'small/2' (str)",
        "field 'items' must be a list, got [1, -1, 2] (list)",
        "field 'items[1]' must be an integer >= 0, got -1 (int)",
        "field 'kind' must be one of a, b, got 'c' (str)",
        "field 'label' must be a non-empty string of at most 4 characters, got '' (str)",
        "missing required field 'name'; required fields: name, count",
    ]


def test_the_document_itself_is_named_when_it_is_the_problem(validator):
    assert texts(validator, ["name"]) == ["the document must be a mapping, got ['name'] (list)"]


def test_problems_sort_by_path_indices_before_names_and_one_per_field():
    problems = [
        Problem(("b",), "b"),
        Problem(("a", 10), "a10"),
        Problem(("a", 2, "x"), "a2x"),
        Problem(("a", 2), "a2"),
        Problem(("b",), "b again: a second rule of the same field"),
    ]
    message, sentences = schema.report("doc.yaml", problems)
    assert sentences == ("a2", "a2x", "a10", "b")
    assert message == "doc.yaml: 4 problems:\n  - a2\n  - a2x\n  - a10\n  - b"
    assert schema.report("doc.yaml", [Problem(("b",), "b")]) == ("doc.yaml: b", ("b",))


def test_one_error_holds_every_problem_of_a_document_sorted_by_field(validator):
    data = {"name": "A", "count": 0, "kind": "c", "extra": 1}
    error = SmallError(*schema.report("doc.yaml", schema.find_problems(validator, data)))
    assert isinstance(error, ValueError)
    assert [p.split("'")[1] for p in error.problems] == ["count", "extra", "kind", "name"]
    assert str(error).startswith("doc.yaml: 4 problems:\n  - field 'count' must be a positive integer <= 8, got 0")
    assert all(f"\n  - {p}" in str(error) for p in error.problems)


def test_a_long_report_lists_the_first_hundred_and_keeps_all():
    problems = [Problem(("x", i), f"p{i}") for i in range(150)]
    message, sentences = schema.report("doc.yaml", problems)
    assert len(sentences) == 150 and message.count("\n  - p") == 100 and message.endswith("\n  - and 50 more")


def test_rules_in_code_are_worded_like_the_schema_ones():
    assert schema.must(("caches", 1, "ways"), "at most 8", 9, "fix it").text == (
        "field 'caches[1].ways' must be at most 8, got 9 (int); fix it"
    )
    assert schema.wrong(("entries", 0, "shape"), "not a layer").text == "field 'entries[0].shape': not a layer"
    assert schema.missing(("a", "b"), ["b", "c"]).keyword == "required"


def test_values_are_shown_short_whatever_their_size():
    assert schema.show("x" * 100) == "'" + "x" * 76 + "... (str)"
    assert schema.show(list(range(10**6))).endswith("... (list)") and len(schema.show(list(range(10**6)))) < 100
    assert schema.show({"b": 1, "a": [2]}) == "{'b': 1, 'a': [2]} (dict)"  # in its own order, as repr shows it
    nested: list = []
    nested.append(nested)
    assert schema.show(nested) == "[[[[[...]]]]] (list)"


def test_an_invalid_schema_is_refused():
    with pytest.raises(jsonschema.SchemaError):
        schema.build_validator({"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "mapping"})


# ---- Reading YAML ----------------------------------------------------------------------------------------------------


def test_yaml_is_read_safely_with_integer_keys_as_json_has_them():
    assert schema.load_yaml("a: {1: x, null: y}\nb: [1, 2]\n", "f", SmallError, 1000) == {
        "a": {"1": "x", None: "y"},
        "b": [1, 2],
    }
    with pytest.raises(SmallError, match=r"^f: not valid YAML: could not determine a constructor"):
        schema.load_yaml("!!python/object/apply:os.system ['echo pwned']\n", "f", SmallError, 1000)
    with pytest.raises(SmallError, match=r"^f: not valid YAML: "):
        schema.load_yaml("a: [unclosed\n", "f", SmallError, 1000)


def test_yaml_too_long_too_deep_or_too_large_is_refused():
    with pytest.raises(SmallError, match=r"^f: too long to be read: 1001 characters, at most 1000 expected"):
        schema.load_yaml(" " * 1001, "f", SmallError, 1000)
    # PyYAML's Python composer runs out of recursion, libyaml's parser stops at its own depth limit: refused either way.
    # An integer too long for int() (Python's 4300-digit limit), in YAML or in JSON: refused, not a crash.
    for text in ("a: 1" + "0" * 5000, '{"a": 1' + "0" * 5000 + "}"):
        with pytest.raises(SmallError, match=r"^f: not valid YAML: Exceeds the limit"):
            schema.load_yaml(text, "f", SmallError, 10**6)
    too_deep = r"^f: not valid YAML: (nested too deeply|[\s\S]*exceeded maximum nesting depth)"
    with pytest.raises(SmallError, match=too_deep):
        schema.load_yaml("[" * 5000 + "]" * 5000, "f", SmallError, 10**6)
    with pytest.raises(SmallError, match=rf"^f: nested more than {schema.MAX_DEPTH} levels deep"):
        schema.load_yaml("[" * 40 + "]" * 40, "f", SmallError, 1000)
    with pytest.raises(SmallError, match=r"^f: nested more than .*does a YAML alias refer to itself"):
        schema.load_yaml("a: &a [1, *a]\n", "f", SmallError, 1000)
    # Nine lines, 10**9 values once the aliases are followed: refused after MAX_VALUES of them.
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{n}: &{n} [{', '.join(['*' + p] * 10)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True)
    )
    with pytest.raises(SmallError, match=rf"^f: too large: more than {schema.MAX_VALUES} values"):
        schema.load_yaml(bomb, "f", SmallError, 1000)
