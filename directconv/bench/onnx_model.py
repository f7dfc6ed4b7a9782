"""`directconv bench --onnx MODEL`: an ONNX model run by directconv.load_onnx against onnxruntime on the same bytes.

MODEL is an .onnx file, or a model of the corpus (directconv.bench.corpus) when no file of that name exists. For
each model and thread count T:

- directconv: load_onnx(bytes, threads=T), then Model.run(feeds) per inference: NCHW in and out, like
  onnxruntime. Loading (parsing, compiling the kernels the disk cache lacks, packing the weights) is timed once
  on its own and reported apart: it is no part of an inference.
- onnxruntime: an InferenceSession on the same bytes (peers.onnx_session: CPUExecutionProvider,
  intra_op_num_threads=T, inter_op_num_threads=1, ORT_SEQUENTIAL, and ORT_ENABLE_ALL, so that its NCHWc layout
  transformer runs), session.run(None, feeds) per inference. Both allocate their outputs in every call.

Both get the same seeded standard normal inputs: the model's input shapes with batch N. Every implementation's
outputs are checked against those of onnxruntime's session (max |y - ref| / max |ref| per output, within
TOLERANCE); a wrong or failed directconv makes the exit status 1. The correct ones are timed together in
interleaved rounds (runner.run); the speedup is the median over rounds of onnxruntime's time / directconv's in
the same round. After the timing, each one's memory is measured in a process of its own, as memory.py does: the
peak RSS of one warm inference, and how far that peak is above the baseline, the child's RSS before the
implementation was imported and set up (interpreter, numpy, directconv's bench modules, the input). The child
gives both the file's path, as a service would: onnxruntime keeps the bytes it is given for the session's life.

Printed: a table per model and thread count (one row per implementation), then per thread count a table with a
row per model and the geomean speedup over the models. The JSON file (format "directconv-bench-onnx"): a record
per implementation, model and thread count; a row per model and thread count ("models": times, speedup, error,
memory, directconv's load time, arena and configuration sources); the geomeans per thread count ("summary").
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from directconv.bench import end_to_end, memory, report
from directconv.bench.base import INSTALL_HINT, Check, Impl, Prepared, Registry, compare
from directconv.bench.corpus_names import CORPUS_NAMES
from directconv.bench.kind import Group, Kind, Request
from directconv.bench.peers import onnx_session
from directconv.bench.results import FAILED, MemoryUsage, Result
from directconv.bench.runner import Case, describe_error, run
from directconv.tuner.harness import geomean
from directconv.tuner.peak import Peak

if TYPE_CHECKING:  # loaded in prepare only: the memory child's baseline must not hold it
    from directconv.graph import Model

FORMAT = "directconv-bench-onnx"
OURS, PEER = "directconv", "onnxruntime"
CHILD = "directconv.bench.onnx_model"  # this module, run as the memory child
# Both sides compute in fp32 and sum in different orders; 1e-4 of an output's largest magnitude leaves room for
# that through a deep network and still catches a wrong tile, padding or fused epilogue.
TOLERANCE = 1e-4
SOURCES = ("tuned", "nearest", "model")  # where a convolution's configuration came from (tuner.select)
UNTUNED_WARNING = r"\d+ of \d+ convolutions run the model's configuration"

Shapes = tuple[tuple[str, tuple[int, ...]], ...]  # (tensor name, shape) in the model's order


@dataclass(frozen=True)
class ModelRef:
    """A --onnx argument resolved: the file it names, or else the corpus model of that name (path None)."""

    name: str
    path: Path | None

    @classmethod
    def resolve(cls, model: str) -> ModelRef:
        """The file `model` if there is one, else the corpus model `model`; ValueError naming the corpus if neither."""
        if Path(model).is_file():
            return cls(model, Path(model))
        if model in CORPUS_NAMES:
            return cls(model, None)
        raise ValueError(f"--onnx {model}: no such file, and no corpus model of that name ({', '.join(CORPUS_NAMES)})")

    def read(self) -> bytes:
        """The model's serialized bytes (a corpus model is built: seconds for the largest)."""
        if self.path is None:
            from directconv.bench.corpus import corpus_bytes  # needs onnx: loaded only for a corpus model

            return corpus_bytes(self.name)
        return self.path.read_bytes()

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.name, "file": None if self.path is None else str(self.path.resolve())}


