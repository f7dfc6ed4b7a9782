"""Tuning as a fleet: workers sharing one study, the host and claim locks, and `store export`.

Tests marked `postgres` need a PostgreSQL server: set DIRECTCONV_TEST_POSTGRES_URL (.ci/run starts a local one);
each test gets a fresh database on it. The storage conformance tests run on SQLite everywhere and on PostgreSQL too.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import sqlalchemy

from directconv.cli.main import main
from directconv.core.config import KernelConfig
from directconv.core.isa import ISAS, host_isa
from directconv.core.shape import ConvShape
from directconv.kernels.codegen import GENERATOR_VERSION
from directconv.machines.probe.fingerprint import fingerprint_id
from directconv.tuner import fleet, locks, store
from directconv.tuner.backend import RealBackend
from directconv.tuner.compile import Built
from directconv.tuner.measure import Measurer
from directconv.tuner.storage import _with_driver, fail_dead_trials, open_storage, study_name
from directconv.tuner.trials import claim, measured

POSTGRES_ENV = "DIRECTCONV_TEST_POSTGRES_URL"
NO_SERVER = f"set {POSTGRES_ENV} (e.g. .ci/run starts a local server)"
LANES = ISAS[host_isa()].lanes


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh database on the test server, dropped afterwards."""
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(NO_SERVER)
    admin_url = sqlalchemy.engine.make_url(_with_driver(base))
    name = f"directconv_test_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    except sqlalchemy.exc.ProgrammingError as exc:  # a server that is there, for a user without CREATEDB
        admin.dispose()
        pytest.skip(f"the user of {POSTGRES_ENV} cannot create databases: {str(exc).splitlines()[0]}")
    yield admin_url.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def sqlite_url(url: str) -> str:
    """An SQLite study database (conftest's `url`: memory-backed storage where there is one)."""
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def storage_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")


def _env(tmp_path: Path) -> dict[str, str]:
    dirs = {"DIRECTCONV_STORE_DIR": "store", "DIRECTCONV_DATA_DIR": "data", "DIRECTCONV_CACHE_DIR": "cache"}
    return {**os.environ, **{k: str(tmp_path / v) for k, v in dirs.items()}}


# ---------------------------------------------------------------------------------------------- locks


def test_measuring_waits_for_compiles_and_compiles_share(tmp_path, monkeypatch):
    monkeypatch.setenv("DIRECTCONV_DATA_DIR", str(tmp_path))
    measured = threading.Event()

    def measure() -> None:
        with locks.measuring():
            measured.set()

    # Two compiles at once (two descriptors, like two processes): the second is not blocked by the first.
    with locks.compiling(), locks.compiling():
        thread = threading.Thread(target=measure)
        thread.start()
        assert not measured.wait(0.3), "a measurement started while candidates were compiling"
    assert measured.wait(5), "the measurement never started after the compiles ended"
    thread.join()


def test_every_measurement_holds_the_host_lock_rounds_included(tmp_path):
    """Measurer(exclusive=...) is entered around each measurement, the interleaved rounds' too (RealBackend passes
    locks.measuring). A library that does not load is an error reply, not the end of the worker."""
    held: list[str] = []

    @contextlib.contextmanager
    def exclusive() -> Iterator[None]:
        held.append("enter")
        yield
        held.append("exit")

    config = KernelConfig(host_isa(), LANES, 2)
    shape = ConvShape.from_args(8, LANES, 6, 6, 3, 3, 1, 1)
    built = {config.compile_key(): Built(tmp_path / "missing.so")}
    with Measurer(timeout=60, exclusive=exclusive) as measurer:
        first = measurer.measure(config, shape, tmp_path / "missing.so")
        per_round = measurer.rounds([config], shape, built, 3, drop_failed=True)
    assert first.status == "error" and "missing.so" in first.detail
    assert per_round == [{}, {}, {}] and held == ["enter", "exit"] * 2, "a failed finalist is not measured again"
    assert RealBackend().measurer.exclusive is locks.measuring


