"""The config store: validation of everything read, atomic locked writes, best-result-wins, hostile files."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

from directconv.core.config import KernelConfig
from directconv.core.shape import BASE_FIELDS, FIELDS, ConvShape
from directconv.tuner import store

FP = {"vendor": "test", "model_name": "Test CPU"}
FID = "0123456789abcdef"
SHAPE = ConvShape.from_args(16, 32, 8, 8, 3, 3, 1, 1)


def entry(gflops: float, wob: int = 4, threads: int = 1, shape: ConvShape = SHAPE) -> store.Entry:
    return store.Entry(
        layer="",
        shape=shape,
        threads=threads,
        config=KernelConfig("avx2", 16, wob, threads=threads),
        gflops=gflops,
        spread=0.02,
        percent_of_peak=gflops,
        trials=10,
        date="2026-11-29T00:00:00+00:00",
        directconv_version="0.1.0",
        generator_version=1,
        compiler="gcc 12",
        flags=("-mavx2", "-mfma"),
    )


def write(tmp_path: Path, e: store.Entry) -> tuple[bool, Path]:
    return store.record(e, machine="testbox", fingerprint_id=FID, fingerprint=FP, store=tmp_path)


def test_round_trip_and_lookup(tmp_path):
    written, path = write(tmp_path, entry(50.0))
    assert written and path == tmp_path / f"testbox-{FID}.yaml"
    found = store.lookup(SHAPE, 1, FID, store=tmp_path)
    assert found is not None and found.entry == entry(50.0)
    assert store.lookup(SHAPE, 2, FID, store=tmp_path) is None
    assert store.lookup(SHAPE, 1, "ffffffffffffffff", store=tmp_path) is None
    assert [f.entry for f in store.foreign_entries(SHAPE, 1, "ffffffffffffffff", store=tmp_path)] == [entry(50.0)]


def test_faster_replaces_slower_does_not(tmp_path):
    write(tmp_path, entry(50.0, wob=4))
    assert write(tmp_path, entry(40.0, wob=2))[0] is False
    assert store.lookup(SHAPE, 1, FID, store=tmp_path).entry.gflops == 50.0
    assert write(tmp_path, entry(60.0, wob=8))[0] is True
    found = store.lookup(SHAPE, 1, FID, store=tmp_path).entry
    assert found.gflops == 60.0 and found.config.wob == 8
    assert len(store.read_store(tmp_path / f"testbox-{FID}.yaml").entries) == 1


WRITER = """
import sys
from directconv.core.config import KernelConfig
from directconv.core.shape import ConvShape
from directconv.tuner import store
directory, worker = sys.argv[1], int(sys.argv[2])
for i in range(20):
    shape = ConvShape.from_args(16, 32, 8 + i, 8, 3, 3, 1, 1)
    e = store.Entry(layer="", shape=shape, threads=1, config=KernelConfig("avx2", 16, 1 + worker), gflops=10.0 + worker + i,
                    spread=0.0, percent_of_peak=1.0, trials=1, date="d", directconv_version="v", generator_version=1,
                    compiler="cc", flags=())
    store.record(e, machine="testbox", fingerprint_id="0123456789abcdef", fingerprint={}, store=directory)