def input_shapes(data: bytes, batch: int, what: str) -> Shapes:
    """The inputs of the serialized model `data` that no initializer feeds, as (name, (batch, C, H, W)).

    ValueError (naming `what`) if `data` is no ONNX model, or an input is not a float32 tensor of 4 dimensions
    whose C, H and W the file fixes, or the file fixes an input's batch to another size than `batch`.
    """
    try:
        import onnx
    except ImportError:
        raise ValueError(f"--onnx needs the onnx package: {INSTALL_HINT}") from None
    try:
        model = onnx.load_from_string(data)
    except Exception as exc:  # protobuf's DecodeError and friends: the bytes are no ModelProto
        raise ValueError(f"--onnx {what}: not an ONNX model ({describe_error(exc)})") from None
    if not model.HasField("graph") or not model.graph.node:
        raise ValueError(f"--onnx {what}: not an ONNX model: it holds no graph")
    constants = {tensor.name for tensor in model.graph.initializer}
    shapes = []
    for value in model.graph.input:
        if value.name in constants:  # old exporters list initializers as inputs too: those are weights
            continue
        tensor = value.type.tensor_type
        if value.type.WhichOneof("value") != "tensor_type" or tensor.elem_type != onnx.TensorProto.FLOAT:
            raise ValueError(f"--onnx {what}: input {value.name!r} is not a float32 tensor")
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
        if len(dims) != 4 or any(d is None or d < 1 for d in dims[1:]):
            shown = "x".join("?" if d is None else str(d) for d in dims)
            raise ValueError(
                f"--onnx {what}: input {value.name!r} has shape {shown or '()'}; the bench feeds N x C x H x W "
                "inputs whose C, H and W the file fixes"
            )
        if dims[0] not in (None, batch):
            raise ValueError(
                f"--onnx {what}: input {value.name!r} has its batch fixed to {dims[0]} in the file: --batch {batch} "
                "cannot be fed to it"
            )
        shapes.append((value.name, (batch, *(d for d in dims[1:] if d is not None))))
    if not shapes:
        raise ValueError(f"--onnx {what}: every input is an initializer: there is nothing to feed")
    return tuple(shapes)


def make_feeds(inputs: Shapes, seed: int) -> dict[str, np.ndarray]:
    """Standard normal float32 values of each input's shape, the i-th from default_rng((seed, 1 + i))."""
    return {
        name: np.random.default_rng((seed, 1 + i)).standard_normal(shape, dtype=np.float32)
        for i, (name, shape) in enumerate(inputs)
    }


@dataclass(frozen=True)
class OnnxProblem:
    """A model and its inputs: every implementation builds its own runner from `source` in its prepare.

    source: the serialized model (the parent) or its file's path (the memory child). model, session: directconv's
    Model and onnxruntime's session when make_case built them already (for the load time and the reference).
    """

    name: str
    source: bytes | str
    feeds: dict[str, np.ndarray]
    model: Model | None = None
    session: Any = None

    @property
    def batch(self) -> int:
        return next(iter(self.feeds.values())).shape[0]


def load_model(source: bytes | str, threads: int) -> Model:
    """directconv's Model of `source` on `threads` threads. Untuned convolutions are counted in the report
    (config_sources), not warned about."""
    from directconv.graph import load_onnx

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=UNTUNED_WARNING, category=UserWarning)
        return load_onnx(source, threads=threads)


def config_sources(model: Model) -> dict[str, int]:
    """How many convolutions run a tuned configuration, the nearest tuned shape's, or the model's."""
    counts = Counter(conv.source for _, conv in model.convolutions())
    return {source: counts[source] for source in SOURCES}


def sources_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {source}" for source, n in counts.items() if n) or "no convolutions"


def _outputs(ys: Sequence[Any]) -> Any:
    # Prepared.to_nchw for a model of several outputs: the list of them, each an NCHW (or dense) numpy array.
    return [np.asarray(y) for y in ys]


def prepare_directconv(problem: OnnxProblem, threads: int) -> Prepared:
    """Model.run(feeds): each input converted to the blocked layout, the steps, each output converted back."""
    model = problem.model if problem.model is not None else load_model(problem.source, threads)
    feeds = problem.feeds

    def call() -> list[np.ndarray]:
        return model.run(feeds)

    return Prepared(
        call,
        _outputs,
        extra_memory_bytes=model.arena_bytes(problem.batch),
        note="configurations: " + sources_text(config_sources(model)),
    )


