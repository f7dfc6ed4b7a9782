"""`directconv bench --network NAME --end-to-end`: whole networks, directconv against torch and onnxruntime.

For each network and thread count: build the problem (networks.he_weights, one input), check directconv's NCHW
output against the float64 step-by-step reference, judge every implementation against that output, time the
correct ones in interleaved rounds (runner.measure), then measure each one's memory in a process of its own
(memory.py) after the timing, so that no child competes with it. Exit status as the per-layer bench: 1 when a
directconv implementation is wrong or fails.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import directconv
from directconv.core.isa import host_isa
from directconv.nn.networks import get_network, networks

from directconv.bench import chain_impls, chain_report, environment, impls
from directconv.bench.base import Check, Impl, compare
from directconv.bench.chain import ChainProblem, ChainSpec, build_model, chain_tolerance, float64_reference
from directconv.bench.chain_results import ChainResult, document, network_record
from directconv.bench.memory import measure_memory
from directconv.tuner.peak import Peak, measure_peaks
from directconv.bench.results import FAILED, OK
from directconv.core.files import write_json
from directconv.bench.runner import Settings, measure

REFERENCE = "directconv-nchw output"
FLOAT64 = "float64 step-by-step reference"


def run_network(
    spec: ChainSpec, available: Sequence[Impl[ChainProblem]], peak: Peak, settings: Settings
) -> tuple[ChainProblem, Check, list[ChainResult]]:
    """Check, time and measure every implementation on one network at one thread count (see the docstring)."""
    problem = ChainProblem.make(spec)
    problem = replace(problem, model=build_model(problem))
    tol = chain_tolerance(problem.network)
    exact = float64_reference(problem.network, problem.weights, problem.x)
    assert problem.model is not None
    ours = problem.model(problem.x)
    verified = compare(ours, exact, tol)
    # Peers are judged against directconv's own output, with room for both sides' rounding; if directconv itself
    # is wrong, everyone is judged against float64 instead, so that its failure cannot pass as theirs.
    reference, ref_tol, ref_name = (ours, 2 * tol, REFERENCE) if verified.correct else (exact, tol, FLOAT64)
    del exact
    outcomes = measure(
        available, lambda impl: impl.prepare(problem, spec.threads), lambda y: compare(y, reference, ref_tol), settings
    )
    results = []
    for impl in available:
        o = outcomes[impl.name]
        p = o.prepared
        memory = measure_memory(spec, impl.name) if o.status != FAILED else "not measured: the implementation failed"
        results.append(ChainResult(
            network=problem.network.name,
            impl=impl.name,
            threads=spec.threads,
            status=o.status,
            flops=problem.flops,
            peak=peak,
            reference=ref_name,
            check=o.check,
            timing=o.timing,
            memory=None if isinstance(memory, str) else memory,
            memory_note=memory if isinstance(memory, str) else "",
            working_memory_bytes=None if p is None else p.extra_memory_bytes,
            note="" if p is None else p.note,
            error=o.error,
            other_cpus=o.other_cpus,
        ))
    return problem, verified, results


def run(args: argparse.Namespace, threads: tuple[int, ...], settings: Settings) -> int:
    """The end-to-end bench for the parsed command line (see command.add_arguments)."""
    started = time.monotonic()
    if args.layer:
        raise ValueError("--end-to-end runs whole networks: give --network NAME, not --layer")
    if not args.network:
        raise ValueError(f"--end-to-end needs --network NAME (one of {', '.join(networks())})")
    names = list(dict.fromkeys(args.network))
    for name in names:
        network = get_network(name)
        network.with_input(args.input_size, args.steps)  # a bad cut fails now, before anything is measured
    available, missing = impls.split_available(chain_impls.select(args.impl))
    cpus = directconv.available_threads()
    if max(threads) > cpus:
        print(f"warning: {max(threads)} threads requested, {cpus} CPUs available: threads will share cores",
              file=sys.stderr)
    print(chain_report.legend(available, missing), flush=True)
    peaks = measure_peaks(threads, repeats=settings.peak_repeats, seconds=settings.peak_seconds, isa=host_isa())

    metadata = environment.metadata()
    options: dict[str, Any] = {
        "end_to_end": True,
        "networks": names,
        "threads": list(threads),
        "impls": [impl.name for impl in available],
        "rounds": settings.rounds,
        "min_time": settings.min_time,
        "warmup_calls": settings.warmup_calls,
        "input_size": args.input_size,
        "steps": args.steps,
        "seed": args.seed,
    }
    records: list[dict[str, Any]] = []
    results: list[ChainResult] = []
    bad: list[str] = []
    for name in names:
        for t in threads:
            spec = ChainSpec(name, t, args.seed, args.input_size, args.steps)
            problem, verified, rows = run_network(spec, available, peaks[t], settings)
            results += rows
            records.append({**network_record(problem, verified), "threads": t})
            other = next((r.other_cpus for r in rows if r.other_cpus is not None), None)
            print(flush=True)
            print(chain_report.header(problem, t, peaks[t], verified, other), flush=True)
            print(chain_report.table(rows), flush=True)
            if not verified.correct:
                bad.append(f"directconv on {name} at {t} thread(s) fails the float64 check: {verified.problem}")
            bad += [f"{r.impl} on {name} at {t} thread(s): {r.status}" for r in rows
                    if r.impl in {i.name for i in available if not i.peer} and r.status != OK]
            if args.json is not None:
                # Rewritten after every network: an interrupted run leaves a valid file with what it measured.
                write_json(args.json, document(metadata, options, peaks, missing, records, results))
    if args.json is not None:
        metadata["thread_pools"] = environment.blas_info()
        metadata["duration_seconds"] = round(time.monotonic() - started, 1)
        write_json(args.json, document(metadata, options, peaks, missing, records, results))
        print(f"wrote {len(results)} records to {args.json}", flush=True)
    for line in bad:
        print(f"directconv bench: {line}", file=sys.stderr)
    return 1 if bad else 0
