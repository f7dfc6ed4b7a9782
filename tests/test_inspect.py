"""`directconv inspect`: the hot loop read from machine code, and its agreement with the model's register plan."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from directconv.cli.main import main
from directconv.core.shape import kernel_kind
from directconv.core.suite import suite
from directconv.kernels import cross
from directconv.kernels.compiler import CompileError, CompilerNotFoundError
from directconv.kernels.inspect import DIALECTS, hot_loop, inspect_kernel, parse_listing
from directconv.machines.loader import bundled_machines
from directconv.model import predict

# A recorded x86 listing (AT&T syntax): an outer loop around two inner loops, the narrow edge tile's (2
# accumulators) and the interior tile's (4 accumulators, one of them kept on the stack: a spill and a reload).
X86_LISTING = """
0000000000000000 <dc_conv._omp_fn.0>:
  10:	vbroadcastss 0x20(%rdx),%ymm15
  16:	vmovups (%rcx),%ymm2
  1a:	vfmadd231ps %ymm15,%ymm2,%ymm5
  1f:	vfmadd231ps %ymm15,%ymm2,%ymm4
  24:	cmp    %rcx,%rdi
  27:	jne    10 <dc_conv._omp_fn.0+0x10>
  30:	vbroadcastss 0x20(%rdx),%ymm15
  36:	vmovups (%rcx),%ymm2
  3a:	vmovups 0x20(%rcx),%ymm1
  3f:	vfmadd231ps %ymm15,%ymm2,%ymm5
  44:	vfmadd231ps %ymm15,%ymm1,%ymm4
  49:	vbroadcastss 0x24(%rdx),%ymm14
  4f:	vfmadd231ps %ymm14,%ymm2,%ymm3
  54:	vmovups 0x40(%rsp),%ymm0
  5a:	vfmadd231ps %ymm14,%ymm1,%ymm0
  5f:	vmovups %ymm0,0x40(%rsp)
  65:	add    $0x8,%rdx
  69:	cmp    %rcx,%rdi
  6c:	jne    30 <dc_conv._omp_fn.0+0x30>
  70:	dec    %r8
  73:	jne    10 <dc_conv._omp_fn.0+0x10>
