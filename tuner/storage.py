"""Optuna storage for tuning studies: an embedded SQLite file by default, any Optuna RDB URL on request.

Trials carry a heartbeat, so that a trial left RUNNING by a process that died (kill -9, power loss) is marked
FAILED by whoever opens the study next, and never counted or measured twice.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import optuna

from directconv.kernels.codegen import GENERATOR_VERSION
from directconv.kernels.shape import ConvShape

HEARTBEAT_SECONDS = 5
GRACE_SECONDS = 20


def data_dir() -> Path:
    """Per-user data: $DIRECTCONV_DATA_DIR, else $XDG_DATA_HOME/directconv, else ~/.local/share/directconv."""
    override = os.environ.get("DIRECTCONV_DATA_DIR")
    if override:
        return Path(override)
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "directconv"


def default_storage_url() -> str:
    path = data_dir() / "tuning.sqlite3"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def open_storage(url: str | None, *, grace_seconds: int = GRACE_SECONDS) -> optuna.storages.RDBStorage:
    """An RDB storage for `url` (default: the embedded SQLite file), with heartbeats for stale-trial detection."""
    url = url or default_storage_url()
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
    return optuna.storages.RDBStorage(
        url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=grace_seconds
    )


def study_name(fingerprint_id: str, shape: ConvShape, threads: int) -> str:
    """One study per (machine fingerprint, layer shape, threads, kernel generator version)."""
    s = shape
    geometry = f"{s.ci}x{s.h}x{s.w}-{s.co}x{s.kh}x{s.kw}-s{s.sh}x{s.sw}-p{s.pt}.{s.pb}.{s.pl}.{s.pr}"
    return f"directconv/{fingerprint_id}/{geometry}/t{threads}/gen{GENERATOR_VERSION}"


def owner() -> dict[str, object]:
    """Who runs a trial: lets the next run on this host fail trials of dead processes without waiting."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def fail_dead_trials(study: optuna.Study) -> int:
    """Mark FAILED the RUNNING trials of this host's dead processes, and stale ones of any host (heartbeat)."""
    running = {t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))}
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
            storage.set_trial_user_attr(trial._trial_id, "failure", "process died while measuring")
            storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
            failed += 1
    return failed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
