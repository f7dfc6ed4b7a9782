"""Machine descriptions: the bundled files, the schema and the loader that enforces it, the user store and the CLI.

Pure tests: no compiler, no timing, no hardware. The user store is redirected to tmp_path through
$DIRECTCONV_MACHINES_DIR so that the developer's own machine files never leak in.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from directconv.cli.main import main
from directconv.core.isa import ISAS
from directconv.core.paths import machines_dir
from directconv.machines import (
    Machine,
    MachineError,
    bundled_machines,
    dump_machine,
    list_machines,
    load_machine,
    loader,
    parse_machine,
    save_machine,
    user_machines,
)
from directconv.machines.loader import machine_to_data
from directconv.machines.machine import optional_defaults

FIXTURES = Path(__file__).parent / "fixtures" / "machines"
SCHEMA = json.loads((resources.files("directconv.machines") / "schema.json").read_text(encoding="utf-8"))
SOURCED = tuple(SCHEMA["properties"]["sources"]["required"])  # numbers every description must source
OPTIONAL_NUMBERS = tuple(optional_defaults())

REQUIRED_IDS = {
    "haswell",
    "piledriver",
    "cortex-a57",
    "skylake-sp",
    "icelake-sp",
    "sapphire-rapids",
    "zen2",
    "zen3",
    "zen4",
    "neoverse-n1",
    "neoverse-v1",
    "apple-m1",
    "generic",
}


@pytest.fixture(autouse=True)
def empty_user_store(tmp_path, monkeypatch) -> Path:
    store = tmp_path / "store"
    monkeypatch.setenv("DIRECTCONV_MACHINES_DIR", str(store))
    return store


def _valid_data(machine_id: str = "testbox") -> dict:
    """A minimal valid description as plain data (the probe's view)."""
    return {
        "id": machine_id,
        "name": "Test CPU",
        "vendor": "Test",
        "isa": "avx2",
        "n_vec": 8,
        "n_reg": 16,
        "n_fma": 2,
        "l_fma": 5,
        "freq_ghz": 3.5,
        "cores": 4,
        "threads_per_core": 2,
        "caches": [
            {"level": 1, "size_kib": 32, "ways": 8, "line_bytes": 64, "shared_by_cores": 1},
            {"level": 2, "size_kib": 256, "ways": 8, "line_bytes": 64, "shared_by_cores": 1},
        ],
        "compiler_flags": ["-march=haswell"],
        "sources": dict.fromkeys(SOURCED, "test"),
    }


# ---- Bundled descriptions ------------------------------------------------------------------------------------------


def test_every_bundled_file_validates_and_its_id_is_its_stem():
    files = [f for f in resources.files("directconv.machines").iterdir() if f.name.endswith(".yaml")]
    assert len(files) >= 13
    for f in files:
        m = load_machine(f.name.removesuffix(".yaml"))
        assert m.id == f.name.removesuffix(".yaml")
        assert m.peak(1) > 0 and m.fma_in_flight > 0


def test_the_required_machines_are_bundled():
    assert {m.id for m in bundled_machines()} >= REQUIRED_IDS


def test_haswell_needs_80_fp32_accumulations_in_flight():
    m = load_machine("haswell")
    assert m.n_vec * m.n_fma * m.l_fma == 80 == m.fma_in_flight
    assert (m.isa, m.n_reg, m.freq_ghz, m.cores, m.threads_per_core) == ("avx2", 16, 3.5, 4, 2)


def test_the_papers_machines_carry_the_papers_numbers():
    piledriver, a57 = load_machine("piledriver"), load_machine("cortex-a57")
    assert (piledriver.n_vec, piledriver.freq_ghz) == (8, 4.0)
    assert (a57.n_vec, a57.freq_ghz, a57.cores) == (4, 1.1, 2)
    # One 256-bit FMA per cycle per module, four modules: the FX-8350's 256 GFLOP/s fp32 peak.
    assert piledriver.peak(8) == pytest.approx(256.0)


def test_zen4_issues_one_zmm_fma_per_cycle():
    zen3, zen4 = load_machine("zen3"), load_machine("zen4")
    assert (zen4.isa, zen4.n_vec, zen4.n_fma) == ("avx512", 16, 1)
    assert zen4.peak(1) / zen4.freq_ghz == pytest.approx(zen3.peak(1) / zen3.freq_ghz)  # same FLOP per cycle


@pytest.mark.parametrize(
    ("machine_id", "flags"),
    [
        ("haswell", ("-march=haswell",)),
        ("zen3", ("-march=znver3",)),
        ("zen4", ("-march=znver4", "-mprefer-vector-width=512")),
        ("skylake-sp", ("-march=skylake-avx512", "-mprefer-vector-width=512")),
        ("cortex-a57", ("-mcpu=cortex-a57",)),
        ("apple-m1", ("-mcpu=apple-m1",)),
        ("generic", ()),
    ],
)
def test_compiler_flags(machine_id, flags):
    assert load_machine(machine_id).compiler_flags == flags


def test_generic_is_a_scalar_fallback_with_assumed_numbers():
    m = load_machine("generic")
    assert (m.isa, m.n_vec) == ("scalar", 1)
    assert all("assumed, portable fallback" in text for text in m.sources.values())


def test_every_bundled_number_says_where_it_came_from():
    for m in bundled_machines():
        for field in SOURCED + OPTIONAL_NUMBERS:  # bundled files give every optional number, not its default
            assert m.sources[field].strip(), (m.id, field)


def test_factors_measured_on_one_machine_say_so_elsewhere():
    # latency_slack, one_vector_penalty and spill_penalty were measured on zen3 only: every other file says whose
    # value it took.
    for m in bundled_machines():
        for field in ("latency_slack", "one_vector_penalty", "spill_penalty"):
            source = m.sources[field]
            own = "measured on zen3" in source or "fitted on zen3" in source
            assert own if m.id == "zen3" else "as zen3" in source, (m.id, field)


def test_intel_documents_twice_the_l2_bandwidth_of_zen():
    assert {m.id: m.l2_bytes_per_cycle for m in bundled_machines() if m.id in ("zen3", "zen4", "skylake-sp")} == {
        "zen3": 32,
        "zen4": 32,
        "skylake-sp": 64,
    }


# ---- schema.json -----------------------------------------------------------------------------------------------------


def test_schema_documents_every_field():
    def walk(props: dict) -> None:
        for name, prop in props.items():
            assert prop.get("description", "").strip(), name

    walk(SCHEMA["properties"])
    walk(SCHEMA["$defs"]["cache"]["properties"])
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_schema_holds_no_isa_table():
    # The ISAs and their lanes live in directconv.core.isa; the loader adds their names when it builds the validator.
    text = json.dumps(SCHEMA)
    assert "enum" not in SCHEMA["properties"]["isa"] and '"avx512"' not in text and "allOf" not in SCHEMA


def test_every_optional_number_has_a_default_and_needs_a_source():
    properties = SCHEMA["properties"]
    optional = [
        name
        for name, p in properties.items()
        if name not in SCHEMA["required"] and p.get("type") in ("number", "integer")
    ]
    assert optional == list(OPTIONAL_NUMBERS)
    for name in optional:
        assert SCHEMA["dependentSchemas"][name] == {"properties": {"sources": {"required": [name]}}}
    assert set(properties["sources"]["propertyNames"]["enum"]) == set(properties) - {"sources"}
    # The Machine built without a description's optional numbers has the schema's defaults.
    m = parse_machine(_valid_data(), "defaults")
    assert {name: getattr(m, name) for name in optional} == optional_defaults()
    assert {f.name for f in dataclasses.fields(Machine)} == set(properties)


def test_json_schema_alone_accepts_the_bundled_files_and_most_broken_ones():
    """schema.json also works in any JSON Schema validator (editors, CI): the bundled files pass, and the fixtures
    fail whose defect schema.json states without the loader's additions."""
    validator = jsonschema.Draft202012Validator(SCHEMA)
    for f in resources.files("directconv.machines").iterdir():
        if f.name.endswith(".yaml"):
            assert not list(validator.iter_errors(yaml.safe_load(f.read_text()))), f.name
    for stem in sorted(set(BROKEN) - LOADER_ONLY):
        assert list(validator.iter_errors(yaml.safe_load((FIXTURES / f"{stem}.yaml").read_text()))), stem


# ---- Broken descriptions fail with a message naming the file and the field -----------------------------------------

BROKEN = {
    "missing-field": "n_fma",
    "n-reg-string": "n_reg",
    "n-reg-negative": "n_reg",
    "n-reg-huge": "n_reg",
    "n-fma-float-string": "n_fma",
    "bool-for-int": "cores",
    "nan-frequency": "freq_ghz",
    "inf-latency": "l_fma",
    "unknown-isa": "isa",
    "n-vec-isa-mismatch": "n_vec",
    "negative-cache-size": "caches[0].size_kib",
    "cache-line-not-power-of-two": "caches[0].line_bytes",
    "cache-sizes-decrease": "caches",
    "cache-level-duplicate": "caches",
    "cache-shared-by-too-many": "caches[1].shared_by_cores",
    "cache-unknown-key": "caches[0].shared_by_core",
    "flag-injection": "compiler_flags[0]",
    "flag-plugin": "compiler_flags[0]",
    "flag-newline": "compiler_flags[0]",
    "flag-subshell": "compiler_flags[0]",
    "flag-not-a-list": "compiler_flags",
    "unknown-key": "n_regs",
    "id-not-stem": "id",
    "missing-source": "sources",
    "n-load-without-source": "sources",
    "unknown-source-key": "sources.n_regs",
    "peak-too-many-threads": "peak_gflops.64",
}
# What schema.json alone does not catch: the cross-field rules, the ISA names and lanes of core.isa, NaN (JSON has
# none) and a newline before `$` (Python's regexes allow it, JSON Schema's ECMA-262 ones do not).
LOADER_ONLY = {
    "id-not-stem",
    "cache-sizes-decrease",
    "cache-level-duplicate",
    "cache-shared-by-too-many",
    "nan-frequency",
    "peak-too-many-threads",
    "unknown-isa",
    "n-vec-isa-mismatch",
    "flag-newline",
}


def test_every_fixture_is_covered():
    assert {p.stem for p in FIXTURES.glob("*.yaml")} == set(BROKEN) | {"not-a-mapping", "bad-yaml", "many-problems"}


@pytest.mark.parametrize(("stem", "field"), sorted(BROKEN.items()))
def test_broken_file_names_file_and_field(stem, field):
    path = FIXTURES / f"{stem}.yaml"
    with pytest.raises(MachineError) as info:
        load_machine(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert f"'{field}'" in message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("stem", "expected"), [("not-a-mapping", "must be a YAML mapping"), ("bad-yaml", "not valid YAML")]
)
def test_unparseable_file_names_file(stem, expected):
    path = FIXTURES / f"{stem}.yaml"
    with pytest.raises(MachineError, match=expected) as info:
        load_machine(path)
    assert str(info.value).startswith(f"{path}: ")


def test_message_states_expected_and_found():
    with pytest.raises(MachineError) as info:
        load_machine(FIXTURES / "n-reg-string.yaml")
    expected = "field 'n_reg' must be a positive integer <= 256, got '16' (str)"
    assert str(info.value) == f"{FIXTURES / 'n-reg-string.yaml'}: {expected}"


def test_a_file_with_several_problems_reports_all_of_them_sorted_by_field():
    path = FIXTURES / "many-problems.yaml"
    with pytest.raises(MachineError) as info:
        load_machine(path)
    expected = [
        "field 'caches[0].ways' must be a positive integer <= 1024, got 0 (int)",
        "field 'compiler_flags[1]' must be a machine flag",
        "field 'id' must be equal to the file name stem 'many-problems', got 'haswell' (str)",
        "field 'n_reg' must be a positive integer <= 256, got '16' (str)",
        "field 'n_vec' must be 8 for isa 'avx2'",
        "field 'peak_gflops.16' must be keyed by at most cores * threads_per_core = 8 threads, got 16 (int)",
        "field 'sources' must say where every number came from, but has no entry for latency_slack",
        "missing required field 'vendor'",
        "unknown field 'vendr': did you mean 'vendor'?",
    ]
    problems = info.value.problems
    assert len(problems) == len(expected)
    for problem, start in zip(problems, expected, strict=True):
        assert problem.startswith(start), (problem, start)
    message = str(info.value)
    assert message.startswith(f"{path}: 9 problems:\n")
    assert all(f"\n  - {p}" in message for p in problems)


def test_a_cross_field_rule_waits_for_the_fields_it_reads():
    # A broken cores makes "shared_by_cores <= cores" meaningless: only the cores problem is reported.
    data = _valid_data()
    data["cores"] = "four"
    data["caches"][1]["shared_by_cores"] = 8
    with pytest.raises(MachineError) as info:
        parse_machine(data, "probe")
    assert len(info.value.problems) == 1 and "'cores'" in info.value.problems[0]


def _mutate(data: dict, dotted: str, value) -> dict:
    target = data
    *path, last = dotted.split(".")
    for part in path:
        target = target[int(part)] if isinstance(target, list) else target[part]
    target[last] = value
    return data


@pytest.mark.parametrize(
    ("dotted", "value", "field"),
    [
        ("n_reg", 16.5, "n_reg"),
        ("n_reg", True, "n_reg"),
        ("n_fma", False, "n_fma"),
        ("n_fma", 0, "n_fma"),
        ("n_fma", 9, "n_fma"),
        ("l_fma", 0.5, "l_fma"),
        ("freq_ghz", 1e300, "freq_ghz"),
        ("freq_ghz", float("-inf"), "freq_ghz"),
        ("cores", 5000, "cores"),
        ("threads_per_core", 0, "threads_per_core"),
        ("n_vec", None, "n_vec"),
        ("caches.0.size_kib", 2e6, "caches[0].size_kib"),
        ("caches.0.ways", "8", "caches[0].ways"),
        ("caches.0.level", 0, "caches[0].level"),
        ("caches.1.level", 3, "caches"),
        ("caches", {"level": 1}, "caches"),
        ("caches", [], "caches"),
        ("id", "Has Well", "id"),
        ("id", "x" * 65, "id"),
        ("id", "haswell\n", "id"),
        ("name", "", "name"),
        ("vendor", 7, "vendor"),
        ("notes", ["a"], "notes"),
        ("sources", ["n_vec"], "sources"),
        ("sources.n_vec", "", "sources.n_vec"),
        ("compiler_flags", ["-march=haswell"] * 33, "compiler_flags"),
        ("isa", "AVX2", "isa"),
        ("isa", "sse", "isa"),
        ("n_load", 0, "n_load"),
        ("l2_bytes_per_cycle", -32, "l2_bytes_per_cycle"),
        ("prefetch_streams", 2.5, "prefetch_streams"),
        ("latency_slack", 0.8, "latency_slack"),
        ("one_vector_penalty", "1.15", "one_vector_penalty"),
        ("spill_penalty", float("nan"), "spill_penalty"),
        ("peak_gflops", {0: 10.0}, "peak_gflops"),
        ("peak_gflops", {1: -10.0}, "peak_gflops.1"),
        ("call_us", {1: -1.0}, "call_us.1"),
        ("call_us", {0: 5.0}, "call_us"),
        ("call_us", {1: 1e9}, "call_us.1"),
    ],
)
def test_parse_machine_rejects(dotted, value, field):
    data = _mutate(_valid_data(), dotted, value)
    with pytest.raises(MachineError) as info:
        parse_machine(data, "probe:testbox")
    assert str(info.value).startswith("probe:testbox: ")
    assert f"'{field}'" in str(info.value)


@pytest.mark.parametrize("name", OPTIONAL_NUMBERS)
def test_an_optional_number_needs_a_source(name):
    data = _valid_data()
    data[name] = optional_defaults()[name]
    with pytest.raises(
        MachineError,
        match=rf"'sources' must say where every number came from, but has no entry for "
        rf"{name}; add e.g. `{name}: ",
    ):
        parse_machine(data, "probe")
    data["sources"][name] = "doc"
    assert getattr(parse_machine(data, "probe"), name) == optional_defaults()[name]


def test_call_cost_is_keyed_by_threads_and_charged_from_the_nearest_count_below():
    data = _valid_data()
    data.update(call_us={1: 5.5, "2": 6.0})
    data["sources"].update(call_us="probed")
    m = parse_machine(data, "probe")
    assert m.call_us == {1: 5.5, 2: 6.0}
    assert (m.call_seconds(1), m.call_seconds(2), m.call_seconds(4)) == pytest.approx((5.5e-6, 6.0e-6, 6.0e-6))
    assert parse_machine(_valid_data(), "probe").call_seconds(2) == 0.0  # not measured: not charged
    data["call_us"] = {1: 5.5, 64: 6.0}
    with pytest.raises(MachineError, match=r"'call_us.64' must be keyed by at most cores \* threads_per_core"):
        parse_machine(data, "probe")
    del data["sources"]["call_us"]
    with pytest.raises(MachineError, match=r"has no entry for call_us"):
        parse_machine(data, "probe")


def test_sve_lanes_are_a_multiple_of_four():
    data = _valid_data()
    data.update(isa="sve", n_vec=8, n_reg=32, compiler_flags=["-mcpu=neoverse-v1"])
    assert parse_machine(data, "sve").n_vec == 8
    data["n_vec"] = 6
    with pytest.raises(MachineError, match="'n_vec' must be a multiple of 4"):
        parse_machine(data, "sve")


def test_parse_machine_accepts_optional_fields_and_integral_floats():
    data = _valid_data()
    data.update(n_load=3, peak_gflops={1: 105.5, "2": 210}, notes="x", n_reg=16.0, prefetch_streams=16.0)
    data["sources"].update(n_load="doc", peak_gflops="probed", prefetch_streams="doc")
    m = parse_machine(data, "probe")
    assert (m.n_load, m.peak_gflops, m.n_reg, type(m.n_reg)) == (3.0, {1: 105.5, 2: 210.0}, 16, int)
    assert (m.prefetch_streams, type(m.prefetch_streams)) == (16, int)
    assert m.peak(2) == 210.0 and m.peak(4) == pytest.approx(2 * 2 * 8 * 3.5 * 4)
    assert isinstance(m, Machine)


GOOD_FLAGS = [
    "-march=haswell",
    "-mtune=znver3",
    "-mcpu=neoverse-v1+sve",
    "-mfpu=neon-fp-armv8",
    "-mavx2",
    "-mno-avx512f",
    "-mfma",
    "-mprefer-vector-width=512",
    "-march=x86-64-v3",
]
BAD_FLAGS = [
    "-O3",
    "-fplugin=/tmp/x.so",
    "-march=haswell -O3",
    "-march='x'",
    '-march="x"',
    "-march=$(id)",
    "-march=`id`",
    "-mavx2;",
    "march=haswell",
    "-mprefer-vector-width=1024",
    "-mprefer-vector-width=512 ",
    "-m",
    "-Wl,-rpath,/tmp",
    "-march=haswell\n",
    "-march=",
    "--param=x",
    "-mAVX2",
    "-specs=/tmp/x",
    "@/tmp/flags",
    "-o/etc/passwd",
    "-march=a/b",
    "-mavx2\x00",
    " -mavx2",
    "-march=znver3|id",
    3,
]


@pytest.mark.parametrize("flag", GOOD_FLAGS)
def test_allowed_flags(flag):
    data = _valid_data()
    data["compiler_flags"] = [flag]
    assert parse_machine(data, "flags").compiler_flags == (flag,)


@pytest.mark.parametrize("flag", BAD_FLAGS)
def test_rejected_flags(flag):
    data = _valid_data()
    data["compiler_flags"] = ["-march=haswell", flag]
    with pytest.raises(MachineError, match=r"field 'compiler_flags\[1\]' must be a machine flag"):
        parse_machine(data, "flags")


# ---- Writing -------------------------------------------------------------------------------------------------------


def test_dump_leaves_unsourced_defaults_out():
    m = parse_machine(_valid_data(), "defaults")
    data = machine_to_data(m)
    assert not set(OPTIONAL_NUMBERS) & set(data)
    assert parse_machine(yaml.safe_load(dump_machine(m)), "dumped") == m
    # A changed number without a source is written, and refused on saving: it would not say where it came from.
    faster = dataclasses.replace(m, n_load=3.0)
    assert machine_to_data(faster)["n_load"] == 3
    with pytest.raises(MachineError, match="no entry for n_load"):
        parse_machine(machine_to_data(faster), "dumped")


def test_dump_then_parse_gives_back_every_bundled_machine():
    for m in bundled_machines():
        text = dump_machine(m)
        assert parse_machine(yaml.safe_load(text), m.id) == m
        assert text.startswith(f"id: {m.id}\n")


_finite = {"allow_nan": False, "allow_infinity": False}
LINE_BYTES = SCHEMA["$defs"]["cache"]["properties"]["line_bytes"]["enum"]


@st.composite
def _machines(draw) -> dict:
    isa = draw(st.sampled_from([*ISAS, *loader.SCALABLE_ISAS]))
    n_vec = draw(st.integers(1, 16)) * loader.SCALABLE_ISAS[isa] if isa in loader.SCALABLE_ISAS else ISAS[isa].lanes
    cores = draw(st.integers(1, 256))
    levels = draw(st.integers(1, 4))
    sizes = sorted(draw(st.lists(st.floats(0.5, 1e6, **_finite), min_size=levels, max_size=levels, unique=True)))
    data = {
        "id": draw(st.from_regex(r"[a-z0-9][a-z0-9_-]{0,20}", fullmatch=True)),
        "name": draw(st.text(min_size=1, max_size=50).filter(str.strip)),
        "vendor": "v",
        "isa": isa,
        "n_vec": n_vec,
        "n_reg": draw(st.integers(1, 256)),
        "n_fma": draw(st.floats(0.01, 8, **_finite)),
        "l_fma": draw(st.floats(1, 64, **_finite)),
        "freq_ghz": draw(st.floats(0.01, 10, **_finite)),
        "cores": cores,
        "threads_per_core": draw(st.integers(1, 8)),
        "caches": [
            {
                "level": i + 1,
                "size_kib": s,
                "ways": draw(st.integers(1, 1024)),
                "line_bytes": draw(st.sampled_from(LINE_BYTES)),
                "shared_by_cores": draw(st.integers(1, cores)),
            }
            for i, s in enumerate(sizes)
        ],
        "compiler_flags": draw(st.lists(st.sampled_from(GOOD_FLAGS), max_size=3)),
        "sources": dict.fromkeys(SOURCED, "probed"),
        "notes": draw(st.text(max_size=200)),
    }
    if draw(st.booleans()):
        data["n_load"] = draw(st.floats(0.1, 8, **_finite))
        data["sources"]["n_load"] = "probed"
    if draw(st.booleans()):
        data["latency_slack"] = draw(st.floats(1, 4, **_finite))
        data["sources"]["latency_slack"] = "fitted"
    return data


@settings(max_examples=60, deadline=None)
@given(_machines())
def test_dump_parse_round_trip(data):
    m = parse_machine(data, "generated")
    assert parse_machine(yaml.safe_load(dump_machine(m)), "dumped") == m


def test_save_machine_writes_atomically(tmp_path, monkeypatch):
    m = load_machine("zen3")
    target = tmp_path / "deep" / "folder" / "zen3.yaml"
    assert save_machine(m, target) == target
    assert load_machine(target) == m
    assert sorted(p.name for p in target.parent.iterdir()) == ["zen3.yaml"]

    faster = dataclasses.replace(m, freq_ghz=3.0)

    def fail_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail_replace)
    with pytest.raises(OSError, match="disk full"):
        save_machine(faster, target)
    monkeypatch.undo()
    assert load_machine(target) == m  # the old file is intact
    assert sorted(p.name for p in target.parent.iterdir()) == ["zen3.yaml"]  # no temporary left behind