def prepare_onnxruntime(problem: OnnxProblem, threads: int) -> Prepared:
    """session.run(None, feeds) on a session of the same model (see the module docstring for its options)."""
    import onnxruntime as ort

    session = problem.session if problem.session is not None else onnx_session(problem.source, threads)
    feeds = problem.feeds

    def call() -> list[np.ndarray]:
        return session.run(None, feeds)

    return Prepared(call, _outputs, note=f"onnxruntime {ort.__version__}")


REGISTRY: Registry[OnnxProblem] = Registry(
    (
        Impl(
            OURS,
            "directconv.load_onnx(bytes, threads=T), Model.run(feeds): NCHW in and out (conversions timed)",
            prepare_directconv,
            requires=("onnx",),
            peer=False,
        ),
        Impl(
            PEER,
            "onnxruntime InferenceSession on the same bytes (CPUExecutionProvider, T intra-op threads, sequential, "
            "ORT_ENABLE_ALL: its NCHWc transformer runs), session.run(None, feeds)",
            prepare_onnxruntime,
            requires=("onnxruntime",),
        ),
    ),
    "ONNX-model implementation",
)


def check_outputs(ys: Sequence[np.ndarray], reference: Sequence[np.ndarray], names: Sequence[str]) -> Check:
    """compare() of every output with onnxruntime's within TOLERANCE: the first wrong one's verdict (naming the
    output), else correct with the largest error."""
    if len(ys) != len(reference):
        return Check(False, math.inf, TOLERANCE, f"{len(ys)} outputs, expected {len(reference)}")
    worst = Check(True, 0.0, TOLERANCE)
    for name, y, ref in zip(names, ys, reference, strict=True):
        verdict = compare(y, ref, TOLERANCE)
        if not verdict.correct:
            return replace(verdict, problem=f"output {name!r}: {verdict.problem}")
        worst = max(worst, verdict, key=lambda c: c.max_rel_error)
    return worst


@dataclass(frozen=True)
class Setup:
    """What make_case learnt besides the case: the outputs (onnxruntime's names and shapes) and directconv's load
    (seconds, or why it failed; its convolutions, their configurations' sources, its arena for the batch)."""

    outputs: Shapes
    load_seconds: float
    load_error: str | None = None
    convolutions: int = 0
    config_sources: dict[str, int] | None = None
    arena_bytes: int | None = None


def make_case(name: str, data: bytes, inputs: Shapes, threads: int, seed: int) -> tuple[Case[OnnxProblem], Setup]:
    """The problem of the model `data` at `threads` threads with onnxruntime's session and directconv's model
    built (directconv's load timed), every implementation judged by the outputs of that session. A directconv
    that fails to load is left to fail again in its prepare, as a result. ValueError if onnxruntime cannot run
    the model: then directconv's outputs have nothing to be checked against."""
    feeds = make_feeds(inputs, seed)
    try:
        session = onnx_session(data, threads)
        reference = session.run(None, feeds)
    except Exception as exc:  # any failure of onnxruntime's: the bench cannot judge directconv
        raise ValueError(
            f"onnxruntime cannot run {name}, so directconv's outputs have no reference: {describe_error(exc)}"
        ) from None
    names = [o.name for o in session.get_outputs()]
    outputs = tuple((n, tuple(y.shape)) for n, y in zip(names, reference, strict=True))
    batch = inputs[0][1][0]
    model: Model | None = None
    flops = 0
    start = time.perf_counter()
    try:
        model = load_model(data, threads)
    except Exception as exc:  # failures are results (runner.py): prepare raises it again and the row says so
        setup = Setup(outputs, time.perf_counter() - start, describe_error(exc))
    else:
        seconds = time.perf_counter() - start
        steps = model.convolutions()
        flops = sum(step.params["shape"].flops(batch) for step, _ in steps)
        setup = Setup(
            outputs,
            seconds,
            convolutions=len(steps),
            config_sources=config_sources(model),
            arena_bytes=model.arena_bytes(batch),
        )
    problem = OnnxProblem(name, data, feeds, model, session)
    case = Case(name, flops, problem, lambda ys: check_outputs(ys, reference, names), "onnxruntime's outputs")
    return case, setup


