"""The tuner: failures are trials, interrupted runs resume, concurrent tuners share a study without duplicates.

The search logic (seeding, deduplication, claims, failure recording, resume, confirmation) runs against a
SimulatedBackend: a deterministic table with failures as recorded outcomes. A few end-to-end tests (marked slow)
compile real kernels, time them in the worker subprocess and inject real faults.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Mapping

import optuna
import pytest

from directconv.core.config import KernelConfig
from directconv.core.isa import ISAS, host_isa
from directconv.core.shape import ConvShape
from directconv.machines.machine import Cache, Machine
from directconv.model import predict, search_space
from directconv.tuner.backend import RealBackend, SimulatedBackend, simulated
from directconv.tuner.harness import schedule
from directconv.tuner.measure import Measurement
from directconv.tuner.params import config_key
from directconv.tuner.trials import measured
from directconv.tuner.tune import MAX_DUPLICATES_IN_A_ROW, TuneOptions, tune

ISA = ISAS[host_isa()]
MACHINE = Machine(
    id="test-host",
    name="test",
    vendor="test",
    isa=ISA.name,
    n_vec=ISA.lanes,
    n_reg=ISA.registers,
    n_fma=2,
    l_fma=4,
    freq_ghz=3.0,
    cores=2,
    threads_per_core=1,
    caches=(Cache(1, 32, 8, 64, 1), Cache(2, 512, 8, 64, 1)),
    compiler_flags=(),
    sources={},
)
SHAPE = ConvShape.from_args(8, 2 * ISA.lanes, 10, 12, 3, 3, 1, 1)
# Two input channel blocks: a pruned space (capped at 1/20 of the unpruned one) with at least five compiled variants
# on 8 and 16 lanes alike.
FAULT_SHAPE = ConvShape.from_args(2 * ISA.lanes, 2 * ISA.lanes, 10, 12, 3, 3, 1, 1)
# A pruned space of a few dozen configurations: room for the sampler, its duplicates and several workers.
SEARCH = ConvShape.from_args(32, 64, 14, 14, 3, 3, 1, 1)

# What each failure looks like when a real candidate has it (see the slow test with real faults).
FAULTS: dict[str, Measurement] = {
    "crashed": Measurement(KernelConfig(ISA.name, ISA.lanes, 1), "crashed", detail="worker killed by SIGSEGV"),
    "timeout": Measurement(KernelConfig(ISA.name, ISA.lanes, 1), "timeout", detail="hung: no answer within 5 s"),
    "compile_error": Measurement(
        KernelConfig(ISA.name, ISA.lanes, 1), "compile_error", detail="kernel.c:1:1: error: unknown type name 'this'"
    ),
    "wrong": Measurement(
        KernelConfig(ISA.name, ISA.lanes, 1),
        "wrong",
        max_rel_error=1.0,
        detail="max relative error 1 > tolerance 1e-05",
    ),
}


def gflops_of(config: KernelConfig) -> float:
    return float(config.cob * config.wob + config.unroll)  # any deterministic table will do


def table(shape: ConvShape, faults: Mapping[tuple, str] | None = None):
    """A SimulatedBackend outcome: gflops_of(config), or the recorded failure of its compiled variant."""
    faults = faults or {}

    def outcome(config: KernelConfig) -> Measurement:
        fault = faults.get(config.compile_key())
        if fault is not None:
            return Measurement(config, fault, max_rel_error=FAULTS[fault].max_rel_error, detail=FAULTS[fault].detail)
        return simulated(config, shape, gflops_of(config))

    return outcome


def faulty_backend(shape: ConvShape, faults: Mapping[tuple, str]) -> SimulatedBackend:
    """Every failure a candidate can have, as recorded data: compile errors by variant, the rest as outcomes."""
    builds = {k: FAULTS[f].detail for k, f in faults.items() if f == "compile_error"}
    return SimulatedBackend(
        table(shape, {k: f for k, f in faults.items() if f != "compile_error"}), compile_errors=builds
    )


def options(**changes) -> TuneOptions:
    return TuneOptions(**{"progress": False, **changes})


def trials_of(url: str) -> list[optuna.trial.FrozenTrial]:
    (summary,) = optuna.get_all_study_summaries(url)
    study = optuna.load_study(study_name=summary.study_name, storage=url)
    return sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)


def measured_keys(url: str) -> list[str]:
    """Keys of the trials measured and told. A trial whose process died between recording its measurement and
    telling Optuna is failed by the next worker and its configuration handed back: not counted here."""
    return [
        t.user_attrs["config_key"]
        for t in trials_of(url)
        if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)
        and "config_key" in t.user_attrs
        and not t.user_attrs.get("duplicate_of")
        and t.user_attrs.get("status")
        and t.user_attrs.get("failure") != "process died while measuring"
    ]


def variants(shape: ConvShape) -> list[KernelConfig]:
    """The first configuration of each compiled variant of the pruned space, in the model's order."""
    out: dict[tuple, KernelConfig] = {}
    for c in search_space(shape, MACHINE).configs:
        out.setdefault(c.compile_key(), c)
    return list(out.values())


