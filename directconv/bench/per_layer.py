"""`directconv bench`: directconv beside numpy im2col + BLAS, torch and onnxruntime on suite layers, one table per
layer with a block of columns per thread count (GFLOP/s, % of the FMA peak, median ms, spread), then a summary.

directconv's records also carry config_source ("tuned", "nearest" or "model": `--source model` measures the
model's plan) and the model's estimate of the configuration measured on this host's machine description,
predicted_gflops and predicted_percent_of_peak (of the same measured peak as percent_of_peak); peers' are null.
The summary ends with the model's error on directconv-blocked per layer.

Depthwise and narrow-group layers (kernel kinds "depthwise" and "grouped-packed") are memory-bound: for them the
bandwidth loop of the layer's minimal traffic runs in the same interleaved rounds as the implementations
(tuner/bandwidth.py says exactly how), every record carries minimal_bytes, bandwidth_gbps (median over rounds, and
per round) and percent_of_bandwidth_roofline (median over rounds, and per round), and the layer's table a %bw
column; other layers' records hold null there."""

from __future__ import annotations

import statistics
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

from directconv.bench import ours, peers, report, summary
from directconv.bench.base import Impl, Registry
from directconv.bench.kind import Group, Kind, Request
from directconv.bench.layer import LayerProblem
from directconv.bench.results import Result, RooflineTiming
from directconv.bench.runner import Case, Settings, describe_error, run
from directconv.core.config import KernelConfig
from directconv.core.isa import get_isa, host_isa
from directconv.core.shape import LANE_KINDS, kernel_kind
from directconv.core.suite import Layer, get_layer, network_layers, suite
from directconv.machines.host import host
from directconv.model import estimate_config
from directconv.tuner import bandwidth
from directconv.tuner.peak import Peak

FORMAT = "directconv-bench"
REGISTRY: Registry[LayerProblem] = Registry((*ours.IMPLS, *peers.IMPLS))


def _mib(row: Sequence[Result]) -> str:
    nbytes = next((r.memory_bytes for r in row if r.memory_bytes is not None), None)
    if nbytes is None:
        return ""  # not known: a library's internal buffers
    return f"{nbytes / 2**20:.2f} MiB" if nbytes else "none"


def _wrong(r: Result) -> str:
    return "WRONG" + (f" (error {r.check.max_rel_error:.1e})" if r.check is not None else "")


def _notes(r: Result) -> list[str]:
    return [f"  {r.impl} at {report.threads_label(r.threads)}: {r.error}"] if r.error else []


REPORT = report.Report(
    title="Implementations:",
    missing_label="Not installed",
    explanation=(
        "Cells: GFLOP/s of the median call over interleaved rounds, % of the FMA peak of that thread count, "
        "median ms per call, spread (p90-p10)/median.\n"
        "Other load: CPUs kept busy by other processes (and the hypervisor) while a layer was timed; "
        f"from {report.BUSY_WARNING} on, the figures of that column may be skewed.\n"
        "%bw (depthwise and narrow-group layers only): the layer's minimal traffic (input and weights read once, "
        "output written once) per second of the call, as % of the bandwidth a plain read/write loop of those bytes "
        "reached in the same round on as many threads (tuner/bandwidth.py); median over rounds.\n"
        "%roof (the same layers): against the roofline, the lower of the FMA peak and that bandwidth over the "
        "minimal traffic: per round the larger of %peak and %bw; median over rounds."
    ),
    timed=(report.gflops_column(8), report.percent_column(), report.median_column(3), report.spread_column(6)),
    trailing=(report.Column("extra memory", 0, _mib),),
    wrong=_wrong,
    notes=_notes,
    by_threads=True,
)
ROOFLINE_KINDS = LANE_KINDS


def _percent_of_bandwidth(r: Result) -> str:
    value = r.percent_of_bandwidth_roofline
    return "-" if value is None else f"{value:.0f}%"


def _percent_of_roofline(r: Result) -> str:
    value = r.percent_of_roofline
    return "-" if value is None else f"{value:.0f}%"


# Memory-bound layers' tables: the same columns, a %bw one and a %roof one.
ROOFLINE_REPORT = replace(
    REPORT,
    timed=(
        *REPORT.timed,
        report.Column("%bw", 5, _percent_of_bandwidth),
        report.Column("%roof", 5, _percent_of_roofline),
    ),
)


def memory_bound(layer: Layer) -> bool:
    """Whether `layer` runs a lane-by-lane kernel on this host (depthwise, narrow groups): few FLOPs per byte."""
    return kernel_kind(layer.shape, get_isa(host_isa()).lanes) in ROOFLINE_KINDS


def select_layers(names: Sequence[str] | None, networks: Sequence[str] | None) -> tuple[Layer, ...]:
    """The chosen layers in suite order (the whole suite if none chosen); ValueError naming the known ones."""
    if not names and not networks:
        return suite()
    chosen = {get_layer(name).name for name in names or ()}
    for network in networks or ():
        chosen.update(layer.name for layer in network_layers(network))
    return tuple(layer for layer in suite() if layer.name in chosen)