"""

# A recorded AArch64 listing: one step of a 2-vector x 2-column tile, weights by a pair load, inputs by scalar
# loads multiplied by lane, "#" marking immediates and "//" a comment.
AARCH64_LISTING = """
0000000000000000 <dc_conv._omp_fn.0>:
 350:	ldr	s14, [x1, #16]
 354:	ldp	q1, q0, [x8]
 358:	add	x8, x8, #0x20  // next weights
 35c:	fmla	v31.4s, v1.4s, v14.s[0]
 360:	fmla	v30.4s, v0.4s, v14.s[0]
 364:	ldr	s14, [x1, #28]
 368:	fmla	v29.4s, v1.4s, v14.s[0]
 36c:	fmla	v28.4s, v0.4s, v14.s[0]
 370:	cmp	x8, x26
 374:	b.ne	350 <dc_conv._omp_fn.0+0x350>
"""


def test_x86_hot_loop_is_the_widest_inner_loop_and_its_stack_traffic_is_counted() -> None:
    loop = hot_loop(parse_listing(X86_LISTING, "x86_64"), DIALECTS["x86_fma"])
    assert loop is not None
    assert loop.instructions[0].address == 0x30 and loop.instructions[-1].address == 0x6C
    assert loop.multiply_adds == 4 and loop.accumulators == (0, 3, 4, 5)
    assert (loop.spills, loop.reloads) == (1, 1)
    assert loop.loads == 5  # two broadcasts, two weight vectors, one reload
    assert loop.vector_registers == (0, 1, 2, 3, 4, 5, 14, 15)


def test_aarch64_loads_count_registers_and_immediates_are_not_comments() -> None:
    loop = hot_loop(parse_listing(AARCH64_LISTING, "aarch64"), DIALECTS["aarch64"])
    assert loop is not None and loop.multiply_adds == 4
    assert loop.accumulators == (28, 29, 30, 31)
    assert loop.loads == 4  # a pair load fills two weight registers, two scalar inputs
    assert (loop.spills, loop.reloads) == (0, 0)
    assert any(i.operands == "x8, x8, #0x20" for i in loop.instructions)


def test_no_loop_of_multiply_adds_gives_none() -> None:
    listing = "  10:\tadd    $0x8,%rdx\n  14:\tjne    10 <f+0x10>\n"
    assert hot_loop(parse_listing(listing, "x86_64"), DIALECTS["x86_fma"]) is None


def _inspect_all(machine):  # every suite layer's predicted kernel on one machine
    try:
        cross.find_target_compiler(cross.target_for(machine).arch)
    except CompilerNotFoundError as exc:
        return machine.id, f"skip: {exc}", []
    out = []
    # The broadcast kernels (plain and grouped) whose register plan this checks; the lane-wise ones' plans are
    # looser (docs/design.md, "The depthwise and narrow-group model, checked exhaustively").
    for layer in suite():
        if kernel_kind(layer.shape, machine.n_vec) not in ("plain", "grouped"):
            continue
        config = predict(layer.shape, machine, 1).config
        try:
            out.append((layer.name, inspect_kernel(machine, layer.shape, config, layer.name)))
        except CompileError as exc:
            return machine.id, f"skip: the local compiler rejects {machine.id}'s flags: {str(exc)[:300]}", []
    return machine.id, "", out


@pytest.mark.compiler
@pytest.mark.slow
def test_every_bundled_machines_predicted_kernels_agree_with_the_model_without_spills() -> None:
    machines = [m for m in bundled_machines() if m.isa != "scalar"]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = list(pool.map(_inspect_all, machines))
    checked = 0
    problems = []
    for machine_id, skipped, inspections in results:
        if skipped:
            print(f"{machine_id}: {skipped}")
            continue
        for layer, r in inspections:
            checked += 1
            if not r.agrees or r.compiled is None or r.compiled["spills"] or r.compiled["reloads"]:
                problems.append(f"{machine_id} {layer} {r.config}: {r.compiled} {list(r.notes)}")
    assert checked >= 22 * 5, f"only {checked} kernels were inspected"
    assert not problems, "\n".join(problems)


@pytest.mark.compiler
def test_inspect_command_json(capsys) -> None:
    assert main(["inspect", "--machine", "haswell", "--layer", "vgg16:conv3_2", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {"machine", "layer", "config", "model", "compiled", "agrees", "notes"} <= set(doc)
    assert doc["machine"] == "haswell" and doc["agrees"] is True
    compiled = doc["compiled"]
    for key in ("vector_registers_used", "spills", "reloads", "fmas_per_step", "loads_per_step"):
        assert key in compiled
    assert compiled["spills"] == 0 and compiled["fmas_per_step"] == doc["model"]["accumulators"]


@pytest.mark.compiler
def test_inspect_explains_a_tile_too_large_for_the_registers(capsys) -> None:
    status = main(
        [
            "inspect",
            "--machine",
            "haswell",
            "--layer",
            "vgg16:conv3_2",
            "--config",
            '{"cob": 32, "wob": 6, "unroll": 1}',
            "--json",
        ]
    )
    doc = json.loads(capsys.readouterr().out)
    assert status == 1 and doc["agrees"] is False
    assert doc["compiled"]["spills"] > 0
    assert any("stack" in note for note in doc["notes"])


def test_inspect_refuses_a_config_that_is_not_json(capsys) -> None:
    assert main(["inspect", "--machine", "haswell", "--layer", "vgg16:conv3_2", "--config", "cob=32"]) == 2
    assert "--config must be a JSON object" in capsys.readouterr().err
