"""`directconv bench --end-to-end`: the memory measurement's parsing, the peers of a whole network against
directconv, the argument checks, its table, and the command once, small."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from directconv.bench import end_to_end, memory, network
from directconv.bench.base import Check, compare
from directconv.bench.report import table
from directconv.bench.results import FAILED, OK, WRONG, MemoryUsage, Result
from directconv.cli.main import main
from directconv.tuner.harness import Timing
from directconv.tuner.peak import Peak


def test_memory_status_parser_and_spec_round_trip() -> None:
    status = "Name:\tpython\nVmPeak:\t  10 kB\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\nThreads:\t1\n"
    assert memory.parse_status(status) == {"VmHWM": 2048 * 1024, "VmRSS": 1024 * 1024}
    with pytest.raises(ValueError, match="expected a size in kB"):
        memory.parse_status("VmRSS:\t 12 MB\n")
    spec = network.NetworkSpec("googlenet", 2, seed=5, input_size=40, steps=3)
    assert network.NetworkSpec.from_json(spec.to_json()) == spec


@pytest.mark.slow
@pytest.mark.compiler
@pytest.mark.parametrize("name", ["torch-nchw", "torch-channels_last", "onnxruntime"])
def test_chain_peers_agree_with_directconv(name: str) -> None:
    (impl,) = end_to_end.REGISTRY.select([name])
    if impl.missing():
        pytest.skip(f"{name} not installed")
    problem = network.NetworkProblem.make(network.NetworkSpec("googlenet", 1, input_size=40))
    tol = network.network_tolerance(problem.network)
    ours = network.build_model(problem)(problem.x)
    assert compare(ours, network.float64_reference(problem.network, problem.weights, problem.x), tol).correct
    prepared = impl.prepare(problem, 1)
    try:
        verdict = compare(prepared.to_nchw(prepared.call()), ours, 2 * tol)
    finally:
        if prepared.close:
            prepared.close()
    assert verdict.correct, verdict.problem


def test_end_to_end_bench_arguments_are_checked(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--end-to-end"]) == 2
    assert "--end-to-end needs --network NAME (one of alexnet" in capsys.readouterr().err
    assert main(["bench", "--end-to-end", "--layer", "vgg16:conv1_2"]) == 2
    assert "give --network NAME, not --layer" in capsys.readouterr().err
    assert main(["bench", "--network", "vgg16", "--steps", "2"]) == 2
    assert "they need --end-to-end" in capsys.readouterr().err
    assert main(["bench", "--network", "alexnet", "--end-to-end", "--steps", "9"]) == 2
    assert "steps must be an int in 1..7" in capsys.readouterr().err
    assert main(["bench", "--network", "alexnet", "--end-to-end", "--impl", "numpy-im2col"]) == 2
    assert "known: directconv-nchw" in capsys.readouterr().err


def test_table_lines_up_wrong_and_failed_rows_and_notes_why() -> None:
    peak = Peak("avx2", 1, 100.0, (100.0,), 12)
    wrong = Check(False, 0.5, 1e-3, "max relative error 5.00e-01 exceeds the tolerance 1.00e-03")
    results = [
        Result(
            "net",
            "directconv-nchw",
            1,
            OK,
            10**9,
            peak,
            Check(True, 0.0, 1e-3),
            Timing((0.01,), 1),
            memory=MemoryUsage(64 * 2**20, 2**20, 63 * 2**20),
        ),
        Result(
            "net",
            "directconv-blocked",
            1,
            WRONG,
            10**9,
            peak,
            wrong,
            checked_against="directconv-nchw output",
            memory_note="the child process failed (exit 1): boom",
        ),
        Result("net", "onnxruntime", 1, FAILED, 10**9, peak, error="RuntimeError: nope"),
    ]
    lines = table(end_to_end.REPORT, [r.impl for r in results], [1], results).splitlines()
    heading, ok, bad, failed = lines[:4]
    # Every row's error and memory columns end where their headings do, whatever the row's status.
    assert len(ok) == len(bad) == len(failed) == len(heading)
    assert bad.index("5.0e-01") + len("5.0e-01") == heading.index("max rel err") + len("max rel err")
    assert "WRONG: not timed" in bad and "FAILED (see below)" in failed and ok.split()[1] == "10.00"
    why = "max relative error 5.00e-01 exceeds the tolerance 1.00e-03 (against directconv-nchw output)"
    assert f"  directconv-blocked: {why}" in lines
    assert "  directconv-blocked: memory n/a: the child process failed (exit 1): boom" in lines
    assert "  onnxruntime: RuntimeError: nope" in lines


def test_a_failed_implementation_is_not_measured_in_a_child() -> None:
    spec = network.NetworkSpec("alexnet", 1)
    failed = Result("alexnet", "onnxruntime", 1, FAILED, 1, Peak("avx2", 1, 1.0, (1.0,), 12), error="x")
    measured = end_to_end.with_memory(spec, failed)
    assert measured.memory is None and measured.memory_note == "not measured: the implementation failed"
    record = end_to_end.record(measured)
    assert record["peak_rss_bytes"] is None and record["memory_note"] == measured.memory_note
    assert memory.main([]) == 2  # the child's entry point wants a spec and an implementation


@pytest.mark.slow
@pytest.mark.compiler
def test_end_to_end_bench_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "e2e.json"
    args = ["bench", "--network", "googlenet", "--end-to-end", "--threads", "1", "--quick", "--rounds", "2",
            "--steps", "3", "--input-size", "40", "--json", str(out),
            "--impl", "directconv-nchw", "--impl", "directconv-blocked", "--impl", "onnxruntime"]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "googlenet end to end (input size 40, first 3 steps), 1 thread" in text
    assert "directconv against the float64 step-by-step reference" in text and ": ok" in text
    data = json.loads(out.read_text())
    assert data["format"] == "directconv-bench-network" and {"cpu", "isa", "versions"} <= set(data["metadata"])
    (net,) = data["networks"]
    assert net["steps"] == ["conv1", "pool1", "conv2_reduce"] and net["float64_check"]["correct"] is True
    records = {r["impl"]: r for r in data["records"]}
    for name in ("directconv-nchw", "directconv-blocked"):
        r = records[name]
        assert r["correct"] is True and r["max_rel_error"] == 0.0 and r["gflops"] > 0 and r["median_ms"] > 0
        assert r["working_memory_bytes"] > 0
        assert (r["peak_rss_bytes"] is not None and r["growth_bytes"] >= 0) or r["memory_note"]
    if "onnxruntime" in data["not_installed"]:
        assert "onnxruntime" not in records and "Skipped, not installed: onnxruntime" in text
    else:
        assert records["onnxruntime"]["correct"] is True and records["onnxruntime"]["status"] == "ok"