@dataclass(frozen=True)
class ChildSpec:
    """What the memory child needs to set the problem up again: the model's file, threads, inputs and seed."""

    path: str
    threads: int
    inputs: Shapes
    seed: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ChildSpec:
        data = json.loads(text)
        inputs = tuple((name, tuple(shape)) for name, shape in data.pop("inputs"))
        return cls(inputs=inputs, **data)


@dataclass(frozen=True)
class Footprint:
    """One implementation's memory in a process of its own: memory.py's figures, and the child's RSS before the
    implementation was imported and set up."""

    usage: MemoryUsage
    baseline: int

    @property
    def above_baseline(self) -> int:
        return self.usage.peak_rss - self.baseline

    def to_dict(self) -> dict[str, int]:
        return {
            **self.usage.to_dict(),
            "baseline_rss_bytes": self.baseline,
            "above_baseline_bytes": self.above_baseline,
        }


def measure_footprint(spec: ChildSpec, impl_name: str) -> Footprint | str:
    """The footprint of `impl_name` on `spec`, measured in a child process; a string saying why where it cannot be."""
    data = memory.run_child(CHILD, [spec.to_json(), impl_name])
    if isinstance(data, str):
        return data
    usage = MemoryUsage(data["peak_rss_bytes"], data["growth_bytes"], data["rss_before_bytes"])
    return Footprint(usage, data["baseline_rss_bytes"])


def main(argv: list[str]) -> int:
    """The memory child: prints the footprint of implementation IMPL on SPEC_JSON (a ChildSpec) as JSON."""
    if len(argv) != 2:
        print(f"usage: python -m {CHILD} SPEC_JSON IMPL", file=sys.stderr)
        return 2
    spec = ChildSpec.from_json(argv[0])
    (impl,) = REGISTRY.select([argv[1]])
    feeds = make_feeds(spec.inputs, spec.seed)
    baseline = memory.parse_status(memory.STATUS.read_text())["VmRSS"]
    prepared = impl.prepare(OnnxProblem(spec.path, spec.path, feeds), spec.threads)
    usage = memory.peak_of(prepared.call)
    print(json.dumps({**usage.to_dict(), "baseline_rss_bytes": baseline}))
    return 0


# ---------------------------------------------------------------------------------------------------- report


def _mib(nbytes: int | None) -> str:
    return "n/a" if nbytes is None else f"{nbytes / 2**20:.1f} MiB"


def _error(row: Sequence[Result]) -> str:
    check = row[0].check
    return "-" if check is None else f"{check.max_rel_error:.1e}"


def _report(batch: int, footprints: dict[str, Footprint | str] | None = None) -> report.Report:
    """The legend's words and a table's columns (end to end's timed ones); `footprints` fill the memory columns."""
    found = footprints or {}

    def footprint(row: Sequence[Result]) -> Footprint | None:
        f = found.get(row[0].impl)
        return f if isinstance(f, Footprint) else None

    def peak(row: Sequence[Result]) -> str:
        f = footprint(row)
        return _mib(None if f is None else f.usage.peak_rss)

    def above(row: Sequence[Result]) -> str:
        f = footprint(row)
        return _mib(None if f is None else f.above_baseline)

    return replace(
        end_to_end.REPORT,
        title=f"ONNX models: directconv against onnxruntime on the same file, batch {batch}. Implementations:",
        explanation=(
            "Columns: median ms per inference over interleaved rounds, spread (p90-p10)/median, GFLOP/s of the "
            "convolutions and % of the FMA peak at that thread count, max relative error against onnxruntime's "
            f"outputs (of each output's largest magnitude; tolerance {TOLERANCE:.0e}), peak RSS of a process that "
            "runs one warm inference of that implementation only, and that peak above the process's RSS before the "
            "implementation was imported and set up (/proc, n/a elsewhere). Speedup: the median over rounds of "
            "onnxruntime's time / directconv's in the same round. directconv's load (compile + pack) is timed apart."
        ),
        trailing=(
            report.Column("max rel err", 11, _error),
            report.Column("peak RSS", 11, peak),
            report.Column("above base", 11, above),
        ),
    )


def _by_impl(results: Sequence[Result]) -> dict[str, Result]:
    return {r.impl: r for r in results}