def test_save_machine_refuses_a_name_that_would_not_load(tmp_path):
    m = load_machine("zen3")
    with pytest.raises(MachineError, match="'id' must be equal to the file name stem 'zen4'"):
        save_machine(m, tmp_path / "zen4.yaml")
    with pytest.raises(MachineError, match=r"must end in \.yaml"):
        save_machine(m, tmp_path / "zen3.txt")
    # A Machine with a flag off the allow-list cannot even be built, so it can reach neither a file nor a compiler.
    with pytest.raises(ValueError, match=r"compiler flag '-O3 -fplugin=x.so' is not a machine flag"):
        dataclasses.replace(m, compiler_flags=("-O3 -fplugin=x.so",))
    with pytest.raises(ValueError, match=r"compiler flag '-march=native; rm' is not a machine flag"):
        dataclasses.replace(m, compiler_flag_fallbacks=(("-march=native; rm",),))
    assert not any(tmp_path.iterdir())


# ---- The user store ------------------------------------------------------------------------------------------------


def test_machines_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("DIRECTCONV_MACHINES_DIR", str(tmp_path / "explicit"))
    assert machines_dir() == tmp_path / "explicit"
    monkeypatch.delenv("DIRECTCONV_MACHINES_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert machines_dir() == tmp_path / "xdg" / "directconv" / "machines"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert machines_dir() == tmp_path / "home" / ".local" / "share" / "directconv" / "machines"


@pytest.fixture
def populated_store(empty_user_store) -> Path:
    """A user haswell that shadows the bundled one, a new machine, and a broken file."""
    haswell = dataclasses.replace(
        load_machine("haswell"), freq_ghz=3.9, sources={**load_machine("haswell").sources, "freq_ghz": "probed"}
    )
    save_machine(haswell, empty_user_store / "haswell.yaml")
    save_machine(parse_machine(_valid_data("mybox"), "test"), empty_user_store / "mybox.yaml")
    (empty_user_store / "broken.yaml").write_text(
        (FIXTURES / "flag-plugin.yaml").read_text().replace("id: flag-plugin", "id: broken")
    )
    (empty_user_store / "README.txt").write_text("not a machine")
    return empty_user_store


def test_user_file_shadows_bundled(populated_store):
    assert load_machine("haswell").freq_ghz == 3.9
    assert load_machine("zen3") == next(m for m in bundled_machines() if m.id == "zen3")
    assert {m.id for m in user_machines()} == {"haswell", "mybox"}
    assert next(m for m in bundled_machines() if m.id == "haswell").freq_ghz == 3.5
    entries = [e for e in list_machines() if e.id == "haswell"]
    assert [(e.origin, e.shadows, e.shadowed_by) for e in entries] == [
        ("user", True, None),
        ("bundled", False, str(populated_store / "haswell.yaml")),
    ]


def test_broken_user_file_is_listed_with_its_error(populated_store):
    entries = {(e.id, e.origin): e for e in list_machines()}
    broken = entries[("broken", "user")]
    assert broken.machine is None
    assert broken.error.startswith(str(populated_store / "broken.yaml"))
    assert "'compiler_flags[0]'" in broken.error
    assert len(entries) == len(bundled_machines()) + 3
    with pytest.raises(MachineError, match="compiler_flags"):
        load_machine("broken")


def test_a_broken_user_file_is_never_replaced_by_the_bundled_one(empty_user_store):
    empty_user_store.mkdir()
    (empty_user_store / "zen3.yaml").write_text("id: zen3\n")
    with pytest.raises(MachineError, match="missing required field"):
        load_machine("zen3")


def test_load_machine_by_id_or_path_errors():
    with pytest.raises(MachineError, match=r"unknown machine id 'nosuch': expected one of .*haswell"):
        load_machine("nosuch")
    with pytest.raises(MachineError, match="neither a machine id"):
        load_machine("Haswell!")
    with pytest.raises(MachineError, match="cannot read"):
        load_machine("/nonexistent/haswell.yaml")


# ---- The command line ----------------------------------------------------------------------------------------------


def test_cli_table_shows_shadowing_and_errors(populated_store, capsys):
    assert main(["machines"]) == 0
    out = capsys.readouterr().out
    assert "haswell" in out and "avx2" in out and "8 x 16" in out
    assert f"user: {populated_store / 'haswell.yaml'} (shadows bundled)" in out
    assert "bundled (shadowed by user file)" in out
    assert "Files that could not be loaded:" in out and "'compiler_flags[0]'" in out
    row = next(line for line in out.splitlines() if line.startswith("zen4 "))
    assert "16 x 32" in row and "76.8" in row


def test_cli_json(populated_store, capsys):
    assert main(["machines", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    by_key = {(d["id"], d["origin"]): d for d in listing}
    assert by_key[("haswell", "bundled")]["fma_in_flight"] == 80
    assert by_key[("haswell", "user")]["shadows"] is True
    assert by_key[("broken", "user")]["error"]
    assert by_key[("zen2", "bundled")]["peak_gflops_per_core"] == pytest.approx(72.0)


def test_cli_shows_one_machine(capsys):
    assert main(["machines", "cortex-a57"]) == 0
    out = capsys.readouterr().out
    assert parse_machine(yaml.safe_load(out), "cli") == load_machine("cortex-a57")
    assert main(["machines", "nosuch"]) == 2
    assert "unknown machine id 'nosuch'" in capsys.readouterr().err


def test_module_entry_point_lists_machines_as_json(empty_user_store):
    env = {**os.environ, "DIRECTCONV_MACHINES_DIR": str(empty_user_store)}
    done = subprocess.run(
        [sys.executable, "-m", "directconv", "machines", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    listing = json.loads(done.stdout)
    assert len(listing) >= 13
    assert {d["id"] for d in listing} >= REQUIRED_IDS
    assert all(d["error"] is None and d["origin"] == "bundled" for d in listing)
