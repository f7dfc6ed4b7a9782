"""directconv.load_onnx and the Model it returns: an ONNX CNN run on directconv's kernels in the blocked layout.

Load parses and checks the file (read.py), builds steps with every shape known (build.py), fuses what follows each
convolution into its store (fuse.py), plans one arena for the activations (arena.py), then picks a configuration
for every convolution (tuned, nearest or model: tuner.select), compiles its kernel and packs its weights. A call
converts each input to the blocked layout once, runs the steps (each run of steps C makes, convolutions and
operators, in one C call), and converts each output back once.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from directconv.core import checks
from directconv.core.config import KernelConfig
from directconv.graph import arena, ops
from directconv.graph.build import build
from directconv.graph.fuse import fuse
from directconv.graph.ir import Step, Tensor
from directconv.graph.read import OnnxModelError, parse
from directconv.kernels import convert, graph_ops, layout, runtime
from directconv.kernels.layout import blocks
from directconv.nn.api import available_threads

__all__ = ["Model", "OnnxModelError", "conv_layers", "load_onnx"]

# Gemm weights of at least this many floats (16 MiB, far beyond the caches) run in BLAS on one thread (_gemv_in_c).
LARGE_GEMM = 1 << 22
GEMV_MAX_ROWS = 4  # images a gemv reads the matrix once for each of; more make it a product BLAS does better
# An arena larger than this fraction of the machine's memory is refused before it is allocated.
MEMORY_FRACTION = 0.75


@dataclass(frozen=True)
class Bound:
    """The arena of one batch size and the steps bound to it (Model._views)."""

    views: dict[str, np.ndarray]  # every blocked tensor's view into the arena
    # step index -> the C calls that make it, checked once (convolutions reading blocked input, and the operators C
    # runs on these views; a Concat made in place has none)
    calls: dict[int, tuple[runtime.BoundCall, ...]]
    # the dense tail's arrays that bound steps write (a Reshape's is a view of its input's)
    dense: dict[str, np.ndarray]
    # first step index of a run of bound steps making two or more calls -> (the step index after the run, one
    # function making all of its calls in one C call: graph_ops.chain)
    chains: dict[int, tuple[int, Callable[[], None]]]


@dataclass
class Conv:
    """A convolution step made ready to run: its kernel, packed weights and where its configuration came from."""

    kernel: runtime.CompiledKernel
    config: KernelConfig
    weights: np.ndarray
    bias: np.ndarray
    epilogue: runtime.Epilogue
    source: str  # tuned, nearest or model
    detail: str


def load_onnx(
    source: str | os.PathLike[str] | bytes,
    *,
    threads: int | None = None,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
) -> Model:
    """Load an ONNX model (a path or the file's bytes) to run on this machine with `threads` threads (default: all
    this process may use). `input_shapes` gives (N, C, H, W) for inputs whose C, H or W the file leaves open; the
    batch N may change from call to call whatever the file says.

    Raises OnnxModelError, naming the node and its op, for anything that cannot run; nothing is run or allocated
    for the activations before the whole graph has been checked.
    """
    checks.optional_threads(threads)
    if input_shapes is not None and not isinstance(input_shapes, dict):
        raise TypeError(f"input_shapes must be a dict of input name to (N, C, H, W), got {type(input_shapes).__name__}")
    parsed = parse(source)
    steps, tensors, alias = build(parsed, {k: tuple(v) for k, v in (input_shapes or {}).items()})
    outputs = [_resolve(alias, name) for name in parsed.outputs]
    steps = fuse(steps, set(outputs))
    return Model(parsed.inputs, parsed.outputs, outputs, steps, tensors, threads or available_threads())


def conv_layers(
    source: str | os.PathLike[str] | bytes, *, input_shapes: dict[str, tuple[int, ...]] | None = None
) -> list[tuple[str, Any]]:
    """The distinct convolutions of an ONNX model as (ONNX node name, ConvShape), in graph order, found as load_onnx
    finds them (after fusion) but without choosing configurations or compiling anything: what `tune --onnx`,
    `show --cache --onnx` and `export --onnx` work on."""
    parsed = parse(source)
    steps, _, alias = build(parsed, {k: tuple(v) for k, v in (input_shapes or {}).items()})
    steps = fuse(steps, {_resolve(alias, name) for name in parsed.outputs})
    found: dict[Any, str] = {}
    for step in steps:
        if step.op == "conv":
            found.setdefault(step.params["shape"], step.nodes[0])
    return [(name, shape) for shape, name in found.items()]


def _resolve(alias: dict[str, str], name: str) -> str:
    while name in alias:
        name = alias[name]
    return name


class Model:
    """A loaded ONNX model. `run(feeds)` has onnxruntime's meaning; `model(x)` runs a single-input model.

    Thread safety: one call at a time per Model (the arena is shared); load the file twice to run in parallel.
    """

    def __init__(
        self,
        inputs: list[tuple[str, tuple[Any, ...]]],
        output_names: list[str],
        outputs: list[str],
        steps: list[Step],
        tensors: dict[str, Tensor],
        threads: int,
    ) -> None:
        from directconv.tuner.select import choose_config  # the config store and the model load with the graph

        self.threads = threads
        self.input_names = [name for name, _ in inputs]
        self.output_names = list(output_names)
        self._outputs = outputs
        self._tensors = {name: t for name, t in tensors.items()}
        self._steps = steps
        self._convs: dict[int, Conv] = {}
        lanes = None
        choices = {}
        for index, step in enumerate(steps):
            if step.op != "conv":
                continue
            choice = choose_config(step.params["shape"], threads, warn=False)
            config = choice.config.replace(threads=threads)
            if lanes is None:
                lanes = config.lanes
            elif config.lanes != lanes:  # one layout for the whole graph: every kernel blocks by the same lanes
                raise OnnxModelError(
                    f"{step.label()}: its configuration ({config.isa}) blocks by {config.lanes} lanes, the others "
                    f"by {lanes}; the config store mixes vector widths for this machine"
                )
            choices[index] = (choice, config)
        # Compilers are processes of their own: build the kernels side by side, then load each from the disk cache.
        with ThreadPoolExecutor(max_workers=available_threads()) as pool:
            list(pool.map(lambda i: runtime.build(choices[i][1], steps[i].params["shape"]), choices))
        untuned = 0
        for index, (choice, config) in choices.items():
            p, shape = steps[index].params, steps[index].params["shape"]
            self._convs[index] = Conv(
                kernel=runtime.load(config, shape),
                config=config,
                weights=layout.pack_weights(p.pop("weight"), config.lanes, config.cob, shape.groups),
                bias=layout.pack_bias(p.pop("bias"), shape, config.lanes, config.cob),
                epilogue=runtime.Epilogue(p["act"], p["alpha"], p["beta"]),
                source=choice.source,
                detail=choice.detail,
            )
            untuned += choice.source == "model"
        if lanes is None:
            from directconv.core.isa import get_isa, host_isa

            lanes = get_isa(host_isa()).lanes
        self.lanes = lanes
        # Inputs read only by first-layer kernels that take NCHW (C_i <= lanes): never converted, no arena buffer.
        self._nchw_inputs = _nchw_inputs(self.input_names, set(outputs), steps, self._convs)
        blocked_inputs = [name for name in self.input_names if name not in self._nchw_inputs]
        self.plan = arena.plan(steps, self._tensors, blocked_inputs, set(outputs), lanes)
        self._prepared: dict[int, Bound] = {}
        self._blas = _blas_controller() if any(step.op == "gemm" for step in steps) else None
        self._lock = threading.Lock()
        if untuned:
            warnings.warn(
                f"{untuned} of {len(self._convs)} convolutions run the model's configuration (nothing tuned "
                f"for them on this machine at {threads} thread(s)); `directconv tune --onnx MODEL` tunes them",
                UserWarning,
                stacklevel=3,
            )

    # ------------------------------------------------------------------------------------------------ calls
    def __call__(self, x: np.ndarray) -> np.ndarray:
        if len(self.input_names) != 1 or len(self.output_names) != 1:
            raise ValueError(
                f"model(x) runs a model with one input and one output; this one has inputs {self.input_names} and "
                f"outputs {self.output_names}: use run({{name: array}})"
            )
        return self.run({self.input_names[0]: x})[0]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The graph's outputs, in order, for `feeds` (input name -> float32 array (N, C, H, W)), as onnxruntime's
        InferenceSession.run(None, feeds)."""
        batch = self._check_feeds(feeds)
        with self._lock:
            views = self._views(batch)
            dense = dict(self._prepared[batch].dense)
            nchw = self._convert_inputs(feeds, views)
            chains = self._prepared[batch].chains
            index = 0
            while index < len(self._steps):
                if index in chains:
                    index, chain = chains[index]
                    chain()
                    continue
                self._run_step(index, self._steps[index], views, dense, batch, nchw)
                index += 1
            results = []
            for name in self._outputs:
                t = self._tensors[name]
                if t.blocked:
                    results.append(
                        convert.from_blocked(np.ascontiguousarray(views[name]), t.channels, threads=self.threads)
                    )
                else:
                    results.append(np.array(dense[name], dtype=np.float32, copy=True))
            return results

    def profile(self, feeds: dict[str, np.ndarray], repeat: int = 10) -> list[tuple[int, Step, float]]:
        """Run `repeat` times and return (index, step, median seconds) per step, conversions of the inputs and
        outputs as steps -1 and len(steps): where a call's time goes."""
        checks.integer("repeat", repeat, 1)
        batch = self._check_feeds(feeds)
        times: list[list[float]] = [[] for _ in range(len(self._steps) + 2)]
        with self._lock:
            views = self._views(batch)
            for _ in range(repeat):
                dense = dict(self._prepared[batch].dense)
                t0 = time.perf_counter()
                nchw = self._convert_inputs(feeds, views)
                times[0].append(time.perf_counter() - t0)
                for index, step in enumerate(self._steps):
                    t0 = time.perf_counter()
                    self._run_step(index, step, views, dense, batch, nchw)
                    times[index + 1].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                for name in self._outputs:
                    if self._tensors[name].blocked:
                        convert.from_blocked(np.ascontiguousarray(views[name]), self._tensors[name].channels)
                times[-1].append(time.perf_counter() - t0)
        rows = [(-1, Step("to_blocked", [], "", ["inputs"]), float(np.median(times[0])))]
        rows += [(i, step, float(np.median(times[i + 1]))) for i, step in enumerate(self._steps)]
        rows.append((len(self._steps), Step("from_blocked", [], "", ["outputs"]), float(np.median(times[-1]))))
        return rows

    def _convert_inputs(self, feeds: dict[str, np.ndarray], views: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each input into its blocked view, except those the first layers read as NCHW: returned, contiguous."""
        nchw = {}
        for name in self.input_names:
            x = np.ascontiguousarray(feeds[name])
            if name in self._nchw_inputs:
                nchw[name] = x
            else:
                convert.to_blocked(x, self.lanes, threads=self.threads, out=views[name])
        return nchw

    def _check_feeds(self, feeds: Any) -> int:
        if not isinstance(feeds, dict):
            raise TypeError(f"feeds must be a dict of input name to array, got {type(feeds).__name__}")
        missing = [n for n in self.input_names if n not in feeds]
        extra = sorted(set(feeds) - set(self.input_names))
        if missing or extra:
            raise ValueError(
                f"feeds must name exactly the inputs {self.input_names}; missing {missing}, unknown {extra}"
            )
        batch = None
        for name in self.input_names:
            x = feeds[name]
            expected = self._tensors[name].dims
            if not isinstance(x, np.ndarray) or x.dtype != np.float32:
                got = x.dtype if isinstance(x, np.ndarray) else type(x).__name__
                raise TypeError(f"input {name!r} must be a float32 numpy array, got {got}")
            if x.ndim != 4 or tuple(x.shape[1:]) != expected or x.shape[0] < 1:
                raise ValueError(f"input {name!r} must have shape (N, {', '.join(map(str, expected))}), got {x.shape}")
            if batch is not None and x.shape[0] != batch:
                raise ValueError(f"all inputs must share the batch size, got {batch} and {x.shape[0]}")
            batch = x.shape[0]
        assert batch is not None
        return batch

    @property
    def input_dims(self) -> dict[str, tuple[int, ...]]:
        """Each input's (C, H, W): a call feeds (N, C, H, W) for any N."""
        return {name: self._tensors[name].dims for name in self.input_names}

    def arena_bytes(self, batch: int = 1) -> int:
        """Bytes of the activation arena for `batch` images."""
        return 4 * self.plan.floats * batch

    def _views(self, batch: int) -> dict[str, np.ndarray]:
        """Every blocked tensor's view into the arena for `batch` images, with the convolutions bound to them
        (made once per batch size: one arena at a time, the last batch size's)."""
        prepared = self._prepared.get(batch)
        if prepared is None:
            need = self.arena_bytes(batch)
            limit = _memory_bytes() * MEMORY_FRACTION
            if need > limit:
                raise MemoryError(
                    f"batch {batch} needs a {need / 2**30:.1f} GiB activation arena, more than {MEMORY_FRACTION:.0%} "
                    f"of this machine's {_memory_bytes() / 2**30:.1f} GiB; run smaller batches"
                )
            self._prepared.clear()
            arena_floats = layout.empty_aligned((need // 4,))
            buffers = {}
            for buffer, (nb, h, w) in self.plan.shapes.items():
                start = self.plan.offsets[buffer] * batch
                size = self.plan.buffer_floats(buffer) * batch
                buffers[buffer] = arena_floats[start : start + size].reshape(batch, nb, h, w, self.lanes)
            views = {}
            for name, place in self.plan.places.items():
                nb = blocks(self._tensors[name].channels, self.lanes)
                views[name] = buffers[place.buffer][:, place.first : place.first + nb]
            calls = {}
            dense: dict[str, np.ndarray] = {}
            for index, step in enumerate(self._steps):
                bound = self._bind_step(index, step, views, dense)
                if bound is not None:
                    calls[index] = bound
            prepared = self._prepared[batch] = Bound(views, calls, dense, self._chains(calls))
        return prepared.views

    def _chains(self, calls: dict[int, tuple[runtime.BoundCall, ...]]) -> dict[int, tuple[int, Callable[[], None]]]:
        """Bound.chains: each run of consecutive bound steps making two or more calls, as one C call."""
        chains = {}
        index = 0
        while index < len(self._steps):
            end = index
            while end in calls:
                end += 1
            run = [call for i in range(index, end) for call in calls[i]]
            if len(run) >= 2:
                chain = graph_ops.chain(run, lanes=self.lanes)
                if chain is not None:
                    chains[index] = (end, chain)
            index = max(end, index + 1)
        return chains

    def _bind_step(
        self, index: int, step: Step, views: dict[str, np.ndarray], dense: dict[str, np.ndarray]
    ) -> tuple[runtime.BoundCall, ...] | None:
        """The C calls that make step `index` on the arena's views, checked now: None where C cannot make it (no
        library, a layout C does not index, an operator without a C version, a convolution reading an NCHW graph
        input, a Concat input sharing the blocks it is copied into); such steps run in Python (_run_step). A step of
        the dense tail that C makes gets its output array in `dense`."""
        op, p, threads = step.op, step.params, self.threads
        x, y = (views.get(step.inputs[0]) if step.inputs else None), views.get(step.output)
        call: runtime.BoundCall | None = None
        if op == "conv":
            if step.inputs[0] in self._nchw_inputs:
                return None
            return (self._bind(step, self._convs[index], views),)
        if y is None:
            return self._bind_dense(step, views, dense)
        if x is None:
            return None
        if op == "scale_shift":
            blocks_, lanes = x.shape[1], x.shape[4]
            scale, shift = (ops.channel_vector(p[k], blocks_, lanes) for k in ("scale", "shift"))
            call = graph_ops.bind_scale_shift(x, scale, shift, y, **_act(p), threads=threads)
        elif op == "act":
            call = graph_ops.bind_activation(x, y, p["kind"], p["alpha"], p["beta"], threads=threads)
        elif op == "add":
            call = graph_ops.bind_add(x, views[step.inputs[1]], y, **_act(p), threads=threads)
        elif op == "max_pool":
            args = (p["kernel"], p["stride"], p["pads"], p["dilation"])
            call = graph_ops.bind_max_pool(x, y, *args, threads=threads)
        elif op == "avg_pool":
            args = (p["kernel"], p["stride"], p["pads"], p["count_include_pad"])
            call = graph_ops.bind_average_pool(x, y, *args, threads=threads)
        elif op == "global_avg_pool":
            call = graph_ops.bind_global_average_pool(x, y, threads=threads)
        elif op == "lrn":
            channels = self._tensors[step.output].channels
            call = graph_ops.bind_lrn(x, y, channels, p["size"], p["alpha"], p["beta"], p["bias"], threads=threads)
        elif op == "shuffle":
            channels = self._tensors[step.output].channels
            call = graph_ops.bind_channel_shuffle(x, y, channels, p["groups"], threads=threads)
        elif op == "concat":
            return self._bind_copies(step, views)
        return None if call is None else (call,)

    def _bind_dense(
        self, step: Step, views: dict[str, np.ndarray], dense: dict[str, np.ndarray]
    ) -> tuple[runtime.BoundCall, ...] | None:
        """_bind_step for the dense tail: the conversion out of the blocked layout, Flatten and Reshape (views, no
        call), a Gemm that _gemv_in_c gives to C, and a Softmax along the last axis or flattened. The rest runs in
        numpy (_dense_step)."""
        op, p = step.op, step.params
        batch = next(iter(views.values())).shape[0]
        shape = (batch, *self._tensors[step.output].dims)
        out = np.empty(shape, dtype=np.float32)
        call: runtime.BoundCall | None = None
        if op == "to_dense":
            t = self._tensors[step.inputs[0]]
            call = graph_ops.bind_to_dense(views[t.name], out, t.channels, threads=self.threads)
        elif step.inputs[0] not in dense:
            return None
        elif op == "reshape":
            dense[step.output] = dense[step.inputs[0]].reshape(shape)
            return ()
        elif op == "gemm":
            if self._gemv_in_c(batch, p["cols"]):
                a = dense[step.inputs[0]]
                call = graph_ops.bind_gemv(a, p["cols"], p["bias"], out, lanes=self.lanes, threads=self.threads)
        elif op == "softmax":
            axis = p["axis"] if p["flatten"] else len(shape) - 1 if p["axis"] == len(shape) - 1 else None
            if axis is not None:
                rows = int(np.prod(shape[:axis]))
                x = dense[step.inputs[0]].reshape(rows, -1)
                call = graph_ops.bind_softmax(x, out.reshape(rows, -1), lanes=self.lanes)
        if call is None:
            return None
        dense[step.output] = out
        return (call,)

    def _bind_copies(self, step: Step, views: dict[str, np.ndarray]) -> tuple[runtime.BoundCall, ...] | None:
        """A Concat's copies (_copy_into) as C calls, or None if one cannot be bound."""
        calls = []
        for i, offset in step.params["copies"]:
            name = step.inputs[i]
            target, start = self._copy_target(views[step.output], offset, self._tensors[name].channels)
            if np.shares_memory(views[name], target):
                return None
            call = graph_ops.bind_copy_channels(
                views[name], target, start, self._tensors[name].channels, threads=self.threads
            )
            if call is None:
                return None
            calls.append(call)
        return tuple(calls)

    def _bind(self, step: Step, conv: Conv, views: dict[str, np.ndarray], x: np.ndarray | None = None) -> Any:
        """The convolution's kernel call on the arena: whole buffers, and each tensor's first block in its buffer;
        with `x`, the NCHW graph input it reads instead (bound per call: a new array every time)."""
        target = self.plan.places[step.output]
        residual = step.params["residual"]
        res_place = self.plan.places[residual] if residual is not None else None
        nchw_input, in_first = x is not None, 0
        if x is None:
            source = self.plan.places[step.inputs[0]]
            x, in_first = views[source.buffer], source.first
        return conv.kernel.bind_fused(
            x,
            conv.weights,
            conv.bias,
            views[target.buffer],
            cib=conv.config.cib,
            rows=conv.config.rows,
            parallel=conv.config.parallel,
            threads=self.threads,
            epilogue=conv.epilogue,
            in_first=in_first,
            out_first=target.first,
            residual=None if res_place is None else views[res_place.buffer],
            res_first=0 if res_place is None else res_place.first,
            nchw_input=nchw_input,
        )

    # ------------------------------------------------------------------------------------------------ steps
    def _run_step(
        self,
        index: int,
        step: Step,
        views: dict[str, np.ndarray],
        dense: dict[str, np.ndarray],
        batch: int,
        nchw: dict[str, np.ndarray],
    ) -> None:
        bound = self._prepared[batch].calls.get(index)
        if bound is not None:
            for call in bound:
                call()
            return
        op, p, threads = step.op, step.params, self.threads
        if op == "conv":
            self._bind(step, self._convs[index], views, nchw[step.inputs[0]])()
        elif op == "scale_shift":
            ops.scale_shift(
                views[step.inputs[0]], p["scale"], p["shift"], views[step.output], **_act(p), threads=threads
            )
        elif op == "act":
            ops.activation(views[step.inputs[0]], views[step.output], p["kind"], p["alpha"], p["beta"], threads=threads)
        elif op == "add":
            ops.add(views[step.inputs[0]], views[step.inputs[1]], views[step.output], **_act(p), threads=threads)
        elif op == "mul":
            np.multiply(views[step.inputs[0]], views[step.inputs[1]], out=views[step.output])
        elif op == "scale_channels":
            x, s = step.inputs
            scale = views[s][:, :, 0, 0, :].reshape(batch, -1)[:, : self._tensors[s].channels]
            ops.scale_channels(views[x], np.ascontiguousarray(scale), views[step.output], threads=threads)
        elif op == "max_pool":
            ops.max_pool(
                views[step.inputs[0]], views[step.output], kernel=p["kernel"], stride=p["stride"], pads=p["pads"],
                dilation=p["dilation"], threads=threads,
            )  # fmt: skip
        elif op == "avg_pool":
            ops.average_pool(
                views[step.inputs[0]], views[step.output], kernel=p["kernel"], stride=p["stride"], pads=p["pads"],
                count_include_pad=p["count_include_pad"], threads=threads,
            )  # fmt: skip
        elif op == "global_avg_pool":
            ops.global_average_pool(views[step.inputs[0]], views[step.output], threads=threads)
        elif op == "lrn":
            ops.lrn(
                views[step.inputs[0]], views[step.output], channels=self._tensors[step.output].channels,
                size=p["size"], alpha=p["alpha"], beta=p["beta"], bias=p["bias"], threads=threads,
            )  # fmt: skip
        elif op == "shuffle":
            ops.channel_shuffle(
                views[step.inputs[0]], views[step.output], channels=self._tensors[step.output].channels,
                groups=p["groups"], threads=threads,
            )  # fmt: skip
        elif op == "concat":
            offsets = {i: o for i, o in p["copies"]}
            for i, name in enumerate(step.inputs):
                if i in offsets:
                    self._copy_into(views[name], views[step.output], offsets[i], self._tensors[name].channels)
        elif op == "to_dense":
            t = self._tensors[step.inputs[0]]
            dense[step.output] = convert.from_blocked(
                np.ascontiguousarray(views[t.name]), t.channels, threads=self.threads
            )
        elif op == "gemm":
            dense[step.output] = self._gemm(dense[step.inputs[0]], p["cols"], p["bias"])
        else:
            dense[step.output] = _dense_step(step, dense, batch, self._tensors[step.output].dims)

    def _gemv_in_c(self, rows: int, cols: np.ndarray) -> bool:
        """Whether a Gemm of `rows` images by `cols` runs in C (graph_ops.gemv) rather than BLAS: for a few images, on
        several threads (the kernels' own OpenMP team: a second pool of threads, BLAS's or ours, waited for the cores
        while the kernels' threads still spun after the last convolution), or on one below LARGE_GEMM floats (there
        the call's cost is BLAS's and Python's, not the matrix's; above it OpenBLAS reads the matrix faster on one
        thread: docs/design.md, "Where a graph's time went")."""
        return rows <= GEMV_MAX_ROWS and (self.threads > 1 or cols.size < LARGE_GEMM)

    def _gemm(self, a: np.ndarray, cols: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
        """a @ cols (+ bias), cols (K, M), in C where _gemv_in_c says so, else BLAS on one thread: OpenBLAS's own
        threads spin for long after a call and took the cores from the kernels' threads in the next one."""
        y = np.empty((a.shape[0], cols.shape[1]), dtype=np.float32)
        a = np.ascontiguousarray(a)
        if self._gemv_in_c(a.shape[0], cols) and graph_ops.gemv(
            a, cols, y, lanes=self.lanes, threads=self.threads, bias=bias
        ):
            return y
        with self._blas.limit(limits=1, user_api="blas") if self._blas is not None else contextlib.nullcontext():
            np.matmul(a, cols, out=y)
        return y if bias is None else np.add(y, bias, out=y)

    def _copy_into(self, x: np.ndarray, out: np.ndarray, offset: int, channels: int) -> None:
        """Channels [offset, offset + channels) of out = x's: through the output blocks they fall in only, since x
        may itself lie in out's buffer (a Concat of a nested Concat and one of its inputs), and through a copy of x
        if it shares even those blocks."""
        target, start = self._copy_target(out, offset, channels)
        if np.shares_memory(x, target):
            x = x.copy()
        ops.copy_channels(x, target, start, channels, threads=self.threads)

    def _copy_target(self, out: np.ndarray, offset: int, channels: int) -> tuple[np.ndarray, int]:
        """The blocks of out that channels [offset, offset + channels) fall in, and the offset within them."""
        first, last = offset // self.lanes, -(-(offset + channels) // self.lanes)
        return out[:, first:last], offset - first * self.lanes

    # ------------------------------------------------------------------------------------------------ summary
    def summary(self) -> str:
        """The plan in words: each step with its shapes, kernel and where its configuration came from; the arena."""
        lines = [f"{'#':>3}  {'step':<16}{'nodes':<30}  {'input -> output':<52}  kernel / configuration"]
        counts = {"tuned": 0, "nearest": 0, "model": 0}
        for index, step in enumerate(self._steps):
            shapes = " + ".join(self._tensors[n].describe() for n in step.inputs[:3])
            shapes += (" + ..." if len(step.inputs) > 3 else "") + " -> " + self._tensors[step.output].describe()
            what = ""
            conv = self._convs.get(index)
            if conv is not None:
                c = conv.config
                extras = [conv.epilogue.act] if conv.epilogue.act != "none" else []
                if step.params["residual"] is not None:
                    extras.insert(0, "+residual")
                what = f"{conv.kernel.kind} cob={c.cob} wob={c.wob} cib={c.cib} ({conv.source})" + (
                    f" fused: {' '.join(extras)}" if extras else ""
                )
                if step.inputs[0] in self._nchw_inputs:
                    what += "; reads NCHW input"
                counts[conv.source] += 1
            elif step.op == "concat":
                copies = len(step.params["copies"])
                what = "in place" if not copies else f"copies {copies} of {len(step.inputs)} inputs"
            label = step.label()
            label = label if len(label) <= 30 else label[:27] + "..."
            lines.append(f"{index:>3}  {step.op:<16}{label:<30}  {shapes:<52}  {what}".rstrip())
        plan = self.plan
        lines.append(
            f"{len(self._steps)} steps, {len(self._convs)} convolutions (configurations: "
            + ", ".join(f"{v} {k}" for k, v in counts.items())
            + f"); {self.threads} thread(s), {self.lanes} lanes"
        )
        lines.append(
            f"activation arena: {4 * plan.floats / 2**20:.2f} MiB per image ({len(plan.shapes)} buffers, "
            f"{4 * plan.unshared / 2**20:.2f} MiB without reuse)"
        )
        return "\n".join(lines)

    def convolutions(self) -> list[tuple[Step, Conv]]:
        """Every convolution step with its kernel and configuration (tune --onnx, show, export)."""
        return [(self._steps[i], c) for i, c in sorted(self._convs.items())]


def _nchw_inputs(inputs: list[str], outputs: set[str], steps: list[Step], convs: dict[int, Conv]) -> set[str]:
    """The graph inputs that only convolutions with an NCHW-input kernel read, as their input (not as a residual):
    those need no blocked copy."""
    direct = set()
    for name in inputs:
        readers = [i for i, step in enumerate(steps) if name in step.inputs]
        if name in outputs or not readers:
            continue
        if all(
            i in convs
            and convs[i].kernel.reads_nchw
            and steps[i].inputs[0] == name
            and steps[i].inputs.count(name) == 1
            for i in readers
        ):
            direct.add(name)
    return direct


def _blas_controller() -> Any:
    """threadpoolctl's controller of the BLAS numpy uses (inspected once)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _act(params: dict[str, Any]) -> dict[str, Any]:
    """The fused activation of an elementwise step, as graph.ops takes it."""
    act = params.get("act", "none")
    return {"act": None if act == "none" else act, "alpha": params.get("alpha", 0.0), "beta": params.get("beta", 0.0)}


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX
        return 1 << 34


def _dense_step(step: Step, dense: dict[str, np.ndarray], batch: int, dims: tuple[int, ...]) -> np.ndarray:
    """The tail's steps on dense arrays in numpy (Gemm and MatMul: Model._gemm)."""
    op, p = step.op, step.params
    if op == "reshape":
        return dense[step.inputs[0]].reshape(batch, *dims)
    if op == "softmax":
        x = dense[step.inputs[0]]
        shape = x.shape
        axis = p["axis"]
        if p["flatten"]:
            x = x.reshape(int(np.prod(shape[:axis])), -1)
            axis = 1
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        return (e / e.sum(axis=axis, keepdims=True)).reshape(shape).astype(np.float32)
    if op == "dense_act":
        x = dense[step.inputs[0]]
        return _dense_activation(x, p["kind"], p["alpha"], p["beta"])
    if op in ("dense_add", "dense_mul"):
        a, b = (dense[o] if isinstance(o, str) else o for o in p["operands"])
        return (np.add if op == "dense_add" else np.multiply)(a, b).astype(np.float32)
    if op == "dense_concat":
        return np.concatenate([dense[n] for n in step.inputs], axis=p["axis"])
    raise AssertionError(f"no implementation for step {op}")


def _dense_activation(x: np.ndarray, kind: str, alpha: float, beta: float) -> np.ndarray:
    if kind == "relu":
        return np.maximum(x, 0)
    if kind == "clip":
        return np.clip(x, alpha, beta)
    if kind == "leaky_relu":
        return np.where(x > 0, x, x * np.float32(alpha))
    sig = (0.5 * (1 + np.tanh(0.5 * x))).astype(np.float32)
    if kind == "sigmoid":
        return sig
    if kind == "hard_sigmoid":
        return np.clip(x * np.float32(alpha) + np.float32(beta), 0, 1)
    if kind == "hard_swish":
        return x * np.clip(x / np.float32(6) + np.float32(0.5), 0, 1)
    return x * sig
