"""The tuner: failures are trials, interrupted runs resume, concurrent tuners share a study without duplicates."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import optuna
import pytest

from directconv.core.isa import ISAS, host_isa
from directconv.core.shape import ConvShape
from directconv.machines.machine import Cache, Machine
from directconv.model import search_space
from directconv.tuner.params import config_key
from directconv.tuner.tune import tune

pytestmark = pytest.mark.compiler

ISA = ISAS[host_isa()]
MACHINE = Machine(
    id="test-host", name="test", vendor="test", isa=ISA.name, n_vec=ISA.lanes, n_reg=ISA.registers, n_fma=2,
    l_fma=4, freq_ghz=3.0, cores=2, threads_per_core=1,
    caches=(Cache(1, 32, 8, 64, 1), Cache(2, 512, 8, 64, 1)), compiler_flags=(), sources={},
)
SHAPE = ConvShape.from_args(8, 2 * ISA.lanes, 10, 12, 3, 3, 1, 1)
# Twice the input channels: a pruned space (capped at 1/20 of the unpruned one) with six compiled variants.
FAULT_SHAPE = ConvShape.from_args(16, 2 * ISA.lanes, 10, 12, 3, 3, 1, 1)


def measured_keys(url: str) -> list[str]:
    keys = []
    for summary in optuna.get_all_study_summaries(url):
        study = optuna.load_study(study_name=summary.study_name, storage=url)
        for t in study.get_trials(deepcopy=False):
            if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL) and "config_key" in t.user_attrs and not t.user_attrs.get("duplicate_of"):
                # Measured and told. A trial whose process died between recording its measurement and telling
                # Optuna is failed by the next worker and its configuration handed back: not counted here.
                if t.user_attrs.get("status") and t.user_attrs.get("failure") != "process died while measuring":
                    keys.append(t.user_attrs["config_key"])
    return keys


def test_crash_hang_compile_error_and_wrong_answer_are_failed_trials(tmp_path, monkeypatch):
    monkeypatch.setenv("DIRECTCONV_CACHE_DIR", str(tmp_path / "cache"))
    configs = search_space(FAULT_SHAPE, MACHINE).configs
    variants = []
    for c in configs:
        if c.compile_key() not in [v.compile_key() for v in variants]:
            variants.append(c)
    assert len(variants) >= 5, "the test needs five distinct compiled variants"
    faulty = {v.compile_key(): fault for v, fault in zip(variants[1:5], ["segfault", "hang", "syntax", "wrong"])}

    def inject(config, source: str) -> str:
        fault = faulty.get(config.compile_key())
        entry = "    if (batch < 1 ||"
        if fault == "segfault":
            return source.replace(entry, "    *(volatile int *)0 = 1;\n" + entry, 1)
        if fault == "hang":
            return source.replace(entry, "    for (volatile int spin = 1; spin;) {}\n" + entry, 1)
        if fault == "syntax":
            return source + "\nthis is not C;\n"
        if fault == "wrong":
            return source.replace("VSTORE(out_r + PLANE * 0 + (ptrdiff_t)(k0 + 0) * CB, a0_0);",
                                  "VSTORE(out_r + PLANE * 0 + (ptrdiff_t)(k0 + 0) * CB, a0_0 + 1.0f);")
        return source

    url = f"sqlite:///{tmp_path / 'study.db'}"
    result = tune(FAULT_SHAPE, machine=MACHINE, fingerprint_id="test", trials=len(configs), storage=url, min_time=0.01,
                  candidate_timeout=5, progress=False, source_hook=inject)
    statuses = {status for _, status, _ in result.failures}
    assert {"crashed", "timeout", "compile_error", "wrong"} <= statuses
    assert result.best is not None and result.best.config.compile_key() not in faulty
    assert result.measured_now == len(configs)  # the study went on to the end
    details = {status: detail for _, status, detail in result.failures}
    assert "SIGSEGV" in details["crashed"] and "this is not C" in details["compile_error"]
    assert "tolerance" in details["wrong"]


RUN = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from test_tuner import MACHINE, SHAPE
    from directconv.tuner.tune import tune
    r = tune(SHAPE, machine=MACHINE, fingerprint_id="test", trials=int(sys.argv[2]), storage=sys.argv[1],
             min_time=float(sys.argv[3]), progress=False, seed=int(sys.argv[4]))
    print("measured", r.measured_now)
    """
).format(tests=os.path.dirname(__file__))