RACE = textwrap.dedent(
    """
    import sys, time, optuna
    from directconv.tuner.storage import open_storage
    from directconv.tuner.trials import claim
    url, name, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
    rdb = open_storage(url)
    study = optuna.load_study(study_name=name, storage=rdb)
    time.sleep(max(0.0, start - time.time()))  # every process draws the same keys in the same order, at once
    won = []
    for i in range(12):
        trial = study.ask()
        key = f"config-{i % 4}"
        if claim(rdb, study, trial, key):
            trial.set_user_attr("status", "ok")
            study.tell(trial, 1.0)
            won.append(key)
        else:
            trial.set_user_attr("duplicate_of", key)
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    print(" ".join(won))
    """
)


@pytest.mark.slow
def test_a_configuration_is_claimed_once_among_racing_processes(storage_url):
    """The claim lock on each backend: four processes draw the same four configurations at the same moment."""
    name = "directconv-test/claims"
    optuna.create_study(storage=open_storage(storage_url), study_name=name)
    start = time.time() + 4
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, storage_url, name, str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    won = [key for out, _ in outs for key in out.split()]
    assert sorted(won) == [f"config-{i}" for i in range(4)], "each configuration claimed by exactly one process"


def test_a_configuration_is_claimed_once_and_given_back_once_if_its_process_dies(sqlite_url):
    """Claimed: nobody else gets it. Its process died before measuring (FAIL without a status): free again, once;
    a configuration whose process died twice counts as failed, so a candidate that kills its tuner is not retried
    forever."""
    rdb = open_storage(sqlite_url)
    study = optuna.create_study(storage=rdb, study_name="directconv-test/deaths")
    for death in range(2):
        trial = study.ask()
        assert claim(rdb, study, trial, "config-0"), f"free again after {death} deaths"
        probe = study.ask()
        assert not claim(rdb, study, probe, "config-0"), "claimed while its worker is alive"
        study.tell(probe, state=optuna.trial.TrialState.PRUNED)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)  # died: failed by the next worker, no status
    assert not claim(rdb, study, study.ask(), "config-0")
    assert list(measured(study)) == ["config-0"]
    measured_trial = study.ask()
    assert claim(rdb, study, measured_trial, "config-1")
    measured_trial.set_user_attr("status", "ok")
    study.tell(measured_trial, 1.0)
    assert not claim(rdb, study, study.ask(), "config-1"), "a measured configuration is never claimed again"


@pytest.mark.slow
def test_a_dead_workers_configuration_goes_back_once(storage_url):
    """A worker on another host stops sending heartbeats: its claim is failed and its configuration freed, once."""
    rdb = open_storage(storage_url, grace_seconds=1)
    study = optuna.create_study(storage=rdb, study_name="directconv-test/stale")
    for death in range(2):
        trial = study.ask()
        rdb.record_heartbeat(trial._trial_id)
        trial.set_user_attr("host", "another-host")
        trial.set_user_attr("pid", 1)
        assert claim(rdb, study, trial, "config-0"), f"free again after {death} deaths"
        probe = study.ask()
        assert not claim(rdb, study, probe, "config-0"), "claimed while its worker is alive"
        study.tell(probe, state=optuna.trial.TrialState.PRUNED)
        time.sleep(2.5)  # no heartbeat for longer than the grace period
        assert fail_dead_trials(study) == 1
    assert not claim(rdb, study, study.ask(), "config-0"), "a configuration whose worker died twice is not retried"


def test_a_postgresql_url_without_driver_gets_an_installed_one():
    url = "postgresql://tuner@db.example/directconv"
    try:
        resolved = _with_driver(url)
    except RuntimeError as exc:
        assert "pip install 'directconv[postgres]'" in str(exc)
        return
    assert resolved.split("://")[0] in ("postgresql+psycopg2", "postgresql+psycopg")
    assert resolved.split("://")[1] == url.split("://")[1]
    assert _with_driver("sqlite:///x.db") == "sqlite:///x.db"


