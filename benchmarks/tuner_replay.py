"""Tuner efficiency without the machine's noise: the real search replayed against the exhaustive sweep's table.

benchmarks/tuner_efficiency.py runs the tuner on the device; on a shared, noisy machine one lucky measurement
moves its target, and one run per mode says little. Here every configuration's GFLOP/s comes from the
sweep (benchmarks/model_sweep.py: every configuration of the unpruned space measured, the leaders, the prediction
and the pruned space's best re-measured in interleaved rounds), and the tuner runs for real in simulation mode
(tune(..., backend=SimulatedBackend(...)): the same Optuna study, sampler, model seeding and deduplication, with a
table lookup in place of compiling and timing), many seeds per mode:
  - model: the model's pruned space with its top configurations enqueued first (directconv's default);
  - plain: TPE alone on the unpruned space, nothing enqueued.
Reported per layer and mode: trials until a configuration within 3% of the sweep's exhaustive best is found
(median and worst over seeds; "never" when the budget runs out first). The table and the target both come from
the sweep: from its refinement when it has one, else from its first pass (see table_of).

Usage: python benchmarks/model_sweep.py --refine sweep.json.gz --out refined.json.gz   (optional, recommended)
       python benchmarks/tuner_replay.py --sweep refined.json.gz --seeds 10 --out replay.json
(a sweep is read and written gzip-compressed when its name ends in .gz)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import optuna
import yaml
from provenance import provenance, read_json, write_json

from directconv.core.config import KernelConfig
from directconv.core.shape import ConvShape
from directconv.machines.loader import load_machine
from directconv.model import search_space
from directconv.tuner.backend import SimulatedBackend
from directconv.tuner.measure import Measurement
from directconv.tuner.params import config_key
from directconv.tuner.tune import TuneOptions, tune

WITHIN = 0.97


def table_of(layer: dict) -> tuple[dict[str, float], set[str]]:
    """config key -> GFLOP/s, and the keys whose figure was refined (empty without a refinement).

    A sweep refined by `model_sweep.py --refine` has its contenders (the pruned space, and every first-pass
    configuration within 15% of the first pass's best) re-measured in anchored rounds; those figures are the
    table, and the rest keep their first-pass figure, brought to the refined scale by the median ratio of refined
    to first-pass figures over the configurations that have both. Without a refinement the table is the first
    pass (two samples per configuration: its best is a configuration whose noise came out high, so its target
    can name configurations that the sweep's final rounds find slower than the prediction).

    The sweep's final rounds re-measure a few leaders later, when a shared machine may run faster or slower;
    mixing their figures in would put configurations on different scales, so they are not used here.
    """
    first = {
        config_key(KernelConfig.from_dict(r["config"])): r["gflops"]
        for r in layer["first_pass"]
        if r["gflops"] is not None
    }
    if "refined" not in layer:
        return first, set()
    refined = {config_key(KernelConfig.from_dict(r["config"])): r["gflops"] for r in layer["refined"]}
    scale = statistics.median(refined[k] / first[k] for k in refined if k in first)
    rest = {k: v * scale for k, v in first.items() if k not in refined}
    return {**rest, **refined}, set(refined)


def replay(shape: ConvShape, machine, table: dict[str, float], mode: str, trials: int, seed: int, tmp: Path) -> list:
    """The GFLOP/s of each trial the tuner measured, in order (None where the table has no figure)."""

    def simulate(config: KernelConfig) -> Measurement:
        value = table.get(config_key(config))
        if value is None:
            return Measurement(config, "error", detail="not in the sweep's table")
        return Measurement(config, "ok", seconds=shape.flops() / value / 1e9, gflops=value, samples=1)

    url = f"sqlite:///{tmp / f'{mode}-{seed}.db'}"
    space = "pruned" if mode == "model" else "unpruned"
    # No confirmation rounds: the replay reads the search's history, which they do not change.
    options = TuneOptions(trials=trials, sampler="tpe", space=space, seed=seed, progress=False, confirm_rounds=0)
    tune(
        shape,
        machine=machine,
        fingerprint_id=f"replay-{mode}",
        storage=url,
        options=options,
        backend=SimulatedBackend(simulate),
    )
    study = optuna.load_study(study_name=optuna.get_all_study_summaries(url)[0].study_name, storage=url)
    return [
        t.value
        for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
        if "status" in t.user_attrs and not t.user_attrs.get("duplicate_of")
    ]


def first_reaching(history: list, target: float) -> int | None:
    return next((i for i, v in enumerate(history, 1) if v is not None and v >= target), None)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sweep", type=Path, required=True)
    ap.add_argument("--model-trials", type=int, default=40)
    ap.add_argument("--plain-trials", type=int, default=100)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument(
        "--modes",
        default="model,plain",
        help="comma-separated: model, plain (a replay is deterministic: same table, seed and code, "
        "same trials; a mode whose code did not change need not run again)",
    )
    args = ap.parse_args()
    args.modes = set(args.modes.split(","))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sweep = read_json(args.sweep)
    described = sweep["machine"] if isinstance(sweep["machine"], dict) else yaml.safe_load(sweep["machine"])
    machine = load_machine(described["id"])  # the bundled description the sweep's model read
    rows = []
    for layer in sweep["layers"]:
        shape = ConvShape(**layer["shape"])
        table, refined = table_of(layer)
        target = WITHIN * max(table.values())
        pruned = search_space(shape, machine, 1).configs
        row = {
            "layer": layer["layer"],
            "exhaustive_best_gflops": max(table.values()),
            "target_gflops": round(target, 2),
            "pruned_size": len(pruned),
            "pruned_in_table": sum(config_key(c) in table for c in pruned),
            "pruned_reaching_target": sum(table.get(config_key(c), 0) >= target for c in pruned),
            "unpruned_size": len(layer["first_pass"]),
            "unpruned_reaching_target": sum(v >= target for v in table.values()),
            # A refined table is only sound if no configuration left at its first-pass figure reaches the
            # target: that one would be the next to need re-measuring.
            "refined": len(refined),
            "unrefined_reaching_target": sum(v >= target for k, v in table.items() if refined and k not in refined),
        }
        with tempfile.TemporaryDirectory() as tmp:
            for mode, trials in (("model", args.model_trials), ("plain", args.plain_trials)):
                if mode not in args.modes:
                    continue
                reached = []
                for seed in range(args.seeds):
                    history = replay(shape, machine, table, mode, trials, seed, Path(tmp))
                    reached.append(first_reaching(history, target))
                got = [r for r in reached if r is not None]
                row[mode] = {
                    "trials": trials,
                    "seeds": args.seeds,
                    "trials_to_within_3pct": reached,
                    "reached": len(got),
                    "median": statistics.median(r if r is not None else trials + 1 for r in reached),
                    "worst": max(reached, key=lambda r: trials + 1 if r is None else r),
                }
        rows.append(row)
        print(
            f"{row['layer']:28} target {target:6.1f}  "
            + "  |  ".join(
                f"{mode}: reached {row[mode]['reached']}/{args.seeds}, median {row[mode]['median']}, worst "
                f"{row[mode]['worst']}"
                for mode in ("model", "plain")
                if mode in row
            ),
            flush=True,
        )
    doc = {
        "provenance": provenance(),
        "within": WITHIN,
        "sweep": args.sweep.name,
        "sweep_date": sweep.get("date"),
        "machine": machine.id,
        "layers": rows,
        "note": "median/worst count a run that never reached the target as trials + 1 / None",
    }
    write_json(args.out, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