# ---------------------------------------------------------------------------------------------- simulated search


def test_failures_are_trials_and_the_study_goes_on(url):
    configs = search_space(FAULT_SHAPE, MACHINE).configs
    faulty = {v.compile_key(): fault for v, fault in zip(variants(FAULT_SHAPE)[1:5], FAULTS, strict=True)}
    backend = faulty_backend(FAULT_SHAPE, faulty)
    result = tune(
        FAULT_SHAPE,
        machine=MACHINE,
        fingerprint_id="faults",
        storage=url,
        backend=backend,
        options=options(trials=len(configs), confirm_rounds=0),
    )
    assert result.measured_now == len(configs), "the study went on to the end"
    assert {status for _, status, _ in result.failures} == set(FAULTS)
    assert result.failed_now == sum(c.compile_key() in faulty for c in configs) == len(result.failures)
    assert result.best is not None and result.best.config.compile_key() not in faulty
    assert all(c.compile_key() != k for c in backend.measured for k, f in faulty.items() if f == "compile_error"), (
        "a candidate that failed to compile is never measured"
    )
    details = {status: detail for _, status, detail in result.failures}
    assert all(details[status] == FAULTS[status].detail for status in FAULTS)
    failed = [t for t in trials_of(url) if t.state == optuna.trial.TrialState.FAIL]
    assert sorted(t.user_attrs["status"] for t in failed) == sorted(status for _, status, _ in result.failures)
    assert all(t.user_attrs["max_rel_error"] == 1.0 for t in failed if t.user_attrs["status"] == "wrong")


def test_the_model_goes_first_and_nothing_is_compiled(url, tmp_path, monkeypatch):
    """The simulated search is the real one (seeding, sampler, dedup) against a table: nothing compiled or timed."""
    monkeypatch.setenv("DIRECTCONV_CACHE_DIR", str(tmp_path / "cache"))
    result = tune(
        SHAPE,
        machine=MACHINE,
        fingerprint_id="replay",
        storage=url,
        backend=SimulatedBackend(table(SHAPE)),
        options=options(trials=12),
    )
    assert result.measured_now == result.space_size == len(search_space(SHAPE, MACHINE)) and result.failed_now == 0
    trials = [t for t in trials_of(url) if not t.user_attrs.get("duplicate_of")]
    assert trials[0].user_attrs["config_key"] == config_key(predict(SHAPE, MACHINE).config)
    assert all("fixed_params" in t.system_attrs for t in trials), "the model's configurations go first"
    assert all(t.value == t.params["vectors"] * ISA.lanes * t.params["wob"] + t.params["unroll"] for t in trials)
    assert not (tmp_path / "cache").exists(), "simulation must not compile"
    keys = [t.user_attrs["config_key"] for t in trials]
    assert len(keys) == len(set(keys))