"""


@pytest.mark.slow
def test_concurrent_writers_keep_the_best_of_both(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(w)]) for w in (0, 1)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    parsed = store.read_store(tmp_path / f"testbox-{FID}.yaml")
    assert len(parsed.entries) == 20
    assert all(
        e.config.wob == 2 and e.gflops == 11.0 + i
        for i, e in enumerate(sorted(parsed.entries, key=lambda e: e.shape.h))
    )
    assert not list(tmp_path.glob("*.tmp"))


def _raw(tmp_path: Path) -> dict:
    write(tmp_path, entry(50.0))
    return yaml.safe_load((tmp_path / f"testbox-{FID}.yaml").read_text())


DROP = object()  # _put's value that removes the field


def _put(doc: dict, dotted: str, value) -> None:
    """Set (or with DROP remove) the field at a dotted path such as "entries.0.shape.ci"."""
    *path, last = dotted.split(".")
    for part in path:
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    key = int(last) if isinstance(doc, list) else last
    if value is DROP:
        del doc[key]
    else:
        doc[key] = value


E0 = r"field 'entries\[0\]"  # the start of a message about the first entry
BOUNDS = r" must be a finite number >= 0 and <= "


@pytest.mark.parametrize(
    "field, value, message",
    [
        # KernelConfig.from_dict checks the config's own fields
        ("entries.0.config.cob", '16; system("rm -rf /")', r"KernelConfig.cob must be an int"),
        ("entries.0.config.flags", "-fplugin=/tmp/evil.so", r"unknown KernelConfig keys \['flags'\]"),
        ("entries.0.config.wob", 10**9, r"KernelConfig.wob must be in \[1, 64\]"),
        ("entries.0.config.isa", "avx2 -fplugin=x", r"KernelConfig.isa must be one of"),
        # rules between fields, in code
        ("entries.0.config.cob", 64, E0 + r".config': config .* does not fit layer"),
        ("entries.0.config.threads", 2, E0 + r".config.threads' must be the entry's threads, 1, got 2 \(int\)"),
        ("entries.0.shape.kh", 11, E0 + r".shape': not a layer: kernel 11x3 is larger than the padded input"),
        # store.schema.json
        ("entries.0.shape.ci", "16", E0 + r".shape.ci' must be a positive integer <= 1048576, got '16' \(str\)"),
        ("entries.0.shape.h", 0, E0 + r".shape.h' must be a positive integer <= 1048576, got 0"),
        ("entries.0.shape.pt", -1, E0 + r".shape.pt' must be an integer >= 0 and <= 1048576, got -1"),
        ("entries.0.shape.pr", DROP, r"missing required field 'entries\[0\].shape.pr'"),
        ("entries.0.shape.n", 1, r"unknown field 'entries\[0\].shape.n': expected only ci, co, h, w"),
        ("entries.0.shape", [16], E0 + r".shape' must be a mapping of ci, co, h"),
        ("entries.0.gflops", float("nan"), E0 + r".gflops'" + BOUNDS + r"10000000, got nan"),
        ("entries.0.gflops", True, E0 + r".gflops'" + BOUNDS + r"10000000, got True \(bool\)"),
        ("entries.0.spread", -0.1, E0 + r".spread'" + BOUNDS + "1000, got -0.1"),
        ("entries.0.percent_of_peak", 1e5, E0 + r".percent_of_peak'" + BOUNDS + "10000, got 100000.0"),
        ("entries.0.threads", 0, E0 + r".threads' must be a positive integer <= 1024, got 0"),
        ("entries.0.trials", 10**8, E0 + r".trials' must be an integer >= 0 and <= 10000000"),
        ("entries.0.generator_version", -1, E0 + r".generator_version' must be an integer >= 0 and <= 1000000"),
        ("entries.0.config", "avx2", E0 + r".config' must be a mapping of KernelConfig fields"),
        (
            "entries.0.compiler",
            "gcc\n#include </etc/passwd>",
            E0 + r".compiler' must be a single-line string of at "
            r"most 200 characters",
        ),
        ("entries.0.date", "2026" * 11, E0 + r".date' must be a single-line string of at most 40"),
        ("entries.0.directconv_version", 1, E0 + r".directconv_version' must be a single-line string"),
        ("entries.0.layer", "x" * 65, E0 + r".layer' must be a single-line string of at most 64"),
        ("entries.0.flags", "-O3", E0 + r".flags' must be a list of at most 64 single-line strings"),
        ("entries.0.flags", ["-O3"] * 65, E0 + r".flags' must be a list of at most 64"),
        ("entries.0.flags", ["-O3\r"], E0 + r".flags\[0\]' must be a single-line string"),
        ("entries.0.extra", 1, r"unknown field 'entries\[0\].extra': expected only layer, shape"),
        ("entries.0.trials", DROP, r"missing required field 'entries\[0\].trials'"),
        ("entries.0", "entry", E0 + r"' must be a mapping of layer, shape"),
        ("entries", {}, r"field 'entries' must be a list of at most 10000 entries, got \{\} \(dict\)"),
        ("machine", "../../etc/passwd", r"field 'machine' must be an id of letters, digits"),
        ("machine", "testbox\n", r"field 'machine' must be an id of letters, digits"),
        ("fingerprint_id", "0123456789ABCDEF", r"field 'fingerprint_id' must be a string of 8 to 64 lowercase hex"),
        (
            "format",
            "directconv-tuned/2",
            r"field 'format' must be 'directconv-tuned/1', got 'directconv-tuned/2' "
            r"\(str\); the file was written by another",
        ),
        ("fingerprint", ["x"], r"field 'fingerprint' must be a mapping of at most 64 fields"),
        ("fingerprint", {f"k{i}": i for i in range(65)}, r"field 'fingerprint' must be a mapping of at most 64"),
        ("fingerprint.model_name", "x" * 201, r"field 'fingerprint.model_name' must be a number, true, false"),
        ("fingerprint.caches", [{"level": [1]}], r"field 'fingerprint.caches\[0\].level' must be a number"),
        ("fingerprint.caches", [[1]], r"field 'fingerprint.caches\[0\]' must be a number, .* or a mapping"),
        ("fingerprint." + "x" * 65, 1, r"field 'fingerprint' must be keyed by a name of at most 64 characters"),
        ("entry", [], r"unknown field 'entry': did you mean 'entries'\? expected only format, machine"),
        ("machine", DROP, r"missing required field 'machine'; required fields: format, machine"),
    ],
)
def test_hostile_or_broken_entries_are_rejected_with_the_file_named(tmp_path, field, value, message):
    doc = _raw(tmp_path)
    _put(doc, field, value)
    path = tmp_path / "hostile.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(store.StoreError, match=message) as info:
        store.read_store(path)
    assert str(info.value).startswith(f"{path}: ") and len(info.value.problems) == 1


def test_a_store_file_with_several_problems_reports_all_of_them_sorted_by_field(tmp_path):
    doc = _raw(tmp_path)
    doc["entries"] += [dict(doc["entries"][0]), dict(doc["entries"][0])]
    doc["entries"][0]["gflops"] = -1.0
    doc["entries"][0]["compiler"] = "cc\n"  # a second problem of entries[0]: its rules run as well
    doc["entries"][1]["config"] = {**doc["entries"][1]["config"], "threads": 4}
    doc["fingerprint_id"] = "xyz"
    doc["colour"] = "blue"
    path = tmp_path / "many.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(store.StoreError) as info:
        store.read_store(path)
    expected = [
        "unknown field 'colour'",
        "field 'entries[0].compiler' must be a single-line string",
        "field 'entries[0].gflops' must be a finite number >= 0",
        "field 'entries[1].config.threads' must be the entry's threads, 1, got 4",
        "field 'fingerprint_id' must be a string of 8 to 64 lowercase hex digits, got 'xyz'",
    ]
    assert [p[: len(start)] for p, start in zip(info.value.problems, expected, strict=True)] == expected
    assert str(info.value).startswith(f"{path}: 5 problems:\n")
    assert all(f"\n  - {p}" in str(info.value) for p in info.value.problems)


def test_not_a_mapping_too_long_and_alias_bombs_are_refused(tmp_path):
    with pytest.raises(store.StoreError, match=r"x.yaml: the document must be a mapping of format, .*got \['a'\]"):
        store.parse_store("[a]", tmp_path / "x.yaml")
    with pytest.raises(store.StoreError, match=r"too long to be read"):
        store.parse_store(" " * (store.MAX_CHARS + 1), tmp_path / "x.yaml")
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{n}: &{n} [{', '.join(['*' + p] * 10)}]\n" for p, n in zip("abcdefg", "bcdefgh", strict=True)
    )
    with pytest.raises(store.StoreError, match=r"too large: more than 1000000 values"):
        store.parse_store(bomb, tmp_path / "x.yaml")
    with pytest.raises(store.StoreError) as info:
        store.parse_store(f"entries: [{'0, ' * 10001}]", tmp_path / "x.yaml")
    assert any(
        p.startswith("field 'entries' must be a list of at most 10000 entries, got [0, 0, ")
        for p in info.value.problems
    )


def test_the_store_is_written_as_json_which_yaml_and_json_read_alike(tmp_path):
    write(tmp_path, entry(50.0))
    text = (tmp_path / f"testbox-{FID}.yaml").read_text()
    assert json.loads(text) == yaml.safe_load(text)
    assert [e.gflops for e in store.parse_store(text, tmp_path / "x.yaml").entries] == [50.0]
    # Text that starts as JSON is read as JSON: broken, deep or huge, it is refused like broken YAML.
    with pytest.raises(store.StoreError, match=r"x.yaml: not valid YAML: Expecting"):
        store.parse_store('{"entries": [', tmp_path / "x.yaml")
    with pytest.raises(store.StoreError, match=r"nested"):
        store.parse_store('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}", tmp_path / "x.yaml")
    with pytest.raises(store.StoreError, match=r"too large: more than 1000000 values"):
        store.parse_store('{"entries": [' + "0, " * 1_000_001 + "0]}", tmp_path / "x.yaml")


def test_store_schema_names_the_fields_of_entry_and_shape():
    entry = store._SCHEMA["$defs"]["entry"]
    assert entry["required"] == list(entry["properties"]) == list(store.Entry.__dataclass_fields__)
    shape = store._SCHEMA["$defs"]["shape"]
    assert shape["required"] == list(SHAPE.to_dict()) == list(BASE_FIELDS)  # a plain layer writes these
    assert list(shape["properties"]) == list(FIELDS)  # dilation and groups are optional
    assert all(rule.get("description") for rule in [*entry["properties"].values(), *shape["properties"].values()])


def test_yaml_tags_cannot_construct_objects(tmp_path):
    path = tmp_path / "tagged.yaml"
    path.write_text("!!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(store.StoreError, match=r"not valid YAML"):
        store.read_store(path)


def test_corrupt_file_never_breaks_lookup_and_is_kept_aside_on_write(tmp_path):
    (tmp_path / f"testbox-{FID}.yaml").write_text("entries: [unclosed\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert store.lookup(SHAPE, 1, FID, store=tmp_path) is None
    assert any("broken config store file" in str(w.message) and "testbox" in str(w.message) for w in caught)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        written, _ = write(tmp_path, entry(50.0))
    assert written
    assert len(list(tmp_path.glob(f"testbox-{FID}.yaml.corrupt-*"))) == 1
    assert store.lookup(SHAPE, 1, FID, store=tmp_path).entry.gflops == 50.0