# ---------------------------------------------------------------------------------------------- export


def _fingerprint(name: str) -> dict:
    return {"version": 1, "arch": "x86_64", "model_name": name, "features": ["avx2", "fma"]}


def _study(
    url: str,
    fp: dict,
    machine: str,
    shape: ConvShape,
    results: list[float | None],
    *,
    generator: int = GENERATOR_VERSION,
    provenance: bool = True,
) -> str:
    """A study as directconv.tune leaves it (COMPLETE trials for floats, a failed measurement for None)."""
    name = study_name(fingerprint_id(fp), shape, 1).replace(f"/gen{GENERATOR_VERSION}", f"/gen{generator}")
    study = optuna.create_study(storage=open_storage(url), study_name=name, direction="maximize")
    attrs = {"shape": shape.to_dict(), "machine": machine, "threads": 1, "layer": f"test:{machine}"}
    if provenance:
        attrs |= {"host_machine": machine, "fingerprint_id": fingerprint_id(fp), "fingerprint": fp}
    for k, v in attrs.items():
        study.set_user_attr(k, v)
    for i, gflops in enumerate(results):
        config = KernelConfig(host_isa(), LANES, 1 + i, unroll=1)
        user = {
            "config_key": f"k{i}",
            "config": config.to_dict(),
            "status": "ok" if gflops else "crashed",
            "spread": 0.01,
            "compiler": "cc 1.0",
            "flags": ["-O3"],
            "peak_gflops": 100.0,
            "directconv_version": "0.1.0",
        }
        state = optuna.trial.TrialState.COMPLETE if gflops else optuna.trial.TrialState.FAIL
        study.add_trial(optuna.trial.create_trial(state=state, value=gflops, user_attrs=user))
    return name


SMALL = ConvShape.from_args(8, 2 * LANES, 9, 11, 3, 3, 1, 1)


def test_export_files_each_fingerprint_apart_and_filters_by_machine(sqlite_url, tmp_path):
    url = sqlite_url
    a, b = _fingerprint("cpu a"), _fingerprint("cpu b")
    _study(url, a, "alpha", SMALL, [10.0, 30.0, None, 20.0])
    _study(url, b, "beta", SMALL, [5.0])
    _study(url, b, "beta", ConvShape.from_args(8, LANES, 7, 7, 3, 3, 1, 1), [None])  # nothing correct yet

    only_b = fleet.export(url, machine=fingerprint_id(b), store_dir=tmp_path / "b")
    assert [r.status for r in only_b] == ["no result", "written"]
    assert [p.name for p in (tmp_path / "b").glob("*.yaml")] == [f"beta-{fingerprint_id(b)}.yaml"]

    results = fleet.export(url, store_dir=tmp_path / "all")
    assert sorted(r.status for r in results) == ["no result", "written", "written"]
    files = {f.machine: f for f in store.store_files(tmp_path / "all") if not f.bundled}
    assert set(files) == {"alpha", "beta"}
    assert files["alpha"].fingerprint == a and files["beta"].fingerprint == b
    (entry,) = files["alpha"].entries
    assert entry.gflops == 30.0 and entry.config.wob == 2 and entry.trials == 4 and entry.percent_of_peak == 30.0
    provenance = (entry.layer, entry.compiler, entry.flags, entry.generator_version)
    assert provenance == ("test:alpha", "cc 1.0", ("-O3",), GENERATOR_VERSION)
    dt.datetime.fromisoformat(entry.date)

    again = fleet.export(url, machine="alpha", store_dir=tmp_path / "all")
    assert [r.status for r in again] == ["kept"], "a second export of the same study changes nothing"


