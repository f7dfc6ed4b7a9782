"""Run a machine's kernels on a sweep of shapes and check every output against the float64 reference.

How depends on what this host can execute:
- "native": the host runs the machine's ISA and every feature its -march names; the kernels are built with the
  machine's own flags and run here;
- "qemu": another architecture (AArch64 on x86-64): built with the cross compiler, run under qemu-user;
- "host-isa": an x86 ISA the host lacks (AVX-512 on an AVX2 host), or an -march naming features it lacks
  (Piledriver's FMA4 and XOP on a Zen 3): the same generated vector code (for AVX-512 16 lanes, the
  machine's tiles, tails and masks) is compiled for the host's best ISA instead, without the register pins whose
  constraints name the missing registers. Everything in the generated C that does not depend on the instruction
  set is proven; the instruction selection for the missing ISA is what `directconv inspect` reads.
Each case is a driver executable (kernels/c/dc_driver.c) run in a process of its own, so a crash fails that case,
not the run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from directconv.core.config import KernelConfig
from directconv.core.isa import ISAS, PREFERENCE, host_isas
from directconv.core.shape import ConvShape, kernel_kind
from directconv.kernels import cross, generator, layout
from directconv.kernels.reference import reference_for, tolerance
from directconv.machines.host import runs_code_for
from directconv.machines.machine import Machine
from directconv.model import predict

How = Literal["native", "qemu", "host-isa"]


@dataclass(frozen=True)
class Case:
    name: str
    shape: ConvShape
    config: KernelConfig
    batch: int = 1
    relu: bool = False


@dataclass(frozen=True)
class CaseResult:
    name: str
    shape: str
    config: dict[str, Any]
    passed: bool
    max_rel_error: float | None
    tolerance: float
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class SelfTest:
    machine: str
    how: How
    detail: str
    cases: tuple[CaseResult, ...]

    @property
    def passed(self) -> int:
        return sum(c.passed for c in self.cases)

    @property
    def failed(self) -> int:
        return len(self.cases) - self.passed

    def to_dict(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "how": self.how,
            "detail": self.detail,
            "passed": self.passed,
            "failed": self.failed,
            "cases": [c.to_dict() for c in self.cases],
        }


# (name, C_i, C_o, H, W, kh, kw, stride, padding (top, bottom, left, right), dilation, groups): tails on both channel
# counts, strides, asymmetric padding, 1x1, 3x3, 5x5, 7x7 and 11x11 filters, rows and columns narrower than the
# tiles; dilated taps; and every kernel kind (core.shape.kernel_kind) on 4, 8 and 16 lanes: depthwise with and
# without a channel multiplier, groups of 4 and 3 channels (several groups per vector), groups of whole vectors.
SHAPES: tuple[tuple[str, int, int, int, int, int, int, int, tuple[int, int, int, int], int, int], ...] = (
    ("3x3-pad1", 16, 32, 10, 12, 3, 3, 1, (1, 1, 1, 1), 1, 1),
    ("3x3-tails", 19, 37, 9, 13, 3, 3, 1, (1, 1, 1, 1), 1, 1),
    ("3x3-stride2-asym", 21, 24, 11, 14, 3, 3, 2, (0, 1, 1, 0), 1, 1),
    ("1x1", 64, 48, 7, 7, 1, 1, 1, (0, 0, 0, 0), 1, 1),
    ("1x1-tails", 35, 29, 6, 9, 1, 1, 1, (0, 0, 0, 0), 1, 1),
    ("1x1-stride2", 32, 64, 14, 14, 1, 1, 2, (0, 0, 0, 0), 1, 1),
    ("5x5-pad2", 12, 40, 12, 12, 5, 5, 1, (2, 2, 2, 2), 1, 1),
    ("5x3-strided-asym", 9, 17, 13, 11, 5, 3, 2, (2, 1, 0, 1), 1, 1),
    ("7x7-stride2-3ch", 3, 24, 23, 23, 7, 7, 2, (3, 3, 3, 3), 1, 1),
    ("11x11-stride4-3ch", 3, 16, 35, 35, 11, 11, 4, (0, 0, 0, 0), 1, 1),
    ("3x3-nopad-narrow", 8, 8, 5, 4, 3, 3, 1, (0, 0, 0, 0), 1, 1),
    ("3x3-dilated2-asym", 16, 20, 13, 12, 3, 3, 1, (2, 1, 2, 0), 2, 1),
    ("depthwise-3x3", 40, 40, 9, 10, 3, 3, 1, (1, 1, 1, 1), 1, 40),
    ("depthwise-5x5-stride2-x2", 12, 24, 11, 12, 5, 5, 2, (2, 2, 2, 2), 1, 12),
    ("grouped-4ch-per-group", 32, 32, 8, 9, 3, 3, 1, (1, 1, 1, 1), 1, 8),
    ("grouped-3ch-dilated", 12, 12, 9, 8, 3, 3, 1, (2, 2, 2, 2), 2, 4),
    ("grouped-32ch-per-group", 64, 64, 7, 8, 3, 3, 1, (1, 1, 1, 1), 1, 2),
)


def cases(machine: Machine) -> list[Case]:
    """The sweep for `machine`: every shape with the model's configuration, then variants of the register tile,
    cache block, threading and batch that the prediction alone would not reach."""
    lanes = machine.n_vec
    out: list[Case] = []
    for name, ci, co, h, w, kh, kw, stride, pad, dilation, groups in SHAPES:
        shape = ConvShape(ci, co, h, w, kh, kw, stride, stride, *pad, dilation, dilation, groups)
        predicted = predict(shape, machine, 1).config
        out.append(Case(f"{name}/model", shape, predicted))
        narrow = dataclasses.replace(predicted, cob=lanes, wob=3, cib=None, unroll=1)
        out.append(Case(f"{name}/{lanes}x3-relu", shape, narrow, relu=True))
        broadcast = kernel_kind(shape, lanes) in ("plain", "grouped")  # only these block input channels
        threaded = dataclasses.replace(predicted, threads=2, parallel="rows", rows=2, cib=lanes if broadcast else None)
        out.append(Case(f"{name}/2-threads-rows-batch3", shape, threaded, batch=3))
    return [c for c in out if _fits(c)]


def _fits(case: Case) -> bool:
    try:
        case.config.check_fits(case.shape)
    except ValueError:
        return False
    return True


def how_to_run(machine: Machine) -> tuple[How, str]:
    """How this host runs `machine`'s kernels, with the reason in words; ValueError when it cannot."""
    target = cross.target_for(machine)
    arch = target.arch or cross.host_arch()
    if arch != cross.host_arch():
        if cross.emulator(arch) is None:
            raise ValueError(
                f"cannot run {arch} code on this {cross.host_arch()} host: install qemu-user and the "
                f"cross compiler (Debian/Ubuntu: apt-get install qemu-user gcc-{arch}-linux-gnu)"
            )
        return "qemu", f"{target.isa} code built by the {arch} cross compiler, run under qemu-{arch}"
    runs, why = runs_code_for(machine.compiler_flags)
    if target.isa in host_isas() and runs:
        return "native", f"{target.isa} code built with {machine.id}'s flags, run on this host ({why})"
    stand_in = _host_stand_in(target.isa)
    lacks = why if target.isa in host_isas() else f"this host cannot execute {target.isa}"
    return "host-isa", (
        f"{target.isa} code ({ISAS[target.isa].lanes} lanes, {machine.id}'s tiles) compiled for "
        f"this host's {stand_in} instead of {machine.id}'s flags: {lacks}"
    )


