"""Every ISA a machine description may name gets a correct kernel, built from the description (kernels/cross.py).

How each ISA is checked here (tests/test_correctness.py also runs every ISA this host has through the Python API):
  avx2, avx, scalar   built from machine descriptions into the standalone driver c/dc_driver.c and run natively
                      against the reference (x86-64 host); avx2 and avx assembly read for FMAs (only where the
                      description's CPU has them) and for spills;
  neon                cross-compiled with aarch64-linux-gnu-gcc and run under qemu-aarch64 against the reference,
                      over tails, strides, padding, 1x1 to 11x11, narrow and wide rows, 1 and 2 threads; its assembly
                      read for fmla and for accumulator spills;
  scalar on AArch64   the portable C through the same cross compiler and emulator;
  avx512              compiled, its assembly read (zmm FMAs, broadcasts, no spills); run natively on an AVX-512 host,
                      else under qemu-x86_64 where that emulates AVX-512 (QEMU 7.2's TCG does not: skipped, saying so).
Tests that need the cross toolchain or the emulator skip, naming the packages to install.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from directconv.core.config import KernelConfig
from directconv.core.isa import host_isas
from directconv.core.shape import ConvShape
from directconv.core.suite import get_layer
from directconv.kernels import codegen, cross, generator, selftest
from directconv.kernels.compiler import BASE_FLAGS, CompileError, CompilerNotFoundError
from directconv.machines.loader import bundled_machines, load_machine, machine_to_data, parse_machine
from directconv.machines.machine import Machine
from directconv.model.predict import predict

INSTALL = "apt-get install gcc-aarch64-linux-gnu qemu-user"
HOST = cross.host_arch()


# ---- helpers -------------------------------------------------------------------------------------------------------


def variant(machine_id: str, **changes) -> Machine:
    """A bundled description with some fields changed, validated like a file."""
    data = machine_to_data(load_machine(machine_id))
    data.update(id=f"{machine_id}-variant", **changes)
    return parse_machine(data, f"{machine_id} variant")


def need_compiler(arch: str, cc: str | None = None) -> None:
    """Skip unless a compiler for `arch` exists (the host's, or a cross compiler)."""
    try:
        cross.find_target_compiler(arch, cc)
    except CompilerNotFoundError as exc:
        package = f"gcc-{arch.replace('_', '-')}-linux-gnu"
        pytest.skip(f"needs {package}: apt-get install {package} ({exc})")


def need_arch(arch: str, cc: str | None = None) -> tuple[str, ...]:
    """Skip unless a compiler for `arch` and a way to run its code exist; returns the command prefix that runs it."""
    prefix = cross.emulator(arch)
    try:
        cross.find_target_compiler(arch, cc)
    except CompilerNotFoundError as exc:
        prefix = None
        why = str(exc)
    else:
        why = f"qemu-{arch} not on PATH"
    if prefix is None:
        pytest.skip(f"needs gcc-{arch.replace('_', '-')}-linux-gnu and qemu-user: {INSTALL} ({why})")
    return prefix


def need_flags(machine: Machine, cc: str | None = None) -> None:
    """Skip when the compiler knows neither the description's CPU nor any of its fallbacks."""
    target = cross.target_for(machine)
    comp = cross.find_target_compiler(target.arch, cc)
    flags, _ = cross.resolve_flags(target, cc)
    if not cross.accepts(comp.path, flags):
        pytest.skip(f"{comp.version} accepts neither {machine.id}'s flags {' '.join(target.flags)} nor a fallback")


def check_against_reference(
    machine: Machine,
    config: KernelConfig,
    shape: ConvShape,
    batch: int,
    *,
    relu: bool = False,
    cc: str | None = None,
    prefix: tuple[str, ...] | None = None,
    seed: int = 0,
) -> None:
    """Build the driver for `machine`, run it on random operands and compare with the float64 reference; the
    kernel's NCHW entry too where it has one."""
    operands = selftest.random_operands(shape, batch, seed)
    exe = cross.build_for_machine(config, shape, machine, "executable", cc=cc)
    yb, y = selftest.run_on_driver(
        exe, config, shape, operands, relu=relu, prefix=prefix, nchw_scratch=generator.nchw_scratch(config, shape)
    )
    problem, _ = selftest.output_problem(yb, shape, operands, relu=relu, nchw=y)
    assert problem is None, f"{machine.id} {config} on {shape.describe()}: {problem}"


_LABEL = re.compile(r"^(\.L\w+):")
_BRANCH = re.compile(r"^\s+(j\w+|b\w*|b\.\w+|cbn?z|tbn?z)\s+(\S+,\s*)*(?P<label>\.L\w+)\s*$")


def hot_loops(asm: str, fma: re.Pattern[str]) -> list[list[str]]:
    """The innermost loops of an assembly listing that contain a multiply-add: each is the lines from a label to
    the backward branch that closes it. A heuristic, but GCC lays out every loop of these kernels that way."""
    lines = asm.splitlines()
    labels: dict[str, int] = {}
    loops = []
    for i, line in enumerate(lines):
        if m := _LABEL.match(line):
            labels[m.group(1)] = i
        elif (m := _BRANCH.match(line)) and m["label"] in labels:
            loops.append((labels[m["label"]], i))
    hot = [(a, b) for a, b in loops if any(fma.search(x) for x in lines[a:b])]
    inner = [(a, b) for a, b in hot if not any(a <= c and d <= b and (c, d) != (a, b) for c, d in hot)]
    return [lines[a : b + 1] for a, b in inner]


ASM = {
    # fused multiply-add of whole vectors; a vector register moved to or from the stack (a spill or a reload)
    "neon": (re.compile(r"\bfmla\s+v\d+\.4s"), re.compile(r"\b(ld|st)(r|p|ur)\s+[qvd]\d+.*\[sp\b")),
    "x86": (re.compile(r"\bvfmadd\w*ps\b"), re.compile(r"%[xyz]mm\d+.*\((%rsp|%rbp)\)|\((%rsp|%rbp)\).*%[xyz]mm\d+")),
}


# A function of gcc -S output: its label at the start of a line, up to its .size directive.
_FUNCTION = re.compile(r"^(?P<name>[A-Za-z_]\w*(\.\w+)*):\n(?P<body>.*?)^\s+\.size\s+(?P=name),", re.M | re.S)


def kernel_code(asm: str) -> str:
    """The listing without dc_finish (kernels/c/dc_epilogue.h): the epilogue's loop over a stored tile, whose
    activations' polynomials are multiply-adds too but run once per tile, not in the hot loop."""
    return _FUNCTION.sub(lambda m: "" if m["name"].startswith("dc_finish") else m[0], asm)


def vector_spills(asm: str, kind: str) -> tuple[int, list[str]]:
    """(number of hot loops, the vector spill/reload lines inside them)."""
    fma, spill = ASM[kind]
    loops = hot_loops(kernel_code(asm), fma)
    return len(loops), [line.strip() for body in loops for line in body if spill.search(line)]


# ---- targets from descriptions (pure) ------------------------------------------------------------------------------


def test_header_declares_the_generated_functions() -> None:
    """c/directconv.h, shipped beside exported kernels, declares exactly what codegen emits."""
    header = " ".join((Path(cross.__file__).parent / "c" / "directconv.h").read_text().split())
    assert codegen.C_SIGNATURE in header
    assert codegen.C_BENCH_SIGNATURE in header
    assert codegen.C_FUSED_SIGNATURE in header


@pytest.mark.parametrize("machine", bundled_machines(), ids=lambda m: m.id)
def test_target_flags_come_from_the_description(machine: Machine) -> None:
    target = cross.target_for(machine)
    assert target.flags == cross.target_flags(machine)
    assert target.flags[: len(machine.compiler_flags)] == machine.compiler_flags
    assert not any("native" in f for f in target.flags)
    if machine.isa == "neon":
        assert target.arch == "aarch64"
        assert not any(f.startswith(("-mavx", "-mfma", "-msse")) for f in target.flags)
    elif machine.isa == "scalar":
        assert target.arch is None
    else:
        assert target.arch == "x86_64"


@pytest.mark.parametrize(
    ("machine_id", "flags"),
    [
        ("zen3", ("-march=znver3", "-mavx2", "-mfma")),
        (
            "skylake-sp",
            (
                "-march=skylake-avx512",
                "-mprefer-vector-width=512",
                "-mavx512f",
                "-mavx512vl",
                "-mfma",
                "-mprefer-vector-width=512",
            ),
        ),
        ("piledriver", ("-march=bdver2", "-mavx")),  # FMA from the CPU (bdver2), not from the "avx" ISA
        ("cortex-a57", ("-mcpu=cortex-a57",)),
        ("generic", ()),
    ],
)
def test_target_flags(machine_id: str, flags: tuple[str, ...]) -> None:
    assert cross.target_flags(load_machine(machine_id)) == flags


def test_a_restricted_description_gets_its_own_isa() -> None:
    """A Zen 4 restricted to AVX2 (16 ymm registers): its -mno-avx512f stays, and the AVX2 flags are added."""
    machine = variant("zen4", isa="avx2", n_vec=8, n_reg=16, compiler_flags=["-march=znver4", "-mno-avx512f"])
    assert cross.target_flags(machine) == ("-march=znver4", "-mno-avx512f", "-mavx2", "-mfma")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"compiler_flags": ["-march=native"]}, r"'-march=native' describes whatever host compiles"),
        ({"compiler_flags": ["-mcpu=native"]}, r"name the CPU instead"),
        ({"compiler_flags": ["-march=haswell", "-mno-avx2"]}, r"needs -mavx2, but compiler_flags disable it"),
    ],
)
def test_target_refuses_descriptions_it_cannot_build_for(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cross.target_for(variant("haswell", **changes))


def test_sve_description_names_the_fix() -> None:
    machine = variant("neoverse-v1", isa="sve", n_vec=8)
    with pytest.raises(ValueError, match=r"no kernel generator for isa 'sve'.*isa: neon"):
        cross.target_for(machine)


def test_config_for_another_isa_is_refused() -> None:
    shape = ConvShape.from_args(8, 8, 6, 6, 3, 3, 1, 1)
    with pytest.raises(ValueError, match=r"config isa 'avx2' does not match machine cortex-a57, whose isa is 'neon'"):
        cross.build_for_machine(KernelConfig("avx2", 8, 2), shape, load_machine("cortex-a57"))


# ---- x86-64: native runs and assembly --------------------------------------------------------------------------------

X86_CASES = [
    # (C_i, C_o, H, W, kh, kw, stride, padding), batch, (vectors, W_o,b, C_i,b in vectors or None), threads
    ((5, 11, 9, 13, 3, 3, 1, 1), 2, (1, 3, None), 1),
    ((19, 37, 8, 21, 5, 3, (2, 1), (2, 1, 0, 2)), 1, (2, 4, 1), 2),
    ((24, 70, 6, 23, 1, 1, 1, 0), 1, (3, 4, 2), 1),
]


@pytest.mark.compiler
@pytest.mark.parametrize("case", X86_CASES, ids=["3x3-tails", "5x3-strided-asym", "1x1"])
@pytest.mark.parametrize("machine_id", ["zen3", "sandybridge", "generic"])
def test_driver_runs_natively(machine_id: str, case: tuple) -> None:
    """avx2 (FMA), avx without FMA and scalar, each built from a description into the standalone driver."""
    # "sandybridge": an "avx" CPU without FMA (piledriver itself, -march=bdver2, allows FMA4 and XOP: not for Zen 3)
    if machine_id == "sandybridge":
        machine = variant("piledriver", compiler_flags=["-march=sandybridge"])
    else:
        machine = load_machine(machine_id)
    isa = cross.target_for(machine).isa
    if isa not in host_isas():
        pytest.skip(f"this {HOST} host cannot run {isa} code")
    geometry, batch, (vectors, wob, cib), threads = case
    shape = ConvShape.from_args(*geometry)
    lanes = machine.n_vec
    config = KernelConfig(
        isa,
        vectors * lanes,
        wob,
        cib=None if cib is None else cib * lanes,
        threads=threads,
        parallel="rows" if threads > 1 else "co",
        rows=2 if threads > 1 else None,
    )
    check_against_reference(machine, config, shape, batch)


@pytest.mark.compiler
def test_fma_only_where_the_description_has_it() -> None:
    """The "avx" ISA fuses multiply-adds when the CPU's flags have FMA (Piledriver), and only then."""
    shape = ConvShape.from_args(16, 16, 8, 8, 3, 3, 1, 1)
    config = KernelConfig("avx", 16, 4)
    with_fma = cross.build_for_machine(config, shape, load_machine("piledriver"), "asm").read_text()
    without = cross.build_for_machine(
        config, shape, variant("piledriver", compiler_flags=["-march=sandybridge"]), "asm"
    ).read_text()
    assert re.search(r"\bvfmadd\w*ps\s.*%ymm", with_fma)
    assert not re.search(r"\bvfmadd", without)
    assert re.search(r"\bvmulps\s.*%ymm", without) and re.search(r"\bvaddps\s.*%ymm", without)


# The model leaves one register spare: with all 16 ymm registers named (12 accumulators + 3 weights + 1 broadcast),
# GCC 12 kept one accumulator on the stack. These cases check that no chosen tile spills.
X86_ASM_CASES = [
    pytest.param(machine_id, register, layer, id=f"{machine_id}-{layer}")
    for machine_id, register in (
        ("skylake-sp", "zmm"),
        ("icelake-sp", "zmm"),
        ("sapphire-rapids", "zmm"),
        ("zen4", "zmm"),
        ("zen3", "ymm"),
        ("haswell", "ymm"),
    )
    for layer in ("resnet50:res4_3x3", "resnet50:res4_1x1_1024to256")
]


@pytest.mark.compiler
@pytest.mark.parametrize(("machine_id", "register", "layer"), X86_ASM_CASES)
def test_x86_kernel_compiles_to_full_width_fmas(machine_id: str, register: str, layer: str) -> None:
    """The model's kernel for each AVX-512 and AVX2 CPU: full-width FMAs fed by broadcasts, no vector spills in the
    hot loops. For AVX-512 this is the whole check on a host without it (see test_avx512_runs_under_qemu_x86_64)."""
    machine = load_machine(machine_id)
    need_flags(machine)
    lanes = {"zmm": 16, "ymm": 8}[register]
    shape = get_layer(layer).shape
    config = predict(shape, machine).config
    asm = cross.build_for_machine(config, shape, machine, "asm").read_text()
    assert re.search(rf"\bvfmadd231ps\s+(\S+,\s*)?%{register}\d+, %{register}\d+", asm), f"no {register} FMA"
    assert re.search(rf"\bvbroadcastss\b[^\n]*%{register}|\{{1to{lanes}\}}", asm), "no broadcast input"
    loops, spills = vector_spills(asm, "x86")
    assert loops and not spills, f"{config}: vector spills in the hot loops: {spills[:5]}"


@pytest.mark.compiler
def test_avx512_runs_under_qemu_x86_64() -> None:
    """Run an AVX-512 kernel natively where the host has it, else under qemu-x86_64 -cpu max where that emulates
    AVX-512; say why not otherwise."""
    machine = load_machine("skylake-sp")
    shape = ConvShape.from_args(19, 37, 8, 21, 3, 3, 1, 1)
    config = KernelConfig("avx512", 32, 4, threads=2, parallel="rows", rows=3)
    if "avx512" in host_isas():
        check_against_reference(machine, config, shape, 2)  # this host runs AVX-512: no emulator needed
        return
    if HOST != "x86_64" or shutil.which("qemu-x86_64") is None:
        pytest.skip(f"needs an AVX-512 host, or qemu-x86_64 on an x86-64 host: {INSTALL}")
    exe = cross.build_for_machine(config, shape, machine, "executable")
    prefix = ("qemu-x86_64", "-cpu", "max")
    probe = subprocess.run([*prefix, str(exe)], capture_output=True, text=True)
    # Without arguments the driver prints its usage and exits 2 before any AVX-512 instruction, unless the C
    # library start-up or the driver itself already used one the emulator lacks.
    if probe.returncode != 2:
        pytest.skip(f"qemu-x86_64 cannot start an AVX-512 binary (exit {probe.returncode})")
    try:
        check_against_reference(machine, config, shape, 2, prefix=prefix)
    except RuntimeError as exc:
        if "exit -4" in str(exc):  # killed by SIGILL
            version = subprocess.run(["qemu-x86_64", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
            pytest.skip(
                f"{version} does not emulate AVX-512 (SIGILL on the first zmm instruction); the AVX-512 "
                "kernels are checked by compiling them only"
            )
        raise


# ---- AArch64: NEON under qemu-user ---------------------------------------------------------------------------------

NEON_MACHINES = ["cortex-a57", "neoverse-n1", "neoverse-v1", "apple-m1"]


@pytest.mark.compiler
@pytest.mark.parametrize("machine_id", NEON_MACHINES)
def test_neon_kernel_compiles_to_fmla_without_spills(machine_id: str) -> None:
    """The model's kernel for each NEON CPU: vector fmla, and no accumulator moved to the stack in the hot loops."""
    need_compiler("aarch64")
    machine = load_machine(machine_id)
    need_flags(machine)
    for layer in ("resnet50:res4_3x3", "resnet50:res4_1x1_1024to256", "googlenet:3a_5x5"):
        shape = get_layer(layer).shape
        config = predict(shape, machine).config
        asm = cross.build_for_machine(config, shape, machine, "asm").read_text()
        loops, spills = vector_spills(asm, "neon")
        assert loops, f"{layer} {config}: no loop with a vector fmla"
        assert not spills, f"{layer} {config}: vector spills in the hot loops: {spills[:5]}"


@pytest.mark.compiler
def test_spill_check_sees_spills_and_the_prescheduling_pragma_prevents_them() -> None:
    """The hot-loop check above can fail: an over-budget tile spills, and so does an in-budget one without the
    prelude's no-schedule-insns pragma (GCC's pre-allocation scheduler hoists all of a tile's input loads)."""
    need_compiler("aarch64")
    machine = load_machine("neoverse-n1")
    target = cross.target_for(machine)
    shape = ConvShape.from_args(64, 64, 14, 14, 3, 3, 1, 1)
    over_budget = codegen.generate(KernelConfig("neon", 16, 7), shape)  # 28 accumulators + 4 weights + 1 > 32
    in_budget = codegen.generate(KernelConfig("neon", 8, 14), shape)  # 28 + 2 + 1 = 31
    pragma = '#pragma GCC optimize("no-schedule-insns")'
    assert pragma in in_budget
    sources = {"over": over_budget, "fits": in_budget, "fits-scheduled": in_budget.replace(pragma, "")}
    spills = {
        name: vector_spills(cross.build_standalone(source, target, "asm", name=name).read_text(), "neon")[1]
        for name, source in sources.items()
    }
    assert spills["over"] and spills["fits-scheduled"] and not spills["fits"], {k: len(v) for k, v in spills.items()}


@pytest.mark.compiler
def test_cortex_a57_export_cross_compiles_cleanly() -> None:
    """What `directconv export --machine cortex-a57` ships: the model's kernel, warning-free under -Wall -Wextra."""
    need_compiler("aarch64")
    machine = load_machine("cortex-a57")
    target = cross.target_for(machine)
    comp = cross.find_target_compiler(target.arch)
    for layer in ("vgg16:conv3_2", "resnet50:res4_1x1_1024to256", "googlenet:3a_5x5"):
        shape = get_layer(layer).shape
        source = codegen.generate(predict(shape, machine).config, shape)
        result = subprocess.run(
            [
                comp.path,
                *(f for f in BASE_FLAGS if f not in ("-fPIC", "-shared")),
                *target.flags,
                "-Wall",
                "-Wextra",
                "-Werror",
                "-x",
                "c",
                "-c",
                "-o",
                "/dev/null",
                "-",
            ],
            input=source,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, f"{layer}: {result.stderr[:2000]}"
        assert cross.build_for_machine(predict(shape, machine).config, shape, machine, "object").stat().st_size > 0


# (C_i, C_o, H, W, kh, kw, stride, padding), batch, (C_o,b in vectors, W_o,b, C_i,b in vectors or None), threads,
# parallel axis, rows per task, relu
NEON_SWEEP = [
    ((5, 11, 9, 13, 3, 3, 1, 1), 2, (2, 3, None), 1, "co", None, False),  # C_i, C_o tails, batch 2
    ((1, 1, 5, 5, 3, 3, 1, 1), 1, (1, 2, None), 1, "co", None, False),  # one channel in and out
    ((13, 22, 7, 17, 3, 3, 1, (1, 2, 0, 3)), 1, (3, 4, 1), 2, "rows", 2, True),  # asymmetric padding, C_i,b, ReLU
    ((17, 33, 6, 3, 3, 3, 1, 1), 1, (2, 3, None), 2, "co", None, False),  # 3 columns: one tile, both edges
    ((8, 16, 5, 41, 3, 3, 1, 1), 1, (2, 5, None), 1, "co", None, False),  # row much wider than W_o,b, odd
    ((7, 9, 13, 14, 3, 5, (3, 4), (2, 0, 1, 4)), 2, (1, 3, None), 2, "rows", 3, False),  # strides 3 and 4
    ((12, 20, 16, 17, 3, 3, (2, 1), (1, 2, 0, 3)), 1, (5, 2, 2), 1, "co", None, False),  # stride 2x1
    ((24, 70, 6, 23, 1, 1, 1, 0), 1, (3, 4, 2), 2, "co", None, False),  # 1x1 stride 1: one long row
    ((33, 40, 14, 14, 1, 1, 2, 0), 1, (2, 6, None), 1, "co", None, False),  # 1x1 stride 2
    ((16, 24, 12, 12, 5, 5, 1, 2), 1, (2, 6, 2), 2, "rows", 4, False),  # 5x5
    ((3, 20, 35, 35, 11, 11, 4, 0), 1, (5, 2, None), 1, "co", None, False),  # 11x11 stride 4 (AlexNet conv1)
    ((9, 13, 11, 15, 1, 7, 1, (0, 0, 3, 3)), 1, (4, 3, None), 2, "co", None, False),  # 1x7
    ((4, 4, 3, 3, 5, 5, 1, 1), 1, (1, 1, None), 1, "co", None, False),  # kernel larger than the input
]


@pytest.mark.compiler
@pytest.mark.parametrize("case", NEON_SWEEP, ids=[f"{c[0][4]}x{c[0][5]}-{i}" for i, c in enumerate(NEON_SWEEP)])
def test_neon_kernel_matches_reference_under_qemu(case: tuple) -> None:
    prefix = need_arch("aarch64")
    geometry, batch, (vectors, wob, cib), threads, parallel, rows, relu = case
    shape = ConvShape.from_args(*geometry)
    config = KernelConfig(
        "neon", 4 * vectors, wob, cib=None if cib is None else 4 * cib, rows=rows, parallel=parallel, threads=threads
    )
    check_against_reference(load_machine("cortex-a57"), config, shape, batch, relu=relu, prefix=prefix)


@pytest.mark.compiler
@pytest.mark.parametrize("machine_id", ["cortex-a57", "neoverse-n1"])
def test_neon_model_kernel_on_a_suite_layer_under_qemu(machine_id: str) -> None:
    """The model's own choice for a real layer (resnet50:res5_3x3, 512 channels) runs correctly."""
    prefix = need_arch("aarch64")
    machine = load_machine(machine_id)
    shape = get_layer("resnet50:res5_3x3").shape
    check_against_reference(machine, predict(shape, machine, threads=2).config, shape, 1, prefix=prefix)


@pytest.mark.compiler
def test_scalar_kernel_on_aarch64_under_qemu() -> None:
    """The portable scalar kernel builds with any compiler: here the AArch64 cross compiler."""
    cc = "aarch64-linux-gnu-gcc" if HOST != "aarch64" else None
    prefix = need_arch("aarch64", cc)
    machine = load_machine("generic")
    for geometry, (cob, wob) in (((5, 11, 9, 13, 3, 3, (1, 2), 1), (3, 4)), ((6, 7, 5, 9, 1, 1, 1, 0), (4, 5))):
        shape = ConvShape.from_args(*geometry)
        check_against_reference(machine, KernelConfig("scalar", cob, wob, threads=2), shape, 1, cc=cc, prefix=prefix)


@pytest.mark.compiler
def test_wrong_compiler_for_the_target_is_named() -> None:
    if HOST != "x86_64":
        pytest.skip("checks an x86-64 host compiler against an AArch64 target")
    host_cc = cross.find_target_compiler("x86_64").path
    with pytest.raises(CompilerNotFoundError, match=r"emits code for x86_64.*needs aarch64"):
        cross.find_target_compiler("aarch64", host_cc)


@pytest.mark.compiler
def test_compile_errors_name_the_machine_and_flags() -> None:
    machine = variant("haswell", compiler_flags=["-march=no-such-cpu"])
    with pytest.raises(CompileError, match=r"machine haswell-variant \(avx2\) with flags .*-march=no-such-cpu"):
        cross.build_standalone("int x;\n", cross.target_for(machine), "object")
