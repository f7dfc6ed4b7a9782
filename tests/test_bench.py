"""Tests of `directconv bench`: statistics and interleaving (pure), implementations against the reference, the FMA
peak microbenchmark, and the command end to end. Nothing here asserts a speed."""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from directconv.bench import kind, peers, per_layer, session, summary
from directconv.bench.base import Check, ConfigSource, Impl, Prepared, Registry
from directconv.bench.layer import LayerProblem, check_output
from directconv.bench.report import Report, median_column, peak_text
from directconv.bench.results import FAILED, OK, WRONG, Result
from directconv.bench.runner import Case, Settings, run
from directconv.cli.main import main
from directconv.core.files import write_json
from directconv.core.isa import get_isa
from directconv.core.shape import ConvShape
from directconv.core.suite import Layer, get_layer
from directconv.tuner import harness
from directconv.tuner.peak import Peak, peak_once

# --- harness: statistics and interleaving ---------------------------------------------------------------------


def test_interleaved_medians_rotates_the_order_and_takes_medians():
    calls: list[str] = []

    def run(name: str, values: list[float]):
        def call() -> float:
            calls.append(name)
            return values.pop(0)

        return call

    medians = harness.interleaved_medians({"a": run("a", [3.0, 1.0, 2.0]), "b": run("b", [9.0, 7.0, 8.0])}, 3)
    assert medians == {"a": 2.0, "b": 8.0}
    assert calls == ["a", "b", "b", "a", "a", "b"]


def test_summarize_order_statistics() -> None:
    stats = harness.summarize([5.0, 1.0, 3.0, 2.0, 4.0])
    assert stats.median == 3.0
    assert stats.minimum == 1.0 and stats.maximum == 5.0 and stats.count == 5
    assert stats.p10 == pytest.approx(1.4) and stats.p90 == pytest.approx(4.6)
    assert stats.spread == pytest.approx((4.6 - 1.4) / 3.0)


def test_summarize_rejects_empty_and_non_finite() -> None:
    with pytest.raises(ValueError, match="at least one"):
        harness.summarize([])
    with pytest.raises(ValueError, match="finite"):
        harness.summarize([1.0, math.nan])


def test_geomean() -> None:
    assert harness.geomean([2.0, 8.0]) == pytest.approx(4.0)
    with pytest.raises(ValueError):
        harness.geomean([1.0, 0.0])


def test_schedule_rotates_so_each_implementation_leads_in_turn() -> None:
    names = ["a", "b", "c"]
    rounds = harness.schedule(names, 4)
    assert rounds == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]]
    for order in rounds:
        assert sorted(order) == names
    # Over len(names) rounds every name takes every position exactly once.
    for position in range(3):
        assert sorted(order[position] for order in rounds[:3]) == names


def test_calls_per_batch() -> None:
    assert harness.calls_per_batch(0.001, 0.025) == 25
    assert harness.calls_per_batch(0.1, 0.025) == 1  # a slow call is its own batch
    assert harness.calls_per_batch(0.0, 0.025, max_calls=7) == 7