def speedup_rounds(results: Sequence[Result]) -> list[float] | None:
    """Per round: onnxruntime's seconds / directconv's in that round (both from one interleave); None unless both
    were timed."""
    by = _by_impl(results)
    ours, peer = by.get(OURS), by.get(PEER)
    if ours is None or peer is None or not (ours.ok and peer.ok):
        return None
    assert ours.timing is not None and peer.timing is not None
    return [p / o for o, p in zip(ours.timing.samples, peer.timing.samples, strict=True)]


def memory_ratio(footprints: dict[str, Footprint | str]) -> float | None:
    """onnxruntime's memory above its baseline / directconv's, where both were measured (and are above 0)."""
    ours, peer = footprints.get(OURS), footprints.get(PEER)
    if not (isinstance(ours, Footprint) and isinstance(peer, Footprint)):
        return None
    if ours.above_baseline <= 0 or peer.above_baseline <= 0:
        return None
    return peer.above_baseline / ours.above_baseline


def _shapes(shapes: Shapes) -> str:
    return ", ".join(f"{name} {'x'.join(map(str, shape))}" for name, shape in shapes)


def header(
    ref: ModelRef, inputs: Shapes, setup: Setup, flops: int, threads: int, peak: str, other: float | None
) -> str:
    """The lines above a table: the model, its inputs and outputs, the work, the FMA peak (report.peak_text) and
    directconv's load."""
    what = "corpus model" if ref.path is None else "file"
    load = "" if other is None else f", other load {other:.2f} CPUs"
    first = (
        f"{ref.name} ({what}), {report.threads_label(threads)}, batch {inputs[0][1][0]}: {_shapes(inputs)} -> "
        f"{_shapes(setup.outputs)}; {peak}{load}"
    )
    if setup.load_error is not None:
        return f"{first}\ndirectconv failed to load it in {setup.load_seconds:.2f} s: {setup.load_error}"
    assert setup.config_sources is not None and setup.arena_bytes is not None
    return (
        f"{first}\ndirectconv: {setup.convolutions} convolutions, {flops * 1e-9:.3g} GFLOP per inference; loaded in "
        f"{setup.load_seconds:.2f} s (kernels compiled or found in the disk cache, weights packed; not timed below); "
        f"configurations: {sources_text(setup.config_sources)}; activation arena {_mib(setup.arena_bytes)}"
    )


def ratios_line(rounds: list[float] | None, footprints: dict[str, Footprint | str]) -> str:
    speedup = "n/a" if rounds is None else f"{statistics.median(rounds):.2f}x"
    ratio = memory_ratio(footprints)
    return (
        f"speedup onnxruntime / directconv (median of per-round ratios): {speedup}; memory above baseline "
        f"onnxruntime / directconv: {'n/a' if ratio is None else f'{ratio:.2f}x'}"
    )


def record(ref: ModelRef, r: Result, footprint: Footprint | str) -> dict[str, Any]:
    """One implementation on one model at one thread count."""
    measured = footprint.to_dict() if isinstance(footprint, Footprint) else None
    return {
        **ref.to_dict(),
        "impl": r.impl,
        "threads": r.threads,
        "checked_against": r.checked_against,
        "flops": r.flops,
        **r.measured_fields(),
        **r.memory_fields(),
        "baseline_rss_bytes": None if measured is None else measured["baseline_rss_bytes"],
        "above_baseline_bytes": None if measured is None else measured["above_baseline_bytes"],
        "arena_bytes": r.memory_bytes,
    }


def model_row(
    ref: ModelRef,
    inputs: Shapes,
    setup: Setup,
    threads: int,
    results: Sequence[Result],
    footprints: dict[str, Footprint | str],
) -> dict[str, Any]:
    """One model at one thread count: directconv set against onnxruntime (None where one was not measured)."""
    by = _by_impl(results)
    ours = by.get(OURS)
    rounds = speedup_rounds(results)
    return {
        **ref.to_dict(),
        "threads": threads,
        "batch": inputs[0][1][0],
        "inputs": {name: list(shape) for name, shape in inputs},
        "outputs": {name: list(shape) for name, shape in setup.outputs},
        "status": {name: r.status for name, r in by.items()},
        "tolerance": TOLERANCE,
        "max_rel_error": None if ours is None else ours.measured_fields()["max_rel_error"],
        "median_ms": {name: r.measured_fields()["median_ms"] for name, r in by.items()},
        "times_ms": {name: r.measured_fields()["samples_ms"] for name, r in by.items()},
        "speedup": None if rounds is None else statistics.median(rounds),
        "speedup_rounds": rounds,
        "memory": {name: f.to_dict() if isinstance(f, Footprint) else None for name, f in footprints.items()},
        "memory_notes": {name: f for name, f in footprints.items() if isinstance(f, str)},
        "memory_ratio": memory_ratio(footprints),
        "load_seconds": setup.load_seconds,
        "load_error": setup.load_error,
        "convolutions": setup.convolutions,
        "flops": None if ours is None else ours.flops,
        "arena_bytes": setup.arena_bytes,
        "config_sources": setup.config_sources,
    }