def layer_table(layer: Layer, impl_names: Sequence[str], thread_counts: Sequence[int], results: list[Result]) -> str:
    """The table of one layer: one row per implementation, one block of columns per thread count; for a
    memory-bound layer, a line on its bandwidth roofline under the title and a %bw column."""
    shape = layer.shape
    title = f"{layer.name}  {shape.describe()}  {shape.flops() * 1e-9:.3f} GFLOP"
    roofs = {r.threads: r.roofline for r in results if r.roofline is not None}
    if not roofs:
        return f"{title}\n{report.table(REPORT, impl_names, thread_counts, results)}"
    return f"{title}\n{roofline_line(roofs)}\n{report.table(ROOFLINE_REPORT, impl_names, thread_counts, results)}"


def roofline_line(roofs: dict[int, RooflineTiming]) -> str:
    """The minimal traffic and the bandwidth the loop reached at each thread count (or why it did not run)."""
    nbytes = next(iter(roofs.values())).bytes
    parts = []
    for t, roof in roofs.items():
        bandwidths = roof.bandwidths()
        if bandwidths:
            parts.append(f"{report.threads_label(t)} {statistics.median(bandwidths):.3g} GB/s")
        else:
            parts.append(f"{report.threads_label(t)} not measured ({roof.error or 'nothing was timed'})")
    return f"bandwidth roofline: {nbytes / 2**20:.2f} MiB minimal traffic per call; loop in the same rounds: " + (
        ", ".join(parts)
    )


def predicted_gflops(layer: Layer, config: dict[str, Any] | None) -> float | None:
    """The model's GFLOP/s for the configuration measured, on this host's machine description (None: no config)."""
    if config is None:
        return None
    return estimate_config(layer.shape, host().machine, KernelConfig.from_dict(config))


def with_prediction(layer: Layer, r: Result) -> Result:
    return replace(r, predicted_gflops=predicted_gflops(layer, r.config))


def record(layer: Layer, r: Result) -> dict[str, Any]:
    """One measurement; directconv's carry where their configuration came from and the model's estimate of it."""
    return {
        "layer": layer.name,
        "shape": layer.shape.to_dict(),
        "flops": r.flops,
        "impl": r.impl,
        "threads": r.threads,
        **r.measured_fields(),
        "extra_memory_bytes": r.memory_bytes,
        "config": r.config,
        "config_source": r.config_source,
        "predicted_gflops": r.predicted_gflops,
        "predicted_percent_of_peak": r.predicted_percent_of_peak,
        **r.roofline_fields(),
    }


def _options(request: Request) -> dict[str, Any]:
    if request.input_size is not None or request.steps is not None:
        raise ValueError("--input-size and --steps cut whole networks: they need --end-to-end")
    return {
        "layers": [layer.name for layer in select_layers(request.layers, request.networks)],
        "source": request.source,
    }


def _groups(request: Request, impls: Sequence[Impl[LayerProblem]], peaks: dict[int, Peak]) -> Iterator[Group]:
    names = [impl.name for impl in impls]
    for layer in select_layers(request.layers, request.networks):
        case = LayerProblem.make(layer, request.seed, request.source).case()
        bound = memory_bound(layer)
        measured = [
            r
            for t in request.threads
            for r in _run(case, impls, t, peaks[t], request.settings, layer if bound else None)
        ]
        results = [with_prediction(layer, r) for r in measured]
        del case  # its float64 answer: not kept beside the next layer's
        yield Group(results, [record(layer, r) for r in results], layer_table(layer, names, request.threads, results))


def _run(
    case: Case[LayerProblem],
    impls: Sequence[Impl[LayerProblem]],
    threads: int,
    peak: Peak,
    settings: Settings,
    roofline_of: Layer | None,
) -> list[Result]:
    """runner.run, with the bandwidth loop of `roofline_of`'s minimal traffic beside the implementations; a loop
    that cannot be built is recorded on every result and the implementations are measured all the same."""
    if roofline_of is None:
        return run(case, impls, threads, peak, settings)
    try:
        loop = bandwidth.layer_stream(roofline_of.shape, threads)
    except Exception as exc:  # failures are results: the layer is measured without its roofline
        failed = RooflineTiming(bandwidth.minimal_traffic(roofline_of.shape).bytes, error=describe_error(exc))
        return [replace(r, roofline=failed) for r in run(case, impls, threads, peak, settings)]
    return run(case, impls, threads, peak, settings, roofline=loop)


def _remarks(impls: Sequence[Impl[Any]]) -> list[str]:
    return [f"numpy-im2col: {peers.blas_threads_note()}"] if any(i.name == "numpy-im2col" for i in impls) else []


def _finish(results: list[Result], impls: Sequence[Impl[Any]], peaks: dict[int, Peak]) -> tuple[str, dict[str, Any]]:
    data = summary.summary(results, impls, peaks)
    return summary.summary_text(data), {"summary": data}


KIND = Kind(
    format=FORMAT,
    registry=REGISTRY,
    report=REPORT,
    options=_options,
    groups=_groups,
    sections=("summary",),
    remarks=_remarks,
    finish=_finish,
    show_peaks=True,
)