class FakeClock:
    """A clock that advances only when a fake implementation 'runs'."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_interleave_runs_batches_in_rotating_order_and_reports_per_call_time() -> None:
    clock = FakeClock()
    log: list[str] = []
    # Binary fractions of a second: the fake clock adds them up exactly.
    cost = {"fast": 2.0**-10, "slow": 2.0**-8, "mid": 2.0**-9}

    def make(name: str):
        def call() -> None:
            log.append(name)
            clock.now += cost[name]

        return call

    pauses: list[int] = []  # where in the call log each pause happened
    timings = harness.interleave(
        {name: make(name) for name in cost},
        rounds=3,
        min_time=8 * 2.0**-10,
        warmup_calls=1,
        clock=clock,
        pause=lambda: pauses.append(len(log)),
    )
    assert {name: t.calls_per_sample for name, t in timings.items()} == {"fast": 8, "slow": 2, "mid": 4}
    for name, timing in timings.items():
        assert timing.samples == (cost[name],) * 3
    assert len(pauses) == 3 + 3 * 3  # before every warm-up and every batch
    # After the 3 warm-ups, each stretch between pauses is one batch of one name, in the rotating order.
    bounds = [*pauses[3:], len(log)]
    batches = [log[a:b] for a, b in itertools.pairwise(bounds)]
    expected = [name for order in harness.schedule(list(cost), 3) for name in order]
    assert [b[0] for b in batches] == expected
    assert all(b == [b[0]] * timings[b[0]].calls_per_sample for b in batches)


def test_interleave_names_the_callable_that_raised() -> None:
    def broken() -> None:
        raise ZeroDivisionError("boom")

    with pytest.raises(harness.TimedCallError, match="bad raised ZeroDivisionError") as info:
        harness.interleave({"good": lambda: None, "bad": broken}, rounds=1, min_time=0.001, pause=lambda: None)
    assert info.value.name == "bad"


# --- implementations and the correctness check -----------------------------------------------------------------

SMALL_SHAPES = [
    ConvShape.from_args(3, 5, 7, 6, 3, 3, stride=1, padding=1),
    ConvShape.from_args(4, 6, 9, 8, 3, 2, stride=2, padding=(0, 1, 2, 0)),
    ConvShape.from_args(8, 3, 5, 5, 1, 1),  # 1x1, stride 1: the cols matrix is the input itself
    ConvShape.from_args(8, 3, 6, 7, 1, 1, stride=2),
    ConvShape.from_args(2, 4, 11, 11, 5, 5, stride=3),  # no padding, strided windows of the input
]


def _problem(shape: ConvShape, seed: int = 1) -> LayerProblem:
    return LayerProblem.make(Layer("test:small", shape), seed)


@pytest.mark.parametrize("shape", SMALL_SHAPES, ids=lambda s: s.describe())
def test_im2col_matches_reference(shape: ConvShape) -> None:
    problem = _problem(shape)
    conv = peers.Im2col(problem.w, shape)
    reference = problem.reference()
    for _ in range(2):  # the workspaces are reused: the second call must be as right as the first
        verdict = check_output(conv(problem.x), reference, shape)
        assert verdict.correct, verdict.problem
    assert conv.extra_memory_bytes == sum(a.nbytes for a in (conv.padded, conv.cols) if a is not None)
    if shape.kh == shape.kw == 1 and shape.sh == 1:
        assert conv.extra_memory_bytes == 0


def test_check_output_catches_wrong_answers() -> None:
    shape = SMALL_SHAPES[0]
    problem = _problem(shape)
    reference = problem.reference()
    y = reference.astype(np.float32)
    assert check_output(y, reference, shape).correct
    bad = y.copy()
    bad[0, 1, 2, 3] += 0.05 * np.abs(reference).max()
    verdict = check_output(bad, reference, shape)
    assert not verdict.correct and "exceeds the tolerance" in verdict.problem
    assert not check_output(y[:, :-1], reference, shape).correct
    nan = y.copy()
    nan[0, 0, 0, 0] = np.nan
    assert not check_output(nan, reference, shape).correct


@pytest.mark.parametrize("name", ["torch-nchw", "torch-channels_last", "onnxruntime", "onnxruntime-nchwc"])
def test_installed_peers_match_reference(name: str) -> None:
    (impl,) = per_layer.REGISTRY.select([name])
    if impl.missing():
        pytest.skip(f"{name} not installed")
    for shape in SMALL_SHAPES[:2]:
        problem = _problem(shape)
        prepared = impl.prepare(problem, 1)
        try:
            verdict = check_output(prepared.to_nchw(prepared.call()), problem.reference(), shape)
        finally:
            if prepared.close:
                prepared.close()
        assert verdict.correct, verdict.problem


def test_onnxruntime_nchwc_times_its_blocked_kernel_alone_on_blocked_input() -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    # 20 channels: more than one block of 8 or 16 and a multiple of neither, so the blocked input is padded (with
    # fewer than a block onnxruntime reads NCHW); the NCHW session's graph has the reorders, the timed one only the
    # blocked Conv.
    shape = ConvShape.from_args(20, 20, 9, 11, 3, 3, stride=1, padding=1)
    problem = _problem(shape)
    split = peers.nchwc_split(peers.onnx_conv_model(problem))
    assert [n.op_type for n in split.before] == ["ReorderInput"] and [n.op_type for n in split.after] == [
        "ReorderOutput"
    ]
    assert split.conv.domain == peers.NCHWC_DOMAIN
    prepared = peers.prepare_onnxruntime_nchwc(problem, 1)
    y = prepared.call()
    assert y.ndim == 4 and y.shape[1] > shape.co and y.shape[1] % 8 == 0  # blocked, channels padded to the block
    assert check_output(prepared.to_nchw(y), problem.reference(), shape).correct
    assert "blocked input 1x" in prepared.note


def test_onnxruntime_nchwc_reads_a_first_layer_in_nchw_and_refuses_what_it_leaves_in_nchw() -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    first = ConvShape.from_args(3, 16, 15, 15, 7, 7, stride=2, padding=3)
    split = peers.nchwc_split(peers.onnx_conv_model(_problem(first)))
    assert split.before == [] and split.conv.input[0] == "x"  # onnxruntime reads 3 channels from NCHW directly
    prepared = peers.prepare_onnxruntime_nchwc(_problem(first), 1)
    assert "NCHW input" in prepared.note
    assert check_output(prepared.to_nchw(prepared.call()), _problem(first).reference(), first).correct
    # 32 groups of 4 channels: onnxruntime's transformer keeps it an NCHW Conv; the peer says so, it does not guess.
    grouped = ConvShape.from_args(128, 128, 8, 8, 3, 3, stride=1, padding=1, groups=32)
    with pytest.raises(ValueError, match="did not turn this layer into one blocked Conv"):
        peers.prepare_onnxruntime_nchwc(_problem(grouped), 1)


def test_select_rejects_unknown_implementation() -> None:
    with pytest.raises(ValueError, match="known: directconv-blocked"):
        per_layer.REGISTRY.select(["directconv-fast"])


# --- runner: failures are results ------------------------------------------------------------------------------


def _fake_peak() -> Peak:
    return Peak("avx2", 1, 100.0, (100.0,), 12)


def test_runner_times_correct_implementations_only() -> None:
    shape = SMALL_SHAPES[0]
    problem = _problem(shape)
    reference = problem.reference()
    good_answer = reference.astype(np.float32)
    calls = {"good": 0, "wrong": 0}

    def prepare_good(p: LayerProblem, threads: int) -> Prepared:
        def call() -> np.ndarray:
            calls["good"] += 1
            return good_answer

        return Prepared(call, np.asarray)

    def prepare_wrong(p: LayerProblem, threads: int) -> Prepared:
        def call() -> np.ndarray:
            calls["wrong"] += 1
            return good_answer * 1.1

        return Prepared(call, np.asarray)

    def prepare_broken(p: LayerProblem, threads: int) -> Prepared:
        raise RuntimeError("cannot set up")

    fakes = [Impl("good", "", prepare_good), Impl("wrong", "", prepare_wrong), Impl("broken", "", prepare_broken)]
    results = run(problem.case(), fakes, 1, _fake_peak(), Settings(rounds=2, min_time=0.001))
    by_name = {r.impl: r for r in results}
    assert [r.impl for r in results] == ["good", "wrong", "broken"]
    assert by_name["good"].status == OK and by_name["good"].gflops > 0
    assert by_name["wrong"].status == WRONG and by_name["wrong"].timing is None and by_name["wrong"].gflops is None
    assert calls["wrong"] == 1  # called once for the check, never timed
    assert by_name["broken"].status == FAILED and "cannot set up" in by_name["broken"].error
    record = per_layer.record(problem.layer, by_name["wrong"])
    assert record["correct"] is False and record["max_rel_error"] > record["tolerance"]
    json.dumps([per_layer.record(problem.layer, r) for r in results], allow_nan=False)


def test_runner_drops_an_implementation_that_raises_while_timed() -> None:
    shape = SMALL_SHAPES[0]
    problem = _problem(shape)
    reference = problem.reference()
    answer = reference.astype(np.float32)
    closed: list[str] = []

    def prepare(name: str, fail_after: int | None):
        def prepare_impl(p: LayerProblem, threads: int) -> Prepared:
            count = [0]

            def call() -> np.ndarray:
                count[0] += 1
                if fail_after is not None and count[0] > fail_after:
                    raise MemoryError("out of memory on call 3")
                return answer

            return Prepared(call, np.asarray, close=lambda: closed.append(name))

        return prepare_impl

    fakes = [Impl("flaky", "", prepare("flaky", 2)), Impl("steady", "", prepare("steady", None))]
    results = run(problem.case(), fakes, 1, _fake_peak(), Settings(rounds=2, min_time=0.001))
    flaky, steady = results
    assert flaky.status == FAILED and "out of memory" in flaky.error and flaky.check and flaky.check.correct
    assert steady.status == OK and steady.timing is not None and len(steady.timing.samples) == 2
    assert closed == ["steady", "flaky"]  # last prepared, first closed


def test_runner_times_the_fma_peak_in_the_same_rounds_and_reads_percent_per_round() -> None:
    problem = _problem(SMALL_SHAPES[0])
    answer = problem.reference().astype(np.float32)
    fakes = [Impl("a", "", lambda p, t: Prepared(lambda: answer, np.asarray))]
    (r,) = run(problem.case(), fakes, 1, _fake_peak(), Settings(rounds=3, min_time=0.002))
    assert len(r.peak_rounds) == 3 and all(g > 0 for g in r.peak_rounds)
    assert r.peak_gflops == pytest.approx(sorted(r.peak_rounds)[1])  # not the fake 100 GFLOP/s measured before
    record = per_layer.record(problem.layer, r)
    assert record["peak_in_rounds"] is True and record["peak_gflops_rounds"] == list(r.peak_rounds)
    assert len(record["percent_of_peak_rounds"]) == 3


def test_percent_of_peak_is_the_median_of_per_round_ratios() -> None:
    flops = 10**9
    # Round 2 ran in a slow phase (both halved): per round 50%, 50%, 50%; median time over median peak says 25%.
    timing = harness.Timing((0.02, 0.04, 0.02), 1)
    r = Result("test:l0", "a", 1, OK, flops, _fake_peak(), timing=timing, peak_rounds=(100.0, 50.0, 100.0))
    assert r.percent_of_peak_rounds == pytest.approx((50.0, 50.0, 50.0))
    assert r.percent_of_peak == pytest.approx(50.0)
    unpaired = Result("test:l0", "a", 1, OK, flops, _fake_peak(), timing=timing)
    assert unpaired.percent_of_peak == pytest.approx(50.0) and unpaired.peak_gflops == 100.0  # the fallback


def test_load_parser_counts_busy_columns() -> None:
    from directconv.tuner.load import LoadMeter, parse_busy_seconds

    stat = "cpu  100 5 50 1000 30 2 3 10 0 0\ncpu0 50 2 25 500 15 1 1 5 0 0\n"
    assert parse_busy_seconds(stat, 100.0) == pytest.approx((100 + 5 + 50 + 2 + 3 + 10) / 100.0)
    assert parse_busy_seconds("intr 1 2 3\n", 100.0) is None
    other = LoadMeter().other_cpus()
    assert other is None or other >= 0.0


def test_summary_geomeans_and_ratios() -> None:
    peak = _fake_peak()
    layers = [Layer(f"test:l{i}", SMALL_SHAPES[0]) for i in range(2)]
    flops = SMALL_SHAPES[0].flops()

    def result(layer: Layer, impl: str, gflops: float) -> Result:
        timing = harness.Timing((flops / (gflops * 1e9),), 1)
        return Result(layer.name, impl, 1, OK, flops, peak, timing=timing)

    results = [
        result(layers[0], "directconv-blocked", 90.0),
        result(layers[0], "directconv-nchw", 80.0),
        result(layers[0], "numpy-im2col", 40.0),
        result(layers[0], "onnxruntime", 100.0),
        result(layers[1], "directconv-blocked", 30.0),
        result(layers[1], "directconv-nchw", 20.0),
        result(layers[1], "numpy-im2col", 40.0),
        Result(layers[1].name, "onnxruntime", 1, WRONG, flops, peak),
    ]
    chosen = per_layer.REGISTRY.select(["directconv-blocked", "directconv-nchw", "numpy-im2col", "onnxruntime"])
    data = summary.summary(results, chosen, {1: peak})
    part = data["1"]
    assert part["geomean"]["directconv-nchw"]["gflops"] == pytest.approx(40.0)
    assert part["geomean"]["directconv-nchw"]["percent_of_peak"] == pytest.approx(40.0)
    assert part["geomean"]["onnxruntime"]["layers"] == 1
    # The peers run NCHW in and out: the ratios set directconv's NCHW row against them, not the blocked one.
    assert part["nchw_over_im2col"] == pytest.approx(1.0)
    rows = {row["layer"]: row for row in part["nchw_over_best_peer"]}
    assert rows["test:l0"]["best_peer"] == "onnxruntime" and rows["test:l0"]["ratio"] == pytest.approx(0.8)
    assert rows["test:l1"]["best_peer"] == "numpy-im2col" and rows["test:l1"]["ratio"] == pytest.approx(0.5)
    table = per_layer.layer_table(layers[1], ["directconv-blocked", "onnxruntime"], [1], results)
    assert "WRONG" in table
    assert "Summary, 1 thread" in summary.summary_text(data)


def test_summary_sets_each_side_against_its_like_for_like_peer_by_per_round_ratios() -> None:
    peak = _fake_peak()
    flops = SMALL_SHAPES[0].flops()

    def result(layer: str, impl: str, seconds: tuple[float, ...]) -> Result:
        return Result(layer, impl, 1, OK, flops, peak, timing=harness.Timing(seconds, 1))

    results = [
        # Per round 2.0, 1.0, 1.0 faster: the median of per-round ratios is 1.0; medians' ratio would say 2.0.
        result("test:l0", "directconv-nchw", (1.0, 2.0, 3.0)),
        result("test:l0", "onnxruntime", (2.0, 2.0, 3.0)),
        result("test:l0", "directconv-blocked", (1.0, 1.0, 1.0)),
        result("test:l0", "onnxruntime-nchwc", (1.2, 1.2, 1.2)),
        result("test:l1", "directconv-nchw", (2.0, 2.0, 2.0)),
        result("test:l1", "onnxruntime", (1.0, 1.0, 1.0)),
        result("test:l1", "directconv-blocked", (1.0, 1.0, 1.0)),
        Result("test:l1", "onnxruntime-nchwc", 1, FAILED, flops, peak, error="left in NCHW"),
    ]
    names = ["directconv-blocked", "directconv-nchw", "onnxruntime", "onnxruntime-nchwc"]
    data = summary.summary(results, per_layer.REGISTRY.select(names), {1: peak})
    nchw, blocked = data["1"]["like_for_like"]
    assert (nchw["ours"], nchw["peer"]) == ("directconv-nchw", "onnxruntime")
    assert [row["ratio"] for row in nchw["rows"]] == pytest.approx([1.0, 0.5])
    assert nchw["geomean"] == pytest.approx(math.sqrt(0.5)) and nchw["level_layers"] == 1
    assert nchw["worst"] == pytest.approx(0.5)
    assert (blocked["ours"], blocked["peer"]) == ("directconv-blocked", "onnxruntime-nchwc")
    assert [row["layer"] for row in blocked["rows"]] == ["test:l0"] and blocked["geomean"] == pytest.approx(1.2)
    text = summary.summary_text(data)
    assert "directconv-nchw / onnxruntime (like for like; median of per-round ratios): geomean 0.71x" in text
    assert "directconv-blocked / onnxruntime-nchwc" in text
    # A kernel timed alone on blocked input is nobody's NCHW peer, however fast.
    assert [row["best_peer"] for row in data["1"]["nchw_over_best_peer"]] == ["onnxruntime", "onnxruntime"]


def test_registry_selects_in_its_order_and_sets_aside_what_does_not_import() -> None:
    def prepare(p: object, threads: int) -> Prepared:
        raise AssertionError("not prepared by this test")

    registry = Registry((Impl("a", "", prepare), Impl("b", "", prepare, requires=("no_such_module_xyz",))), "thing")
    assert [impl.name for impl in registry.select(["b", "a"])] == ["a", "b"]
    available, missing = registry.available()
    assert [impl.name for impl in available] == ["a"] and "no_such_module_xyz (ModuleNotFoundError" in missing["b"]
    with pytest.raises(ValueError, match="unknown thing\\(s\\) c; known: a, b"):
        registry.available(["c"])


def _fake_kind(answers: dict[str, float], peer: set[str]) -> kind.Kind:
    """A bench of two one-number problems; each implementation answers its number times the problem's."""
    impls = tuple(
        Impl(name, f"answers {factor}x", lambda p, t, f=factor: Prepared(lambda: p * f, np.asarray), peer=name in peer)
        for name, factor in answers.items()
    )
    report = Report(
        "Fakes:",
        "Missing",
        "Cells: median ms.",
        (median_column(3),),
        (),
        lambda r: "WRONG",
        lambda r: [],
        by_threads=True,
    )

    def groups(request: kind.Request, impls: tuple[Impl[float], ...], peaks: dict[int, Peak]):
        for value in (1.0, 2.0):
            case = Case(
                f"p{value:g}",
                10**6,
                np.float64(value),
                lambda y, v=value: Check(bool(np.isclose(y, v)), float(abs(y - v)), 1e-9),
                "the value",
            )
            results = [r for t in request.threads for r in run(case, impls, t, peaks[t], request.settings)]
            yield kind.Group(
                results,
                [{"problem": r.problem, "impl": r.impl, "status": r.status} for r in results],
                f"table of {case.name}",
                sections={"seen": case.name},
            )

    def finish(results, impls, peaks):
        return f"summary of {len(results)} results", {"summary": len(results)}

    return kind.Kind(
        "fake-bench",
        Registry(impls),
        report,
        lambda r: {"fake": True},
        groups,
        sections=("seen", "summary"),
        finish=finish,
        show_peaks=True,
    )


