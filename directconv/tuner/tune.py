"""tune(): find the fastest configuration of one layer on this machine with an Optuna study.

Stages, in order, per batch of candidates: ask Optuna -> drop configurations already measured or being measured in
the study (by this or any other process, on any host: see locks.claiming) -> compile the batch in parallel -> measure
one at a time in a worker process (nothing else runs meanwhile, not even another tuner's compile: see locks) -> tell
Optuna. The model's prediction and its next best configurations are enqueued first; a space no larger than the trial
budget is swept whole.
"""

from __future__ import annotations

import contextlib
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna

from directconv.tuner.harness import schedule
from directconv.core.config import KernelConfig
from directconv.core.shape import ConvShape
from directconv.machines.machine import Machine
from directconv.model import predict, search_space, unpruned_space

from directconv.tuner.compile import SourceHook, compile_all
from directconv.tuner.locks import claiming, compiling, measuring
from directconv.tuner.measure import Measurement, Measurer
from directconv.tuner.params import ParamSpace, config_key, config_params
from directconv.tuner.progress import Progress
from directconv.tuner.storage import HEARTBEAT_SECONDS, fail_dead_trials, open_storage, owner, study_name

SAMPLERS = ("tpe", "cmaes", "grid", "random")

# Optuna warns when a storage with heartbeats is used outside Study.optimize; this tuner records the heartbeats of
# its ask/tell trials itself (_Heartbeat below), so the warning would only mislead.
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")

SEEDS = 8  # model configurations enqueued before the sampler takes over
MAX_DUPLICATES_IN_A_ROW = 5
# The finalists (the study's fastest configurations and the model's own) are timed again, side by side, before one
# is called best: a study times its candidates minutes apart, and on a shared host the same kernel runs up to 30%
# faster or slower from one minute to the next, enough to crown whichever candidate ran in a quiet moment.
CONFIRM_TOP = 4
CONFIRM_ROUNDS = 5


@dataclass(frozen=True)
class TuneResult:
    shape: ConvShape
    threads: int
    study_name: str
    storage_url: str
    best: Measurement | None  # fastest correct configuration measured in the study (any run)
    predicted: Measurement | None  # the model's configuration, as measured in the study
    measured_now: int  # candidates this call measured (correct or not)
    failed_now: int  # candidates this call recorded as failed (crash, hang, compile error, wrong answer)
    trials_total: int  # completed + failed trials in the study
    seconds: float
    space_size: int
    failures: tuple[tuple[str, str, str], ...] = field(default_factory=tuple)  # (config key, status, detail)
    # The finalists as timed in the interleaved confirmation rounds (empty when nothing was confirmed); best and
    # predicted above come from these rounds when they took part.
    confirmed: tuple[Measurement, ...] = field(default_factory=tuple)


def make_sampler(name: str, params: ParamSpace, seed: int | None) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=SEEDS, multivariate=True)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        grid = {k: list(v) for k, v in params.values.items()}
        return optuna.samplers.GridSampler(grid, seed=seed)
    raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {name!r}")


def _measurement_from(trial: optuna.trial.FrozenTrial) -> Measurement | None:
    attrs = trial.user_attrs
    if "config" not in attrs:
        return None
    config = KernelConfig.from_dict(attrs["config"])
    return Measurement(
        config, attrs.get("status", "ok" if trial.state == optuna.trial.TrialState.COMPLETE else "error"),
        seconds=attrs.get("seconds"), spread=attrs.get("spread"), samples=attrs.get("samples", 0),
        gflops=trial.value if trial.state == optuna.trial.TrialState.COMPLETE else None,
        max_rel_error=attrs.get("max_rel_error"), detail=attrs.get("detail", ""),
    )


def _measured(
    study: optuna.Study, trials: list[optuna.trial.FrozenTrial] | None = None
) -> dict[str, optuna.trial.FrozenTrial]:
    """config key -> the trial that measured it (COMPLETE or FAIL), over every process's trials (or `trials`).

    A trial failed because its process died before measuring (no "status") gives its configuration back, once: the
    next worker measures it. A configuration whose process died twice counts as failed, so that a candidate that
    somehow takes its tuner down is not retried forever.
    """
    done: dict[str, optuna.trial.FrozenTrial] = {}
    died: dict[str, list[optuna.trial.FrozenTrial]] = {}
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)
    for t in study.get_trials(deepcopy=False, states=finished) if trials is None else trials:
        key = t.user_attrs.get("config_key")
        if t.state not in finished or not key or t.user_attrs.get("duplicate_of"):
            continue
        if "status" in t.user_attrs:
            done.setdefault(key, t)
        else:
            died.setdefault(key, []).append(t)
    for key, deaths in died.items():
        if key not in done and len(deaths) >= 2:
            done[key] = deaths[-1]
    return done


