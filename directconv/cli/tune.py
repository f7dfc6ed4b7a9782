"""`directconv tune` and `directconv show`: tune layers on this machine, list what the config store holds."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from directconv.cli.layers import add_layer_options, selected_layers
from directconv.tuner.tune import SAMPLERS


def add_tune(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tune",
        help="autotune layers on this machine and store the best configurations",
        description="Autotune layers with Optuna over the model's pruned space; resumable "
        "(run the same command again after an interruption); results go to the config store.",
    )
    add_layer_options(p, shape_options=True)
    p.add_argument("--trials", type=int, default=40, help="candidates to measure per layer (default 40)")
    p.add_argument("--timeout", type=float, help="seconds per layer before stopping")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--storage", help="Optuna storage URL (default: an SQLite file in the user data directory)")
    p.add_argument("--sampler", choices=SAMPLERS, default="tpe")
    p.add_argument("--store", help="config store directory (default: $DIRECTCONV_STORE_DIR or the XDG data dir)")
    p.add_argument("--machine", help="machine description for the model (id or YAML; default: this host)")
    p.add_argument("--min-time", type=float, default=0.2, help="seconds of timing per candidate (default 0.2)")
    p.add_argument("--statistic", choices=("median", "min"), default="median")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="tuning processes sharing each layer's study, splitting --trials between them (default 1); "
        "on one host they compile at once but measure one candidate at a time (README: Operations)",
    )
    p.add_argument("--json", help="write the summary as JSON to this file")
    p.set_defaults(run=run_tune)


def run_tune(args: argparse.Namespace) -> int:
    from directconv.tuner.fleet import tune_fleet

    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    if args.trials < 1:
        raise ValueError(f"--trials must be >= 1, got {args.trials}")
    layers = [(layer.name, layer.shape) for layer in selected_layers(args)]
    settings = {
        "threads": args.threads,
        "storage": args.storage,
        "machine": args.machine,
        "sampler": args.sampler,
        "timeout": args.timeout,
        "store_dir": args.store,
        "min_time": args.min_time,
        "statistic": args.statistic,
    }
    fleet = tune_fleet(layers, trials=args.trials, workers=args.workers, settings=settings)
    for o in fleet.failed:
        print(
            f"worker {o.index + 1} of {fleet.workers} failed (exit status {o.exitcode}); its completed trials are "
            "in the study: run the same command again to resume"
        )
    if not fleet.rows:
        return 1
    print_rows(fleet.rows)
    if args.json:
        from directconv.core.files import write_json

        write_json(args.json, {"layers": list(fleet.rows)})
    return 1 if fleet.failed or not all(r["best_config"] for r in fleet.rows) else 0


def print_rows(rows: Sequence[dict]) -> None:
    """The failed candidates, then a table row per layer (tuner.fleet.layer_row's fields)."""
    for row in rows:
        for key, why, detail in row["failures"]:
            print(f"  failed candidate {key}: {why}: {detail}")
    print()
    head = (
        f"{'layer':32} {'predicted':>22} {'GFLOP/s':>8} {'tuned':>22} {'GFLOP/s':>8} {'gain':>6} {'%peak':>6} "
        f"{'trials':>6} {'time':>7}"
    )
    print(head)
    print("-" * len(head))
    for row in rows:
        print(
            f"{row['layer']:32} {_short(row['predicted_config']):>22} {_num(row['predicted_gflops'], '8.1f')} "
            f"{_short(row['best_config']):>22} {_num(row['best_gflops'], '8.1f')} {_num(row['gain'], '6.2f')} "
            f"{_num(row['percent_of_peak'], '6.1f')} {row['trials']:>6} {row['seconds']:>6.0f}s"
        )
    rounds = max((r.get("confirmation_rounds", 0) for r in rows), default=0)
    if rounds:
        print(
            f"GFLOP/s: the study's fastest and the model's configuration timed again side by side, median of "
            f"{rounds} interleaved rounds"
        )


def _short(c: dict | None) -> str:
    return "-" if c is None else f"{c['cob']}x{c['wob']} cib={c['cib'] or 'all'} u{c['unroll']}"


def _num(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def add_show(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "show",
        help="list tuned configurations in the config store",
        description="List the tuned configurations for this host (or a machine id).",
    )
    p.add_argument("--machine", help="machine id (default: this host's fingerprint)")
    p.add_argument("--store", help="config store directory (default: $DIRECTCONV_STORE_DIR or the XDG data dir)")
    p.add_argument("--json", action="store_true", help="print JSON")
    g = p.add_argument_group("kernel cache (--cache)")
    g.add_argument(
        "--cache",
        action="store_true",
        help="instead: for each layer, the configuration production would pick and whether its compiled "
        "kernel is in the disk cache (loading it runs no compiler) or would be compiled",
    )
    add_layer_options(g, shape_options=False)
    g.add_argument("--threads", type=int, default=None, help="thread count for --cache (default: all CPUs)")
    p.set_defaults(run=run_show)


def run_show(args: argparse.Namespace) -> int:
    if args.cache:
        from directconv.cli.cache import print_cache_report

        return print_cache_report(args)
    from directconv.tuner import store

    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    if args.machine is None:
        from directconv.machines.host import host

        h = host()
        wanted = lambda f: f.fingerprint_id == h.fingerprint_id  # noqa: E731
        title = f"tuned configurations for this host ({h.machine.id}, fingerprint {h.fingerprint_id})"
    else:
        wanted = lambda f: f.machine == args.machine  # noqa: E731
        title = f"tuned configurations for machine {args.machine}"
    seen = set()
    for item in store.store_files(args.store):
        if isinstance(item, store.StoreError):
            problems.append(str(item))
            continue
        if not wanted(item):
            continue
        for e in item.entries:
            if (item.fingerprint_id, e.key()) in seen:
                continue
            seen.add((item.fingerprint_id, e.key()))
            rows.append(
                {
                    "layer": e.layer or e.shape.describe(),
                    "threads": e.threads,
                    "config": e.config.to_dict(),
                    "gflops": e.gflops,
                    "percent_of_peak": e.percent_of_peak,
                    "date": e.date,
                    "trials": e.trials,
                    "file": str(item.path),
                    "bundled": item.bundled,
                }
            )
    if args.json:
        print(json.dumps({"entries": rows, "errors": problems}, indent=1))
        return 0
    print(title)
    if not rows:
        print("  (none: tune with `directconv tune --layer NAME`)")
    for r in rows:
        c = r["config"]
        print(
            f"  {r['layer']:32} t{r['threads']} {c['cob']}x{c['wob']} cib={c['cib'] or 'all'} u{c['unroll']} "
            f"{c['parallel']}  {r['gflops']:7.1f} GFLOP/s {r['percent_of_peak']:5.1f}% peak  {r['date'][:10]}"
            f"{'  (bundled)' if r['bundled'] else ''}"
        )
    for p in problems:
        print(f"  unreadable store file: {p}")
    return 0
