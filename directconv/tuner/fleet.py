"""Tuning as a fleet: worker processes sharing one study, and the export of a shared storage into the config store.

Workers: `run_workers` starts one fresh interpreter per job (spawned, so no database connection or lock is
inherited), waits for all of them and reports each one's outcome; a worker that dies does not stop the others, and
its completed trials are already in the study (see trials.py for how its unfinished ones are given back).
`tune_fleet` tunes layers with several such workers sharing each layer's study, the trials split between them, and
merges what they report into one summary row per layer (what `directconv tune --workers N` prints).

Export: every directconv study in a storage (`directconv/<fingerprint id>/<geometry>/t<threads>/gen<N>`) names the
machine fingerprint it was measured on, and its user attrs hold the host identity and the full fingerprint;
its trials hold the compiler, flags and peak they were measured with. `export` turns the best COMPLETE trial of each
study into the same store.Entry that directconv.tune records, validates it as the store validates what it reads,
and records it, so production machines read plain YAML files and never need the database.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import multiprocessing
import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy

from directconv.core.config import KernelConfig
from directconv.core.files import write_json
from directconv.core.shape import ConvShape
from directconv.kernels.codegen import GENERATOR_VERSION
from directconv.machines.probe.fingerprint import fingerprint_id as fingerprint_id_of
from directconv.tuner import store
from directconv.tuner.storage import _sqlite_path, open_storage
from directconv.tuner.trials import measured
from directconv.tuner.tuning import Tuned, tune

STUDY_NAME = re.compile(r"^directconv/(?P<fid>[^/]+)/(?P<geometry>[^/]+)/t(?P<threads>[0-9]+)/gen(?P<gen>[0-9]+)$")
TRIAL_PROVENANCE = ("compiler", "flags", "peak_gflops", "directconv_version")
STUDY_PROVENANCE = ("host_machine", "fingerprint", "shape", "threads")


# ---------------------------------------------------------------------------------------------- workers


@dataclass(frozen=True)
class WorkerOutcome:
    index: int
    exitcode: int  # negative: killed by that signal
    result: Any  # what the target returned (JSON round trip); None if the worker failed

    @property
    def ok(self) -> bool:
        return self.exitcode == 0 and self.result is not None


def _run_job(target: Callable[..., Any], job: dict[str, Any], out: str) -> None:
    write_json(out, target(**job))


def run_workers(target: Callable[..., Any], jobs: list[dict[str, Any]]) -> list[WorkerOutcome]:
    """Run `target(**job)` for every job at once, each in its own spawned process; wait for all.

    target must be a module-level function (the child imports it by name) returning JSON-ready data. On Ctrl-C the
    workers (which receive the same SIGINT from the terminal) are terminated if still running, and the
    KeyboardInterrupt goes on to the caller.
    """
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="directconv-workers-") as tmp:
        outs = [os.path.join(tmp, f"worker-{i}.json") for i in range(len(jobs))]
        procs = [
            ctx.Process(target=_run_job, args=(target, job, out), name=f"directconv-worker-{i}")
            for i, (job, out) in enumerate(zip(jobs, outs, strict=True))
        ]
        for p in procs:
            p.start()
        try:
            for p in procs:
                p.join()
        except KeyboardInterrupt:
            for p in procs:
                if p.is_alive():
                    p.terminate()
            for p in procs:
                p.join()
            raise
        outcomes = []
        for i, (p, out) in enumerate(zip(procs, outs, strict=True)):
            result = None
            if p.exitcode == 0 and os.path.exists(out):
                with open(out) as f:
                    result = json.load(f)
            outcomes.append(WorkerOutcome(i, p.exitcode if p.exitcode is not None else -1, result))
        return outcomes


# ---------------------------------------------------------------------------------------------- tuning layers


def layer_row(name: str, t: Tuned) -> dict[str, Any]:
    """The summary of one tuned layer, JSON-ready (what `directconv tune --json` writes per layer)."""
    r, pred, best = t.result, t.predicted, t.best
    return {
        "layer": name,
        "predicted_config": pred.config.to_dict() if pred else None,
        "predicted_gflops": pred.gflops if pred else None,
        "best_config": best.config.to_dict() if best else None,
        "best_gflops": best.gflops if best else None,
        "gain": t.gain,
        "percent_of_peak": t.percent_of_peak,
        "trials": r.trials_total,
        "confirmation_rounds": max((m.samples for m in r.confirmed), default=0),
        "measured_now": r.measured_now,
        "failed_now": r.failed_now,
        "seconds": r.seconds,
        "stored": t.written,
        "failures": [[key, status, detail.splitlines()[0] if detail else ""] for key, status, detail in r.failures],
    }


def tune_layers(
    layers: Sequence[tuple[str, ConvShape]], trials: int, settings: Mapping[str, Any], progress: bool = True
) -> list[dict[str, Any]]:
    """Tune (name, shape) layers one after the other with directconv.tune(trials=trials, **settings); a summary row
    per layer. Also the job of every `tune_fleet` worker process."""
    return [
        layer_row(name, tune(shape, trials=trials, layer=name, progress=progress, **settings)) for name, shape in layers
    ]


def split_trials(trials: int, workers: int) -> list[int]:
    """Each worker's share of `trials`, as even as can be; no more workers than trials (each measures one at least)."""
    if trials < 1 or workers < 1:
        raise ValueError(f"`trials >= 1 and workers >= 1` must hold, but got (trials={trials}, workers={workers})")
    n = min(workers, trials)
    return [trials // n + (i < trials % n) for i in range(n)]


def merge_rows(per_worker: Sequence[Sequence[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per layer from the workers' rows: the best of any worker, the work of all of them."""
    merged = []
    for rows in zip(*per_worker, strict=True):
        best = max(rows, key=lambda r: r["best_gflops"] or 0.0)
        pred = next((r for r in rows if r["predicted_gflops"] is not None), rows[0])
        gain = None
        if best["best_gflops"] and pred["predicted_gflops"]:
            gain = best["best_gflops"] / pred["predicted_gflops"]
        merged.append(
            {
                **best,
                "predicted_config": pred["predicted_config"],
                "predicted_gflops": pred["predicted_gflops"],
                "gain": gain,
                "trials": max(r["trials"] for r in rows),
                "measured_now": sum(r["measured_now"] for r in rows),
                "failed_now": sum(r["failed_now"] for r in rows),
                "seconds": max(r["seconds"] for r in rows),
                "stored": any(r["stored"] for r in rows),
                "failures": [f for r in rows for f in r["failures"]],
                "workers": len(rows),
            }
        )
    return merged


@dataclass(frozen=True)
class FleetResult:
    """What tune_fleet did: a row per layer (merged over the workers that finished; empty if none did)."""

    rows: tuple[dict[str, Any], ...]
    workers: int  # worker processes started (1: tuned in this process)
    failed: tuple[WorkerOutcome, ...]  # workers that died or failed; their completed trials are in the studies


def tune_fleet(
    layers: Sequence[tuple[str, ConvShape]],
    *,
    trials: int,
    workers: int = 1,
    settings: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> FleetResult:
    """Tune `layers` with `workers` processes sharing each layer's study, `trials` per layer split between them.

    settings: the other keyword arguments of directconv.tune (threads, storage, machine, sampler, timeout,
    store_dir, min_time, statistic). One worker tunes in this process; several are spawned (run_workers) and
    need a storage they can share (the default SQLite file is, on one host).
    """
    budgets = split_trials(trials, workers)
    settings = dict(settings or {})
    if len(budgets) == 1:
        return FleetResult(tuple(tune_layers(layers, trials, settings, progress)), 1, ())
    # Only the first worker draws a progress line: several redrawing one terminal line would garble it.
    jobs = [
        {"layers": list(layers), "trials": b, "settings": settings, "progress": progress and i == 0}
        for i, b in enumerate(budgets)
    ]
    outcomes = run_workers(tune_layers, jobs)
    finished = [o.result for o in outcomes if o.ok]
    return FleetResult(
        tuple(merge_rows(finished)) if finished else (), len(budgets), tuple(o for o in outcomes if not o.ok)
    )


# ---------------------------------------------------------------------------------------------- export


class ExportError(ValueError):
    """A study whose best trial cannot become a store entry: names the study and what is missing or wrong."""


@dataclass(frozen=True)
class Exported:
    """What export did with one study."""

    study: str
    machine: str  # host machine id ("?" when the study does not say)
    fingerprint_id: str
    status: str  # "written" | "kept" (the store already holds one as fast) | "no result" | "skipped" | "invalid"
    detail: str = ""
    entry: store.Entry | None = None
    path: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "study": self.study,
            "machine": self.machine,
            "fingerprint_id": self.fingerprint_id,
            "status": self.status,
            "detail": self.detail,
            "entry": self.entry.to_dict() if self.entry else None,
            "file": str(self.path) if self.path else None,
        }


def shown_url(url: str) -> str:
    """The storage URL without its password, for messages."""
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return url


def _open_existing(url: str) -> optuna.storages.RDBStorage:
    sqlite = _sqlite_path(url)
    if sqlite is not None and not sqlite.is_file():
        raise FileNotFoundError(f"storage {url} names an SQLite file that does not exist: give the URL the tuners used")
    return open_storage(url)


def entry_of(study: optuna.Study) -> tuple[store.Entry | None, str]:
    """The store entry for a study's best COMPLETE trial, or (None, why there is none). Raises ExportError when the
    study lacks the provenance an entry needs or holds values the store would reject."""
    name = study.study_name
    m = STUDY_NAME.match(name)
    if m is None:
        raise ExportError(
            f"study {name!r}: not a directconv tuning study name (directconv/<fingerprint>/<shape>/t<threads>/gen<N>)"
        )
    generator = int(m["gen"])
    attrs = study.user_attrs
    missing = [a for a in STUDY_PROVENANCE if a not in attrs]
    if missing:
        raise ExportError(
            f"study {name!r} lacks the study attrs {missing}: it was tuned without the provenance "
            "export needs (by directconv.tuner.tune directly, or an older directconv); re-tune it with "
            "`directconv tune`"
        )
    fp = attrs["fingerprint"]
    fid = m["fid"]
    if not isinstance(fp, dict) or fingerprint_id_of(fp) != fid:
        got = fingerprint_id_of(fp) if isinstance(fp, dict) else type(fp).__name__
        raise ExportError(
            f"study {name!r}: its fingerprint attr hashes to {got}, but the study name says {fid}: "
            "results of one machine must never be filed under another's fingerprint"
        )
    if attrs["threads"] != int(m["threads"]):
        raise ExportError(
            f"study {name!r}: threads attr {attrs['threads']!r} disagrees with the name (t{m['threads']})"
        )
    done = measured(study)
    complete = [t for t in done.values() if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        return None, f"no correct configuration measured yet ({len(done)} trials measured)"
    best = max(complete, key=lambda t: t.value if t.value is not None else -math.inf)
    value = best.value if best.value is not None else 0.0
    missing = [a for a in TRIAL_PROVENANCE + ("config",) if a not in best.user_attrs]
    if missing:
        raise ExportError(
            f"study {name!r}: best trial #{best.number} lacks the trial attrs {missing} (measured by a "
            "tuner without provenance); re-tune with `directconv tune`"
        )
    t = best.user_attrs
    try:
        shape = ConvShape(**attrs["shape"])
        peak = float(t["peak_gflops"])
        completed = best.datetime_complete or dt.datetime.now()
        entry = store.Entry(
            layer=attrs.get("layer", ""),
            shape=shape,
            threads=attrs["threads"],
            config=KernelConfig.from_dict(t["config"]),
            gflops=round(value, 3),
            spread=round(t.get("spread") or 0.0, 4),
            percent_of_peak=round(100 * value / peak, 2),
            trials=len(done),
            # Optuna records local wall-clock time without a zone; read as this host's local time.
            date=completed.astimezone(dt.UTC).isoformat(timespec="seconds"),
            directconv_version=t["directconv_version"],
            generator_version=generator,
            compiler=t["compiler"],
            flags=tuple(t["flags"]),
        )
        # The store's own reader is the validator: what it would reject on a production machine is never written.
        text = store.dump_store(attrs["host_machine"], fid, fp, [entry])
        store.parse_store(text, Path(f"<study {name}>"))
    except store.StoreError as exc:
        raise ExportError(str(exc)) from None
    except (TypeError, ValueError, ZeroDivisionError) as exc:
        raise ExportError(f"study {name!r}: best trial #{best.number}: {exc}") from None
    return entry, ""


def export(url: str, *, machine: str | None = None, store_dir: str | Path | None = None) -> list[Exported]:
    """Record the best configuration of every directconv study in storage `url` into the config store.

    machine: only studies whose host machine id or fingerprint id equals it. Studies of another kernel generator
    version are skipped (their configurations were measured on other kernels). Raises ValueError when no study
    matches, naming the machines the storage holds.
    """
    rdb = _open_existing(url)
    studies = [
        (s, m)
        for s in optuna.get_all_study_summaries(rdb, include_best_trial=False)
        if (m := STUDY_NAME.match(s.study_name))
    ]
    machines = sorted({f"{s.user_attrs.get('host_machine', '?')} ({m['fid']})" for s, m in studies})
    if machine is not None:
        studies = [(s, m) for s, m in studies if machine in (s.user_attrs.get("host_machine"), m["fid"])]
    if not studies:
        held = ", ".join(machines) if machines else "none"
        wanted = f" for machine {machine!r}" if machine else ""
        raise ValueError(
            f"no directconv tuning studies{wanted} in {shown_url(url)}; machines (fingerprints) it holds: "
            f"{held}. Check --storage and --machine (a machine id or fingerprint id)"
        )
    out = []
    for s, m in sorted(studies, key=lambda sm: sm[0].study_name):
        fid, gen = m["fid"], int(m["gen"])
        host_machine = str(s.user_attrs.get("host_machine", "?"))
        if gen != GENERATOR_VERSION:
            why = f"measured with kernel generator v{gen}; this directconv generates v{GENERATOR_VERSION}"
            out.append(Exported(s.study_name, host_machine, fid, "skipped", why))
            continue
        study = optuna.load_study(study_name=s.study_name, storage=rdb)
        try:
            entry, why = entry_of(study)
        except ExportError as exc:
            out.append(Exported(s.study_name, host_machine, fid, "invalid", str(exc)))
            continue
        if entry is None:
            out.append(Exported(s.study_name, host_machine, fid, "no result", why))
            continue
        written, path = store.record(
            entry,
            machine=host_machine,
            fingerprint_id=fid,
            fingerprint=study.user_attrs["fingerprint"],
            store=store_dir,
        )
        detail = "" if written else "the store already holds a configuration at least as fast for this layer"
        out.append(Exported(s.study_name, host_machine, fid, "written" if written else "kept", detail, entry, path))
    return out
