"""Fuse what follows a convolution into it, so that each activation is written once.

In order: per-channel scale-and-shift chains merge (BatchNormalization, then a Mul and an Add by constants); a
scale-and-shift that a convolution alone feeds folds into its weights and bias; x * sigmoid(x) becomes SiLU; an Add
whose operand a convolution alone feeds becomes that convolution's residual (the kernel adds the other operand in
its store, as onnxruntime's NCHWc kernels do); an activation a convolution alone feeds goes into its store. "Alone"
means the convolution's output has no other reader and is not a graph output: otherwise the unfused value is needed.
An activation after a scale-and-shift or an Add that stayed a step of its own fuses into that step.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from directconv.graph.ir import Step


def fuse(steps: list[Step], outputs: set[str]) -> list[Step]:
    steps = list(steps)
    for rule in (_merge_scale_shifts, _fold_into_conv, _silu, _residuals, _activations):
        steps = rule(steps, outputs)
    return steps


def _readers(steps: list[Step], outputs: set[str]) -> Counter[str]:
    uses = Counter(name for step in steps for name in step.inputs)
    uses.update(outputs)
    return uses


def _producers(steps: list[Step]) -> dict[str, int]:
    return {step.output: i for i, step in enumerate(steps)}


def _sole(step: Step, name: str, uses: Counter[str], outputs: set[str]) -> bool:
    return uses[name] == 1 and name not in outputs and name == step.output


def _absorb(into: Step, absorbed: Step) -> None:
    into.output = absorbed.output
    into.nodes = into.nodes + absorbed.nodes


def _merge_scale_shifts(steps: list[Step], outputs: set[str]) -> list[Step]:
    uses, kept = _readers(steps, outputs), []
    by_output: dict[str, Step] = {}
    for step in steps:
        first = by_output.get(step.inputs[0]) if step.op == "scale_shift" else None
        if first is not None and first.op == "scale_shift" and _sole(first, step.inputs[0], uses, outputs):
            s1, t1, s2, t2 = first.params["scale"], first.params["shift"], step.params["scale"], step.params["shift"]
            first.params = {"scale": s1 * s2, "shift": t1 * s2 + t2}
            _absorb(first, step)
            by_output[first.output] = first
            continue
        kept.append(step)
        by_output[step.output] = step
    return kept


def _fold_into_conv(steps: list[Step], outputs: set[str]) -> list[Step]:
    """W' = W * scale per output channel, b' = b * scale + shift: exact up to rounding, padding included (the shift
    is added after the convolution, so zero padding is still zero)."""
    uses, kept = _readers(steps, outputs), []
    by_output: dict[str, Step] = {}
    for step in steps:
        conv = by_output.get(step.inputs[0]) if step.op == "scale_shift" else None
        if conv is not None and conv.op == "conv" and _plain_store(conv) and _sole(conv, step.inputs[0], uses, outputs):
            scale, shift = step.params["scale"], step.params["shift"]
            w = conv.params["weight"].astype(np.float64) * scale[:, None, None, None]
            b = conv.params["bias"]
            conv.params["weight"] = w.astype(np.float32)
            conv.params["bias"] = ((0.0 if b is None else b.astype(np.float64)) * scale + shift).astype(np.float32)
            _absorb(conv, step)
            by_output[conv.output] = conv
            continue
        kept.append(step)
        by_output[step.output] = step
    return kept


def _plain_store(conv: Step) -> bool:
    return conv.params["act"] == "none" and conv.params["residual"] is None


def _silu(steps: list[Step], outputs: set[str]) -> list[Step]:
    uses = _readers(steps, outputs)
    sigmoids = {s.output: s for s in steps if s.op == "act" and s.params["kind"] == "sigmoid"}
    dropped: set[int] = set()
    for step in steps:
        if step.op != "mul":
            continue
        for gate, x in (step.inputs, step.inputs[::-1]):
            sigmoid = sigmoids.get(gate)
            if sigmoid is not None and sigmoid.inputs[0] == x and uses[gate] == 1 and gate not in outputs:
                step.op, step.inputs = "act", [x]
                step.params = {"kind": "silu", "alpha": 0.0, "beta": 0.0}
                step.nodes = sigmoid.nodes + step.nodes
                dropped.add(id(sigmoid))
                break
    return [s for s in steps if id(s) not in dropped]


def _residuals(steps: list[Step], outputs: set[str]) -> list[Step]:
    uses, kept = _readers(steps, outputs), []
    producers = _producers(steps)
    by_output: dict[str, Step] = {}
    for step in steps:
        fused = False
        if step.op == "add":
            for a, b in (step.inputs, step.inputs[::-1]):
                conv = by_output.get(a)
                # The other operand must exist when the convolution runs: made before it, or a graph input.
                ready = producers.get(b, -1) < producers.get(a, -1)
                if (
                    conv is not None
                    and conv.op == "conv"
                    and _plain_store(conv)
                    and ready
                    and _sole(conv, a, uses, outputs)
                ):
                    conv.params["residual"] = b
                    conv.inputs = [conv.inputs[0], b]
                    _absorb(conv, step)
                    by_output[conv.output] = conv
                    fused = True
                    break
        if not fused:
            kept.append(step)
            by_output[step.output] = step
    return kept


def _activations(steps: list[Step], outputs: set[str]) -> list[Step]:
    uses, kept = _readers(steps, outputs), []
    by_output: dict[str, Step] = {}
    for step in steps:
        source = by_output.get(step.inputs[0]) if step.op == "act" else None
        # Convolutions, and the elementwise steps that did not fuse into one (DenseNet's pre-activation
        # BatchNormalization, an Add the activation follows), apply the activation as they store.
        if (
            source is not None
            and source.op in ("conv", "scale_shift", "add")
            and source.params.get("act", "none") == "none"
            and _sole(source, step.inputs[0], uses, outputs)
        ):
            source.params.update(act=step.params["kind"], alpha=step.params["alpha"], beta=step.params["beta"])
            _absorb(source, step)
            by_output[source.output] = source
            continue
        kept.append(step)
        by_output[step.output] = step
    return kept
