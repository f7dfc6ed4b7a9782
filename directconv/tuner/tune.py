"""tune(): find the fastest configuration of one layer on this machine with an Optuna study.

Stages:
  prepare  open the study, build the search space, enqueue the model's configurations (or the whole small space);
  ask      ask Optuna for a batch, drop configurations already measured or being measured in the study (by this or
           any other process, on any host: trials.claim), claim the rest;
  measure  compile the batch in parallel, then time one candidate at a time (the backend: backend.py), tell Optuna;
  confirm  time the finalists again, side by side, in interleaved rounds (Backend.rounds), and call the best.
ask and measure repeat until the trial budget, the space or the time runs out. Failures (crash, hang, compile error,
wrong answer) are trials like any other, never the end of the run.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna

from directconv.core.config import KernelConfig
from directconv.core.shape import ConvShape
from directconv.machines.machine import Machine
from directconv.model import Plan, predict, search_space, unpruned_space
from directconv.tuner.backend import Backend, RealBackend, measure_built
from directconv.tuner.harness import summarize
from directconv.tuner.locks import claiming
from directconv.tuner.measure import Measurement
from directconv.tuner.params import ParamSpace, config_key, config_params
from directconv.tuner.progress import Progress
from directconv.tuner.storage import GRACE_SECONDS, fail_dead_trials, open_storage, study_name
from directconv.tuner.trials import Heartbeat, claim, in_flight, measured, measurement_from, record
from directconv.tuner.trials import ask as ask_trial

__all__ = ["SAMPLERS", "Provenance", "TuneOptions", "TuneResult", "make_sampler", "tune"]

SAMPLERS = ("tpe", "cmaes", "grid", "random")
SPACES = ("pruned", "unpruned")

# Optuna warns when a storage with heartbeats is used outside Study.optimize; this tuner records the heartbeats of
# its ask/tell trials itself (trials.Heartbeat), so the warning would only mislead.
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")

SEEDS = 8  # model configurations enqueued before the sampler takes over
MAX_DUPLICATES_IN_A_ROW = 5
# The finalists (the study's fastest configurations and the model's own) are timed again, side by side, before one
# is called best: a study times its candidates minutes apart, and on a shared host the same kernel runs up to 30%
# faster or slower from one minute to the next, enough to crown whichever candidate ran in a quiet moment.
CONFIRM_TOP = 4
CONFIRM_ROUNDS = 5


@dataclass(frozen=True)
class TuneOptions:
    """How one study searches. How candidates are measured (min_time, statistic, timeout) is the backend's.

    trials: candidates to measure in this call. sampler: one of SAMPLERS; seed: its seed. timeout: seconds for the
    whole call (None: no limit). space: "pruned" (the model's search space, seeded with the model's configurations)
    or "unpruned" (every configuration, nothing seeded: the model-free baseline). batch: candidates compiled
    together. confirm_top, confirm_rounds: the study's `confirm_top` fastest configurations and the model's are timed
    again in `confirm_rounds` interleaved rounds, and the best is the fastest median of those rounds (either 0: the
    study's fastest trial as measured). grace_seconds: how long a trial may miss heartbeats before it counts as dead.
    progress, label: the progress line and its label (default: the shape).
    """

    trials: int = 40
    sampler: str = "tpe"
    seed: int | None = None
    timeout: float | None = None
    space: str = "pruned"
    batch: int = 4
    confirm_top: int = CONFIRM_TOP
    confirm_rounds: int = CONFIRM_ROUNDS
    grace_seconds: int = GRACE_SECONDS
    progress: bool = True
    label: str = ""

    def __post_init__(self) -> None:
        for name in ("trials", "batch", "grace_seconds"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name} >= 1` must hold, but got {name}={getattr(self, name)}")
        for name in ("confirm_top", "confirm_rounds"):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name} >= 0` must hold, but got {name}={getattr(self, name)}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if self.space not in SPACES:
            raise ValueError(f"space must be 'pruned' or 'unpruned', got {self.space!r}")
        if self.timeout is not None and not self.timeout > 0:
            raise ValueError(f"`timeout > 0` (or None) must hold, but got timeout={self.timeout}")


@dataclass(frozen=True)
class Provenance:
    """What the study and its trials keep besides the measurements, for `directconv store export`.

    study: set on the study when missing (first writer wins: host identity, layer name). trial: set on every
    measured trial (compiler, flags, peak: what this process measured with).
    """

    study: Mapping[str, Any] = field(default_factory=dict)
    trial: Mapping[str, Any] = field(default_factory=dict)


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


@dataclass(frozen=True)
class Search:
    """What prepare() sets up and every later stage reads."""

    shape: ConvShape
    threads: int
    options: TuneOptions
    plan: Plan
    configs: tuple[KernelConfig, ...]  # the search space, in the model's order
    params: ParamSpace
    rdb: optuna.storages.RDBStorage
    study: optuna.Study
    trial_attrs: Mapping[str, Any]
    budget: int  # candidates this call measures at most: the trials asked for, or what is left of the space


@dataclass
class Tally:
    """What this call has done so far (the study holds every call's)."""

    best: float | None = None
    measured: int = 0
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    duplicates_in_a_row: int = 0


@dataclass(frozen=True)
class Candidate:
    trial: optuna.trial.Trial
    config: KernelConfig
    key: str


def tune(
    shape: ConvShape,
    *,
    machine: Machine,
    fingerprint_id: str,
    threads: int = 1,
    storage: str | None = None,
    options: TuneOptions | None = None,
    backend: Backend | None = None,
    provenance: Provenance | None = None,
) -> TuneResult:
    """Tune `shape` on this machine; resumable, shareable through `storage`, never measuring a config twice.

    machine: the description the model reads (this host's). fingerprint_id: this host's identity; the study is
    per (fingerprint, shape, threads, generator version), so results from another machine never mix in.
    storage: an Optuna storage URL (default: the SQLite file in the user data directory). backend: where candidates
    are built and timed (default: RealBackend(), this machine, closed on return; a backend passed in stays open).
    options: TuneOptions() by default; provenance: what the study and its trials keep (default: nothing more).
    """
    started = time.monotonic()
    options = options or TuneOptions()
    provenance = provenance or Provenance()
    s = prepare(shape, machine, fingerprint_id, threads, storage, options, provenance)
    bar = Progress(options.label or shape.describe(), s.budget, enabled=options.progress)
    tally = Tally(best=max((t.value for t in measured(s.study).values() if t.value is not None), default=None))
    device = backend or RealBackend()
    try:
        with Heartbeat(s.rdb) as heartbeat:
            while tally.measured < s.budget and not _out_of_time(options, started):
                done = _refresh(s)
                if len(done) >= len(s.configs):
                    break
                batch = ask(s, done, tally, heartbeat, min(options.batch, s.budget - tally.measured))
                measure(s, device, batch, tally, heartbeat, bar)
            confirmed = confirm(s, device, bar)
    finally:
        bar.close()
        if backend is None:
            device.close()
    return _result(s, tally, confirmed, time.monotonic() - started)


# ---------------------------------------------------------------------------------------------- prepare


def prepare(
    shape: ConvShape,
    machine: Machine,
    fingerprint_id: str,
    threads: int,
    storage: str | None,
    options: TuneOptions,
    provenance: Provenance,
) -> Search:
    """Open (or resume) the study, fail the trials of dead processes, and enqueue what goes first: the model's
    plan and its next best guesses (pruned space, new study), the whole space when the budget covers it."""
    plan = predict(shape, machine, threads)
    if options.space == "pruned":
        configs = tuple(search_space(shape, machine, threads).configs)
    else:
        configs = tuple(unpruned_space(shape, machine, threads))
    params = ParamSpace(configs)
    rdb = open_storage(storage, grace_seconds=options.grace_seconds)
    name = study_name(fingerprint_id, shape, threads) + ("" if options.space == "pruned" else "/unpruned")
    study = optuna.create_study(
        storage=rdb,
        study_name=name,
        direction="maximize",
        load_if_exists=True,
        sampler=make_sampler(options.sampler, params, options.seed),
    )
    wanted = {"shape": shape.to_dict(), "machine": machine.id, "threads": threads, **provenance.study}
    existing = study.user_attrs
    for attr, value in wanted.items():
        if attr not in existing:
            study.set_user_attr(attr, value)
    fail_dead_trials(study)
    done = measured(study)
    order = [c for c in configs if config_key(c) not in done]
    if options.space == "pruned":
        _seed(rdb, study, [plan.config] + [c for c in configs if c != plan.config][: SEEDS - 1])
    if len(configs) <= options.trials:  # small space: sweep it whole, in the model's order
        for c in order:
            study.enqueue_trial(config_params(c), skip_if_exists=True)
    return Search(
        shape,
        threads,
        options,
        plan,
        configs,
        params,
        rdb,
        study,
        dict(provenance.trial),
        budget=min(options.trials, len(order)),
    )


def _seed(rdb: optuna.storages.RDBStorage, study: optuna.Study, seeds: list[KernelConfig]) -> None:
    """Enqueue the model's plan and its next best guesses in a new study (the unpruned space is the model-free
    baseline: never seeded). Under the claim lock, so that workers starting together seed it once."""
    with claiming(rdb, study._study_id):
        if not study.get_trials(deepcopy=False):
            for c in seeds:
                study.enqueue_trial(config_params(c))


def _out_of_time(options: TuneOptions, started: float) -> bool:
    return options.timeout is not None and time.monotonic() - started > options.timeout


def _refresh(s: Search) -> dict[str, optuna.trial.FrozenTrial]:
    """The measured configurations, after failing the trials of processes that died meanwhile (their
    configurations go back to the pool)."""
    fail_dead_trials(s.study)
    return measured(s.study)


# ---------------------------------------------------------------------------------------------- ask


def ask(
    s: Search, done: Mapping[str, optuna.trial.FrozenTrial], tally: Tally, heartbeat: Heartbeat, size: int
) -> list[Candidate]:
    """Up to `size` claimed candidates that nobody has measured or is measuring.

    A proposal already measured, in flight elsewhere or drawn twice in this batch is told PRUNED (duplicate_of) and
    never measured; after MAX_DUPLICATES_IN_A_ROW of them the model's next free configuration is enqueued for the
    sampler. Empty when everything left is being measured elsewhere.
    """
    batch: list[Candidate] = []
    for _ in range(size):
        trial = ask_trial(s.rdb, s.study)
        heartbeat.add(trial)
        config = s.params.suggest(trial)
        key = config_key(config)
        if key not in done and all(c.key != key for c in batch) and _claim(s, trial, config, key):
            tally.duplicates_in_a_row = 0
            batch.append(Candidate(trial, config, key))
            continue
        trial.set_user_attr("duplicate_of", key)
        s.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        heartbeat.discard(trial)
        tally.duplicates_in_a_row += 1
        if tally.duplicates_in_a_row >= MAX_DUPLICATES_IN_A_ROW:
            if not _enqueue_next_free(s, trial.number, done, batch):
                break
            tally.duplicates_in_a_row = 0
    return batch


def _claim(s: Search, trial: optuna.trial.Trial, config: KernelConfig, key: str) -> bool:
    trial.set_user_attr("config", config.to_dict())
    return claim(s.rdb, s.study, trial, key)


def _enqueue_next_free(
    s: Search, number: int, done: Mapping[str, optuna.trial.FrozenTrial], batch: list[Candidate]
) -> bool:
    """Hand the sampler, which keeps proposing measured points, the model's next free configuration: False if
    there is none (then, if others are measuring the rest, after giving them a second to finish)."""
    mine = {c.key for c in batch}
    elsewhere = in_flight(s.study.get_trials(deepcopy=False), number) - mine - set(done)
    free = next((c for c in s.configs if config_key(c) not in done and config_key(c) not in mine | elsewhere), None)
    if free is None:
        if elsewhere:
            time.sleep(1.0)
        return False
    s.study.enqueue_trial(config_params(free))
    return True


# ---------------------------------------------------------------------------------------------- measure


def measure(
    s: Search, backend: Backend, batch: list[Candidate], tally: Tally, heartbeat: Heartbeat, bar: Progress
) -> None:
    """Compile the batch together, then measure and tell its candidates one at a time."""
    if not batch:
        return
    built = backend.compile([c.config for c in batch], s.shape)
    for c in batch:
        m = measure_built(backend, c.config, s.shape, built[c.config.compile_key()])
        record(c.trial, m, s.trial_attrs)
        if m.ok:
            s.study.tell(c.trial, m.gflops)
            tally.best = max(tally.best or 0.0, m.gflops or 0.0)
        else:
            s.study.tell(c.trial, state=optuna.trial.TrialState.FAIL)
            tally.failures.append((c.key, m.status, m.detail))
        heartbeat.discard(c.trial)
        tally.measured += 1
        bar.update(tally.measured, tally.best, "" if m.ok else m.status)


# ---------------------------------------------------------------------------------------------- confirm


def confirm(s: Search, backend: Backend, bar: Progress) -> tuple[Measurement, ...]:
    """The finalists (the study's `confirm_top` fastest and the model's plan) timed again in interleaved rounds;
    each one's result is the median over rounds. A finalist that fails now (its library gone, a crash) drops out."""
    rounds = s.options.confirm_rounds
    done = measured(s.study)
    complete = sorted(
        (t for t in done.values() if t.state == optuna.trial.TrialState.COMPLETE), key=_value, reverse=True
    )
    finalists = [KernelConfig.from_dict(t.user_attrs["config"]) for t in complete[: s.options.confirm_top]]
    if not finalists or rounds == 0:
        return ()
    plan = done.get(config_key(s.plan.config))
    if plan is not None and plan.state == optuna.trial.TrialState.COMPLETE and s.plan.config not in finalists:
        finalists.append(s.plan.config)
    bar.note(f"confirming {len(finalists)} finalists in {rounds} interleaved rounds")
    built = backend.compile(finalists, s.shape)  # normally all cached: the study compiled them
    per_round = backend.rounds(finalists, s.shape, built, rounds)
    return tuple(
        _confirmed(s.shape, c, [r[c] for r in per_round], done[config_key(c)])
        for c in finalists
        if all(c in r for r in per_round)
    )


def _confirmed(
    shape: ConvShape, config: KernelConfig, gflops: list[float], trial: optuna.trial.FrozenTrial
) -> Measurement:
    stats = summarize([shape.flops() / g / 1e9 for g in gflops])
    checked = measurement_from(trial)  # correctness was checked when the study measured this very kernel
    return Measurement(
        config,
        "ok",
        seconds=stats.median,
        spread=stats.spread,
        samples=stats.count,
        gflops=shape.flops() / stats.median / 1e9,
        max_rel_error=checked.max_rel_error if checked else None,
        detail=f"median of {stats.count} interleaved confirmation rounds",
    )


# ---------------------------------------------------------------------------------------------- result


def _value(trial: optuna.trial.FrozenTrial) -> float:
    """A trial's GFLOP/s, for ranking (-inf for one without a value, which a complete trial never is)."""
    return trial.value if trial.value is not None else -math.inf


def _result(s: Search, tally: Tally, confirmed: tuple[Measurement, ...], seconds: float) -> TuneResult:
    done = measured(s.study)
    complete = [t for t in done.values() if t.state == optuna.trial.TrialState.COMPLETE]
    best_trial = max(complete, key=_value, default=None)
    predicted_trial = done.get(config_key(s.plan.config))
    best = measurement_from(best_trial) if best_trial else None
    predicted = measurement_from(predicted_trial) if predicted_trial else None
    if confirmed:
        best = max(confirmed, key=lambda m: m.gflops or 0.0)
        predicted = next((m for m in confirmed if m.config == s.plan.config), predicted)
    return TuneResult(
        shape=s.shape,
        threads=s.threads,
        study_name=s.study.study_name,
        storage_url=str(s.rdb.engine.url),
        best=best,
        predicted=predicted,
        measured_now=tally.measured,
        failed_now=len(tally.failures),
        trials_total=len(done),
        seconds=seconds,
        space_size=len(s.configs),
        failures=tuple(tally.failures),
        confirmed=confirmed,
    )
