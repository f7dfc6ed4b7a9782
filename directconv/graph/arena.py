"""Where every blocked activation lives: one arena, planned once at load from the tensors' lifetimes.

A *buffer* is a run of floats holding one blocked tensor (N, blocks, H, W, lanes), or several: a Concat along
channels whose inputs start at multiples of the lanes is one buffer in which the producers of those inputs
(convolutions, and Concats in turn, as in DenseNet's growing blocks) write their slices directly, so the Concat
copies nothing. Two buffers share floats when no step needs both (TFLite's greedy-by-size arena planner: largest
first, at the lowest offset free of every buffer whose lifetime overlaps). Sizes scale with the batch, so the plan
is made per image and an arena for N images is N times as large with every offset N times as far.
"""

from __future__ import annotations

from dataclasses import dataclass

from directconv.graph.ir import Step, Tensor
from directconv.kernels.layout import blocks

ALIGN = 16  # floats: 64 bytes, a cache line and an AVX-512 vector


@dataclass(frozen=True)
class Place:
    buffer: str  # the tensor that names the buffer
    first: int  # the first channel block of this tensor in it


@dataclass(frozen=True)
class Plan:
    lanes: int
    places: dict[str, Place]  # every blocked tensor
    shapes: dict[str, tuple[int, int, int]]  # buffer -> (blocks, H, W)
    offsets: dict[str, int]  # buffer -> floats per image before it
    floats: int  # per image
    unshared: int  # per image, were no buffers shared: what the reuse saves

    def buffer_floats(self, buffer: str) -> int:
        nb, h, w = self.shapes[buffer]
        return nb * h * w * self.lanes


def plan(steps: list[Step], tensors: dict[str, Tensor], inputs: list[str], outputs: set[str], lanes: int) -> Plan:
    places = _alias_concats(steps, tensors, inputs, outputs, lanes)
    for name, t in tensors.items():
        if t.blocked and name not in places and (name in inputs or any(s.output == name for s in steps)):
            places[name] = Place(name, 0)
    shapes = {}
    for name, place in places.items():
        if place.buffer == name:
            c, h, w = tensors[name].dims
            shapes[name] = (blocks(c, lanes), h, w)
    life = _lifetimes(steps, places, inputs, outputs)
    sizes = {b: nb * h * w * lanes for b, (nb, h, w) in shapes.items()}
    offsets: dict[str, int] = {}
    for buffer in sorted(sizes, key=lambda b: (-sizes[b], b)):
        lo, hi = life[buffer]
        taken = sorted((offsets[o], offsets[o] + sizes[o]) for o in offsets if not (life[o][1] < lo or hi < life[o][0]))
        offset = 0
        for start, end in taken:
            if offset + sizes[buffer] <= start:
                break
            offset = max(offset, -(-end // ALIGN) * ALIGN)
        offsets[buffer] = offset
    floats = max((offsets[b] + sizes[b] for b in sizes), default=0)
    return Plan(lanes, places, shapes, offsets, floats, sum(-(-s // ALIGN) * ALIGN for s in sizes.values()))


def _alias_concats(
    steps: list[Step], tensors: dict[str, Tensor], inputs: list[str], outputs: set[str], lanes: int
) -> dict[str, Place]:
    """Concat inputs that are written in place: produced by a convolution or a Concat, at an offset that is a
    multiple of the lanes, once, and neither a graph input or output nor in another Concat already. A convolution
    with a residual is left out: its residual could lie in the same buffer, which the kernel refuses."""
    producer = {s.output: s for s in steps}
    parent: dict[str, tuple[str, int]] = {}  # tensor -> (concat output, first block in it)
    for step in steps:
        if step.op != "concat":
            continue
        offset, copies = 0, []
        for index, name in enumerate(step.inputs):
            source = producer.get(name)
            channels = tensors[name].channels
            writable = (
                source is not None
                and (source.op == "concat" or (source.op == "conv" and source.params["residual"] is None))
                and offset % lanes == 0
                and name not in parent
                and name not in outputs
                and name not in inputs
                and step.inputs.count(name) == 1
            )
            if writable:
                parent[name] = (step.output, offset // lanes)
            else:
                copies.append((index, offset))
            offset += channels
        step.params["copies"] = copies

    def root(name: str) -> Place:
        first = 0
        while name in parent:
            name, block = parent[name]
            first += block
        return Place(name, first)

    return {name: root(name) for name in parent}


def _lifetimes(
    steps: list[Step], places: dict[str, Place], inputs: list[str], outputs: set[str]
) -> dict[str, tuple[int, int]]:
    """buffer -> (first step that writes it, last step that reads it); graph inputs are written before step 0,
    graph outputs read after the last."""
    life: dict[str, list[int]] = {}

    def touch(name: str, index: int) -> None:
        place = places.get(name)
        if place is None:
            return
        span = life.setdefault(place.buffer, [index, index])
        span[0], span[1] = min(span[0], index), max(span[1], index)

    for name in inputs:
        touch(name, -1)
    for index, step in enumerate(steps):
        touch(step.output, index)
        for name in step.inputs:
            touch(name, index)
    for name in outputs:
        touch(name, len(steps))
    return {b: (lo, hi) for b, (lo, hi) in life.items()}
