"""Which configuration runs a layer when the caller gives none, and why.

Three sources, in order:
  1. "tuned":   the config store's entry for this machine's fingerprint, this exact shape and thread count;
  2. "nearest": else the tuned entry (same fingerprint and thread count) of the nearest shape, within 2x in
                channels and pixels with the same filter, whose configuration is valid for this one, if the model
                predicts it no slower here than the model's own plan;
  3. "model":   else the model's plan for this machine, with one UntunedWarning per process and shape that names
                the command that would tune it.
Every source ends in a compiled, register-blocked kernel: there is no generic fallback loop.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import warnings
from dataclasses import dataclass
from types import FrameType
from typing import Literal

from directconv.core.config import KernelConfig
from directconv.core.shape import ConvShape, kernel_kind
from directconv.machines.host import host
from directconv.machines.machine import Machine
from directconv.model import estimate_config, predict
from directconv.tuner import store

Source = Literal["tuned", "nearest", "model"]

_warned: set[tuple[str, ConvShape, int]] = set()
_lock = threading.Lock()


class UntunedWarning(UserWarning):
    """A layer runs the model's configuration because nothing was tuned for it on this machine."""


@dataclass(frozen=True)
class Choice:
    config: KernelConfig
    source: Source
    detail: str  # why, in words: the store entry, the neighbour and both estimates, or the model's reasons


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the checkout, or site-packages/..


def _user_stacklevel() -> int:
    """The stacklevel of the first frame outside directconv, so the warning names the user's line (Conv2d,
    conv2d and pack_weights reach here through different depths)."""
    level = 1
    frame: FrameType | None = sys._getframe(1)
    while (
        frame is not None
        and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE + os.sep)
        and "directconv" in frame.f_globals.get("__name__", "")
    ):
        level, frame = level + 1, frame.f_back
    return level


def _warn_once(kind: str, shape: ConvShape, threads: int, message: str, category: type[Warning]) -> None:
    with _lock:
        first = (kind, shape, threads) not in _warned
        _warned.add((kind, shape, threads))
    if first:
        warnings.warn(message, category, stacklevel=_user_stacklevel())


def tune_command(shape: ConvShape, threads: int) -> str:
    """The command line that tunes `shape` (a suite layer by name, else by its dimensions)."""
    from directconv.core.suite import suite

    for layer in suite():
        if layer.shape == shape:
            return f"directconv tune --layer {layer.name} --threads {threads}"
    if shape.sh == shape.sw and shape.dh == shape.dw and len({shape.pt, shape.pb, shape.pl, shape.pr}) == 1:
        extra = (f" --dilation {shape.dh}" if shape.dilated else "") + (
            f" --groups {shape.groups}" if shape.groups > 1 else ""
        )
        return (
            f"directconv tune --ci {shape.ci} --co {shape.co} --h {shape.h} --w {shape.w} --kh {shape.kh} "
            f"--kw {shape.kw} --stride {shape.sh} --pad {shape.pt}{extra} --threads {threads}"
        )
    return f"directconv.tune(ConvShape(**{shape.to_dict()}), threads={threads})"


def shape_distance(a: ConvShape, b: ConvShape) -> float:
    """How unlike two layers are for reusing a configuration: the filter and stride decide the kernel's inner
    loops, so they weigh most; channels and output size decide edge tiles and cache fit, compared by ratio."""
    geometry = (a.kh, a.kw, a.sh, a.sw) != (b.kh, b.kw, b.sh, b.sw)
    return 10.0 * geometry + sum(
        abs(math.log(x / y)) for x, y in ((a.ci, b.ci), (a.co, b.co), (a.ho * a.wo, b.ho * b.wo))
    )


# A neighbour's configuration is reused only within this factor of the layer's input channels, output channels and
# output pixels (and with the same filter and stride): the model caps its estimates at the FMA peak, so it cannot
# tell a far neighbour's tile from its own plan (docs/design.md, "Nearest tuned shapes stay near").
NEAREST_MAX_RATIO = 2.0