def summary(rows: Sequence[dict[str, Any]], threads: Sequence[int]) -> dict[str, Any]:
    """Per thread count: the geomean over the models of the speedup and of the memory ratio, where measured."""
    out = {}
    for t in threads:
        mine = [row for row in rows if row["threads"] == t]
        speedups = [row["speedup"] for row in mine if row["speedup"] is not None]
        ratios = [row["memory_ratio"] for row in mine if row["memory_ratio"] is not None]
        out[str(t)] = {
            "threads": t,
            "models": len(mine),
            "geomean_speedup": geomean(speedups) if speedups else None,
            "speedup_models": len(speedups),
            "geomean_memory_ratio": geomean(ratios) if ratios else None,
            "memory_models": len(ratios),
        }
    return out


def _cell(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def _ms(row: dict[str, Any], impl: str) -> str:
    status = row["status"].get(impl)
    if status is None:
        return "-"
    return _cell(row["median_ms"][impl], ".2f") if status == "ok" else status.upper()


def _above_mib(row: dict[str, Any], impl: str) -> str:
    found = row["memory"].get(impl)
    return "n/a" if found is None else f"{found['above_baseline_bytes'] / 2**20:.1f}"


def summary_text(rows: Sequence[dict[str, Any]], data: dict[str, Any]) -> str:
    """Per thread count, a row per model: ms of each, the speedup, directconv's error, each one's memory above
    its baseline and their ratio, directconv's configuration sources; then the geomeans."""
    width = max([report.NAME_WIDTH, *(len(row["model"]) for row in rows)])
    columns = (
        f"{'model':<{width}} {'directconv ms':>13} {'onnxruntime ms':>14} {'speedup':>8} {'max rel err':>11} "
        f"{'directconv MiB':>14} {'onnxruntime MiB':>15} {'mem ratio':>9}  configurations"
    )
    lines = []
    for part in data.values():
        t = part["threads"]
        lines.append(
            f"Summary, {report.threads_label(t)}: ms per inference (median over rounds), speedup = median over "
            "rounds of onnxruntime / directconv, memory = peak RSS above the process's baseline"
        )
        lines.append(f"  {columns}")
        for row in (row for row in rows if row["threads"] == t):
            sources = "-" if row["config_sources"] is None else sources_text(row["config_sources"])
            lines.append(
                f"  {row['model']:<{width}} {_ms(row, OURS):>13} {_ms(row, PEER):>14} "
                f"{_cell(row['speedup'], '.2f', 'x'):>8} {_cell(row['max_rel_error'], '.1e'):>11} "
                f"{_above_mib(row, OURS):>14} {_above_mib(row, PEER):>15} "
                f"{_cell(row['memory_ratio'], '.2f', 'x'):>9}  {sources}"
            )
        label = f"geomean over {part['speedup_models']} of {part['models']} model(s)"
        lines.append(
            f"  {label:<{width + 29}} {_cell(part['geomean_speedup'], '.2f', 'x'):>8} {'':>11} {'':>14} {'':>15} "
            f"{_cell(part['geomean_memory_ratio'], '.2f', 'x'):>9}"
        )
        lines.append("")
    return "\n".join(lines).rstrip("\n")


# ---------------------------------------------------------------------------------------------------- the bench


class OnnxBench:
    """The bench of some --onnx models at one batch size: the steps of session.run's flow (see `kind`), and the
    rows of the models measured so far, which the summary is made of."""

    def __init__(self, models: Sequence[str], batch: int) -> None:
        if batch < 1:
            raise ValueError(f"--batch must be >= 1, got {batch}")
        self.models = tuple(dict.fromkeys(models))
        self.batch = batch
        self.rows: list[dict[str, Any]] = []

    def options(self, request: Request) -> dict[str, Any]:
        """The settings of the JSON file; ValueError, before anything is measured, for what --onnx cannot run."""
        if request.layers or request.networks or request.end_to_end:
            raise ValueError("--onnx runs ONNX models: give no --layer, --network or --end-to-end with it")
        if request.input_size is not None or request.steps is not None:
            raise ValueError("--input-size and --steps cut --end-to-end networks: they do not apply to --onnx")
        if request.source != "store":
            raise ValueError("--source model measures single layers: it does not apply to --onnx")
        for impl in REGISTRY.impls:
            missing = impl.missing()
            if missing is not None:  # onnxruntime is the reference and onnx reads the models: both are needed
                raise ValueError(
                    f"--onnx needs {impl.requires[0]}, which cannot be imported: {missing}; {INSTALL_HINT}"
                )
        refs = [ModelRef.resolve(model) for model in self.models]
        for ref in refs:
            if ref.path is not None:
                input_shapes(ref.read(), self.batch, ref.name)  # a bad file fails now, before any timing
        return {"onnx": [ref.to_dict() for ref in refs], "batch": self.batch, "tolerance": TOLERANCE}

    def groups(self, request: Request, impls: Sequence[Impl[OnnxProblem]], peaks: dict[int, Peak]) -> Iterator[Group]:
        """Per model and thread count: check, time, measure the memory, and yield the table."""
        self.rows = []
        names = [impl.name for impl in impls]
        for ref in (ModelRef.resolve(model) for model in self.models):
            data = ref.read()
            inputs = input_shapes(data, self.batch, ref.name)
            with tempfile.TemporaryDirectory(prefix="directconv-bench-onnx-") as folder:
                path = ref.path or Path(folder) / f"{ref.name}.onnx"
                if ref.path is None:
                    path.write_bytes(data)  # the memory child loads the corpus model from a file, as from any
                for t in request.threads:
                    yield self._group(ref, data, inputs, str(path), t, peaks[t], request, impls, names)

    def _group(
        self,
        ref: ModelRef,
        data: bytes,
        inputs: Shapes,
        path: str,
        threads: int,
        peak: Peak,
        request: Request,
        impls: Sequence[Impl[OnnxProblem]],
        names: list[str],
    ) -> Group:
        case, setup = make_case(ref.name, data, inputs, threads, request.seed)
        results = run(case, impls, threads, peak, request.settings)
        flops = case.flops
        del case  # its model and session: freed before the memory children run beside this process
        spec = ChildSpec(path, threads, inputs, request.seed)
        footprints = {r.impl: self._footprint(spec, r) for r in results}
        results = [_with_memory(r, footprints[r.impl]) for r in results]
        self.rows.append(model_row(ref, inputs, setup, threads, results, footprints))
        other = next((r.other_cpus for r in results if r.other_cpus is not None), None)
        text = "\n".join(
            [
                header(ref, inputs, setup, flops, threads, report.peak_text(peak, results), other),
                report.table(_report(self.batch, footprints), names, [threads], results),
                ratios_line(speedup_rounds(results), footprints),
            ]
        )
        records = [record(ref, r, footprints[r.impl]) for r in results]
        return Group(results, records, text, sections={"models": list(self.rows)})

    @staticmethod
    def _footprint(spec: ChildSpec, r: Result) -> Footprint | str:
        if r.status == FAILED:
            return "not measured: the implementation failed"
        return measure_footprint(spec, r.impl)

    def finish(
        self, results: list[Result], impls: Sequence[Impl[Any]], peaks: dict[int, Peak]
    ) -> tuple[str | None, dict[str, Any]]:
        data = summary(self.rows, list(peaks))
        return summary_text(self.rows, data), {"summary": data}


def _with_memory(r: Result, footprint: Footprint | str) -> Result:
    if isinstance(footprint, str):
        return replace(r, memory_note=footprint)
    return replace(r, memory=footprint.usage)


def kind(models: Sequence[str], batch: int = 1) -> Kind:
    """The bench of the ONNX models `models` (files, or corpus names where no such file exists) at batch `batch`,
    for session.run. Made per run: it keeps the rows of the models measured for its summary."""
    bench = OnnxBench(models, batch)
    return Kind(
        format=FORMAT,
        registry=REGISTRY,
        report=_report(batch),
        options=bench.options,
        groups=bench.groups,
        sections=("models", "summary"),
        finish=bench.finish,
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
