"""`directconv bench`: the command line, and the loop over layers and thread counts (whole networks with
--end-to-end: see chain_run).

Exit status: 0 when every directconv implementation computed correct answers, 1 when one did not (peers that
are wrong or fail are reported but do not change the status), 2 on bad arguments (raised as ValueError and
printed by directconv.cli.main).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import directconv
from directconv.core.isa import host_isa
from directconv.core.suite import NETWORKS, Layer, get_layer, network_layers, suite

from directconv.bench import chain_impls, chain_run, environment, impls, peers, report
from directconv.bench.base import Problem
from directconv.tuner.peak import measure_peaks
from directconv.bench.results import OK, Result, document
from directconv.core.files import write_json
from directconv.bench.runner import QUICK, Settings, run_layer

DEFAULT_THREADS = (1, 2)
DEFAULTS = Settings()


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {value}")
    return value


def _thread_list(text: str) -> list[int]:
    return [_positive_int(part.strip()) for part in text.split(",") if part.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the bench options to `parser` and make `run` its action (parser.set_defaults(run=...))."""
    parser.add_argument(
        "--layer",
        action="append",
        metavar="NAME",
        help="a suite layer, e.g. vgg16:conv3_2 or vgg16_conv3_2 (repeatable; default: the whole suite)",
    )
    parser.add_argument(
        "--network",
        action="append",
        metavar="NAME",
        help=f"every layer of a network: {', '.join(NETWORKS)} (repeatable); with --end-to-end, the whole network",
    )
    parser.add_argument(
        "--end-to-end",
        action="store_true",
        help="time each --network as one chained model (directconv.Sequential against the same stack in torch and "
        "onnxruntime), with its memory high-water mark",
    )
    parser.add_argument(
        "--input-size",
        type=_positive_int,
        metavar="S",
        help="with --end-to-end: run the networks on an S x S input instead of their own (a quick look)",
    )
    parser.add_argument(
        "--steps",
        type=_positive_int,
        metavar="N",
        help="with --end-to-end: only the first N steps of each network (a quick look)",
    )
    parser.add_argument(
        "--threads",
        action="append",
        type=_thread_list,
        metavar="T[,T...]",
        help=f"thread counts (repeatable or comma-separated; default: {','.join(map(str, DEFAULT_THREADS))})",
    )
    parser.add_argument(
        "--impl",
        action="append",
        metavar="NAME",
        help=f"only these implementations: {', '.join(impls.names())} (with --end-to-end: "
        f"{', '.join(chain_impls.names())})",
    )
    parser.add_argument(
        "--rounds",
        type=_positive_int,
        metavar="N",
        help=f"interleaved rounds per layer and thread count (default {DEFAULTS.rounds}, --quick {QUICK.rounds})",
    )
    parser.add_argument(
        "--min-time",
        type=_positive_float,
        metavar="SECONDS",
        help=f"duration of one timed batch of calls (default {DEFAULTS.min_time}, --quick {QUICK.min_time})",
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds and shorter batches: a smoke test")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write every measurement to FILE")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs and weights (default 0)")
    parser.set_defaults(run=run)


def select_layers(names: Sequence[str] | None, networks: Sequence[str] | None) -> tuple[Layer, ...]:
    """The chosen layers in suite order (the whole suite if none chosen); ValueError naming the known ones."""
    if not names and not networks:
        return suite()
    chosen = {get_layer(name).name for name in names or ()}
    for network in networks or ():
        chosen.update(layer.name for layer in network_layers(network))
    return tuple(layer for layer in suite() if layer.name in chosen)


def select_threads(groups: Sequence[Sequence[int]] | None) -> tuple[int, ...]:
    if not groups:
        return DEFAULT_THREADS
    return tuple(dict.fromkeys(t for group in groups for t in group))


def select_settings(quick: bool, rounds: int | None, min_time: float | None) -> Settings:
    base = QUICK if quick else DEFAULTS
    return Settings(
        rounds=rounds or base.rounds,
        min_time=min_time or base.min_time,
        warmup_calls=base.warmup_calls,
        peak_repeats=base.peak_repeats,
        peak_seconds=base.peak_seconds,
    )


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    threads = select_threads(args.threads)
    if not threads:
        raise ValueError("--threads needs at least one thread count, e.g. --threads 1,2")
    settings = select_settings(args.quick, args.rounds, args.min_time)
    if args.json is not None and not (args.json.parent if str(args.json.parent) else Path(".")).is_dir():
        raise ValueError(f"--json {args.json}: directory {args.json.parent} does not exist")
    if args.end_to_end:
        return chain_run.run(args, threads, settings)
    if args.input_size is not None or args.steps is not None:
        raise ValueError("--input-size and --steps cut whole networks: they need --end-to-end")
    layers = select_layers(args.layer, args.network)
    available, missing = impls.split_available(impls.select(args.impl))
    cpus = directconv.available_threads()
    if max(threads) > cpus:
        print(
            f"warning: {max(threads)} threads requested, {cpus} CPUs available: threads will share cores",
            file=sys.stderr,
        )

    remarks = [f"numpy-im2col: {peers.blas_threads_note()}"] if any(i.name == "numpy-im2col" for i in available) else []
    print(report.legend(available, missing, remarks), flush=True)
    peaks = measure_peaks(threads, repeats=settings.peak_repeats, seconds=settings.peak_seconds, isa=host_isa())
    print(report.peak_line(peaks), flush=True)

    metadata = environment.metadata()
    options: dict[str, Any] = {
        "layers": [layer.name for layer in layers],
        "threads": list(threads),
        "impls": [impl.name for impl in available],
        "rounds": settings.rounds,
        "min_time": settings.min_time,
        "warmup_calls": settings.warmup_calls,
        "peak_repeats": settings.peak_repeats,
        "peak_seconds": settings.peak_seconds,
        "quick": bool(args.quick),
        "seed": args.seed,
    }
    names = [impl.name for impl in available]
    results: list[Result] = []
    for layer in layers:
        print(flush=True)
        problem = Problem.make(layer, args.seed)
        reference = problem.reference()
        layer_results = [r for t in threads for r in run_layer(problem, reference, available, t, peaks[t], settings)]
        del reference
        results += layer_results
        print(report.layer_table(layer, names, threads, layer_results), flush=True)
        if args.json is not None:
            # Rewritten after every layer: an interrupted run leaves a valid file with what it measured.
            write_json(args.json, document(metadata, options, peaks, missing, results))

    summary = report.summary(results, available, peaks)
    print(flush=True)
    print(report.summary_text(summary), flush=True)
    if args.json is not None:
        metadata["thread_pools"] = environment.blas_info()
        metadata["duration_seconds"] = round(time.monotonic() - started, 1)
        write_json(args.json, document(metadata, options, peaks, missing, results, summary))
        print(f"wrote {len(results)} records to {args.json}", flush=True)
    ours = {impl.name for impl in available if not impl.peer}
    bad = [r for r in results if r.impl in ours and r.status != OK]
    for r in bad:
        print(f"directconv bench: {r.impl} on {r.layer.name} at {r.threads} thread(s): {r.status}", file=sys.stderr)
    return 1 if bad else 0
