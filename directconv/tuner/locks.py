"""Locks that let several tuning processes share one host and one study.

Host lock (a file in the user data directory, fcntl): measurement is exclusive, compilation is shared. Any number of
tuners on one host compile at once, but while one of them times a candidate no other compiles or measures, so
timings stay those of an idle machine. The lock is per user (the data directory is), not per machine.

Claim lock (per study): the check "is this configuration measured or being measured?" and the claim that follows
must be one step, or two workers that draw the same configuration at the same moment both measure it. On
PostgreSQL it is a transaction-level advisory lock on the server, so it serializes workers on every machine and is
released by the server if the worker dies; on SQLite (one host by nature) a file lock beside the database; on
other backends (MySQL, ...) the host lock file only: workers on other hosts are then not serialized.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

import optuna
import sqlalchemy

from directconv.core.paths import data_dir
from directconv.tuner.storage import _sqlite_path

HOST_LOCK = "host.lock"
_ADVISORY_NAMESPACE = 0x6463  # "dc": the first key of pg_advisory_xact_lock(int, int); the study id is the second


@contextlib.contextmanager
def _flock(path: Path, mode: int) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, mode)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def measuring() -> contextlib.AbstractContextManager[None]:
    """Hold while timing anything on this host: waits for every other tuner's compile and measurement to end."""
    return _flock(data_dir() / HOST_LOCK, fcntl.LOCK_EX)


def compiling() -> contextlib.AbstractContextManager[None]:
    """Hold while compiling candidates: shared with other compiles, excluded while anyone measures."""
    return _flock(data_dir() / HOST_LOCK, fcntl.LOCK_SH)


@contextlib.contextmanager
def claiming(storage: optuna.storages.RDBStorage, study_id: int) -> Iterator[None]:
    """Serialize "check, then claim a configuration" among every process working on study `study_id`."""
    url = storage.engine.url
    if url.get_backend_name() == "postgresql":
        with storage.engine.connect() as conn:
            conn.execute(
                sqlalchemy.text("SELECT pg_advisory_xact_lock(:ns, :study)"),
                {"ns": _ADVISORY_NAMESPACE, "study": study_id},
            )
            try:
                yield
            finally:
                conn.rollback()  # ends the transaction, which releases the lock
        return
    sqlite = _sqlite_path(url.render_as_string(hide_password=False))
    if url.get_backend_name() == "sqlite" and sqlite is None:  # in memory: one process only
        yield
        return
    lock = sqlite.with_name(sqlite.name + ".claims.lock") if sqlite else data_dir() / f"claims-{study_id}.lock"
    with _flock(lock, fcntl.LOCK_EX):
        yield
