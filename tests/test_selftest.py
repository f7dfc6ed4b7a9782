"""`directconv selftest`: every ISA's kernels checked against the reference, natively, under qemu or as host code."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import directconv as dc
from directconv.cli.main import main
from directconv.core.isa import host_isas
from directconv.core.shape import ConvShape
from directconv.kernels import cross, layout, selftest
from directconv.machines.host import runs_code_for
from directconv.machines.loader import load_machine

# One machine of each ISA, with a few cases each (the command runs the whole sweep).
ONE_PER_ISA = ["sapphire-rapids", "zen3", "piledriver", "cortex-a57", "generic"]


def _runnable(machine_id: str) -> None:
    machine = load_machine(machine_id)
    arch = cross.target_for(machine).arch
    if arch not in (None, cross.host_arch()) and (
        shutil.which(f"qemu-{arch}") is None or shutil.which(f"{cross.TRIPLES[arch]}-gcc") is None
    ):
        pytest.skip(f"needs qemu-user and the {arch} cross compiler: apt-get install qemu-user gcc-{arch}-linux-gnu")


def test_how_follows_what_the_host_executes() -> None:
    for machine_id in ("sapphire-rapids", "zen3", "piledriver", "generic"):
        machine = load_machine(machine_id)
        how, detail = selftest.how_to_run(machine)
        isa = cross.target_for(machine).isa
        native = isa in host_isas() and runs_code_for(machine.compiler_flags)[0]
        assert how == ("native" if native else "host-isa"), (machine_id, how, detail)
        if how == "host-isa":
            assert "instead of" in detail


def test_the_sweep_covers_tails_strides_filters_threads_and_batch() -> None:
    sweep = selftest.cases(load_machine("sapphire-rapids"))
    assert len(sweep) >= 20
    shapes = {c.shape for c in sweep}
    assert {(s.kh, s.kw) for s in shapes} >= {(1, 1), (3, 3), (5, 5), (7, 7), (11, 11)}
    assert any(s.ci % 16 and s.co % 16 for s in shapes) and any(s.sh == 2 for s in shapes)
    assert any(c.config.threads == 2 and c.batch > 1 for c in sweep) and any(c.relu for c in sweep)


def test_a_failing_case_is_a_result_not_an_exception(monkeypatch) -> None:
    machine = load_machine("generic")
    case = selftest.cases(machine)[0]

    def crash(*args, **kwargs):
        raise RuntimeError("driver killed by signal 11")

    monkeypatch.setattr(cross, "run_driver", crash)
    result = selftest.run_case(case, machine, "native")
    assert not result.passed and "signal 11" in (result.error or "")


def test_the_nchw_entrys_output_is_checked_too() -> None:
    shape = ConvShape.from_args(8, 8, 6, 20, 3, 3, 1, 1, groups=8)
    operands = selftest.random_operands(shape, 1, 0)
    x, w, b = operands
    reference = dc.conv2d_reference(x, w, b, padding=1, groups=8)
    blocked = layout.nchw_to_blocked(reference, 4)
    assert selftest.output_problem(blocked, shape, operands, nchw=reference) == (None, pytest.approx(0, abs=1e-6))
    unwritten = reference.copy()
    unwritten[0, 3, 2, 7] = np.nan
    assert selftest.output_problem(blocked, shape, operands, nchw=unwritten)[0] == (
        "NCHW entry: outputs left unwritten (the driver starts them as NaN)"
    )
    wrong = reference.copy()
    wrong[0, 5] += 1.0
    problem, err = selftest.output_problem(blocked, shape, operands, nchw=wrong)
    assert problem is not None and problem.startswith("NCHW entry: relative error") and err is not None and err > 1e-3


@pytest.mark.compiler
@pytest.mark.slow
@pytest.mark.parametrize("machine_id", ONE_PER_ISA)
def test_selftest_passes_for_one_machine_of_each_isa(machine_id: str) -> None:
    _runnable(machine_id)
    machine = load_machine(machine_id)
    sweep = selftest.cases(machine)
    # Three shapes' worth of cases keep the suite short; the command runs them all.
    # The depthwise shape runs its NCHW entry as well (the planes on 4 lanes, the one-pass entry on wider ones).
    chosen = [
        c for c in sweep if c.name.split("/")[0] in ("3x3-tails", "5x3-strided-asym", "1x1-tails", "depthwise-3x3")
    ]
    report = selftest.selftest(machine, chosen)
    assert report.failed == 0, [c for c in report.cases if not c.passed]
    assert report.passed == len(chosen) >= 6


@pytest.mark.compiler
@pytest.mark.slow
def test_selftest_command_runs_the_whole_sweep(capsys) -> None:
    assert main(["selftest", "--machine", "generic", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {"machine", "how", "passed", "failed", "cases"} <= set(doc)
    assert doc["machine"] == "generic" and doc["failed"] == 0 and doc["passed"] >= 20
    assert all(case["passed"] and case["max_rel_error"] <= case["tolerance"] for case in doc["cases"])