def test_session_prints_each_table_rewrites_the_json_and_fails_only_for_directconv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(session, "measure_peaks", lambda threads, **kw: {t: _fake_peak() for t in threads})
    out = tmp_path / "fake.json"
    request = kind.Request(threads=(1,), settings=Settings(rounds=1, min_time=0.001), json=out)
    assert session.run(_fake_kind({"ours": 1.0, "peer": 2.0}, peer={"peer"}), request) == 0  # a wrong peer: 0
    text, err = capsys.readouterr()
    assert text.index("Fakes:") < text.index("FMA peak") < text.index("table of p1") < text.index("table of p2")
    assert text.index("table of p2") < text.index("summary of 4 results") < text.index(f"wrote 4 records to {out}")
    assert err == ""
    data = json.loads(out.read_text())
    assert data["format"] == "fake-bench" and data["settings"]["fake"] is True and data["settings"]["threads"] == [1]
    assert (data["seen"], data["summary"]) == ("p2", 4) and "duration_seconds" in data["metadata"]
    assert [(r["problem"], r["impl"], r["status"]) for r in data["records"]] == [
        ("p1", "ours", OK),
        ("p1", "peer", WRONG),
        ("p2", "ours", OK),
        ("p2", "peer", WRONG),
    ]
    assert session.run(_fake_kind({"ours": 3.0}, peer=set()), request) == 1  # directconv wrong: 1
    assert "directconv bench: ours on p1 at 1 thread(s): wrong" in capsys.readouterr().err