def near_enough(a: ConvShape, b: ConvShape) -> bool:
    """Whether b is close enough to a for its tuned configuration to stand in (NEAREST_MAX_RATIO)."""
    if (a.kh, a.kw, a.sh, a.sw) != (b.kh, b.kw, b.sh, b.sw):
        return False
    pairs = ((a.ci, b.ci), (a.co, b.co), (a.ho * a.wo, b.ho * b.wo))
    return all(max(x, y) <= NEAREST_MAX_RATIO * min(x, y) for x, y in pairs)


def nearest_tuned(shape: ConvShape, threads: int, machine: Machine, found: list[store.Found]) -> store.Found | None:
    """The entry of the nearest other shape near enough (near_enough), run by the same kind of kernel, whose
    configuration is valid for `shape` (a register tile tuned for the broadcast kernel says nothing about the
    lane-wise one)."""
    kind = kernel_kind(shape, machine.n_vec)
    candidates = []
    for f in found:
        if f.entry.threads != threads or f.entry.shape == shape or f.entry.config.lanes != machine.n_vec:
            continue
        if kernel_kind(f.entry.shape, machine.n_vec) != kind or not near_enough(shape, f.entry.shape):
            continue
        try:
            f.entry.config.check_fits(shape)
        except ValueError:
            continue
        candidates.append((shape_distance(shape, f.entry.shape), f.entry.layer or f.entry.shape.describe(), f))
    if not candidates:
        return None
    return min(candidates, key=lambda c: c[:2])[2]


def choose_config(shape: ConvShape, threads: int = 1, *, warn: bool = True) -> Choice:
    """The configuration for `shape` with `threads` on this machine (see the module docstring for the order).

    Entries tuned on another fingerprint are never used; the first time one exists for a shape, a warning shows
    both fingerprints. A broken store file warns and is skipped (see tuner.store). `warn=False` is for callers
    that report the source themselves (bench, export).
    """
    h = host()
    found = [f for f in store.entries_for(h.fingerprint_id) if f.entry.measured_todays_kernel()]
    exact = next((f for f in found if f.entry.shape == shape and f.entry.threads == threads), None)
    if exact is not None:
        e = exact.entry
        return Choice(
            e.config, "tuned", f"tuned on {e.date} ({e.gflops:.1f} GFLOP/s, {e.trials} trials), {exact.file.path}"
        )
    plan = predict(shape, h.machine, threads)
    near = nearest_tuned(shape, threads, h.machine, found)
    theirs = estimate_config(shape, h.machine, near.entry.config) if near is not None else 0.0
    if near is not None and theirs >= plan.predicted_gflops * (1 - 1e-9):
        e = near.entry
        return Choice(
            e.config,
            "nearest",
            (
                f"tuned for {e.layer or e.shape.describe()} ({e.shape.describe()}) on {e.date}, {near.file.path}; the "
                f"model predicts {theirs:.1f} GFLOP/s for it here, its own plan {plan.predicted_gflops:.1f}"
            ),
        )
    if warn:
        foreign = store.foreign_entries(shape, threads, h.fingerprint_id)
        if foreign:
            other = foreign[0].file
            _warn_once(
                "foreign",
                shape,
                threads,
                (
                    f"a tuned config for {shape.describe()} exists for machine {other.machine} (fingerprint "
                    f"{other.fingerprint_id}: {other.fingerprint.get('model_name', '?')}), "
                    f"but this host's fingerprint is "
                    f"{h.fingerprint_id} ({h.fingerprint.get('model_name', '?')}): not used."
                ),
                UserWarning,
            )
        _warn_once(
            "untuned",
            shape,
            threads,
            (
                f"no tuned configuration for {shape.describe()} with {threads} thread(s) on this machine "
                f"({h.machine.id}, fingerprint {h.fingerprint_id}): running the model's prediction "
                f"({plan.predicted_gflops:.1f} GFLOP/s estimated). Tune it with: {tune_command(shape, threads)}"
            ),
            UntunedWarning,
        )
    why = plan.explain()
    if near is not None:
        why += (
            f"\n  (nearest tuned shape {near.entry.shape.describe()}: the model predicts {theirs:.1f} GFLOP/s for "
            "its config here, slower)"
        )
    return Choice(plan.config, "model", why)


def default_config(shape: ConvShape, *, threads: int = 1) -> KernelConfig:
    """choose_config(shape, threads).config: what conv2d runs when given no config."""
    return choose_config(shape, threads).config
