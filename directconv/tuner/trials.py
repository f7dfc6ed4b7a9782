"""The study's bookkeeping, shared by every process tuning it: which configurations are measured, which are being
measured, the claim that reserves one, the heartbeats that tell a live trial from a dead one, and what a trial
records of its measurement.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from typing import Any

import optuna

from directconv.core.config import KernelConfig
from directconv.tuner.locks import claiming
from directconv.tuner.measure import Measurement
from directconv.tuner.storage import HEARTBEAT_SECONDS, owner

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)


def measured(
    study: optuna.Study, trials: list[optuna.trial.FrozenTrial] | None = None
) -> dict[str, optuna.trial.FrozenTrial]:
    """config key -> the trial that measured it (COMPLETE or FAIL), over every process's trials (or `trials`).

    A trial failed because its process died before measuring (no "status") gives its configuration back, once: the
    next worker measures it. A configuration whose process died twice counts as failed, so that a candidate that
    somehow takes its tuner down is not retried forever.
    """
    done: dict[str, optuna.trial.FrozenTrial] = {}
    died: dict[str, list[optuna.trial.FrozenTrial]] = {}
    for t in study.get_trials(deepcopy=False, states=FINISHED) if trials is None else trials:
        key = t.user_attrs.get("config_key")
        if t.state not in FINISHED or not key or t.user_attrs.get("duplicate_of"):
            continue
        if "status" in t.user_attrs:
            done.setdefault(key, t)
        else:
            died.setdefault(key, []).append(t)
    for key, deaths in died.items():
        if key not in done and len(deaths) >= 2:
            done[key] = deaths[-1]
    return done


def in_flight(trials: list[optuna.trial.FrozenTrial], number: int) -> set[str]:
    """Config keys claimed by RUNNING trials other than trial `number` (any process, any host)."""
    return {
        t.user_attrs["config_key"]
        for t in trials
        if t.state == optuna.trial.TrialState.RUNNING
        and t.number != number
        and "config_key" in t.user_attrs
        and not t.user_attrs.get("duplicate_of")
    }


def ask(rdb: optuna.storages.RDBStorage, study: optuna.Study) -> optuna.trial.Trial:
    """study.ask(), one process of the study at a time (locks.claiming), the trial marked with its owner at once.

    Asking pops the next enqueued trial by reading it WAITING and then marking it RUNNING; SQLite ignores the row
    lock Optuna takes between the two, so two workers asking at once could both get the same trial and measure its
    configuration twice. The owner (host, pid) lets the next worker on this host fail the trial as soon as this
    process is gone (storage.fail_dead_trials), rather than after the heartbeat's grace period.
    """
    with claiming(rdb, study._study_id):
        _fail_orphans(study)
        trial = study.ask()
        for attr, value in owner().items():
            trial.set_user_attr(attr, value)
    return trial


def _fail_orphans(study: optuna.Study) -> None:
    """Fail the RUNNING trials that have no owner: a live process marks its trial before it releases the lock this
    runs under, so such a trial's process died between Optuna's ask and the mark (kill -9), and neither its pid nor
    a heartbeat would ever tell."""
    storage = study._storage
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if "pid" not in trial.user_attrs:
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                storage.set_trial_user_attr(trial._trial_id, "failure", "process died while asking for its trial")
                storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)


def claim(rdb: optuna.storages.RDBStorage, study: optuna.Study, trial: optuna.trial.Trial, key: str) -> bool:
    """Claim configuration `key` for `trial` unless it is measured or being measured: True if claimed.

    Check and claim are one step for every process on the study, on any host (locks.claiming): otherwise two workers
    drawing the same configuration at the same moment would both see it free and both measure it.
    """
    with claiming(rdb, study._study_id):
        # One read for both questions: a trial finishing between two reads would be in neither.
        trials = study.get_trials(deepcopy=False)
        if key in measured(study, trials) or key in in_flight(trials, trial.number):
            return False
        trial.set_user_attr("config_key", key)
        return True


class Heartbeat:
    """Records heartbeats for the trials in flight, so other processes can tell a live trial from a dead one."""

    def __init__(self, storage: optuna.storages.RDBStorage) -> None:
        self.storage = storage
        self._trial_ids: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def add(self, trial: optuna.trial.Trial) -> None:
        self._trial_ids.add(trial._trial_id)
        self.storage.record_heartbeat(trial._trial_id)

    def discard(self, trial: optuna.trial.Trial) -> None:
        self._trial_ids.discard(trial._trial_id)

    def _run(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            for trial_id in list(self._trial_ids):
                with contextlib.suppress(Exception):  # a missed heartbeat is not worth ending the run
                    self.storage.record_heartbeat(trial_id)


def record(trial: optuna.trial.Trial, m: Measurement, provenance: Mapping[str, Any]) -> None:
    """Keep the measurement (and what it was measured with) in the trial's user attrs, before it is told."""
    for attr, value in provenance.items():
        trial.set_user_attr(attr, value)
    trial.set_user_attr("status", m.status)
    trial.set_user_attr("detail", m.detail[:2000])
    for attr in ("seconds", "spread", "samples", "max_rel_error"):
        value = getattr(m, attr)
        if value is not None:
            trial.set_user_attr(attr, value)


def measurement_from(trial: optuna.trial.FrozenTrial) -> Measurement | None:
    """The measurement a trial recorded (None for a trial that recorded no configuration)."""
    attrs = trial.user_attrs
    if "config" not in attrs:
        return None
    complete = trial.state == optuna.trial.TrialState.COMPLETE
    return Measurement(
        KernelConfig.from_dict(attrs["config"]),
        attrs.get("status", "ok" if complete else "error"),
        seconds=attrs.get("seconds"),
        spread=attrs.get("spread"),
        samples=attrs.get("samples", 0),
        gflops=trial.value if complete else None,
        max_rel_error=attrs.get("max_rel_error"),
        detail=attrs.get("detail", ""),
    )