def test_session_refuses_bad_requests_before_measuring(tmp_path: Path) -> None:
    fake = _fake_kind({"ours": 1.0}, peer=set())
    with pytest.raises(ValueError, match="--threads needs at least one thread count"):
        session.run(fake, kind.Request(threads=()))
    with pytest.raises(ValueError, match="directory .*nowhere does not exist"):
        session.run(fake, kind.Request(json=tmp_path / "nowhere" / "x.json"))


def test_write_json_is_atomic_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    write_json(target, {"a": 1})
    write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


# --- the FMA peak microbenchmark --------------------------------------------------------------------------------


@pytest.mark.compiler
@pytest.mark.parametrize("isa", ["host", "scalar"])
def test_peak_is_positive_and_plausible(isa: str) -> None:
    from directconv.core.isa import host_isa

    name = host_isa() if isa == "host" else isa
    lanes = get_isa(name).lanes
    gflops = peak_once(1, 0.02, isa=name)
    # At most 4 FMA pipes at 6 GHz: anything above is a measurement bug, not a fast machine.
    assert 0.05 < gflops < 4 * 2 * lanes * 6.0


# --- the command ------------------------------------------------------------------------------------------------


def test_unknown_layer_is_exit_2_naming_known_layers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--layer", "vgg16:conv9", "--quick"]) == 2
    err = capsys.readouterr().err
    assert "unknown layer 'vgg16:conv9'" in err and "vgg16:conv3_2" in err


