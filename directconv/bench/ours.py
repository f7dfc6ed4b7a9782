"""directconv itself on one layer, measured two ways: the blocked path a network would use, and the plain NCHW path.

Both use the configuration directconv would choose (tuner.select.choose_config(shape, T)), or with
`--source model` the model's plan for this host, and weights packed once, outside the timing.
"""

from __future__ import annotations

import numpy as np

import directconv
from directconv.bench.base import Impl, Prepared
from directconv.bench.layer import LayerProblem
from directconv.core.config import KernelConfig
from directconv.kernels import layout
from directconv.kernels.layout import blocks
from directconv.machines.host import host
from directconv.model import predict
from directconv.nn.api import nchw_working_bytes
from directconv.tuner.select import choose_config


def choose(problem: LayerProblem, threads: int) -> tuple[KernelConfig, str]:
    """The configuration to measure and its source: "tuned", "nearest" or "model"."""
    if problem.source == "model":
        return predict(problem.shape, host().machine, threads).config, "model"
    # The bench records the source itself, so no UntunedWarning.
    choice = choose_config(problem.shape, threads, warn=False)
    return choice.config, choice.source


def _pack(problem: LayerProblem, threads: int) -> tuple[directconv.PackedWeights, str]:
    config, source = choose(problem, threads)
    s = problem.shape
    # Compiles the kernel (or finds it in the disk cache) now, so no call below pays for it.
    packed = directconv.pack_weights(
        problem.w,
        input_size=(s.h, s.w),
        stride=problem.stride,
        padding=problem.padding,
        dilation=problem.dilation,
        groups=problem.groups,
        config=config,
    )
    return packed, source


def prepare_blocked(problem: LayerProblem, threads: int) -> Prepared:
    """conv2d_blocked from a pre-blocked input into a preallocated output: the timed call allocates nothing."""
    packed, source = _pack(problem, threads)
    config = packed.config
    s = problem.shape
    xb = directconv.to_blocked(problem.x, isa=config.isa, threads=threads)
    out = directconv.BlockedTensor(
        layout.empty_aligned((1, blocks(s.co, config.lanes), s.ho, s.wo, config.lanes), zero=True), s.co
    )

    def call() -> directconv.BlockedTensor:
        return directconv.conv2d_blocked(xb, packed, out=out)

    return Prepared(call, directconv.from_blocked, extra_memory_bytes=0, config=config.to_dict(), config_source=source)


def prepare_nchw(problem: LayerProblem, threads: int) -> Prepared:
    """NCHW in, NCHW out: directconv.conv2d_nchw (to_blocked + conv2d_blocked + from_blocked, or one of the kernel's
    NCHW entries), weights packed once.

    This is directconv.conv2d without its weight packing, which a user running a layer more than once does
    once; the layout conversions of input and output are part of every call, as they are for such a user.
    """
    packed, source = _pack(problem, threads)
    config = packed.config
    x = problem.x

    def call() -> np.ndarray:
        return directconv.conv2d_nchw(x, packed, threads=threads)

    temporaries = nchw_working_bytes(packed, x.shape[0], threads)
    return Prepared(call, np.asarray, extra_memory_bytes=temporaries, config=config.to_dict(), config_source=source)


IMPLS: tuple[Impl[LayerProblem], ...] = (
    Impl(
        "directconv-blocked",
        "conv2d_blocked on blocked input, weights packed once, preallocated output (allocates nothing)",
        prepare_blocked,
        peer=False,
        nchw=False,
    ),
    Impl(
        "directconv-nchw",
        "NCHW in/out: conv2d_nchw, conversions included in every call (blocked copies or a one-pass scratch in "
        "reused per-thread buffers; none for 1x1 and depthwise layers whose planes are read in place), weights "
        "packed once",
        prepare_nchw,
        peer=False,
    ),
)
