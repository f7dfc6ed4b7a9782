"""Which configuration runs a layer when the caller gives none: a tuned one for this machine, else the model's."""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass

from directconv.host import host
from directconv.kernels.config import KernelConfig
from directconv.kernels.shape import ConvShape
from directconv.model import predict
from directconv.tuner import store

_warned: set[tuple[ConvShape, int]] = set()
_lock = threading.Lock()


@dataclass(frozen=True)
class Choice:
    config: KernelConfig
    source: str  # "tuned" or "model"
    detail: str  # why, in words: the store entry, or the model's reasons


def choose_config(shape: ConvShape, threads: int = 1) -> Choice:
    """The configuration for `shape` with `threads` on this machine.

    1. a tuned entry in the config store for this machine's fingerprint, this exact shape and thread count;
    2. else the model's prediction for this machine's description.
    Entries tuned on another fingerprint are never used; the first time one exists for a shape, a warning shows
    both fingerprints. A broken store file warns and is skipped (see tuner.store).
    """
    h = host()
    found = store.lookup(shape, threads, h.fingerprint_id)
    if found is not None:
        e = found.entry
        return Choice(e.config, "tuned", f"tuned on {e.date} ({e.gflops:.1f} GFLOP/s, {e.trials} trials), {found.file.path}")
    foreign = store.foreign_entries(shape, threads, h.fingerprint_id)
    if foreign:
        with _lock:
            first = (shape, threads) not in _warned
            _warned.add((shape, threads))
        if first:
            other = foreign[0].file
            warnings.warn(
                f"a tuned config for {shape.describe()} exists for machine {other.machine} (fingerprint "
                f"{other.fingerprint_id}: {other.fingerprint.get('model_name', '?')}), but this host's fingerprint is "
                f"{h.fingerprint_id} ({h.fingerprint.get('model_name', '?')}): not used; the model's prediction runs "
                f"instead. Tune here with `directconv tune`.",
                stacklevel=3,
            )
    plan = predict(shape, h.machine, threads)
    return Choice(plan.config, "model", plan.explain())


def default_config(shape: ConvShape, *, threads: int = 1) -> KernelConfig:
    """choose_config(shape, threads).config: what conv2d runs when given no config."""
    return choose_config(shape, threads).config
