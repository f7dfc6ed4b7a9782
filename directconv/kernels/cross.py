"""Build a generated kernel for a described machine, which need not be this one.

runtime.py loads kernels into this process with cffi, so it only ever builds for this host. This module
builds the same C for the machine a description names: the ISA and compiler flags come from the description (never
from -march=native), the compiler is one that targets the machine's architecture (the host compiler for x86-64 on
an x86-64 host, aarch64-linux-gnu-gcc for an Arm description), and the output is what a caller outside this process
needs: a shared library, an object file, assembly to read, or an executable linked with the driver c/dc_driver.c,
which runs the kernel on operands read from files (under qemu-user when the architecture is foreign).

`build_for_machine` is the building block of `directconv export` and of the emulator tests. Outputs are cached on
disk like host kernels (compiler.cache_dir(), keyed by source, compiler and flags) and published atomically.
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from directconv.core.config import KernelConfig
from directconv.core.isa import ISAS
from directconv.core.shape import ConvShape
from directconv.kernels import compiler, generator
from directconv.kernels.compiler import Compiler, CompilerNotFoundError
from directconv.kernels.layout import bias_length, blocks, weight_shape
from directconv.machines.machine import Machine

__all__ = [
    "Kind",
    "Target",
    "accepts",
    "build_for_machine",
    "build_standalone",
    "driver_arguments",
    "emulator",
    "find_target_compiler",
    "host_arch",
    "resolve_flags",
    "run_driver",
    "target_flags",
    "target_for",
]

Kind = Literal["shared", "object", "asm", "executable"]
KINDS: tuple[str, ...] = get_args(Kind)
SUFFIXES: dict[str, str] = {"shared": ".so", "object": ".o", "asm": ".s", "executable": ".bin"}

# GNU target triples: the prefix of a cross compiler's name (Debian: gcc-aarch64-linux-gnu installs
# aarch64-linux-gnu-gcc) and of the qemu-user binary that runs the result.
TRIPLES: dict[str, str] = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu"}
INSTALL_HINTS: dict[str, str] = {
    "aarch64": "Debian/Ubuntu: apt-get install gcc-aarch64-linux-gnu",
    "x86_64": "Debian/Ubuntu: apt-get install gcc-x86-64-linux-gnu",
}

# compiler.BASE_FLAGS without the shared-library pair, which only the "shared" kind wants.
_CODE_FLAGS: tuple[str, ...] = tuple(f for f in compiler.BASE_FLAGS if f not in ("-fPIC", "-shared"))
_KIND_FLAGS: dict[str, tuple[str, ...]] = {
    "shared": ("-fPIC", "-shared"),
    "object": ("-fPIC", "-c"),
    "asm": ("-fPIC", "-S"),  # the code of "object" and "shared", to read
    "executable": (),
}
_DRIVER_FILES: tuple[str, ...] = ("dc_driver.c", "directconv.h")


@dataclass(frozen=True)
class Target:
    """What a kernel is built for: a machine description's ISA, its architecture, and the complete ISA flags."""

    machine: str  # machine id, for messages
    isa: str  # core.isa name: the ISA the generated code must use
    arch: str | None  # "x86_64" or "aarch64"; None: portable C (the scalar ISA)
    flags: tuple[str, ...]
    # Complete flag lists to try in order when the compiler rejects `flags` (machine compiler_flag_fallbacks).
    fallbacks: tuple[tuple[str, ...], ...] = ()


def host_arch() -> str:
    """This host's architecture in GNU spelling (x86_64, aarch64, ...)."""
    name = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(name, name)