def test_the_unpruned_baseline_is_not_seeded_by_the_model(url):
    result = tune(
        SHAPE,
        machine=MACHINE,
        fingerprint_id="replay",
        storage=url,
        backend=SimulatedBackend(table(SHAPE)),
        options=options(trials=3, space="unpruned", seed=0, confirm_rounds=0),
    )
    assert result.measured_now == 3 and result.space_size > 3
    trials = [t for t in trials_of(url) if not t.user_attrs.get("duplicate_of")]
    assert not any("fixed_params" in t.system_attrs for t in trials), "the model-free baseline enqueues nothing"


def test_a_rerun_measures_only_new_configurations(url):
    """A second run whose sampler proposes the very points of the first (same seed) measures none of them again:
    each is told PRUNED as a duplicate, and after MAX_DUPLICATES_IN_A_ROW the model's next free configuration is
    handed to the sampler instead."""
    first, second = SimulatedBackend(table(SHAPE)), SimulatedBackend(table(SHAPE))
    run = {"machine": MACHINE, "fingerprint_id": "rerun", "storage": url}
    same = {"sampler": "random", "seed": 1, "space": "unpruned", "confirm_rounds": 0}
    tune(SHAPE, **run, backend=first, options=options(trials=MAX_DUPLICATES_IN_A_ROW, **same))
    again = tune(SHAPE, **run, backend=second, options=options(trials=2, **same))
    total = MAX_DUPLICATES_IN_A_ROW + 2
    assert again.measured_now == 2 and again.trials_total == total
    assert len({config_key(c) for c in first.measured + second.measured}) == total, "no configuration measured twice"
    keys = measured_keys(url)
    assert len(keys) == len(set(keys)) == total
    duplicates = [t for t in trials_of(url) if t.user_attrs.get("duplicate_of")]
    assert len(duplicates) >= MAX_DUPLICATES_IN_A_ROW
    assert all(t.state == optuna.trial.TrialState.PRUNED and t.user_attrs["duplicate_of"] in keys for t in duplicates)
    handed = [t for t in trials_of(url) if "fixed_params" in t.system_attrs]
    assert handed and {t.user_attrs["config_key"] for t in handed} <= {config_key(c) for c in second.measured}


def test_finalists_are_timed_again_side_by_side_before_one_is_called_best(url):
    """After the study, its fastest configurations and the model's are re-timed in interleaved rounds (the shared
    loop: order rotating by harness.schedule); best and predicted come from those rounds. Here the host "drifts":
    the model's configuration met a busy moment in the study and runs fastest of all in the rounds."""
    plan = predict(SEARCH, MACHINE).config
    seen: Counter[str] = Counter()

    def drifting(config: KernelConfig) -> Measurement:
        seen[config_key(config)] += 1
        if config == plan:
            return simulated(config, SEARCH, 1000.0 if seen[config_key(config)] > 1 else 1.0)
        return simulated(config, SEARCH, gflops_of(config))

    backend = SimulatedBackend(drifting)
    result = tune(
        SEARCH,
        machine=MACHINE,
        fingerprint_id="confirm",
        storage=url,
        backend=backend,
        options=options(trials=6, confirm_top=3, confirm_rounds=3),
    )
    complete = [t for t in trials_of(url) if t.state == optuna.trial.TrialState.COMPLETE]
    top3 = [t.user_attrs["config_key"] for t in sorted(complete, key=lambda t: t.value, reverse=True)[:3]]
    finalists = [m.config for m in result.confirmed]
    assert [config_key(c) for c in finalists] == top3 + [config_key(plan)]
    assert all(m.samples == 3 and "interleaved" in m.detail for m in result.confirmed)
    assert backend.measured[result.measured_now :] == [c for order in schedule(finalists, 3) for c in order]
    assert result.best.config == plan and result.best.gflops == pytest.approx(1000.0)
    assert result.predicted == result.best


