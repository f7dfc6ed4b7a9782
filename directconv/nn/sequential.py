"""directconv.Sequential: a chain of Conv2d and MaxPool2d steps run end to end in the blocked layout.

An NCHW call converts once on the way in and once on the way out; between steps the activations stay blocked, since
one step's blocked output is the next step's input as is. Intermediate activations live in two flat float32 buffers:
step i writes a reshaped prefix view of buffer i % 2 while reading the other. The chain keeps, for each kind of call
(NCHW, blocked), the two buffers of the last input shape and batch called, with the steps that read and write them
bound to them once (their C calls checked ahead) and made in one C call (kernels.graph_ops.chain): Python between
the steps slowed a deep network down (docs/design.md, "Sequential's steps in one C call"). A call that finds them in
use by another thread allocates two buffers of its own and runs step by step, so calls share no mutable state.
(Without a C compiler every call runs step by step, and max-pool steps add numpy's fixed-size iterator scratch: see
MaxPool2d.) Max-pool steps run on the chain's threads (Plan.threads).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from directconv.core.isa import get_isa, host_isa
from directconv.kernels import convert, graph_ops, layout, runtime
from directconv.nn import api
from directconv.nn.layer import Conv2d
from directconv.nn.pool import MaxPool2d

__all__ = ["Plan", "Sequential", "Stage"]

Step = Conv2d | MaxPool2d


@dataclass(frozen=True)
class Stage:
    """One activation of the chain: the input (name "input") or a step's output, batch excluded."""

    name: str
    channels: int
    height: int
    width: int

    def blocked_shape(self, batch: int, lanes: int) -> tuple[int, int, int, int, int]:
        return batch, layout.blocks(self.channels, lanes), self.height, self.width, lanes

    def floats(self, batch: int, lanes: int) -> int:
        return int(np.prod(self.blocked_shape(batch, lanes)))


@dataclass(frozen=True)
class Plan:
    """What a Sequential does on one input size: every activation's size, and the blocked layout's ISA and lanes."""

    isa: str
    lanes: int
    input: Stage
    outputs: tuple[Stage, ...]
    threads: int = 1  # of the conversion into the blocked layout: the most any convolution of the chain runs with
    reads_nchw: bool = False  # the first step is a convolution whose kernel reads an NCHW input unconverted

    def buffer_floats(self, batch: int, *, nchw: bool) -> tuple[int, int]:
        """Floats in each of the two buffers of one call.

        Step i writes buffer i % 2. A blocked call gets its input from the caller and returns its last output in
        a tensor of its own; an NCHW call also keeps the blocked input (in buffer 1, which step 0 does not write;
        not when the first convolution reads the NCHW input itself) and the last output (converted out of its
        buffer) in the pair.
        """
        sizes = [0, 0]
        last = len(self.outputs) - 1
        for i, stage in enumerate(self.outputs):
            if i < last or nchw:
                sizes[i % 2] = max(sizes[i % 2], stage.floats(batch, self.lanes))
        if nchw and not self.reads_nchw:
            sizes[1] = max(sizes[1], self.input.floats(batch, self.lanes))
        return sizes[0], sizes[1]


@dataclass(frozen=True)
class _Bound:
    """The buffers a chain keeps for one input shape, batch and kind of call, and the run of steps bound to them."""

    buffers: tuple[np.ndarray, np.ndarray]
    start: int  # the first step the chain makes: the ones before it read the caller's input
    end: int  # the step after the chain's last: the ones from here on write the caller's output
    run: Callable[[], None]  # steps [start, end) in one C call
    lock: threading.Lock = field(default_factory=threading.Lock)


def _view(buffer: np.ndarray, stage: Stage, batch: int, lanes: int) -> api.BlockedTensor:
    shape = stage.blocked_shape(batch, lanes)
    return api.BlockedTensor(buffer[: stage.floats(batch, lanes)].reshape(shape), stage.channels)