def target_for(machine: Machine) -> Target:
    """The build target of a machine description. Raises ValueError for a description no kernel can be built for.

    Flags: the description's `compiler_flags` (the CPU: -march=znver3, -mcpu=cortex-a57), then the flags of the
    ISA the generator targets (-mavx2 -mfma), which enable its instructions whatever -march says. FMA is used
    wherever the description's flags allow it (piledriver's -march=bdver2 has it; an "avx" description without
    such a flag gets separate multiplies and adds). A description restricted below what its -march implies says
    so with -mno-FEATURE (a Zen 4 restricted to AVX2: -march=znver4 -mno-avx512f); one that disables a flag its
    ISA needs is refused. AArch64 gets no ISA flags: NEON is part of the base architecture.
    """
    isa = ISAS.get(machine.isa)
    if isa is None:
        raise ValueError(
            f"machine {machine.id}: no kernel generator for isa {machine.isa!r} yet (supported: {', '.join(ISAS)}); "
            "for an SVE CPU, describe it with isa: neon, n_vec: 4 to build its Advanced SIMD kernel"
        )
    if isa.lanes != machine.n_vec:
        raise ValueError(
            f"machine {machine.id}: isa {isa.name} has {isa.lanes} fp32 lanes, but the description says "
            f"n_vec={machine.n_vec}; fix n_vec or isa"
        )
    flags = tuple(machine.compiler_flags)
    for flag in flags:  # every flag is a machine flag (Machine checks); -march=native is one, but no CPU's
        if flag.endswith("=native"):
            raise ValueError(
                f"machine {machine.id}: compiler flag {flag!r} describes whatever host compiles the kernel, not this "
                "machine, so the kernel could not be built elsewhere; name the CPU instead (e.g. -march=znver3, "
                "-mcpu=neoverse-n1; `directconv probe` writes such a description for this host)"
            )
    disabled = {f[len("-mno-") :] for f in flags if f.startswith("-mno-")}
    conflicts = [f for f in isa.flags if f.startswith("-m") and f[2:] in disabled]
    if conflicts:
        raise ValueError(
            f"machine {machine.id}: isa {isa.name} needs {' '.join(conflicts)}, but compiler_flags disable it "
            f"({' '.join('-mno-' + f[2:] for f in conflicts)}); describe the machine with an ISA it has, or drop "
            "the -mno- flag"
        )
    fallbacks = tuple(tuple(f) + isa.flags for f in machine.compiler_flag_fallbacks)
    return Target(machine=machine.id, isa=isa.name, arch=isa.arch, flags=flags + isa.flags, fallbacks=fallbacks)


@functools.cache
def accepts(compiler_path: str, flags: tuple[str, ...]) -> bool:
    """Whether the compiler takes `flags` (compiles an empty translation unit with them)."""
    result = subprocess.run(
        [compiler_path, *flags, "-x", "c", "-c", "-o", os.devnull, "-"],
        input="int dc;\n",
        capture_output=True,
        text=True,
    )
    return result.returncode == 0


def resolve_flags(target: Target, cc: str | None = None) -> tuple[tuple[str, ...], str]:
    """The flags `target`'s kernels are built with here, and a note when they are not the description's own: the
    first of target.flags and its fallbacks that the compiler accepts (target.flags when none is, so that the
    compiler's own error reaches the user)."""
    if not target.fallbacks:
        return target.flags, ""
    comp = find_target_compiler(target.arch, cc)
    if accepts(comp.path, target.flags):
        return target.flags, ""
    for flags in target.fallbacks:
        if accepts(comp.path, flags):
            return flags, (
                f"{comp.path} ({comp.version}) rejects {' '.join(target.flags)}; built with the "
                f"machine's fallback {' '.join(flags)}"
            )
    return target.flags, ""


def target_flags(machine: Machine) -> tuple[str, ...]:
    """The ISA and CPU flags a kernel for `machine` is compiled with (see target_for); never -march=native."""
    return target_for(machine).flags


