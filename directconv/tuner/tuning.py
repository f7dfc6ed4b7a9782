"""directconv.tune(): autotune one layer on this machine and keep the best configuration in the config store."""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass

from directconv.core.isa import get_isa
from directconv.core.shape import ConvShape
from directconv.core.version import __version__
from directconv.kernels.codegen import GENERATOR_VERSION
from directconv.kernels.compiler import BASE_FLAGS, find_compiler
from directconv.machines.host import host
from directconv.machines.loader import load_machine
from directconv.machines.machine import Machine
from directconv.tuner import store
from directconv.tuner.backend import RealBackend
from directconv.tuner.locks import measuring
from directconv.tuner.measure import Measurement
from directconv.tuner.tune import Provenance, TuneOptions, TuneResult
from directconv.tuner.tune import tune as run_study


@functools.cache
def measured_peak(threads: int) -> float:
    """This host's FMA peak for `threads` (GFLOP/s), measured once per process: the 100% of "% of peak"."""
    from directconv.tuner.peak import measure_peaks

    with measuring():  # a timing like any other: not while another tuner on this host compiles or measures
        return measure_peaks((threads,), repeats=3, seconds=0.05)[threads].gflops


@dataclass(frozen=True)
class Tuned:
    """The outcome of tuning one layer: the best configuration with its statistics, and the model's for contrast."""

    layer: str
    result: TuneResult
    peak_gflops: float
    entry: store.Entry | None  # what the store holds for this layer now (None: nothing correct was measured)
    written: bool  # whether this run improved the store
    predicted: Measurement | None

    @property
    def best(self) -> Measurement | None:
        return self.result.best

    @property
    def percent_of_peak(self) -> float | None:
        return None if self.best is None or self.best.gflops is None else 100 * self.best.gflops / self.peak_gflops

    @property
    def gain(self) -> float | None:
        """Tuned GFLOP/s over the model's prediction measured in the same study."""
        if self.best is None or self.predicted is None or not self.predicted.gflops:
            return None
        return (self.best.gflops or 0.0) / self.predicted.gflops


def tune(
    shape: ConvShape,
    *,
    trials: int = 40,
    threads: int = 1,
    storage: str | None = None,
    machine: str | Machine | None = None,
    sampler: str = "tpe",
    timeout: float | None = None,
    store_dir: str | None = None,
    layer: str = "",
    progress: bool = True,
    min_time: float = 0.2,
    statistic: str = "median",
) -> Tuned:
    """Tune `shape` on this device and record the best configuration in the user config store.

    machine: the description the model plans with (id, YAML path or Machine); default: this host's. The study and
    the store are keyed by this host's fingerprint whatever the description, since the timings are this host's.
    storage: any Optuna storage URL; default an SQLite file in the user data directory. The study and its trials
    keep what `directconv store export` needs to rebuild the store entry (host identity, compiler, flags, peak).
    """
    # Invalid options fail here, before the peak is measured.
    options = TuneOptions(
        trials=trials, sampler=sampler, timeout=timeout, progress=progress, label=layer or shape.describe()
    )
    h = host()
    if machine is None:
        desc = h.machine
    elif isinstance(machine, Machine):
        desc = machine
    else:
        desc = load_machine(machine)
    peak = measured_peak(threads) if threads not in desc.peak_gflops else desc.peak_gflops[threads]
    compiler = find_compiler()
    provenance = Provenance(
        study={
            "host_machine": h.machine.id,
            "fingerprint_id": h.fingerprint_id,
            "fingerprint": h.fingerprint,
            **({"layer": layer} if layer else {}),
        },
        trial={
            "compiler": compiler.version,
            "flags": list(BASE_FLAGS) + list(get_isa(desc.isa).flags),
            "peak_gflops": peak,
            "directconv_version": __version__,
        },
    )
    with RealBackend(min_time=min_time, statistic=statistic) as backend:
        result = run_study(
            shape,
            machine=desc,
            fingerprint_id=h.fingerprint_id,
            threads=threads,
            storage=storage,
            options=options,
            backend=backend,
            provenance=provenance,
        )
    best = result.best
    entry = None
    written = False
    if best is not None and best.gflops:
        entry = store.Entry(
            layer=layer,
            shape=shape,
            threads=threads,
            config=best.config,
            gflops=round(best.gflops, 3),
            spread=round(best.spread or 0.0, 4),
            percent_of_peak=round(100 * best.gflops / peak, 2),
            trials=result.trials_total,
            date=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            directconv_version=__version__,
            generator_version=GENERATOR_VERSION,
            compiler=compiler.version,
            flags=tuple(BASE_FLAGS) + tuple(get_isa(best.config.isa).flags),
        )
        written, _ = store.record(
            entry, machine=h.machine.id, fingerprint_id=h.fingerprint_id, fingerprint=h.fingerprint, store=store_dir
        )
        if not written:
            found = store.lookup(shape, threads, h.fingerprint_id, store=store_dir)
            entry = found.entry if found else entry
    return Tuned(layer, result, peak, entry, written, result.predicted)