def _in_flight(trials: list[optuna.trial.FrozenTrial], number: int) -> set[str]:
    """Config keys claimed by RUNNING trials other than trial `number` (any process, any host)."""
    return {
        t.user_attrs["config_key"] for t in trials
        if t.state == optuna.trial.TrialState.RUNNING and t.number != number and "config_key" in t.user_attrs
        and not t.user_attrs.get("duplicate_of")
    }


def claim(rdb: optuna.storages.RDBStorage, study: optuna.Study, trial: optuna.trial.Trial, key: str) -> bool:
    """Claim configuration `key` for `trial` unless it is measured or being measured: True if claimed.

    Check and claim are one step for every process on the study, on any host (locks.claiming): otherwise two workers
    drawing the same configuration at the same moment would both see it free and both measure it.
    """
    with claiming(rdb, study._study_id):
        # One read for both questions: a trial finishing between two reads would be in neither.
        trials = study.get_trials(deepcopy=False)
        if key in _measured(study, trials) or key in _in_flight(trials, trial.number):
            return False
        trial.set_user_attr("config_key", key)
        return True


class _Heartbeat:
    """Records heartbeats for the trials in flight, so other processes can tell a live trial from a dead one."""

    def __init__(self, storage: optuna.storages.RDBStorage) -> None:
        self.storage = storage
        self.trial_ids: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def add(self, trial_id: int) -> None:
        self.trial_ids.add(trial_id)
        self.storage.record_heartbeat(trial_id)

    def _run(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            for trial_id in list(self.trial_ids):
                try:
                    self.storage.record_heartbeat(trial_id)
                except Exception:  # a missed heartbeat is not worth ending the run
                    pass


def tune(
    shape: ConvShape,
    *,
    machine: Machine,
    fingerprint_id: str,
    trials: int = 40,
    threads: int = 1,
    storage: str | None = None,
    sampler: str = "tpe",
    timeout: float | None = None,
    space: str = "pruned",
    seed: int | None = None,
    min_time: float = 0.2,
    statistic: str = "median",
    candidate_timeout: float = 120.0,
    batch: int = 4,
    progress: bool = True,
    label: str = "",
    source_hook: SourceHook | None = None,
    grace_seconds: int | None = None,
    study_attrs: dict[str, Any] | None = None,
    trial_attrs: dict[str, Any] | None = None,
    simulate: Callable[[KernelConfig], Measurement] | None = None,
    confirm_top: int = CONFIRM_TOP,
    confirm_rounds: int = CONFIRM_ROUNDS,
) -> TuneResult:
    """Tune `shape` on this machine; resumable, shareable through `storage`, never measuring a config twice.

    machine: the description the model reads (this host's). fingerprint_id: this host's identity; the study is
    per (fingerprint, shape, threads, generator version), so results from another machine never mix in.
    space: "pruned" (the model's search space) or "unpruned" (every configuration: for comparisons).
    source_hook: test-only fault injection (rewrites a candidate's C source before it is compiled).
    study_attrs: provenance the study keeps (set when missing, first writer wins: host identity, layer name).
    trial_attrs: provenance every measured trial keeps (compiler, flags, peak: what this process measured with).
    simulate: replay recorded measurements instead of compiling and timing (as Kernel Tuner's simulation mode
    does): the search itself, sampler, seeding and deduplication included, runs for real against a table, so
    benchmarks of the search are repeatable and free of the machine's noise.
    confirm_top, confirm_rounds: the study's `confirm_top` fastest configurations and the model's are timed again
    in `confirm_rounds` interleaved rounds (order rotating), and the best is the fastest median of those rounds
    (0: take the study's fastest trial as measured). Not with `simulate`: a table does not drift.
    """
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    if space not in ("pruned", "unpruned"):
        raise ValueError(f"space must be 'pruned' or 'unpruned', got {space!r}")
    started = time.monotonic()
    plan = predict(shape, machine, threads)
    if space == "pruned":
        configs = list(search_space(shape, machine, threads).configs)
    else:
        configs = list(unpruned_space(shape, machine, threads))
    params = ParamSpace(configs)
    rdb = open_storage(storage, **({} if grace_seconds is None else {"grace_seconds": grace_seconds}))
    url = str(rdb.engine.url)
    name = study_name(fingerprint_id, shape, threads) + ("" if space == "pruned" else "/unpruned")
    study = optuna.create_study(
        storage=rdb, study_name=name, direction="maximize", sampler=make_sampler(sampler, params, seed),
        load_if_exists=True,
    )
    existing = study.user_attrs
    wanted = {"shape": shape.to_dict(), "machine": machine.id, "threads": threads, **(study_attrs or {})}
    for attr, value in wanted.items():
        if attr not in existing:
            study.set_user_attr(attr, value)
    fail_dead_trials(study)
    done = _measured(study)
    order = [c for c in configs if config_key(c) not in done]
    if space == "pruned" and not study.get_trials(deepcopy=False):
        # The model's plan and its next best guesses first; the unpruned space is the model-free baseline.
        seeds = [plan.config] + [c for c in configs if c != plan.config][: SEEDS - 1]
        for c in seeds:
            study.enqueue_trial(_params_of(c), skip_if_exists=True)
    if len(configs) <= trials:  # small space: sweep it whole, in the model's order
        for c in order:
            study.enqueue_trial(_params_of(c), skip_if_exists=True)

    budget = min(trials, len(order))
    bar = Progress(label or shape.describe(), budget, enabled=progress)
    measured_now = failed_now = 0
    failures: list[tuple[str, str, str]] = []
    duplicates_in_a_row = 0
    best = max((t.value for t in done.values() if t.value is not None), default=None)
    device = (Measurer(timeout=candidate_timeout, min_time=min_time, statistic=statistic) if simulate is None
              else contextlib.nullcontext())
    with device as measurer, _Heartbeat(rdb) as hb:
        while measured_now < budget:
            if timeout is not None and time.monotonic() - started > timeout:
                break
            fail_dead_trials(study)  # every batch: a worker that died meanwhile gives its configurations back
            done = _measured(study)
            if len(done) >= len(configs):
                break
            todo: list[tuple[optuna.trial.Trial, KernelConfig]] = []
            claimed: set[str] = set()
            for _ in range(min(batch, budget - measured_now)):
                trial = study.ask()
                hb.add(trial._trial_id)
                config = params.suggest(trial)
                key = config_key(config)
                if key in done or key in claimed:
                    config = None  # a duplicate: the sampler may propose it, we never measure it again
                if config is not None:
                    for attr, value in {"config": config.to_dict(), **owner()}.items():
                        trial.set_user_attr(attr, value)
                    if not claim(rdb, study, trial, key):
                        config = None
                if config is None:
                    trial.set_user_attr("duplicate_of", key)
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                    hb.trial_ids.discard(trial._trial_id)
                    duplicates_in_a_row += 1
                    if duplicates_in_a_row >= MAX_DUPLICATES_IN_A_ROW:
                        # The sampler keeps proposing measured points: hand it the model's next unmeasured one.
                        busy = _in_flight(study.get_trials(deepcopy=False), trial.number)
                        free = (c for c in configs if config_key(c) not in done and config_key(c) not in claimed)
                        nxt = next((c for c in free if config_key(c) not in busy), None)
                        if nxt is None:
                            if busy:  # the rest is being measured elsewhere: give those workers time to finish
                                time.sleep(1.0)
                            break
                        study.enqueue_trial(_params_of(nxt))
                        duplicates_in_a_row = 0
                    continue
                duplicates_in_a_row = 0
                claimed.add(key)
                todo.append((trial, config))
            if not todo:
                continue
            if simulate is None:
                with compiling():
                    built = compile_all([c for _, c in todo], shape, source_hook=source_hook)
            for trial, config in todo:
                b = built[config.compile_key()] if simulate is None else None
                if b is None:
                    m = simulate(config)  # type: ignore[misc]
                elif b.library is None:
                    m = Measurement(config, "compile_error", detail=b.error[:2000])
                else:
                    with measuring():
                        m = measurer.measure(config, shape, b.library)
                _record(trial, m, trial_attrs or {})
                if m.ok:
                    study.tell(trial, m.gflops)
                    best = max(best or 0.0, m.gflops or 0.0)
                else:
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                    failed_now += 1
                    failures.append((config_key(config), m.status, m.detail))
                hb.trial_ids.discard(trial._trial_id)
                measured_now += 1
                bar.update(measured_now, best, m.status if not m.ok else "")
        done = _measured(study)
        complete = [t for t in done.values() if t.state == optuna.trial.TrialState.COMPLETE]
        confirmed: tuple[Measurement, ...] = ()
        if simulate is None and confirm_top > 0 and confirm_rounds > 0 and complete:
            leaders = sorted(complete, key=lambda t: t.value, reverse=True)[:confirm_top]
            finalists = [KernelConfig.from_dict(t.user_attrs["config"]) for t in leaders]
            if config_key(plan.config) in done and plan.config not in finalists:
                finalists.append(plan.config)
            bar.note(f"confirming {len(finalists)} finalists in {confirm_rounds} interleaved rounds")
            confirmed = confirm(measurer, shape, finalists, confirm_rounds, source_hook)
    bar.close()
    best_trial = max(complete, key=lambda t: t.value, default=None)
    predicted_trial = done.get(config_key(plan.config))
    best_m = _measurement_from(best_trial) if best_trial else None
    predicted_m = _measurement_from(predicted_trial) if predicted_trial else None
    if confirmed:
        best_m = max(confirmed, key=lambda m: m.gflops or 0.0)
        predicted_m = next((m for m in confirmed if m.config == plan.config), predicted_m)
    return TuneResult(
        shape=shape, threads=threads, study_name=name, storage_url=url, best=best_m, predicted=predicted_m,
        measured_now=measured_now, failed_now=failed_now, trials_total=len(done),
        seconds=time.monotonic() - started, space_size=len(configs), failures=tuple(failures), confirmed=confirmed,
    )


def confirm(measurer: Measurer, shape: ConvShape, finalists: list[KernelConfig], rounds: int,
            source_hook: SourceHook | None = None) -> tuple[Measurement, ...]:
    """Time `finalists` again in `rounds` interleaved rounds, the order rotating every round (see
    bench.harness.schedule); each one's result is the median over rounds of its per-call median. A finalist that
    fails now (its library gone, a crash) drops out."""
    with compiling():  # normally all cached: the study compiled them
        built = compile_all(finalists, shape, source_hook=source_hook)
    by_key = {config_key(c): c for c in finalists if built[c.compile_key()].library is not None}
    seconds: dict[str, list[float]] = {key: [] for key in by_key}
    detail: dict[str, Measurement] = {}
    for order in schedule(list(by_key), rounds):
        for key in order:
            if key not in seconds:
                continue
            config = by_key[key]
            with measuring():
                m = measurer.measure(config, shape, built[config.compile_key()].library)
            if not m.ok or m.seconds is None:
                del seconds[key]  # failed now: not a finalist any more
                continue
            seconds[key].append(m.seconds)
            detail[key] = m
    out = []
    for key, values in seconds.items():
        values = sorted(values)
        median = float(np.median(values))
        spread = (float(np.percentile(values, 90)) - float(np.percentile(values, 10))) / median
        out.append(Measurement(by_key[key], "ok", seconds=median, spread=spread, samples=len(values),
                               gflops=shape.flops() / median / 1e9, max_rel_error=detail[key].max_rel_error,
                               detail=f"median of {len(values)} interleaved confirmation rounds"))
    return tuple(out)


def _params_of(config: KernelConfig) -> dict[str, Any]:
    return config_params(config)


def _record(trial: optuna.trial.Trial, m: Measurement, provenance: dict[str, Any]) -> None:
    for attr, value in provenance.items():
        trial.set_user_attr(attr, value)
    trial.set_user_attr("status", m.status)
    trial.set_user_attr("detail", m.detail[:2000])
    for attr in ("seconds", "spread", "samples", "max_rel_error"):
        value = getattr(m, attr)
        if value is not None:
            trial.set_user_attr(attr, value)