def test_export_refuses_what_the_store_would_reject(sqlite_url, tmp_path):
    url = sqlite_url
    fp = _fingerprint("cpu")
    mixed = _study(url, fp, "alpha", SMALL, [10.0])
    study = optuna.load_study(study_name=mixed, storage=url)
    study.set_user_attr("fingerprint", _fingerprint("another cpu"))  # results filed under another machine's id
    _study(url, _fingerprint("old"), "old", SMALL, [10.0], provenance=False)
    _study(url, _fingerprint("gen"), "gen", SMALL, [10.0], generator=GENERATOR_VERSION - 1)
    results = {r.fingerprint_id: r for r in fleet.export(url, store_dir=tmp_path / "store")}
    mixed, old, gen = (results[fingerprint_id(_fingerprint(n))] for n in ("cpu", "old", "gen"))
    assert mixed.status == "invalid" and "never be filed under another's fingerprint" in mixed.detail
    assert old.status == "invalid" and "re-tune" in old.detail and old.machine == "?"
    assert gen.status == "skipped" and f"v{GENERATOR_VERSION}" in gen.detail
    assert not (tmp_path / "store").exists() or not list((tmp_path / "store").glob("*.yaml"))

    with pytest.raises(ValueError, match=r"no directconv tuning studies for machine 'nope'.*alpha"):
        fleet.export(url, machine="nope")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fleet.export(f"sqlite:///{tmp_path / 'typo.db'}")