def test_a_finalist_that_fails_now_drops_out(url):
    configs = search_space(FAULT_SHAPE, MACHINE).configs
    leader = max(configs, key=gflops_of)
    seen: Counter[str] = Counter()

    def crashing_leader(config: KernelConfig) -> Measurement:
        seen[config_key(config)] += 1
        if config == leader and seen[config_key(config)] > 1:
            return Measurement(config, "crashed", detail="worker killed by SIGSEGV")
        return simulated(config, FAULT_SHAPE, gflops_of(config))

    result = tune(
        FAULT_SHAPE,
        machine=MACHINE,
        fingerprint_id="drop",
        storage=url,
        backend=SimulatedBackend(crashing_leader),
        options=options(trials=len(configs), confirm_top=3, confirm_rounds=4),
    )
    assert leader not in [m.config for m in result.confirmed] and len(result.confirmed) >= 2
    assert seen[config_key(leader)] == 2, "dropped after its first failing round, not retried every round"
    assert result.best.config != leader


def test_the_timeout_ends_the_search(url):
    started = time.monotonic()
    result = tune(
        SEARCH,
        machine=MACHINE,
        fingerprint_id="timeout",
        storage=url,
        backend=SimulatedBackend(table(SEARCH), delay=0.1),
        options=options(trials=25, timeout=0.5, confirm_rounds=0),
    )
    assert result.measured_now < 25 and time.monotonic() - started < 10


class Killed(BaseException):
    """Stands for the process being killed in the middle of a measurement."""


def test_an_interrupted_run_resumes_losing_nothing_and_measuring_nothing_twice(url):
    outcome = table(SEARCH)

    def dies_at_the_sixth(config: KernelConfig) -> Measurement:
        if len(backend.measured) == 6:  # in the second batch of four
            raise Killed
        return outcome(config)

    backend = SimulatedBackend(dies_at_the_sixth)
    with pytest.raises(Killed):
        tune(SEARCH, machine=MACHINE, fingerprint_id="resume", storage=url, backend=backend, options=options(trials=20))
    before = measured_keys(url)
    assert len(before) == 5
    # The process is gone: its trials in flight name a pid that no longer runs.
    gone = subprocess.Popen(["true"])
    gone.wait()
    study = optuna.load_study(study_name=optuna.get_all_study_summaries(url)[0].study_name, storage=url)
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    assert running, "the interrupted batch is left running, as after kill -9"
    for t in running:
        study._storage.set_trial_user_attr(t._trial_id, "pid", gone.pid)

    resumed = tune(
        SEARCH,
        machine=MACHINE,
        fingerprint_id="resume",
        storage=url,
        backend=SimulatedBackend(outcome),
        options=options(trials=3, seed=2, confirm_rounds=0),
    )
    after = measured_keys(url)
    assert set(before) <= set(after), "completed trials survive"
    assert len(after) == len(set(after)) == len(before) + resumed.measured_now, "no configuration measured twice"
    trials = trials_of(url)
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING], "no trial left running"
    dead = [t for t in trials if t.user_attrs.get("failure") == "process died while measuring"]
    assert len(dead) == len(running) and all(t.state == optuna.trial.TrialState.FAIL for t in dead)
    assert config_key(backend.measured[5]) not in before
    assert measured(study, dead) == {}, "a configuration whose process died once is given back"


def test_tuners_sharing_a_study_never_measure_a_configuration_twice(url):
    """Two tuners at once on one SQLite study (threads here; processes in the slow test): the claims hold."""
    tune(
        SEARCH,
        machine=MACHINE,
        fingerprint_id="shared",
        storage=url,
        backend=SimulatedBackend(table(SEARCH)),
        options=options(trials=1, confirm_rounds=0),
    )  # the study exists before the race
    results = []

    def worker(seed: int) -> None:
        results.append(
            tune(
                SEARCH,
                machine=MACHINE,
                fingerprint_id="shared",
                storage=url,
                backend=SimulatedBackend(table(SEARCH), delay=0.005),
                options=options(trials=4, seed=seed, batch=2, confirm_rounds=0),
            )
        )

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    keys = measured_keys(url)
    assert len(results) == 2 and len(keys) == len(set(keys)) == 1 + sum(r.measured_now for r in results) == 9