@functools.cache
def _probe(path: str) -> tuple[str, str] | None:
    """(`--version` banner, `-dumpmachine` triple) of a compiler, or None when it does not run."""
    try:
        banner = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30, check=True)
        triple = subprocess.run([path, "-dumpmachine"], capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return (banner.stdout.splitlines() or ["?"])[0].strip(), triple.stdout.strip()


def _targets(triple: str, arch: str) -> bool:
    return triple.split("-", 1)[0] == arch or (arch == "aarch64" and triple.startswith("arm64-"))


def find_target_compiler(arch: str | None, cc: str | None = None) -> Compiler:
    """A C compiler that emits code for `arch` (None: any architecture).

    `cc` names one (a path or a name on PATH), checked with `-dumpmachine` to target `arch`. Without it: the host
    compiler (compiler.find_compiler, which honours $CC) when `arch` is None or the host's, else `<triple>-gcc`.
    """
    if cc is None and (arch is None or arch == host_arch()):
        return compiler.find_compiler()
    name = cc if cc is not None else f"{TRIPLES.get(arch or '', f'{arch}-linux-gnu')}-gcc"
    path = shutil.which(name)
    info = _probe(os.path.realpath(path)) if path else None
    if path is None or info is None:
        hint = INSTALL_HINTS.get(arch or "", "install one")
        raise CompilerNotFoundError(
            f"no working C compiler {name!r} for {arch or 'this target'}: {hint}, or pass the compiler to use"
        )
    version, triple = info
    if arch is not None and not _targets(triple, arch):
        raise CompilerNotFoundError(
            f"compiler {name} emits code for {triple}, but the target needs {arch}; pass a compiler for {arch} "
            f"(e.g. {TRIPLES.get(arch, arch)}-gcc)"
        )
    return Compiler(path=os.path.realpath(path), version=version)


def _driver_sources() -> dict[str, str]:
    folder = resources.files(__package__) / "c"
    return {name: (folder / name).read_text(encoding="utf-8") for name in _DRIVER_FILES}


def build_standalone(
    source: str, target: Target, kind: Kind = "object", *, cc: str | None = None, name: str = "conv"
) -> Path:
    """Compile kernel C `source` for `target` into a file of `kind`, or find it in the cache; returns its path.

    kind: "shared" (.so), "object" (.o, position-independent), "asm" (.s), or "executable": the kernel linked with
    c/dc_driver.c (see run_driver), statically when the compiler's architecture is not the host's so that qemu-user
    needs no target libraries. `cc` overrides the compiler (see find_target_compiler). Flags: the code-generation
    flags of compiler.BASE_FLAGS, then target.flags.
    Raises CompilerNotFoundError when no compiler targets the architecture, CompileError when it fails.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    comp = find_target_compiler(target.arch, cc)
    info = _probe(comp.path)
    foreign = info is not None and not _targets(info[1], host_arch())
    static = ("-static",) if kind == "executable" and foreign else ()
    chosen, note = resolve_flags(target, cc)
    if note:
        compiler.log.info("%s: %s", target.machine, note)
    flags = _CODE_FLAGS + chosen + _KIND_FLAGS[kind] + static
    extra = _driver_sources() if kind == "executable" else {}
    key = compiler.cache_key(source + "".join(f"\0{n}\0{t}" for n, t in sorted(extra.items())), flags, comp)
    output = compiler.cache_dir() / key[:2] / f"{name}-{key}{SUFFIXES[kind]}"

    def command(tmp: Path, src: Path, out: Path) -> list[str]:
        inputs = [str(src)] + [str(tmp / n) for n in extra if n.endswith(".c")]
        return [comp.path, *flags, *(("-I", str(tmp)) if extra else ()), "-o", str(out), *inputs]

    what = f"building {kind} {name} for machine {target.machine} ({target.isa}) with flags {' '.join(flags)}"
    return compiler.publish(output, source, command, what, extra)


def build_for_machine(
    config: KernelConfig, shape: ConvShape, machine: Machine, kind: Kind = "object", *, cc: str | None = None
) -> Path:
    """Generate the kernel for `config` on `shape` and build it for `machine` (see build_standalone)."""
    target = target_for(machine)
    if config.isa != target.isa:
        raise ValueError(
            f"config isa {config.isa!r} does not match machine {machine.id}, whose isa is {target.isa!r}; "
            f"ask the model for this machine's config (model.predict(shape, machine))"
        )
    config.check_fits(shape)
    return build_standalone(generator.generate(config, shape), target, kind, cc=cc, name=f"conv-{machine.id}")


@functools.cache
def emulator(arch: str | None) -> tuple[str, ...] | None:
    """The command prefix that runs an executable for `arch` here: () natively, ("qemu-aarch64",) for AArch64 on
    another host (qemu-user), or None when nothing here can run it."""
    if arch is None or arch == host_arch():
        return ()
    qemu = shutil.which(f"qemu-{arch}")
    return (qemu,) if qemu else None


def driver_arguments(config: KernelConfig, shape: ConvShape) -> tuple[int, int, int]:
    """dc_conv's (cib_blocks, rows, parallel_rows) for a config, as runtime.CompiledKernel passes them."""
    lanes = config.lanes
    nbi = blocks(shape.cig, lanes)  # a grouped layer blocks each group's input channels
    cib_blocks = nbi if config.cib is None else max(1, min(nbi, config.cib // lanes))
    rows_total = shape.kernel_view().ho
    rows = rows_total if config.rows is None else max(1, min(rows_total, config.rows))
    return cib_blocks, rows, 1 if config.parallel == "rows" else 0


def run_driver(
    executable: Path,
    arch: str | None,
    config: KernelConfig,
    shape: ConvShape,
    x: np.ndarray,
    weights: np.ndarray,
    bias: np.ndarray,
    *,
    relu: bool = False,
    timeout: float = 120.0,
    prefix: tuple[str, ...] | None = None,
    nchw: tuple[np.ndarray, int] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Run a driver executable (build_standalone kind="executable") on blocked operands: (the blocked output, None),
    or with `nchw` = (the same input in NCHW, the kernel's scratch floats per thread) also its NCHW entry
    (dc_conv_nchw) on that input: (the blocked output, the NCHW output).

    x: (batch, ceil(C_i/c), H, W, c); weights and bias packed by kernels.layout for config.cob. The executable runs
    natively or under qemu-user (see emulator); `prefix` overrides that command prefix (e.g. a qemu -cpu choice).
    Raises RuntimeError with the driver's message when it fails or is killed.
    """
    lanes = config.lanes
    batch = x.shape[0]
    out_shape = (batch, blocks(shape.co, lanes), shape.ho, shape.wo, lanes)
    expected = {
        "input": (x, (batch, blocks(shape.ci, lanes), shape.h, shape.w, lanes)),
        "weights": (weights, weight_shape(shape, lanes, config.cob)),
        "bias": (bias, (bias_length(shape, lanes, config.cob),)),
    }
    if nchw is not None:
        expected["NCHW input"] = (nchw[0], (batch, shape.ci, shape.h, shape.w))
    for what, (array, want) in expected.items():
        if array.dtype != np.float32 or array.shape != want:
            raise ValueError(f"{what} must be float32 of shape {want} for this kernel, got {array.dtype} {array.shape}")
    if prefix is None:
        prefix = emulator(arch)
        if prefix is None:
            raise RuntimeError(
                f"cannot run {arch} code on this {host_arch()} host: install qemu-user (Debian/Ubuntu: apt-get "
                f"install qemu-user) for qemu-{arch}"
            )
    cib_blocks, rows, parallel_rows = driver_arguments(config, shape)
    out_floats = int(np.prod(out_shape))
    nchw_shape = (batch, shape.co, shape.ho, shape.wo)
    with tempfile.TemporaryDirectory(prefix="dc-run-") as tmp:
        files = {n: Path(tmp) / f"{n}.f32" for n in ("in", "wt", "bias", "out", "in_nchw", "out_nchw")}
        arrays = [("in", x), ("wt", weights), ("bias", bias)] + ([("in_nchw", nchw[0])] if nchw is not None else [])
        for n, array in arrays:
            # Both architectures we target are little-endian; '<f4' says so rather than assuming the host is.
            np.ascontiguousarray(array, dtype="<f4").tofile(files[n])
        args = [
            files["in"],
            files["wt"],
            files["bias"],
            files["out"],
            out_floats,
            batch,
            cib_blocks,
            rows,
            parallel_rows,
            config.threads,
            int(relu),
        ]
        if nchw is not None:
            args += [files["in_nchw"], files["out_nchw"], int(np.prod(nchw_shape)), config.threads * nchw[1]]
        cmd = [*prefix, str(executable), *map(str, args)]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(cmd[: len(prefix) + 1])} failed (exit {result.returncode}): {result.stderr.strip()[:2000]}"
            )
        out = np.fromfile(files["out"], dtype="<f4")
        y = np.fromfile(files["out_nchw"], dtype="<f4") if nchw is not None else None
    if out.size != out_floats:
        raise RuntimeError(f"driver wrote {out.size} floats, expected {out_floats}")
    if y is not None and y.size != int(np.prod(nchw_shape)):
        raise RuntimeError(f"driver wrote {y.size} NCHW floats, expected {int(np.prod(nchw_shape))}")
    return out.astype(np.float32).reshape(out_shape), None if y is None else y.astype(np.float32).reshape(nchw_shape)
