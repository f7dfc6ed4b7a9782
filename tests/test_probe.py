"""The host probe: detection replayed from recorded hosts, fingerprints, matching, and (with a compiler) the FMA
microbenchmarks and the `directconv probe` command on this machine.

Fixtures (tests/fixtures/probe/*.json) are `RawHost` records: `uname -m`, /proc/cpuinfo text and the sysfs files
detection reads. No test here asserts a speed; the microbenchmark tests check only that numbers are plausible.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import archspec.cpu
import pytest
import yaml

from directconv.core.isa import get_isa, host_isa
from directconv.kernels import fma
from directconv.machines.loader import bundled_machines, load_machine, parse_machine, save_machine
from directconv.machines.machine import Machine
from directconv.machines.probe import (
    Performance,
    RawHost,
    best_match,
    compare,
    default_id,
    describe,
    facts_from_raw,
    fingerprint,
    fingerprint_id,
    host_facts,
    sysfs,
    usable_cpus,
    why_not,
)
from directconv.machines.probe.cpuinfo import archspec_for, parse_cpuinfo
from directconv.machines.probe.describe import round_latency, round_throughput
from directconv.machines.probe.uarch import identify
from directconv.tuner.fma import QUICK, measure, thread_counts
from directconv.tuner.harness import summarize

FIXTURES = Path(__file__).parent / "fixtures" / "probe"
ZEN3 = "zen3-epyc-kvm"
XEON = "cascadelake-xeon-gold-6248-2s"
N1 = "neoverse-n1-graviton2-16"


def raw(name: str) -> RawHost:
    path = FIXTURES / f"{name}.json"
    return RawHost.from_json(path.read_text(), str(path))


def facts(name: str):
    return facts_from_raw(raw(name))


def caches_of(f) -> list[tuple[int, float, int, int, int]]:
    return [(c.level, c.size_kib, c.ways, c.line_bytes, c.shared_by_cores) for c in f.caches]


# ---- Detection, replayed ---------------------------------------------------------------------------------------------

EXPECTED = {
    ZEN3: dict(
        arch="x86_64",
        vendor="AMD",
        model_name="AMD EPYC",
        family="25",
        model="1",
        stepping="1",
        # archspec sees Zen 3 through a hypervisor that hides some flags, and calls it zen2.
        archspec="zen2",
        uarch="zen3",  # from its identity: family 25 model 1
        isas=("avx2", "avx", "scalar"),
        packages=1,
        cores=2,
        threads_per_core=1,
        caches=[(1, 32, 8, 64, 1), (2, 512, 8, 64, 1), (3, 32768, 16, 64, 2)],
        has={"avx2", "fma", "hypervisor"},
        lacks={"avx512f"},
    ),
    XEON: dict(
        arch="x86_64",
        vendor="Intel",
        model_name="Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz",
        family="6",
        model="85",
        stepping="7",
        archspec="cascadelake",
        uarch="cascadelake",  # family 6 model 85 stepping 7
        isas=("avx512", "avx2", "avx", "scalar"),
        packages=2,
        cores=20,
        threads_per_core=2,
        caches=[(1, 32, 8, 64, 1), (2, 1024, 16, 64, 1), (3, 28160, 11, 64, 20)],
        has={"avx512f", "avx512vl", "avx512_vnni", "fma"},
        lacks={"hypervisor", "amx_tile"},
    ),
    N1: dict(
        arch="aarch64",
        vendor="Arm",
        model_name="",
        family="0x41",
        model="0xd0c",
        stepping="r3p1",
        archspec="neoverse_n1",
        uarch="neoverse-n1",  # implementer 0x41 part 0xd0c
        isas=("neon", "scalar"),
        packages=1,
        cores=16,
        threads_per_core=1,
        caches=[(1, 64, 4, 64, 1), (2, 1024, 8, 64, 1), (3, 32768, 16, 64, 16)],
        has={"asimd", "asimddp", "fphp"},
        lacks={"sve"},
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_identity_names_the_microarchitecture_archspec_may_miss(name):
    f, want = facts(name), EXPECTED[name]
    found = identify(f.cpu)
    assert found is not None and found.name == want["uarch"]
    assert "Linux" in found.source  # every row says where its numbers come from
    notes = describe(f, perf(4.0, 2.0), date="2024-01-01").notes
    assert f"identified as {want['uarch']!r}" in notes and f"archspec names it {want['archspec']!r}" in notes


def test_an_identity_outside_the_table_falls_back_to_archspec():
    f = facts(ZEN3)
    unknown = dataclasses.replace(f, cpu=dataclasses.replace(f.cpu, family="99"))
    assert identify(unknown.cpu) is None
    assert default_id(unknown) == "host-zen2"
    assert "not in the probe's table" in describe(unknown, perf(4.0, 2.0), date="2024-01-01").notes


def test_steppings_tell_skylake_sp_from_cascade_lake():
    cpu = facts(XEON).cpu
    assert identify(dataclasses.replace(cpu, stepping="4")).name == "skylake-sp"
    assert identify(dataclasses.replace(cpu, stepping="7")).name == "cascadelake"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_identity_features_and_isa(name):
    f, want = facts(name), EXPECTED[name]
    cpu = f.cpu
    assert (cpu.arch, cpu.vendor, cpu.model_name) == (want["arch"], want["vendor"], want["model_name"])
    assert (cpu.family, cpu.model, cpu.stepping) == (want["family"], want["model"], want["stepping"])
    assert want["has"] <= cpu.flags
    assert not (want["lacks"] & cpu.flags)
    assert f.archspec.name == want["archspec"]
    assert f.isas == want["isas"]
    assert f.isa == want["isas"][0]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_caches_and_cores(name):
    f, want = facts(name), EXPECTED[name]
    assert caches_of(f) == want["caches"]
    assert f.topology.packages == want["packages"]
    assert f.topology.cores_per_package == want["cores"]
    assert f.topology.threads_per_core == want["threads_per_core"]
    assert f.notes == ()


def test_two_socket_topology_pins_one_thread_per_core_on_the_first_package():
    topo = facts(XEON).topology
    assert topo.cores == 40 and len(topo.cpus) == 80
    per_core = topo.one_cpu_per_core()
    assert len(per_core) == 40
    assert per_core[:20] == tuple(range(20))  # package 0 first, never a hyperthread sibling (40-79)
    assert topo.one_cpu_per_core(allowed={41, 42, 60}) == (41, 42, 60)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sysfs_tree_reads_back_as_recorded(name, tmp_path):
    recorded = raw(name).sysfs
    sysfs.write_tree(recorded, tmp_path)
    (tmp_path / "cpu0" / "cache" / "index0" / "uevent").write_text("ignored\n")
    assert sysfs.read_tree(tmp_path) == recorded


def test_replayed_archspec_detection_agrees_with_archspec_on_this_host():
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if not text:
        pytest.skip("no /proc/cpuinfo on this host")
    assert archspec_for(parse_cpuinfo(text, platform.machine())).name == archspec.cpu.host().name


def test_cpu_lists_parse_and_bad_ones_say_what_was_expected():
    assert sysfs.parse_cpu_list("0-3,8,10-11\n") == (0, 1, 2, 3, 8, 10, 11)
    assert sysfs.parse_cpu_list("") == ()
    with pytest.raises(ValueError, match="comma-separated numbers or ranges"):
        sysfs.parse_cpu_list("0-x")


def test_text_that_is_not_cpuinfo_is_refused():
    with pytest.raises(ValueError, match="expected the text of /proc/cpuinfo"):
        parse_cpuinfo("hello: world\n", "x86_64")


def test_hidden_sysfs_falls_back_to_cpuinfo_and_derives_or_assumes_ways():
    recorded = raw(N1)
    files = {k: v for k, v in recorded.sysfs.items() if "/topology/" not in k}
    del files["cpu0/cache/index2/ways_of_associativity"]  # derived: 1024 KiB / (2048 sets * 64 B) = 8
    del files["cpu0/cache/index3/ways_of_associativity"]
    del files["cpu0/cache/index3/number_of_sets"]  # nothing to derive from: assumed, and said so
    f = facts_from_raw(RawHost(recorded.machine, recorded.cpuinfo, files))
    assert f.topology.cores_per_package == 16 and f.topology.threads_per_core == 1  # one core per cpuinfo entry
    assert [c.ways for c in f.caches] == [4, 8, 8]
    assert f.notes == ("L3 associativity not reported by the kernel: assumed 8-way",)


def test_raw_host_records_round_trip_and_refuse_other_json():
    r = raw(XEON)
    assert RawHost.from_json(r.to_json()) == r
    with pytest.raises(ValueError, match="expected a probe host record with format 1"):
        RawHost.from_json('{"format": 7}', "x.json")


# ---- Fingerprint ---------------------------------------------------------------------------------------------------


def test_fingerprint_is_stable_and_distinct_across_hosts():
    ids = {name: fingerprint_id(fingerprint(facts(name))) for name in EXPECTED}
    assert ids == {name: fingerprint_id(fingerprint(facts(name))) for name in EXPECTED}
    assert len(set(ids.values())) == len(ids)
    for value in ids.values():
        assert re.fullmatch(r"[0-9a-f]{16}", value)
    # Pinned: a change here re-keys every stored tuning result, so it must be deliberate (bump FINGERPRINT_VERSION).
    assert ids == {ZEN3: "1a3beb86f23afb10", XEON: "9fe0561c5d59f25f", N1: "74614b61f7f79335"}
    fp = fingerprint(facts(XEON))
    assert fp["features"] == [
        "avx",
        "avx2",
        "avx512_vnni",
        "avx512bw",
        "avx512cd",
        "avx512dq",
        "avx512f",
        "avx512vl",
        "f16c",
        "fma",
    ]
    assert (fp["vendor"], fp["family"], fp["model"], fp["stepping"], fp["cores"]) == ("Intel", "6", "85", "7", 20)


def test_fingerprint_ignores_clock_readings_but_not_the_stepping():
    r = raw(ZEN3)
    base = fingerprint_id(fingerprint(facts_from_raw(r)))
    reclocked = r.cpuinfo.replace("cpu MHz\t\t: 2445.424", "cpu MHz\t\t: 3100.000").replace("4890.84", "6200.00")
    assert reclocked != r.cpuinfo
    assert fingerprint_id(fingerprint(facts_from_raw(RawHost(r.machine, reclocked, r.sysfs)))) == base
    stepped = r.cpuinfo.replace("stepping\t: 1", "stepping\t: 2")
    assert fingerprint_id(fingerprint(facts_from_raw(RawHost(r.machine, stepped, r.sysfs)))) != base


def test_fingerprint_does_not_rest_on_the_archspec_name():
    # Same archspec name, different CPU: the fingerprints must differ.
    zen3 = facts(ZEN3)
    r = raw(ZEN3)
    other = facts_from_raw(RawHost(r.machine, r.cpuinfo.replace("model\t\t: 1", "model\t\t: 49"), r.sysfs))
    assert zen3.archspec.name == other.archspec.name
    assert fingerprint_id(fingerprint(zen3)) != fingerprint_id(fingerprint(other))


def test_fingerprint_of_this_host_is_cached_and_stable():
    assert host_facts() is host_facts()
    assert fingerprint_id(fingerprint()) == fingerprint_id(fingerprint(host_facts()))


# ---- Description and matching ----------------------------------------------------------------------------------------


def perf(l_fma: float, n_fma: float, freq: float = 2.5) -> Performance:
    return Performance(l_fma=l_fma, n_fma=n_fma, freq_ghz=freq, peak_gflops={1: 2 * n_fma * 8 * freq})


def test_rounding_keeps_whole_cycles_and_half_pipes():
    assert [round_latency(x) for x in (0.4, 3.97, 4.49, 5.2)] == [1, 4, 4, 5]
    assert [round_throughput(x) for x in (0.1, 0.96, 1.3, 1.96, 2.04)] == [0.5, 1.0, 1.5, 2.0, 2.0]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_descriptions_of_fixtures_validate_and_round_trip(name, tmp_path):
    f = facts(name)
    m = describe(f, perf(3.96, 2.03), date="2024-01-01")
    assert m.id == default_id(f) == f"host-{EXPECTED[name]['uarch']}"
    assert (m.isa, m.n_vec, m.n_reg) == (f.isa, get_isa(f.isa).lanes, get_isa(f.isa).registers)
    assert (m.l_fma, m.n_fma, m.cores) == (4, 2.0, EXPECTED[name]["cores"])
    assert "3.96" in m.notes and "2.03" in m.notes  # the measured values survive the rounding
    assert m.sources["l_fma"] == m.sources["n_fma"] == m.sources["freq_ghz"] == "probed"
    assert m.sources["caches"] == "/sys/devices/system/cpu"
    assert all(re.fullmatch(r"-m[a-z0-9=_.+-]+", flag) for flag in m.compiler_flags)
    saved = save_machine(m, tmp_path / f"{m.id}.yaml")
    assert load_machine(saved) == m


def test_two_socket_host_is_described_as_one_socket():
    m = describe(facts(XEON), perf(4, 2))
    assert m.cores == 20 and m.threads_per_core == 2
    assert m.cache(3).shared_by_cores == 20
    assert "2 packages of 20 cores" in m.notes


def test_zen3_in_a_vm_matches_zen3_although_archspec_says_zen2():
    host = describe(facts(ZEN3), perf(3.98, 2.01))
    result = best_match(host, bundled_machines())
    assert result.matched is not None and result.matched.id == "zen3"
    line = result.explain()
    assert line.startswith("closest bundled machine: zen3 (same isa")
    assert "l_fma" in line and "L2 512 KiB" in line


def test_a_five_cycle_fma_makes_the_same_host_a_zen2():
    host = describe(facts(ZEN3), perf(5.1, 2.0))
    assert best_match(host, bundled_machines()).matched.id == "zen2"
    assert "differs in l_fma 4 vs 5 here" in why_not(host, load_machine("zen3"))


def test_cascade_lake_matches_the_skylake_sp_description():
    host = describe(facts(XEON), perf(4.0, 1.98))
    result = best_match(host, bundled_machines())
    assert result.matched.id == "skylake-sp"
    assert "L3 39424 KiB vs 28160 KiB here" in result.explain()  # a different SKU's L3: reported, not blocking


def test_neoverse_n1_matches_the_graviton2_description():
    result = best_match(describe(facts(N1), perf(4.0, 2.0)), bundled_machines())
    assert result.matched.id == "neoverse-n1"


def test_a_core_unlike_any_bundled_one_matches_none_and_says_why():
    # An Arm core with a 7-cycle, single-pipe FMA: no bundled description has that, so the closest one is named
    # with the facts that keep it from matching.
    result = best_match(describe(facts(N1), perf(7.0, 1.0)), bundled_machines())
    assert result.matched is None
    line = result.explain()
    assert line.startswith("no bundled machine matches: closest is ")
    assert re.search(r"which differs in .*l_fma \d+ vs 7 here", line)


def _machine(**changes) -> Machine:
    base = dict(
        id="a",
        name="A",
        vendor="AMD",
        isa="avx2",
        n_vec=8,
        n_reg=16,
        n_fma=2,
        l_fma=4,
        freq_ghz=3.0,
        cores=8,
        threads_per_core=1,
        caches=[
            {"level": 1, "size_kib": 32, "ways": 8, "line_bytes": 64, "shared_by_cores": 1},
            {"level": 2, "size_kib": 512, "ways": 8, "line_bytes": 64, "shared_by_cores": 1},
            {"level": 3, "size_kib": 32768, "ways": 16, "line_bytes": 64, "shared_by_cores": 8},
        ],
        compiler_flags=[],
        sources={
            k: "test" for k in ("n_vec", "n_reg", "n_fma", "l_fma", "freq_ghz", "cores", "threads_per_core", "caches")
        },
    )
    base.update(changes)
    return parse_machine(base, "test")


def test_comparison_blocks_on_register_level_facts_only():
    host = _machine()
    assert compare(host, _machine(id="b", vendor="amd", cores=64)).matches
    l3 = compare(
        host,
        _machine(
            id="c", caches=[{**c, "size_kib": s} for c, s in zip(_machine_caches(), (32, 512, 16384), strict=True)]
        ),
    )
    assert l3.matches and l3.aside == ("L3 16384 KiB vs 32768 KiB here",)
    l2 = compare(
        host,
        _machine(
            id="d", caches=[{**c, "size_kib": s} for c, s in zip(_machine_caches(), (32, 1024, 32768), strict=True)]
        ),
    )
    assert not l2.matches and l2.differences == ("L2 1024 KiB vs 512 KiB here",)
    assert compare(host, _machine(id="e", n_fma=1)).differences == ("n_fma 1 vs 2 here",)
    assert best_match(host, []).explain() == "no bundled machine to compare with"


def _machine_caches() -> list[dict]:
    return [
        {
            "level": c.level,
            "size_kib": c.size_kib,
            "ways": c.ways,
            "line_bytes": c.line_bytes,
            "shared_by_cores": c.shared_by_cores,
        }
        for c in _machine().caches
    ]


# ---- The microbenchmarks -------------------------------------------------------------------------------------------


def test_accumulators_start_from_distinct_values_in_every_loop():
    # Identical chains get merged by GCC into one, which then "runs" at a fake multiple of the peak.
    for isa in ("avx512", "avx2", "neon", "scalar"):
        source = fma.probe_source(get_isa(isa))
        for function in re.split(r"\nstatic void |\ndouble ", source):
            starts = re.findall(r"vf [am]\d+ = \(vf\)\{0\} \+ \((.*?)\);", function)
            assert len(starts) == len(set(starts)), (isa, starts)


def test_sweep_leaves_registers_for_multiplier_and_addend():
    assert fma.accumulator_counts(get_isa("avx2")) == (1, 2, 3, 4, 6, 8, 10, 12)
    assert fma.accumulator_counts(get_isa("avx512"))[-1] == 24
    assert all(fma.fmas_per_iteration(k) >= fma.FMAS_PER_ITER for k in (1, 5, 7, 10, 24))
    assert thread_counts(2) == (1, 2) and thread_counts(64) == (1, 2, 4, 8, 16, 32, 64)


def test_stats_report_median_and_spread():
    s = summarize([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (s.median, s.p10, s.p90, s.count) == (3.0, pytest.approx(1.4), pytest.approx(4.6), 5)
    assert str(s) == "3.00 [p10-p90 1.40-4.60]"
    with pytest.raises(ValueError):
        summarize([])


@pytest.mark.compiler
def test_loops_compile_to_real_fmas_without_spills():
    isa = get_isa(host_isa())
    objdump = shutil.which("objdump")
    if not isa.fma or platform.machine() != "x86_64" or objdump is None:
        pytest.skip("reads x86 FMA code with objdump")
    kernels = fma.load(isa.name)
    text = subprocess.run([objdump, "-d", str(kernels.path)], capture_output=True, text=True, check=True).stdout
    fmas = [line for line in text.splitlines() if re.search(r"\bvfmadd\d{3}ps\b", line)]
    # Every K loop holds FMAS_PER_ITER or more FMAs, register to register (a spilled accumulator reads the stack).
    assert len(fmas) >= len(fma.accumulator_counts(isa)) * fma.FMAS_PER_ITER
    assert not [line for line in fmas if "(%rsp)" in line or "(%rbp)" in line]


@pytest.mark.compiler
def test_quick_microbenchmarks_give_plausible_numbers():
    f = host_facts()
    probe = measure(f.isa, usable_cpus(f), QUICK)
    assert 2 <= probe.l_fma.median <= 8
    assert 0.5 <= probe.n_fma.median <= 4
    assert 1 <= probe.ln.median <= 32
    assert 0.2 <= probe.clock_ghz.median <= 8
    assert 0.2 <= probe.freq_ghz <= 8
    assert set(probe.peak_gflops) == set(thread_counts(len(usable_cpus(f))))
    assert all(s.median > 0 for s in probe.peak_gflops.values())
    assert describe(f, probe.performance()).isa == f.isa


def _run_probe(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DIRECTCONV_MACHINES_DIR=str(tmp_path / "store"))
    return subprocess.run(
        [sys.executable, "-m", "directconv", "probe", *args], capture_output=True, text=True, env=env, timeout=120
    )


@pytest.mark.compiler
def test_probe_command_writes_a_description_the_loader_accepts(tmp_path):
    out, record = tmp_path / "this-host.yaml", tmp_path / "raw.json"
    done = _run_probe(tmp_path, "--quick", "--out", str(out), "--record", str(record))
    assert done.returncode == 0, done.stderr
    machine = load_machine(out)
    assert machine.id == "this-host"
    assert machine.isa == host_isa()
    assert set(machine.call_us) == set(machine.peak_gflops) and all(0 < us < 1000 for us in machine.call_us.values())
    assert machine.sources["call_us"] == "probed"
    for name in ("l2_bytes_per_cycle", "dram_gbytes_per_s"):  # every host has an L2 and memory
        assert machine.sources[name] == "probed"
    assert "Bandwidth of a copy loop" in machine.notes
    assert yaml.safe_load(done.stdout)["id"] == "this-host"
    assert re.search(r"^(closest bundled machine: |no bundled machine matches: )", done.stderr, re.MULTILINE)
    assert f"wrote {out}" in done.stderr
    assert not (tmp_path / "store").exists()  # --out given: the user store is left alone
    recorded = facts_from_raw(RawHost.from_json(record.read_text(), str(record)))
    assert fingerprint_id(fingerprint(recorded)) == fingerprint_id(fingerprint())


def test_probe_command_refuses_an_out_file_not_named_after_the_id(tmp_path):
    done = _run_probe(tmp_path, "--id", "mine", "--out", str(tmp_path / "other.yaml"))
    assert done.returncode == 2
    assert "must be named mine.yaml" in done.stderr


def test_probe_is_a_listed_subcommand():
    done = subprocess.run([sys.executable, "-m", "directconv", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "probe" in done.stdout