def test_options_are_checked_before_anything_runs():
    with pytest.raises(ValueError, match=r"`trials >= 1` must hold, but got trials=0"):
        TuneOptions(trials=0)
    with pytest.raises(ValueError, match="sampler must be one of tpe, cmaes, grid, random"):
        TuneOptions(sampler="annealing")
    with pytest.raises(ValueError, match="space must be 'pruned' or 'unpruned'"):
        TuneOptions(space="all")
    with pytest.raises(ValueError, match=r"`confirm_rounds >= 0` must hold, but got confirm_rounds=-1"):
        TuneOptions(confirm_rounds=-1)
    with pytest.raises(ValueError, match=r"`timeout > 0` \(or None\) must hold"):
        TuneOptions(timeout=0)


# ---------------------------------------------------------------------------------------------- processes

RUN = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from test_tuner import MACHINE, SEARCH, options, table
    from directconv.tuner.backend import SimulatedBackend
    from directconv.tuner.tune import tune
    url, trials, delay, seed = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    r = tune(SEARCH, machine=MACHINE, fingerprint_id="test", storage=url, backend=SimulatedBackend(table(SEARCH),
             delay=delay), options=options(trials=trials, seed=seed, confirm_rounds=0))
    print("measured", r.measured_now)
    """
).format(tests=os.path.dirname(__file__))


def _spawn(url: str, trials: int, delay: float, seed: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", RUN, url, str(trials), str(delay), str(seed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _measured_so_far(url: str) -> int:
    try:
        return len(measured_keys(url))
    except Exception:  # no study yet, or the database mid-creation
        return 0


@pytest.mark.slow
def test_kill_9_then_resume_loses_nothing_and_measures_nothing_twice(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    proc = _spawn(url, 20, 0.1, 1)
    deadline = time.monotonic() + 60
    while _measured_so_far(url) < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = measured_keys(url)
    assert len(before) >= 3
    resumed = _spawn(url, 4, 0.0, 2)
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    after = measured_keys(url)
    assert set(before) <= set(after), "completed trials survive the kill"
    assert len(after) == len(set(after)), "no configuration measured twice"
    assert len(after) == len(before) + int(out.split()[-1])
    trials = trials_of(url)
    # A trial the process had just asked for, before marking it with its owner, waits out the heartbeat's grace
    # period; it claims no configuration meanwhile.
    left = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    assert len(left) <= 1 and not any("config_key" in t.user_attrs for t in left), (
        "the killed process's trials are marked failed, not left running"
    )
    failed_dead = [t for t in trials if t.user_attrs.get("failure") == "process died while measuring"]
    assert len(failed_dead) <= TuneOptions().batch  # at most the killed batch


@pytest.mark.slow
def test_two_processes_share_one_study_without_duplicates(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    procs = [_spawn(url, 8, 0.01, seed) for seed in (1, 2)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    total = sum(int(out.split()[-1]) for out, _ in outs)
    keys = measured_keys(url)
    assert len(keys) == len(set(keys)) == total == 16


# ---------------------------------------------------------------------------------------------- the machine


def _inject(faulty: Mapping[tuple, str]):
    """A RealBackend source hook that makes the kernels of `faulty` variants crash, hang, fail to compile or answer
    wrong, for real."""

    def inject(config: KernelConfig, source: str) -> str:
        fault = faulty.get(config.compile_key())
        entry = "    if (batch < 1 ||"
        if fault == "crashed":
            return source.replace(entry, "    *(volatile int *)0 = 1;\n" + entry, 1)
        if fault == "timeout":
            return source.replace(entry, "    for (volatile int spin = 1; spin;) {}\n" + entry, 1)
        if fault == "compile_error":
            return source + "\nthis is not C;\n"
        if fault == "wrong":
            return source.replace(
                "VSTORE(out_r + PLANE * 0 + (ptrdiff_t)(k0 + 0) * CB, a0_0);",
                "VSTORE(out_r + PLANE * 0 + (ptrdiff_t)(k0 + 0) * CB, a0_0 + 1.0f);",
            )
        return source

    return inject


@pytest.mark.slow
@pytest.mark.compiler
def test_real_crash_hang_compile_error_and_wrong_answer_are_failed_trials(tmp_path, monkeypatch):
    monkeypatch.setenv("DIRECTCONV_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DIRECTCONV_DATA_DIR", str(tmp_path / "data"))
    configs = search_space(FAULT_SHAPE, MACHINE).configs
    assert len(variants(FAULT_SHAPE)) >= 5, "the test needs five distinct compiled variants"
    faulty = {v.compile_key(): fault for v, fault in zip(variants(FAULT_SHAPE)[1:5], FAULTS, strict=True)}
    url = f"sqlite:///{tmp_path / 'study.db'}"
    with RealBackend(timeout=5, min_time=0.01, source_hook=_inject(faulty)) as backend:
        result = tune(
            FAULT_SHAPE,
            machine=MACHINE,
            fingerprint_id="test",
            storage=url,
            backend=backend,
            options=options(trials=len(configs), confirm_rounds=2),
        )
    assert {status for _, status, _ in result.failures} == set(FAULTS)
    assert result.best is not None and result.best.config.compile_key() not in faulty
    assert result.measured_now == len(configs)  # the study went on to the end
    details = {status: detail for _, status, detail in result.failures}
    assert "SIGSEGV" in details["crashed"] and "this is not C" in details["compile_error"]
    assert "tolerance" in details["wrong"] and "no answer within 5 s" in details["timeout"]
    assert result.confirmed and all(m.samples == 2 for m in result.confirmed), "confirmed on the worker too"
    assert all(m.config.compile_key() not in faulty for m in result.confirmed)


@pytest.mark.slow
@pytest.mark.compiler
def test_tune_show_then_conv2d_uses_the_stored_config(tmp_path):
    """End to end through the command line: tune a small layer, list it, and see conv2d pick it."""
    env = {
        **os.environ,
        "DIRECTCONV_STORE_DIR": str(tmp_path / "store"),
        "DIRECTCONV_DATA_DIR": str(tmp_path / "data"),
        "DIRECTCONV_CACHE_DIR": str(tmp_path / "cache"),
    }
    cli = [sys.executable, "-m", "directconv"]
    shape_args = ["--ci", "8", "--co", "16", "--h", "9", "--w", "11", "--kh", "3", "--kw", "3", "--pad", "1"]
    done = subprocess.run(
        cli + ["tune", *shape_args, "--trials", "4", "--min-time", "0.02"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "gain" in done.stdout and "%peak" in done.stdout
    assert "median of 5 interleaved rounds" in done.stdout, "the finalists were confirmed"
    shown = subprocess.run(cli + ["show", "--json"], env=env, capture_output=True, text=True, timeout=120)
    # The bundled store may hold this host's tuned suite layers too; the layer tuned here lands in the user store.
    entries = [e for e in json.loads(shown.stdout)["entries"] if not e["bundled"]]
    assert len(entries) == 1 and entries[0]["gflops"] > 0
    check = textwrap.dedent(
        """
        import json, numpy as np, directconv as dc
        shape = dc.ConvShape.from_args(8, 16, 9, 11, 3, 3, 1, 1)
        choice = dc.choose_config(shape, 1)
        x = np.ones((1, 8, 9, 11), np.float32); w = np.ones((16, 8, 3, 3), np.float32)
        y = dc.conv2d(x, w, padding=1, threads=1)
        print(json.dumps({"source": choice.source, "config": choice.config.to_dict(), "center": float(y[0, 0, 4, 5])}))
        """
    )
    used = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True, timeout=120)
    assert used.returncode == 0, used.stderr
    result = json.loads(used.stdout)
    assert result["source"] == "tuned" and result["config"] == entries[0]["config"]
    assert result["center"] == 72.0
