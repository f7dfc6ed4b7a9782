"""Load check of a shared tuning storage: N worker processes asking and telling against one study at once.

Each worker does what a tuner does per candidate, minus compiling and timing: ask, suggest the kernel parameters,
claim the configuration (trials.claim: the per-study lock and the measured/in-flight check), record owner and
provenance attrs and a heartbeat, then tell. Workers start together on a barrier; the figure is completed trials per
second of wall time over all workers, with every error counted (an error ends that trial, not the worker).
After each round the study is checked: trial count, duplicate trial numbers, configurations claimed twice.

    python benchmarks/storage_load.py --storage postgresql://user@host/db [--workers 1,2,4,8] [--trials 50]

Studies are named storage-load/<run id>/n<N> and deleted afterwards unless --keep.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import statistics
import sys
import time
import uuid
import warnings
from collections import Counter
from pathlib import Path

import optuna
import sqlalchemy
from provenance import provenance_line

from directconv.tuner.fleet import shown_url
from directconv.tuner.storage import open_storage, owner
from directconv.tuner.trials import claim


def _quiet() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")


def worker(url: str, name: str, trials: int, barrier, out) -> None:
    _quiet()
    rdb = open_storage(url)
    study = optuna.load_study(study_name=name, storage=rdb, sampler=optuna.samplers.RandomSampler())
    barrier.wait()
    latencies, errors = [], []
    for _ in range(trials):
        started = time.perf_counter()
        try:
            trial = study.ask()
            rdb.record_heartbeat(trial._trial_id)
            params = (
                trial.suggest_int("cob", 1, 8),
                trial.suggest_int("wob", 1, 16),
                trial.suggest_int("cib", 1, 64),
                trial.suggest_categorical("parallel", ["co", "rows"]),
            )
            key = f"{os.getpid()}-{uuid.uuid4().hex[:8]}-{params}"  # distinct: the lock and checks, not duplicates
            for attr, value in {
                "config": dict(zip(("cob", "wob", "cib", "parallel"), params, strict=True)),
                **owner(),
            }.items():
                trial.set_user_attr(attr, value)
            if not claim(rdb, study, trial, key):
                raise RuntimeError(f"configuration {key} refused although no other worker can draw it")
            for attr, value in {"status": "ok", "seconds": 0.001, "spread": 0.01, "samples": 10}.items():
                trial.set_user_attr(attr, value)
            study.tell(trial, 1.0)
            latencies.append(time.perf_counter() - started)
        except Exception as exc:  # counted and reported: the point of a load check
            errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    out.put((latencies, errors))


def round_(url: str, run: str, n: int, trials: int, keep: bool) -> dict:
    name = f"storage-load/{run}/n{n}"
    rdb = open_storage(url)
    optuna.create_study(storage=rdb, study_name=name, direction="maximize")
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(n + 1), ctx.Queue()
    procs = [ctx.Process(target=worker, args=(url, name, trials, barrier, out)) for _ in range(n)]
    for p in procs:
        p.start()
    barrier.wait()
    started = time.perf_counter()
    results = [out.get() for _ in procs]
    wall = time.perf_counter() - started
    for p in procs:
        p.join()
    latencies = [x for lat, _ in results for x in lat]
    errors = [e for _, errs in results for e in errs]
    study = optuna.load_study(study_name=name, storage=rdb)
    all_trials = study.get_trials(deepcopy=False)
    numbers = Counter(t.number for t in all_trials)
    keys = Counter(t.user_attrs.get("config_key") for t in all_trials if t.user_attrs.get("config_key"))
    complete = sum(t.state == optuna.trial.TrialState.COMPLETE for t in all_trials)
    if not keep:
        optuna.delete_study(study_name=name, storage=rdb)
    return {
        "workers": n,
        "trials": len(latencies),
        "seconds": wall,
        "per_second": len(latencies) / wall,
        "median_ms": 1e3 * statistics.median(latencies) if latencies else float("nan"),
        "p95_ms": 1e3 * sorted(latencies)[int(0.95 * (len(latencies) - 1))] if latencies else float("nan"),
        "errors": errors,
        "complete": complete,
        "dup_numbers": sum(c > 1 for c in numbers.values()),
        "dup_keys": sum(c > 1 for c in keys.values()),
    }


def server_version(url: str) -> str:
    engine = open_storage(url).engine
    if engine.url.get_backend_name() == "postgresql":
        with engine.connect() as conn:
            return conn.execute(sqlalchemy.text("SHOW server_version")).scalar().split()[0]
    return engine.dialect.server_version_info and ".".join(map(str, engine.dialect.server_version_info)) or "?"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--storage", required=True, help="Optuna storage URL (postgresql://..., sqlite:///...)")
    ap.add_argument("--workers", default="1,2,4,8", help="comma-separated worker counts (default 1,2,4,8)")
    ap.add_argument("--trials", type=int, default=50, help="trials per worker (default 50)")
    ap.add_argument("--keep", action="store_true", help="keep the load studies in the storage")
    ap.add_argument("--out", help="also write the report to this file")
    args = ap.parse_args()
    _quiet()
    counts = [int(x) for x in args.workers.split(",")]
    run = time.strftime("%Y%m%d-%H%M%S")
    backend = sqlalchemy.engine.make_url(open_storage(args.storage).engine.url).get_backend_name()
    lines = [
        "directconv storage load check (benchmarks/storage_load.py)",
        provenance_line(),
        f"date {time.strftime('%Y-%m-%d')}; storage {backend} {server_version(args.storage)}; "
        f"optuna {optuna.__version__}; "
        f"sqlalchemy {sqlalchemy.__version__}; python {platform.python_version()}; {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f} at the start (workers and server share these CPUs)",
        f"each worker: {args.trials} x (ask, heartbeat, 4 suggests, 4 attrs, claim under the study lock, 4 attrs, "
        "tell); "
        "studies start empty",
        "",
        f"{'workers':>7} {'trials':>6} {'seconds':>8} {'trials/s':>9} {'median ms':>10} {'p95 ms':>8} {'errors':>6} "
        f"{'dup numbers':>11} {'dup claims':>10}",
    ]
    print("\n".join(lines), flush=True)
    all_errors = []
    for n in counts:
        r = round_(args.storage, run, n, args.trials, args.keep)
        line = (
            f"{r['workers']:>7} {r['trials']:>6} {r['seconds']:>8.2f} {r['per_second']:>9.1f} {r['median_ms']:>10.1f} "
            f"{r['p95_ms']:>8.1f} {len(r['errors']):>6} {r['dup_numbers']:>11} {r['dup_keys']:>10}"
        )
        print(line, flush=True)
        lines.append(line)
        all_errors += [f"n={n}: {e}" for e in r["errors"]]
    if all_errors:
        lines += ["", "errors (first 20):"] + [f"  {e}" for e in all_errors[:20]]
        print("\n".join(lines[-min(21, len(all_errors) + 1) :]))
    print(f"(storage {shown_url(args.storage)})")
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")
    return 1 if all_errors else 0


if __name__ == "__main__":
    sys.exit(main())