def _spawn(url: str, trials: int, min_time: float, seed: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", RUN, url, str(trials), str(min_time), str(seed)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _complete(url: str) -> int:
    try:
        return len([k for k in measured_keys(url)])
    except Exception:
        return 0


def test_kill_9_then_resume_loses_nothing_and_measures_nothing_twice(tmp_path, monkeypatch):
    monkeypatch.setenv("DIRECTCONV_CACHE_DIR", str(tmp_path / "cache"))
    url = f"sqlite:///{tmp_path / 'study.db'}"
    proc = _spawn(url, 30, 0.3, 1)
    deadline = time.monotonic() + 240
    while _complete(url) < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = measured_keys(url)
    assert len(before) >= 3
    resumed = _spawn(url, 4, 0.01, 2)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    after = measured_keys(url)
    assert set(before) <= set(after), "completed trials survive the kill"
    assert len(after) == len(set(after)), "no configuration measured twice"
    assert len(after) == len(before) + int(out.split()[-1])
    study = optuna.load_study(study_name=optuna.get_all_study_summaries(url)[0].study_name, storage=url)
    running = study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    assert running == [], "the killed process's trial is marked failed, not left running"
    failed_dead = [t for t in study.get_trials() if t.user_attrs.get("failure") == "process died while measuring"]
    assert len(failed_dead) <= 4  # at most the killed batch


def test_two_processes_share_one_study_without_duplicates(tmp_path, monkeypatch):
    monkeypatch.setenv("DIRECTCONV_CACHE_DIR", str(tmp_path / "cache"))
    url = f"sqlite:///{tmp_path / 'study.db'}"
    procs = [_spawn(url, 8, 0.02, seed) for seed in (1, 2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    total = sum(int(out.split()[-1]) for out, _ in outs)
    keys = measured_keys(url)
    assert len(keys) == len(set(keys)) == total
    assert total == min(16, len(search_space(SHAPE, MACHINE)))


def test_tune_show_then_conv2d_uses_the_stored_config(tmp_path):
    """End to end through the command line: tune a small layer, list it, and see conv2d pick it."""
    env = {**os.environ, "DIRECTCONV_STORE_DIR": str(tmp_path / "store"), "DIRECTCONV_DATA_DIR": str(tmp_path / "data"),
           "DIRECTCONV_CACHE_DIR": str(tmp_path / "cache")}
    cli = [sys.executable, "-m", "directconv"]
    shape_args = ["--ci", "8", "--co", "16", "--h", "9", "--w", "11", "--kh", "3", "--kw", "3", "--pad", "1"]
    done = subprocess.run(cli + ["tune", *shape_args, "--trials", "4", "--min-time", "0.02"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "gain" in done.stdout and "%peak" in done.stdout
    shown = subprocess.run(cli + ["show", "--json"], env=env, capture_output=True, text=True, timeout=120)
    # The bundled store may hold this host's tuned suite layers too; the layer tuned here lands in the user store.
    entries = [e for e in __import__("json").loads(shown.stdout)["entries"] if not e["bundled"]]
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
    result = __import__("json").loads(used.stdout)
    assert result["source"] == "tuned" and result["config"] == entries[0]["config"]
    assert result["center"] == 72.0


def _replayed(space: str, tmp_path, seed: int = 0) -> list[optuna.trial.FrozenTrial]:
    from directconv.tuner.measure import Measurement

    def simulate(config):
        gflops = float(config.cob * config.wob + config.unroll)  # any deterministic table will do
        return Measurement(config, "ok", seconds=SHAPE.flops() / gflops / 1e9, gflops=gflops, samples=1)

    url = f"sqlite:///{tmp_path / f'{space}.db'}"
    result = tune(SHAPE, machine=MACHINE, fingerprint_id="replay", trials=12, storage=url, space=space, seed=seed,
                  progress=False, simulate=simulate)
    assert result.measured_now == min(12, result.space_size) and result.failed_now == 0
    study = optuna.load_study(study_name=result.study_name, storage=url)
    return [t for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
            if not t.user_attrs.get("duplicate_of")]


def test_simulation_mode_replays_a_table_without_compiling(tmp_path, monkeypatch):
    """simulate= runs the real search (seeding, sampler, dedup) against a table: nothing is compiled or timed."""
    monkeypatch.setenv("DIRECTCONV_CACHE_DIR", str(tmp_path / "cache"))
    from directconv.model import predict

    trials = _replayed("pruned", tmp_path)
    assert trials[0].user_attrs["config_key"] == config_key(predict(SHAPE, MACHINE).config)
    assert all("fixed_params" in t.system_attrs for t in trials[:8]), "the model's top configurations go first"
    assert len(trials) == len(search_space(SHAPE, MACHINE))
    assert all(t.value == t.params["vectors"] * ISA.lanes * t.params["wob"] + t.params["unroll"] for t in trials)
    assert not (tmp_path / "cache").exists(), "simulation must not compile"
    keys = [t.user_attrs["config_key"] for t in trials]
    assert len(keys) == len(set(keys))


def test_the_unpruned_baseline_is_not_seeded_by_the_model(tmp_path):
    trials = _replayed("unpruned", tmp_path)
    assert not any("fixed_params" in t.system_attrs for t in trials), "the model-free baseline enqueues nothing"


def test_finalists_are_timed_again_side_by_side_before_one_is_called_best(tmp_path, monkeypatch):
    """After the study, its fastest configurations and the model's are re-timed in interleaved rounds; best and
    predicted come from those rounds, so their ratio is measured under the same machine state."""
    from directconv.model import predict
    from directconv.tuner import tune as tune_module

    monkeypatch.setenv("DIRECTCONV_CACHE_DIR", str(tmp_path / "cache"))
    calls: list[str] = []
    real_measure = tune_module.Measurer.measure

    def recording(self, config, shape, library):
        calls.append(config_key(config))
        return real_measure(self, config, shape, library)

    monkeypatch.setattr(tune_module.Measurer, "measure", recording)
    url = f"sqlite:///{tmp_path / 'confirm.db'}"
    result = tune(SHAPE, machine=MACHINE, fingerprint_id="confirm", trials=6, storage=url, progress=False,
                  min_time=0.005, confirm_top=3, confirm_rounds=3)
    study = optuna.load_study(study_name=result.study_name, storage=url)
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    top3 = {t.user_attrs["config_key"] for t in sorted(complete, key=lambda t: t.value, reverse=True)[:3]}
    plan_key = config_key(predict(SHAPE, MACHINE).config)
    finalists = {config_key(m.config) for m in result.confirmed}
    assert finalists == top3 | {plan_key}
    assert all(m.samples == 3 and "interleaved" in m.detail for m in result.confirmed)
    rounds = calls[-3 * len(finalists):]
    assert calls[:-3 * len(finalists)] and len(calls) == result.measured_now + 3 * len(finalists)
    for r in range(3):  # every round times every finalist once
        assert set(rounds[r * len(finalists):(r + 1) * len(finalists)]) == finalists
    assert result.best.gflops == max(m.gflops for m in result.confirmed)
    assert config_key(result.predicted.config) == plan_key and result.predicted in result.confirmed
