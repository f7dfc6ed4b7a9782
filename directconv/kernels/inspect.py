"""Read the machine code of a compiled kernel: find the hot loop of the interior tile and count what one step does.

A step is one input channel x one filter tap for one register tile: E = cob/N_vec * wob multiply-adds into E
accumulators (see model.estimate). The hot loop is the innermost loop with the most accumulators (the interior
tile; edge tiles are narrower); GCC unrolls it over several steps, so per-step figures are the loop's totals divided
by its steps. The object file is
disassembled with objdump from binutils (for AArch64, binutils-aarch64-linux-gnu's, where the host's own objdump
cannot read it).
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from directconv.core.config import KernelConfig
from directconv.core.isa import get_isa
from directconv.core.shape import LANE_KINDS, ConvShape, kernel_kind
from directconv.kernels import cross
from directconv.machines.machine import Machine
from directconv.model import lanes
from directconv.model.estimate import registers_needed, spare_registers

__all__ = [
    "Dialect",
    "HotLoop",
    "Inspection",
    "Instruction",
    "dialect_for",
    "disassemble",
    "hot_loop",
    "inspect_kernel",
    "model_plan",
    "objdump_for",
    "parse_listing",
]


@dataclass(frozen=True)
class Dialect:
    """How one instruction set spells the instructions that matter, in objdump's default syntax."""

    name: str
    multiply_add: re.Pattern[str]  # one vector multiply-add (its last or first register operand accumulates)
    accumulate: re.Pattern[str]  # the instruction whose destination is an accumulator (the FMA itself, or the add)
    vector_register: re.Pattern[str]  # group 1: the register's number, whatever width it is named at
    destination_last: bool  # AT&T (x86): the destination is the last operand; AArch64: the first
    memory: re.Pattern[str]  # an operand in memory
    stack: re.Pattern[str]  # an operand on the stack


_X86_REGISTER = re.compile(r"%[xyz]mm(\d+)")
_X86_MEMORY = re.compile(r"\(%\w+")
_X86_STACK = re.compile(r"\(%(rsp|rbp)\b")

DIALECTS: dict[str, Dialect] = {
    "x86_fma": Dialect(
        "x86",
        re.compile(r"^vfmadd\d*ps\b"),
        re.compile(r"^vfmadd\d*ps\b"),
        _X86_REGISTER,
        True,
        _X86_MEMORY,
        _X86_STACK,
    ),
    # AVX without FMA: a multiply, then an add into the accumulator.
    "x86_mul_add": Dialect(
        "x86", re.compile(r"^vmulps\b"), re.compile(r"^vaddps\b"), _X86_REGISTER, True, _X86_MEMORY, _X86_STACK
    ),
    "aarch64": Dialect(
        "aarch64",
        re.compile(r"^fmla\s+v\d+\.4s"),
        re.compile(r"^fmla\s+v\d+\.4s"),
        re.compile(r"\b[vqds](\d+)\b"),
        False,
        re.compile(r"\["),
        re.compile(r"\[sp\b"),
    ),
}
_BRANCH = re.compile(r"^(j\w+|b(\.\w+)?|cbn?z|tbn?z)\s+(?:[wx]\d+,\s*(?:#\d+,\s*)?)?([0-9a-f]+)\b")


def dialect_for(isa: str, fma: bool) -> Dialect:
    """The dialect of the code generated for `isa` (fma: whether the machine's flags allow fused multiply-adds)."""
    if isa == "neon":
        return DIALECTS["aarch64"]
    if isa in ("avx512", "avx2", "avx"):
        return DIALECTS["x86_fma" if fma else "x86_mul_add"]
    raise ValueError(f"no vector code to inspect for isa {isa!r}: expected one of avx512, avx2, avx, neon")


@dataclass(frozen=True)
class Instruction:
    address: int
    mnemonic: str
    operands: str

    @property
    def text(self) -> str:
        return f"{self.mnemonic} {self.operands}".strip()


