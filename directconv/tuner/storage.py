"""Optuna storage for tuning studies: an embedded SQLite file by default, any Optuna RDB URL on request.

Trials carry a heartbeat, so that a trial left RUNNING by a process that died (kill -9, power loss) is marked
FAILED by whoever opens the study next, and never counted or measured twice.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import socket
import time
import warnings
from pathlib import Path

import optuna
import sqlalchemy

from directconv.core.paths import data_dir
from directconv.core.shape import ConvShape
from directconv.kernels.codegen import GENERATOR_VERSION

HEARTBEAT_SECONDS = 5
GRACE_SECONDS = 20


def default_storage_url() -> str:
    path = data_dir() / "tuning.sqlite3"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def open_storage(url: str | None, *, grace_seconds: int = GRACE_SECONDS) -> optuna.storages.RDBStorage:
    """An RDB storage for `url` (default: the embedded SQLite file), with heartbeats for stale-trial detection.

    Several processes may open a new database at once; each creates the schema if missing, and the losers of that
    race see "already exists" errors: creation is serialized with a file lock for SQLite and retried otherwise.
    """
    url = _with_driver(url or default_storage_url())
    sqlite_path = _sqlite_path(url)
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None

    def create() -> optuna.storages.RDBStorage:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=grace_seconds
            )

    if sqlite_path is not None:
        sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        with open(sqlite_path.with_name(sqlite_path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                return create()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
    for attempt in range(5):
        try:
            return create()
        except sqlalchemy.exc.SQLAlchemyError:
            if attempt == 4:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def _with_driver(url: str) -> str:
    """`postgresql://` names no driver, and SQLAlchemy's default changed (psycopg2 up to 2.0, psycopg 3 from 2.1):
    use whichever is installed, so that one URL works with any SQLAlchemy (the `postgres` extra installs psycopg2)."""
    if not url.startswith("postgresql://"):
        return url
    for driver in ("psycopg2", "psycopg"):
        if importlib.util.find_spec(driver) is not None:
            return f"postgresql+{driver}://" + url[len("postgresql://") :]
    raise RuntimeError(
        "a postgresql:// storage needs a PostgreSQL driver, and neither psycopg2 nor psycopg is "
        "installed: pip install 'directconv[postgres]'"
    )


def _sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///") :]
    return None if path in ("", ":memory:") else Path(path)


def study_name(fingerprint_id: str, shape: ConvShape, threads: int) -> str:
    """One study per (machine fingerprint, layer shape, threads, kernel generator version)."""
    s = shape
    geometry = f"{s.ci}x{s.h}x{s.w}-{s.co}x{s.kh}x{s.kw}-s{s.sh}x{s.sw}-p{s.pt}.{s.pb}.{s.pl}.{s.pr}"
    # Dilation and groups only where not 1, so that the studies of plain layers keep their names.
    geometry += (f"-d{s.dh}x{s.dw}" if s.dilated else "") + (f"-g{s.groups}" if s.groups > 1 else "")
    return f"directconv/{fingerprint_id}/{geometry}/t{threads}/gen{GENERATOR_VERSION}"


def owner() -> dict[str, object]:
    """Who runs a trial: lets the next run on this host fail trials of dead processes without waiting."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def fail_dead_trials(study: optuna.Study) -> int:
    """Mark FAILED the RUNNING trials of this host's dead processes, and stale ones of any host (heartbeat)."""
    running = {t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    still = {t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))}
    failed = len(running - still)
    host = socket.gethostname()
    storage = study._storage
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        attrs = trial.user_attrs
        if attrs.get("host") != host or not isinstance(attrs.get("pid"), int):
            continue
        if attrs["pid"] != os.getpid() and not _alive(attrs["pid"]):
            try:
                storage.set_trial_user_attr(trial._trial_id, "failure", "process died while measuring")
                if storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL):
                    failed += 1
            except optuna.exceptions.UpdateFinishedTrialError:
                pass  # another worker on this host failed it first
    return failed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