class Sequential:
    """Conv2d and MaxPool2d steps applied in order (see the module docstring for the memory they use).

    Called on an NCHW float32 array it returns NCHW; called on a BlockedTensor it returns a BlockedTensor (or
    writes `out=`). The first call on an input size binds every convolution for its own input size (choosing,
    packing and compiling, see Conv2d.bind); `plan(channels, height, width)` does that ahead of time. Calls are
    thread-safe: a call holds the kept buffers it runs on (a concurrent one allocates its own), and the steps only
    read their weights.
    """

    def __init__(self, steps: Iterable[Step], *, names: Sequence[str] | None = None) -> None:
        self._steps: tuple[Step, ...] = tuple(steps)
        if not self._steps:
            raise ValueError("Sequential needs at least one step (a Conv2d or a MaxPool2d), got none")
        for i, step in enumerate(self._steps):
            if not isinstance(step, (Conv2d, MaxPool2d)):
                raise TypeError(
                    f"step {i} must be a directconv.Conv2d or directconv.MaxPool2d, got {type(step).__name__}"
                )
        if names is None:
            names = [f"{'conv' if isinstance(s, Conv2d) else 'pool'}{i}" for i, s in enumerate(self._steps)]
        names = tuple(names)
        if len(names) != len(self._steps) or not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"names must be {len(self._steps)} non-empty strings, one per step, got {names!r}")
        self._names: tuple[str, ...] = names
        self._plans: dict[tuple[int, int, int], Plan] = {}
        self._lock = threading.Lock()
        # per kind of call (NCHW: True, blocked: False), the last (channels, height, width, batch) called, and its
        # buffers and chain (None: C cannot make that run; see the module docstring)
        self._bound: dict[bool, tuple[tuple[int, int, int, int], _Bound | None]] = {}

    # ------------------------------------------------------------------------------------------ description

    @property
    def steps(self) -> tuple[Step, ...]:
        return self._steps

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    def __len__(self) -> int:
        return len(self._steps)

    def __iter__(self) -> Iterator[Step]:
        return iter(self._steps)

    def __getitem__(self, index: int) -> Step:
        return self._steps[index]

    def __repr__(self) -> str:
        inner = "".join(f"\n  ({name}): {step!r}" for name, step in zip(self._names, self._steps, strict=True))
        return f"Sequential({inner}\n)"

    @property
    def in_channels(self) -> int | None:
        """The channels the first convolution expects (None for a chain of pools, which takes any)."""
        first = next((s for s in self._steps if isinstance(s, Conv2d)), None)
        return None if first is None else first.in_channels

    # ------------------------------------------------------------------------------------------ setup

    def plan(self, channels: int, height: int, width: int) -> Plan:
        """Bind every convolution for an input of channels x height x width and return the sizes along the chain.

        Raises ValueError naming the step where the channels do not chain, a window does not fit, or the
        convolutions' configurations disagree on the blocked layout.
        """
        key = (channels, height, width)
        found = self._plans.get(key)
        if found is not None:
            return found
        with self._lock:
            found = self._plans.get(key)
            if found is None:
                found = self._make_plan(channels, height, width)
                self._plans[key] = found
        return found

    def _make_plan(self, channels: int, height: int, width: int) -> Plan:
        current = Stage("input", channels, height, width)
        outputs: list[Stage] = []
        isa: str | None = None
        threads = 1
        first_conv = ""
        first_reads_nchw = False
        for i, (name, step) in enumerate(zip(self._names, self._steps, strict=True)):
            where = f"step {i} ({name!r})"
            source = "the input" if i == 0 else f"step {i - 1} ({self._names[i - 1]!r})"
            try:
                if isinstance(step, Conv2d):
                    if step.in_channels != current.channels:
                        raise ValueError(
                            f"expects {step.in_channels} input channels, but {source} gives {current.channels}"
                        )
                    binding = step.bind(current.height, current.width)
                    if isa is None:
                        isa, first_conv = binding.config.isa, where
                    elif get_isa(binding.config.isa).lanes != get_isa(isa).lanes:
                        raise ValueError(
                            f"runs {binding.config.isa} ({get_isa(binding.config.isa).lanes} lanes) but {first_conv} "
                            f"runs {isa} ({get_isa(isa).lanes} lanes): one chain needs one blocked layout; give "
                            f"every Conv2d the same ISA"
                        )
                    threads = max(threads, binding.config.threads)
                    first_reads_nchw = first_reads_nchw or (i == 0 and binding.weights.kernel.reads_nchw)
                    ho, wo = binding.shape.ho, binding.shape.wo
                    current = Stage(name, step.out_channels, ho, wo)
                else:
                    ho, wo = step.output_size(current.height, current.width)
                    current = Stage(name, current.channels, ho, wo)
            except ValueError as exc:
                raise ValueError(
                    f"{where}, on a {current.channels}x{current.height}x{current.width} input: {exc}"
                ) from None
            outputs.append(current)
        isa = isa or host_isa()
        return Plan(
            isa, get_isa(isa).lanes, Stage("input", channels, height, width), tuple(outputs), threads, first_reads_nchw
        )

    # ------------------------------------------------------------------------------------------ running

    def __call__(self, x: Any, *, out: api.BlockedTensor | None = None) -> Any:
        """NCHW float32 ndarray -> NCHW ndarray; BlockedTensor -> BlockedTensor (see forward_blocked)."""
        if isinstance(x, api.BlockedTensor):
            return self.forward_blocked(x, out=out)
        if out is not None:
            raise TypeError("out= is for blocked calls; an NCHW call returns a new array")
        x = api._require_float32("x", x, 4, "NCHW")
        batch = int(x.shape[0])
        plan = self.plan(int(x.shape[1]), int(x.shape[2]), int(x.shape[3]))
        bound = self._take_bound(plan, batch, nchw=True)
        if bound is not None:
            try:
                self._enter(plan, x, bound.buffers)
                bound.run()
                last = len(self._steps) - 1
                return api.from_blocked(_view(bound.buffers[last % 2], plan.outputs[last], batch, plan.lanes))
            finally:
                bound.lock.release()
        buffers = self._buffers(plan, batch, nchw=True)
        current, start = self._enter(plan, x, buffers)
        return api.from_blocked(self._run(plan, current, buffers, out=None, last_in_buffer=True, start=start))

    def _enter(
        self, plan: Plan, x: np.ndarray, buffers: tuple[np.ndarray, np.ndarray]
    ) -> tuple[api.BlockedTensor, int]:
        """An NCHW call's way into the blocked layout: the first layer reading x itself into buffer 0 where its kernel
        reads NCHW, else x converted into buffer 1; the blocked tensor there and the step to run next."""
        batch, first = int(x.shape[0]), self._steps[0]
        if plan.reads_nchw and isinstance(first, Conv2d):
            target = _view(buffers[0], plan.outputs[0], batch, plan.lanes)
            weights = first.bind(plan.input.height, plan.input.width).weights
            return api.conv2d_nchw_input(x, weights, target, relu=first.activation == "relu"), 1
        blocked_in = _view(buffers[1], plan.input, batch, plan.lanes)
        convert.to_blocked(x, plan.lanes, threads=plan.threads, out=blocked_in.data)
        return blocked_in, 0

    def forward_blocked(self, x: api.BlockedTensor, *, out: api.BlockedTensor | None = None) -> api.BlockedTensor:
        """Blocked in, blocked out. Allocates the result (nothing with `out=`), and the two buffers on the first call
        of an input shape and batch, or when another call holds them."""
        if not isinstance(x, api.BlockedTensor):
            raise TypeError(f"x must be a BlockedTensor (see directconv.to_blocked), got {type(x).__name__}")
        plan = self.plan(x.channels, x.height, x.width)
        if x.lanes != plan.lanes:
            raise ValueError(
                f"x is blocked by {x.lanes} lanes but this chain runs {plan.isa} ({plan.lanes} lanes): "
                f"block it with directconv.to_blocked(x, isa={plan.isa!r})"
            )
        if out is not None:
            expected = plan.outputs[-1].blocked_shape(x.batch, plan.lanes)
            if not isinstance(out, api.BlockedTensor) or out.data.shape != expected:
                got = out.data.shape if isinstance(out, api.BlockedTensor) else type(out).__name__
                raise ValueError(f"out must be a BlockedTensor of shape {expected}, got {got}")
        bound = self._take_bound(plan, x.batch, nchw=False)
        if bound is None:
            return self._run(plan, x, self._buffers(plan, x.batch, nchw=False), out=out, last_in_buffer=False)
        try:
            buffers, last = bound.buffers, len(self._steps) - 1
            current = self._run(plan, x, buffers, out=out, last_in_buffer=False, stop=bound.start)
            bound.run()
            if bound.end <= last:
                previous = _view(buffers[(bound.end - 1) % 2], plan.outputs[bound.end - 1], x.batch, plan.lanes)
                current = self._run(plan, previous, buffers, out=out, last_in_buffer=False, start=bound.end)
            return current
        finally:
            bound.lock.release()

    # ------------------------------------------------------------------------------------------ bound runs

    def _take_bound(self, plan: Plan, batch: int, *, nchw: bool) -> _Bound | None:
        """The kept buffers and chain for this call, locked for it; None when another call holds them, C cannot
        make every step of the run, or the run would make fewer than two steps (then a call goes step by step)."""
        key = (plan.input.channels, plan.input.height, plan.input.width, batch)
        kept = self._bound.get(nchw)
        if kept is None or kept[0] != key:
            with self._lock:
                kept = self._bound.get(nchw)
                if kept is None or kept[0] != key:
                    kept = self._bound[nchw] = (key, self._bind(plan, batch, nchw=nchw))
        bound = kept[1]
        if bound is None:
            return None
        return bound if bound.lock.acquire(blocking=False) else None

    def _bind(self, plan: Plan, batch: int, *, nchw: bool) -> _Bound | None:
        """New buffers for (plan, batch, kind of call) and the steps that only touch them bound in one chain: from
        the first (the second if the first reads the caller's NCHW input) to the last (the one before it in a
        blocked call, whose last step writes the caller's output)."""
        last = len(self._steps) - 1
        start = 1 if not nchw or plan.reads_nchw else 0
        end = last + 1 if nchw else last
        if end - start < 2:
            return None
        buffers = self._buffers(plan, batch, nchw=nchw)
        calls = []
        for i in range(start, end):
            source = plan.input if i == 0 else plan.outputs[i - 1]
            x = _view(buffers[(i - 1) % 2], source, batch, plan.lanes).data
            y = _view(buffers[i % 2], plan.outputs[i], batch, plan.lanes).data
            call = self._bind_step(self._steps[i], source, x, y, plan.threads)
            if call is None:
                return None
            calls.append(call)
        chain = graph_ops.chain(calls, lanes=plan.lanes)
        return None if chain is None else _Bound(buffers, start, end, chain)

    @staticmethod
    def _bind_step(step: Step, source: Stage, x: np.ndarray, y: np.ndarray, threads: int) -> runtime.BoundCall | None:
        """Step's C call from view x into view y, checked now."""
        if isinstance(step, MaxPool2d):
            return graph_ops.bind_max_pool(x, y, *step.window, threads=threads)
        w = step.bind(source.height, source.width).weights
        c = w.config
        epilogue = runtime.Epilogue("relu") if step.activation == "relu" else None
        return w.kernel.bind_fused(
            x, w.data, w.bias, y, cib=c.cib, rows=c.rows, parallel=c.parallel, threads=c.threads, epilogue=epilogue
        )

    def _buffers(self, plan: Plan, batch: int, *, nchw: bool) -> tuple[np.ndarray, np.ndarray]:
        first, second = plan.buffer_floats(batch, nchw=nchw)
        return layout.empty_aligned((first,)), layout.empty_aligned((second,))

    def _run(
        self,
        plan: Plan,
        x: api.BlockedTensor,
        buffers: tuple[np.ndarray, np.ndarray],
        *,
        out: api.BlockedTensor | None,
        last_in_buffer: bool,
        start: int = 0,
        stop: int | None = None,
    ) -> api.BlockedTensor:
        """Steps [start, stop) (stop None: to the end), from `x` (the output of step start - 1, in buffer
        (start - 1) % 2 if start > 0)."""
        current = x
        last = len(self._steps) - 1
        for i, (step, stage) in enumerate(zip(self._steps, plan.outputs, strict=True)):
            if i < start:
                continue
            if stop is not None and i >= stop:
                break
            # Past the last buffered step, `out` (None: the step allocates the result, which outlives the buffers).
            in_buffer = i < last or last_in_buffer
            target = _view(buffers[i % 2], stage, x.batch, plan.lanes) if in_buffer else out
            if isinstance(step, MaxPool2d):
                current = step(current, out=target, threads=plan.threads)
            else:
                current = step(current, out=target)
        return current