def objdump_for(arch: str) -> str:
    """The objdump that reads `arch` object files: the host's for its own architecture, else the cross one."""
    candidates = ["objdump"] if arch == "x86_64" else [f"{arch}-linux-gnu-objdump", "objdump"]
    for name in candidates:
        path = shutil.which(name)
        if path and (arch == "x86_64" or name != "objdump" or _reads(path, arch)):
            return path
    raise FileNotFoundError(
        f"no objdump for {arch} object files: install binutils"
        + (
            f" and binutils-{arch}-linux-gnu (Debian/Ubuntu: apt-get install binutils-{arch}-linux-gnu)"
            if arch != "x86_64"
            else " (Debian/Ubuntu: apt-get install binutils)"
        )
    )


def _reads(objdump: str, arch: str) -> bool:
    info = subprocess.run([objdump, "-i"], capture_output=True, text=True)
    return arch in info.stdout


def disassemble(obj: Path, arch: str) -> list[Instruction]:
    """The instructions of `obj` (an object file or a shared library) in address order."""
    result = subprocess.run([objdump_for(arch), "-d", "--no-show-raw-insn", str(obj)], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"objdump failed on {obj} (exit {result.returncode}): {result.stderr.strip()[:2000]}")
    return parse_listing(result.stdout, arch)


def parse_listing(text: str, arch: str) -> list[Instruction]:
    """The instructions of an `objdump -d --no-show-raw-insn` listing (x86 in AT&T syntax, or AArch64)."""
    out: list[Instruction] = []
    for line in text.splitlines():
        m = re.match(r"\s*([0-9a-f]+):\s+(\S+)\s*(.*)$", line)
        if m:
            # Comments: "//" in AArch64 listings (where "#" marks an immediate), "#" in x86 ones.
            operands = m.group(3).split("//" if arch == "aarch64" else "#")[0]
            out.append(Instruction(int(m.group(1), 16), m.group(2), operands.strip()))
    return out


def _loops(code: list[Instruction]) -> list[tuple[int, int]]:
    """(first, last) indices of every loop: a branch back to an earlier address."""
    index = {ins.address: i for i, ins in enumerate(code)}
    loops = []
    for i, ins in enumerate(code):
        m = _BRANCH.match(ins.text)
        if m:
            target = int(m.group(3), 16)
            if target <= ins.address and target in index:
                loops.append((index[target], i))
    return loops


@dataclass(frozen=True)
class HotLoop:
    """What the hot loop does, in totals over one pass of its body."""

    instructions: tuple[Instruction, ...]
    multiply_adds: int
    accumulators: tuple[int, ...]  # the registers the multiply-adds accumulate into
    vector_registers: tuple[int, ...]  # every vector register the loop names
    loads: int  # vector registers filled from memory (loads, broadcasts, a pair load counts two; FMAs reading memory)
    spills: int  # vector registers stored to the stack
    reloads: int  # vector registers loaded from the stack

    def listing(self) -> str:
        return "\n".join(f"{ins.address:8x}: {ins.text}" for ins in self.instructions)


def _registers(dialect: Dialect, operands: str) -> list[int]:
    return [int(n) for n in dialect.vector_register.findall(operands)]


def _destination(dialect: Dialect, operands: str) -> int | None:
    regs = _registers(dialect, operands)
    if not regs:
        return None
    return regs[-1] if dialect.destination_last else regs[0]


def _memory_role(dialect: Dialect, ins: Instruction) -> str | None:
    """ "load", "store" or None: whether the instruction moves a vector register from or to memory."""
    ops = ins.operands
    if not dialect.memory.search(ops) or not _registers(dialect, ops):
        return None
    if dialect.name == "x86":
        parts = [p.strip() for p in re.split(r",(?![^(]*\))", ops)]
        return "store" if dialect.memory.search(parts[-1]) else "load"
    if ins.mnemonic.startswith(("ld", "ldr", "ldp", "ldur")):
        return "load"
    if ins.mnemonic.startswith(("st", "str", "stp", "stur")):
        return "store"
    return None


def analyse(dialect: Dialect, body: list[Instruction]) -> HotLoop:
    accumulators: set[int] = set()
    registers: set[int] = set()
    multiply_adds = loads = spills = reloads = 0
    for ins in body:
        registers.update(_registers(dialect, ins.operands))
        if dialect.multiply_add.match(ins.text):
            multiply_adds += 1
        if dialect.accumulate.match(ins.text) and (dest := _destination(dialect, ins.operands)) is not None:
            accumulators.add(dest)
        role = _memory_role(dialect, ins)
        on_stack = bool(dialect.stack.search(ins.operands))
        if role == "load":
            # A multiply-add reading memory (AVX-512's embedded broadcast) loads one operand; a load fills them all.
            filled = 1 if dialect.multiply_add.match(ins.text) else len(_registers(dialect, ins.operands))
            loads += filled
            reloads += filled if on_stack else 0
        elif role == "store":
            spills += len(_registers(dialect, ins.operands)) if on_stack else 0
    return HotLoop(
        tuple(body), multiply_adds, tuple(sorted(accumulators)), tuple(sorted(registers)), loads, spills, reloads
    )