def test_store_export_command(sqlite_url, tmp_path, capsys):
    url = sqlite_url
    _study(url, _fingerprint("cpu"), "alpha", SMALL, [10.0, 12.5])
    assert main(["store", "export", "--storage", url, "--store", str(tmp_path / "store"), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["status"] == "written" and row["entry"]["gflops"] == 12.5
    assert main(["store", "export", "--storage", url, "--machine", "beta"]) == 2
    assert "no directconv tuning studies for machine 'beta'" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- workers


def test_trials_are_split_evenly_between_at_most_as_many_workers():
    assert fleet.split_trials(10, 3) == [4, 3, 3]
    assert fleet.split_trials(2, 4) == [1, 1], "no worker without a trial"
    assert fleet.split_trials(5, 1) == [5]
    with pytest.raises(ValueError, match=r"`trials >= 1 and workers >= 1` must hold, but got \(trials=3, workers=0\)"):
        fleet.split_trials(3, 0)


def _row(layer: str, best: float | None, predicted: float | None, measured: int, failures: list) -> dict:
    return {
        "layer": layer,
        "best_config": {"wob": best},
        "best_gflops": best,
        "predicted_config": {"wob": 1},
        "predicted_gflops": predicted,
        "gain": None,
        "percent_of_peak": None,
        "trials": measured,
        "confirmation_rounds": 0,
        "measured_now": measured,
        "failed_now": len(failures),
        "seconds": measured,
        "stored": best is not None,
        "failures": failures,
    }


def test_workers_rows_merge_into_one_row_per_layer():
    """The best of any worker, the model's figure from whichever measured it, the work of all of them."""
    first = [_row("a", 30.0, None, 3, [["k1", "crashed", "SIGSEGV"]]), _row("b", None, None, 2, [])]
    second = [_row("a", 20.0, 10.0, 4, []), _row("b", 5.0, 5.0, 2, [])]
    a, b = fleet.merge_rows([first, second])
    assert (a["best_gflops"], a["predicted_gflops"], a["gain"]) == (30.0, 10.0, 3.0)
    assert (a["measured_now"], a["failed_now"], a["trials"], a["workers"]) == (7, 1, 4, 2)
    assert a["failures"] == [["k1", "crashed", "SIGSEGV"]] and a["stored"]
    assert (b["best_gflops"], b["gain"], b["measured_now"]) == (5.0, 1.0, 4)


WORKER = textwrap.dedent(
    """
    import sys
    from directconv.core.shape import ConvShape
    from directconv.tuner.tuning import tune
    url, trials, ci, co, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    t = tune(ConvShape.from_args(ci, co, n, n, 3, 3, 1, 1), trials=trials, storage=url, progress=False, min_time=0.03,
             layer="test:fleet")
    print("measured", t.result.measured_now)
    """
)
# Two input channel blocks on 8 and 16 lanes alike: a pruned space of more than five configurations.
FLEET = ConvShape.from_args(2 * LANES, 2 * LANES, 12, 12, 3, 3, 1, 1)


def _worker(url: str, trials: int, env: dict[str, str]) -> subprocess.Popen:
    args = [str(v) for v in (url, trials, FLEET.ci, FLEET.co, FLEET.h)]
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _trials(storage: optuna.storages.BaseStorage) -> list[optuna.trial.FrozenTrial]:
    (name,) = [n for n in optuna.get_all_study_names(storage) if n.startswith("directconv/")]
    return optuna.load_study(study_name=name, storage=storage).get_trials()


def _measured(trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    return [
        t
        for t in trials
        if "status" in t.user_attrs
        and not t.user_attrs.get("duplicate_of")
        and t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)
    ]


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.compiler
def test_workers_share_a_study_and_survive_a_killed_worker(postgres_url, tmp_path):
    """Three workers on one PostgreSQL study; one is killed with SIGKILL after its first measurement."""
    url, env = postgres_url, _env(tmp_path)
    rdb = open_storage(url)
    victim = _worker(url, 8, env)
    survivors = [_worker(url, 5, env) for _ in range(2)]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and victim.poll() is None:
        try:
            if any(t.user_attrs.get("pid") == victim.pid for t in _measured(_trials(rdb))):
                break
        except ValueError:  # no study yet
            pass
        time.sleep(0.2)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    before = {t.number for t in _measured(_trials(rdb)) if t.user_attrs.get("pid") == victim.pid}
    assert before, "the killed worker had measured something"
    outs = [p.communicate(timeout=180) for p in survivors]
    for p, (_, err) in zip(survivors, outs, strict=True):
        assert p.returncode == 0, err

    trials = _trials(rdb)
    measured = _measured(trials)
    keys = [t.user_attrs["config_key"] for t in measured]
    assert len(keys) == len(set(keys)), "no configuration measured twice"
    by_victim = {t.number for t in measured if t.user_attrs.get("pid") == victim.pid}
    assert before <= by_victim, "the killed worker's measurements survive it"
    assert len(measured) == len(by_victim) + sum(int(out.split()[-1]) for out, _ in outs), "the trial count adds up"
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING], "no trial left running"

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "directconv",
            "store",
            "export",
            "--storage",
            url,
            "--json",
            "--store",
            str(tmp_path / "exported"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)
    best = max((t for t in measured if t.state == optuna.trial.TrialState.COMPLETE), key=lambda t: t.value)
    assert row["status"] == "written" and row["entry"]["config"] == best.user_attrs["config"]
    assert row["entry"]["gflops"] == round(best.value, 3) and row["entry"]["trials"] == len(measured)


@pytest.mark.slow
@pytest.mark.compiler
def test_tune_with_workers_splits_the_trials(storage_url, tmp_path):
    """`directconv tune --workers 2`: two spawned workers share the layer's study, the trials split between them."""
    env = _env(tmp_path)
    shape = [
        "--ci",
        str(FLEET.ci),
        "--co",
        str(FLEET.co),
        "--h",
        "12",
        "--w",
        "12",
        "--kh",
        "3",
        "--kw",
        "3",
        "--pad",
        "1",
    ]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "directconv",
            "tune",
            *shape,
            "--trials",
            "5",
            "--workers",
            "2",
            "--min-time",
            "0.03",
            "--storage",
            storage_url,
            "--json",
            str(tmp_path / "out.json"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (row,) = json.loads((tmp_path / "out.json").read_text())["layers"]
    assert (row["workers"], row["measured_now"], row["trials"]) == (2, 5, 5)
    keys = [t.user_attrs["config_key"] for t in _measured(_trials(open_storage(storage_url)))]
    assert len(keys) == len(set(keys)) == 5