def _host_stand_in(isa: str) -> str:
    """The host's best ISA with the same architecture, to compile another ISA's vector code for."""
    for name in PREFERENCE:
        if name in host_isas() and name != "scalar" and ISAS[name].arch == ISAS[isa].arch:
            return name
    return "scalar"


def _executable(case: Case, machine: Machine, how: How) -> Any:
    if how != "host-isa":
        return cross.build_for_machine(case.config, case.shape, machine, "executable")
    stand_in = ISAS[_host_stand_in(case.config.isa)]
    target = cross.Target(
        machine=f"{machine.id} as {stand_in.name}",
        isa=case.config.isa,
        arch=ISAS[case.config.isa].arch,
        flags=stand_in.flags,
    )
    case.config.check_fits(case.shape)
    source = generator.generate(case.config, case.shape, pin=False)
    return cross.build_standalone(source, target, "executable", name=f"selftest-{machine.id}")


def random_operands(shape: ConvShape, batch: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NCHW input, OIHW weights and bias for `shape`, standard normal, reproducible from `seed`."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, shape.ci, shape.h, shape.w)).astype(np.float32)
    w = rng.standard_normal((shape.co, shape.cig, shape.kh, shape.kw)).astype(np.float32)
    b = rng.standard_normal(shape.co).astype(np.float32)
    return x, w, b


def run_on_driver(
    executable: Path,
    config: KernelConfig,
    shape: ConvShape,
    operands: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    relu: bool = False,
    prefix: tuple[str, ...] | None = None,
    nchw_scratch: int | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The blocked output of a driver executable on NCHW operands, packed as the kernel takes them (see
    cross.run_driver for `prefix`), and, for a kernel with an NCHW entry (`nchw_scratch`: its scratch floats per
    thread, generator.nchw_scratch), that entry's NCHW output on the same operands."""
    x, w, b = operands
    lanes = config.lanes
    return cross.run_driver(
        executable,
        ISAS[config.isa].arch,
        config,
        shape,
        layout.nchw_to_blocked(x, lanes),
        layout.pack_weights(w, lanes, config.cob, shape.groups),
        layout.pack_bias(b, shape, lanes, config.cob),
        relu=relu,
        prefix=prefix,
        nchw=None if nchw_scratch is None else (x, nchw_scratch),
    )


def _error(y: np.ndarray, ref: np.ndarray) -> float:
    """Largest |y - ref| over ref's largest magnitude."""
    return float(np.abs(y.astype(np.float64) - ref).max()) / max(float(np.abs(ref).max()), 1e-30)


def output_problem(
    yb: np.ndarray,
    shape: ConvShape,
    operands: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    relu: bool = False,
    nchw: np.ndarray | None = None,
) -> tuple[str | None, float | None]:
    """(what is wrong with the blocked output `yb`, or with the NCHW entry's output `nchw` when given, or None; the
    larger relative error against the float64 reference)."""
    x, w, b = operands
    if not np.isfinite(yb).all():
        return "outputs left unwritten (the driver starts them as NaN)", None
    planes = yb.transpose(0, 1, 4, 2, 3).reshape(x.shape[0], -1, shape.ho, shape.wo)
    if planes[:, shape.co :].any():  # the next layer reads whole channel blocks
        return "channels past C_o are not zero", None
    ref = reference_for(shape, x, w, b)  # float64, computed once for both entries
    if relu:
        ref = np.maximum(ref, 0.0)
    err = _error(layout.blocked_to_nchw(yb, shape.co), ref)
    bound = tolerance(shape.cig, shape.kh, shape.kw)
    if err > bound:
        return f"relative error {err:.3g} above the bound {bound:.3g}", err
    if nchw is not None:
        if not np.isfinite(nchw).all():
            return "NCHW entry: outputs left unwritten (the driver starts them as NaN)", err
        nchw_err = _error(nchw, ref)
        err = max(err, nchw_err)
        if nchw_err > bound:
            return f"NCHW entry: relative error {nchw_err:.3g} above the bound {bound:.3g}", err
    return None, err


def run_case(case: Case, machine: Machine, how: How, seed: int = 0) -> CaseResult:
    """Build and run one case; any failure (compile error, crash, wrong answer) is its result, not an exception."""
    shape, config = case.shape, case.config
    bound = tolerance(shape.cig, shape.kh, shape.kw)

    def result(error: str | None, err: float | None = None) -> CaseResult:
        return CaseResult(case.name, shape.describe(), config.to_dict(), error is None, err, bound, error)

    operands = random_operands(shape, case.batch, seed)
    try:
        exe = _executable(case, machine, how)
        yb, y = run_on_driver(
            exe, config, shape, operands, relu=case.relu, prefix=() if how == "host-isa" else None,
            nchw_scratch=generator.nchw_scratch(config, shape),
        )  # fmt: skip
    except Exception as exc:  # a failed case is data: the sweep goes on
        return result(f"{type(exc).__name__}: {exc}"[:2000])
    return result(*output_problem(yb, shape, operands, relu=case.relu, nchw=y))


def selftest(
    machine: Machine,
    selected: list[Case] | None = None,
    *,
    on_result: Callable[[Case, CaseResult], None] | None = None,
) -> SelfTest:
    """Run every case of the sweep (or `selected`) for `machine`; ValueError when this host cannot run its code.
    `on_result(case, result)` after each case (the command prints as it goes)."""
    how, detail = how_to_run(machine)
    results = []
    for i, case in enumerate(selected or cases(machine)):
        results.append(run_case(case, machine, how, seed=i))
        if on_result is not None:
            on_result(case, results[-1])
    return SelfTest(machine.id, how, detail, tuple(results))