def hot_loop(code: list[Instruction], dialect: Dialect) -> HotLoop | None:
    """The interior tile's channel loop: of the innermost loops with multiply-adds, the one with the most
    accumulators (the widest tile; edge tiles are narrower), then the most multiply-adds. None without one."""
    loops = [(a, b) for a, b in _loops(code) if any(dialect.multiply_add.match(x.text) for x in code[a : b + 1])]
    inner = [(a, b) for a, b in loops if not any(a <= c and d <= b and (c, d) != (a, b) for c, d in loops)]
    if not inner:
        return None
    analysed = [analyse(dialect, code[a : b + 1]) for a, b in inner]
    return max(analysed, key=lambda loop: (len(loop.accumulators), loop.multiply_adds))


@dataclass(frozen=True)
class Inspection:
    """The model's register plan for one kernel beside what the compiler made of it."""

    machine: str
    layer: str
    config: KernelConfig
    flags: tuple[str, ...]
    model: dict[str, int]
    compiled: dict[str, object] | None
    agrees: bool
    notes: tuple[str, ...]
    loop: HotLoop | None

    def to_dict(self) -> dict[str, object]:
        return {
            "machine": self.machine,
            "layer": self.layer,
            "config": self.config.to_dict(),
            "flags": list(self.flags),
            "model": dict(self.model),
            "compiled": self.compiled,
            "agrees": self.agrees,
            "notes": list(self.notes),
        }


def model_plan(machine: Machine, shape: ConvShape, config: KernelConfig) -> dict[str, int]:
    """The register plan the model assumes for `config`: what it names, what it budgets, what it needs in flight."""
    vectors = config.cob // config.lanes
    isa = get_isa(config.isa)
    if kernel_kind(shape, config.lanes) in LANE_KINDS:
        return _lane_plan(machine, shape.kernel_view(), config, vectors)
    # A multiply-add that broadcasts from memory (AVX-512 {1toN}, NEON by lane) saves the broadcast register only
    # in a one-vector tile: with several vectors GCC broadcasts once into a register that all of them read.
    broadcast = 0 if isa.fma_broadcast and vectors == 1 and isa.name != "neon" else 1
    return {
        "accumulators": vectors * config.wob,
        "weight_vectors": vectors,
        "broadcast_registers": broadcast,
        "registers_budget": registers_needed(vectors, config.wob, spare_registers(shape.kernel_view())),
        "n_reg": machine.n_reg,
        "fmas_in_flight_needed": math.ceil(machine.n_fma * machine.l_fma),  # E >= N_fma * L_fma (paper, eq. 1)
        "fmas_per_step": vectors * config.wob,
        "loads_per_step": vectors + config.wob,  # weight vectors + one broadcast input per column
    }


def _lane_plan(machine: Machine, shape: ConvShape, config: KernelConfig, vectors: int) -> dict[str, int]:
    """The model's plan for a lane-wise kernel (model.lanes): accumulators, the weight vectors it keeps (all of the
    tile's when they fit, else one filter row's, else one to load each into), the input vectors of a step; a step is
    one tap of one input channel of a group over the whole tile."""
    g = lanes.gathers(shape, config.lanes)
    need, kept = lanes.registers(shape, g, vectors, config.wob, machine.n_reg)
    accumulators = vectors * config.wob
    return {
        "lane_wise": 1,
        "accumulators": accumulators,
        "weight_vectors": lanes.kept_vectors(shape, vectors, kept),
        "broadcast_registers": g.registers,  # input vectors (and the shuffled one) of a step: nothing broadcasts
        "registers_budget": need,
        "n_reg": machine.n_reg,
        "fmas_in_flight_needed": math.ceil(machine.n_fma * machine.l_fma),
        "fmas_per_step": accumulators,
        "loads_per_step": math.ceil(g.loads) * vectors + (0 if kept == "all" else vectors),
    }