def test_unknown_network_and_implementation_are_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--network", "lenet"]) == 2
    assert "alexnet" in capsys.readouterr().err
    assert main(["bench", "--layer", "googlenet:3a_5x5", "--impl", "nope"]) == 2
    assert "directconv-blocked" in capsys.readouterr().err


REQUIRED_KEYS = {
    "layer", "impl", "threads", "gflops", "percent_of_peak", "median_ms", "p10_ms", "p90_ms", "spread",
    "extra_memory_bytes", "correct", "max_rel_error", "config", "peak_gflops",
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.compiler
def test_bench_command_writes_checked_records(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "directconv", "bench", "--layer", "googlenet:3a_5x5", "--threads", "1", "--quick",
           "--json", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    assert "googlenet:3a_5x5" in proc.stdout and "Summary, 1 thread" in proc.stdout
    data = json.loads(out.read_text())
    assert data["format"] == "directconv-bench"
    assert {"date", "cpu", "isa", "compiler", "versions"} <= set(data["metadata"])
    records = {r["impl"]: r for r in data["records"]}
    for impl in ("directconv-blocked", "directconv-nchw", "numpy-im2col"):
        record = records[impl]
        assert set(record) >= REQUIRED_KEYS, REQUIRED_KEYS - set(record)
        assert record["correct"] is True and record["layer"] == "googlenet:3a_5x5" and record["threads"] == 1
        assert record["gflops"] > 0 and record["percent_of_peak"] > 0
    assert records["directconv-blocked"]["config"]["threads"] == 1
    assert records["numpy-im2col"]["extra_memory_bytes"] > 0


# --- the model's estimate beside the measurement ---------------------------------------------------------------


def _bench_layer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: ConfigSource, impls: tuple[str, ...]
) -> dict[str, Any]:
    """One small suite layer at one thread, one round, against a fake peak: the JSON document it writes."""
    monkeypatch.setattr(session, "measure_peaks", lambda threads, **kw: {t: _fake_peak() for t in threads})
    out = tmp_path / f"{source}.json"
    request = kind.Request(
        layers=("googlenet:3a_5x5",),
        threads=(1,),
        impls=impls,
        settings=Settings(rounds=1, min_time=0.001, warmup_calls=0),
        json=out,
        source=source,
    )
    assert session.run(per_layer.KIND, request) == 0
    return json.loads(out.read_text())


@pytest.mark.compiler
def test_directconv_records_carry_the_models_estimate_of_their_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from directconv.core.config import KernelConfig
    from directconv.machines.host import host
    from directconv.model import estimate_config

    data = _bench_layer(tmp_path, monkeypatch, "store", ("directconv-blocked", "directconv-nchw", "numpy-im2col"))
    assert "Model error, 1 thread: directconv-blocked" in capsys.readouterr().out
    assert data["settings"]["source"] == "store"
    shape = get_layer("googlenet:3a_5x5").shape
    records = {r["impl"]: r for r in data["records"]}
    for name in ("directconv-blocked", "directconv-nchw"):
        r = records[name]
        # One round: its in-round peak is the one both percentages are read against, not the fake one before.
        (peak,) = r["peak_gflops_rounds"]
        assert r["peak_gflops"] == peak != data["peaks"]["1"]["gflops"]
        expected = estimate_config(shape, host().machine, KernelConfig.from_dict(r["config"]))
        assert r["predicted_gflops"] == pytest.approx(expected)
        assert r["predicted_percent_of_peak"] == pytest.approx(100 * expected / peak)
        assert r["percent_of_peak"] == pytest.approx(100 * r["gflops"] / peak)
        assert r["config_source"] in ("tuned", "nearest", "model")
    peer = records["numpy-im2col"]
    assert peer["predicted_gflops"] is None and peer["predicted_percent_of_peak"] is None
    assert peer["config_source"] is None
    rows = data["summary"]["1"]["model_error"]["rows"]
    assert [row["layer"] for row in rows] == ["googlenet:3a_5x5"]


@pytest.mark.compiler
def test_source_model_measures_the_plan_of_predict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from directconv.machines.host import host
    from directconv.model import predict

    data = _bench_layer(tmp_path, monkeypatch, "model", ("directconv-blocked",))
    assert data["settings"]["source"] == "model"
    (r,) = data["records"]
    plan = predict(get_layer("googlenet:3a_5x5").shape, host().machine, 1)
    assert r["config"] == plan.config.to_dict() and r["config_source"] == "model"
    assert r["predicted_gflops"] == pytest.approx(plan.predicted_gflops)


def test_summary_prints_the_models_error_per_layer() -> None:
    peak = _fake_peak()
    flops = SMALL_SHAPES[0].flops()

    def result(layer: str, impl: str, gflops: float, predicted: float | None) -> Result:
        timing = harness.Timing((flops / (gflops * 1e9),), 1)
        return Result(layer, impl, 1, OK, flops, peak, timing=timing, config_source="tuned", predicted_gflops=predicted)

    results = [
        result("test:l0", "directconv-blocked", 50.0, 60.0),
        result("test:l1", "directconv-blocked", 80.0, 60.0),
        result("test:l2", "directconv-blocked", 40.0, 50.0),
        result("test:l0", "numpy-im2col", 40.0, None),
    ]
    data = summary.summary(results, per_layer.REGISTRY.select(["directconv-blocked", "numpy-im2col"]), {1: peak})
    error = data["1"]["model_error"]
    assert [row["error"] for row in error["rows"]] == pytest.approx([0.2, -0.25, 0.25])
    assert error["median_abs_error"] == pytest.approx(0.25)
    text = summary.summary_text(data)
    assert text.index("Summary, 1 thread") < text.index("Model error, 1 thread: directconv-blocked")
    assert "test:l1" in text and "-25.0%" in text and "median |error| over 3 layers: 25.0%" in text


def test_source_option_reaches_the_request() -> None:
    import argparse

    from directconv.cli import bench as cli_bench

    parser = argparse.ArgumentParser()
    cli_bench.add_arguments(parser)
    assert cli_bench.request(parser.parse_args([])).source == "store"
    assert cli_bench.request(parser.parse_args(["--source", "model"])).source == "model"
    with pytest.raises(SystemExit):
        parser.parse_args(["--source", "guess"])


def test_the_recorded_environment_names_libraries_not_where_they_are_installed() -> None:
    """Results are shared and committed: the thread pools' libraries are recorded by file name, no directory."""
    import numpy  # noqa: F401  (loads the BLAS threadpoolctl reports)

    from directconv.bench.environment import blas_info

    pools = blas_info()
    assert pools and all("filepath" not in pool for pool in pools)
    assert all(pool["library"] and os.sep not in pool["library"] for pool in pools)


def test_a_groups_header_names_the_peak_of_its_rounds_and_the_one_before_where_they_differ() -> None:
    before = Peak("avx2", 2, 117.4, (117.4,), 12)  # measured before the rounds, in a phase of the host's
    timing = harness.Timing((0.01, 0.01, 0.01), 1)

    def result(rounds: tuple[float, ...]) -> Result:
        return Result("m", "directconv", 2, OK, 10**9, before, timing=timing, peak_rounds=rounds)

    assert peak_text(before, [result((217.0, 229.0, 224.0))]) == (
        "FMA peak 224.0 GFLOP/s (median of the rounds; 117.4 measured before them)"
    )
    assert peak_text(before, [result((120.0, 118.0, 119.0))]) == "FMA peak 119.0 GFLOP/s (median of the rounds)"
    assert peak_text(before, [result(())]) == "FMA peak 117.4 GFLOP/s"