def _compare(plan: dict[str, int], loop: HotLoop) -> tuple[dict[str, object], bool, list[str]]:
    notes: list[str] = []
    e = plan["accumulators"]
    steps = loop.multiply_adds / e
    compiled: dict[str, object] = {
        "vector_registers_used": len(loop.vector_registers),
        "accumulators": len(loop.accumulators),
        "spills": loop.spills,
        "reloads": loop.reloads,
        "multiply_adds_in_loop": loop.multiply_adds,
        "steps_in_loop": round(steps, 3),
        "fmas_per_step": round(loop.multiply_adds / max(1.0, round(steps)), 3),
        "loads_per_step": round(loop.loads / max(1.0, round(steps)), 3),
    }
    agrees = True
    if loop.spills or loop.reloads:
        agrees = False
        notes.append(
            f"the hot loop moves vector registers to or from the stack ({loop.spills} stores, {loop.reloads} "
            f"loads): the tile needs more registers than the compiler kept free"
        )
    if len(loop.vector_registers) > plan["n_reg"]:
        agrees = False
        notes.append(f"{len(loop.vector_registers)} vector registers named, more than the {plan['n_reg']} there are")
    lane_wise = bool(plan.get("lane_wise"))
    if lane_wise:
        # A lane-wise tile unrolls every tap and skips the ones in the padding: its loop is no whole number of
        # steps and its loads are shared between taps, so only registers, spills and accumulators are compared.
        notes.append("lane-wise kernel: registers, spills and accumulators compared; steps and loads are not")
    elif loop.multiply_adds % e:
        agrees = False
        notes.append(f"{loop.multiply_adds} multiply-adds in the loop are not whole steps of {e}")
    if len(loop.accumulators) != e:
        agrees = False
        notes.append(f"{len(loop.accumulators)} registers accumulate, the plan has {e} accumulators")
    if e < plan["fmas_in_flight_needed"]:
        notes.append(
            f"E = {e} accumulators is under N_fma * L_fma = {plan['fmas_in_flight_needed']}: the tile is "
            f"latency-bound by choice (a narrow layer or a small register file)"
        )
    if len(loop.vector_registers) > plan["registers_budget"]:
        notes.append(
            f"the compiler named {len(loop.vector_registers)} registers, "
            f"{len(loop.vector_registers) - plan['registers_budget']} more than the model's budget of "
            f"{plan['registers_budget']} (loads of the next step in flight)"
        )
    loads = compiled["loads_per_step"]
    if not lane_wise and isinstance(loads, float) and abs(loads - plan["loads_per_step"]) > 1e-9:
        notes.append(
            f"{loads:g} loads per step against the model's {plan['loads_per_step']} (weight vectors + one "
            f"broadcast per column)"
        )
    return compiled, agrees, notes


def inspect_kernel(machine: Machine, shape: ConvShape, config: KernelConfig, layer: str = "") -> Inspection:
    """Build `config`'s kernel for `machine` (its flags, its compiler), disassemble it and compare with the model.

    Raises CompilerNotFoundError without a compiler for the machine's architecture, FileNotFoundError without an
    objdump that reads it, ValueError for a scalar kernel (nothing to inspect) or a config for another ISA.
    """
    target = cross.target_for(machine)
    arch = target.arch or cross.host_arch()
    flags, flags_note = cross.resolve_flags(target)
    obj = cross.build_for_machine(config, shape, machine, "object")
    code = disassemble(obj, arch)
    fused = any(DIALECTS["x86_fma"].multiply_add.match(i.text) for i in code) if arch == "x86_64" else True
    loop = hot_loop(code, dialect_for(config.isa, fused))
    plan = model_plan(machine, shape, config)
    if loop is None:
        return Inspection(
            machine.id,
            layer or shape.describe(),
            config,
            flags,
            plan,
            None,
            False,
            ("no loop of vector multiply-adds found in the code",),
            None,
        )
    compiled, agrees, notes = _compare(plan, loop)
    if flags_note:
        notes.insert(0, flags_note)
    if not fused:
        notes.insert(0, "no fused multiply-add in the machine's flags: each step multiplies, then adds")
    return Inspection(machine.id, layer or shape.describe(), config, flags, plan, compiled, agrees, tuple(notes), loop)
