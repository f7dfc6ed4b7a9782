"""Exhaustive sweep of the unpruned configuration space on this machine, to judge the model against the truth.

For each layer: compile every variant of the unpruned space (model.unpruned_space), measure every configuration
once (1 thread) against an anchor timed every few configurations (drift correction, see sweep_layer),
re-measure the top candidates, the model's prediction and the leaders of the pruned space in interleaved rounds,
and report:
  - the exhaustive best, the prediction's GFLOP/s as a fraction of it, the pruned space's best as a fraction of it,
  - pruned and unpruned sizes,
  - Spearman's rank correlation between predicted and measured GFLOP/s over all swept configurations.

Usage: python benchmarks/model_sweep.py --machine zen3 --layer vgg16:conv3_2 [--layer ...] --out results.json.gz
       python benchmarks/model_sweep.py --rescore results.json.gz   (the rank correlation under the current model)
       python benchmarks/model_sweep.py --refinal results.json.gz --out new.json.gz   (final rounds under the
           current model, from a committed sweep's first pass)
       python benchmarks/model_sweep.py --refine results.json.gz --out refined.json.gz   (the pruned space and the
           first pass's leaders re-measured in anchored rounds: the tuner replay's table)
A file whose name ends in .gz is read and written gzip-compressed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from provenance import provenance, read_json, write_json
from scipy.stats import spearmanr

from directconv.core.config import KernelConfig
from directconv.core.shape import ConvShape
from directconv.core.suite import get_layer
from directconv.kernels.compiler import find_compiler
from directconv.machines.loader import dump_machine, load_machine, parse_machine
from directconv.model import estimate_config, predict, search_space, unpruned_space
from directconv.tuner.compile import compile_all
from directconv.tuner.harness import schedule
from directconv.tuner.measure import Measurer
from directconv.tuner.params import config_key

ANCHOR_EVERY = 8  # configurations between two timings of the anchor
TOP_PRUNED = 3  # the pruned space's first-pass leaders re-measured in the final rounds


def rank_correlation(shape, machine, measured: list) -> float:
    """Spearman's rho between the model's estimate of each configuration (model.estimate_config: edge tiles,
    thread balance, spills) and its measured GFLOP/s."""
    estimates = [estimate_config(shape, machine, c) for c, _ in measured]
    return float(spearmanr(estimates, [g for _, g in measured]).statistic)


def rescore(path: Path) -> int:
    """Recompute the rank correlation of a committed sweep with the current model; no measuring."""
    doc = read_json(path)
    described = yaml.safe_load(doc["machine"]) if isinstance(doc["machine"], str) else doc["machine"]
    machine = parse_machine(described, f"{path}:machine")  # the description the sweep's model read
    for layer in doc["layers"]:
        shape = ConvShape(**layer["shape"])
        measured = [(KernelConfig.from_dict(r["config"]), r["gflops"]) for r in layer["first_pass"]]
        print(
            f"{layer['layer']:30} rho {rank_correlation(shape, machine, measured):+.3f} over {len(measured)} "
            f"configurations (recorded: {layer['spearman_predicted_vs_measured']:+.3f})"
        )
    return 0


def anchored_pass(
    name: str,
    measurer: Measurer,
    shape: ConvShape,
    anchor_config: KernelConfig,
    built: dict,
    order: list,
    raw: dict,
    local: list,
) -> dict:
    """Each configuration's speed relative to the anchor timed around its group: one pass over `order`.

    The machine drifts: on a shared host the same kernel runs faster or slower for minutes at a time, and a
    sweep visits the space tile by tile, so drift would pass for a property of the tile. The anchor (the
    model's prediction) is timed before and after every group of ANCHOR_EVERY configurations; a configuration's
    figure is its GFLOP/s over the mean of those two anchor timings. `raw` receives every configuration's GFLOP/s
    as measured and `local` every anchor speed used, so the caller can scale ratios back to GFLOP/s by the
    anchor's median.
    """
    anchor_lib = built[anchor_config.compile_key()].library

    def anchor() -> float:
        m = measurer.measure(anchor_config, shape, anchor_lib)
        if not m.ok:
            raise SystemExit(f"{name}: the model's own configuration failed ({m.status}): {m.detail}")
        return m.gflops

    relative: dict = {}
    group: list = []
    before = anchor()
    for i, config in enumerate(order):
        b = built[config.compile_key()]
        if b.library is None:
            raw[config] = None
        else:
            m = measurer.measure(config, shape, b.library)
            raw[config] = m.gflops if m.ok else None
        group.append(config)
        if len(group) == ANCHOR_EVERY or i == len(order) - 1:
            after = anchor()
            speed = (before + after) / 2
            local.append(speed)
            for c in group:
                relative[c] = None if raw[c] is None else raw[c] / speed
            group, before = [], after
        if i % 200 == 0:
            print(f"  {name}: {i}/{len(order)} measured", file=sys.stderr, flush=True)
    return relative


def sweep_layer(
    name: str, machine, min_time: float, final_min_time: float, final_rounds: int, top: int, first_passes: int = 2
) -> dict:
    shape = get_layer(name).shape
    configs = list(unpruned_space(shape, machine, 1))
    plan = predict(shape, machine, 1)
    t0 = time.monotonic()
    built = compile_all(list(dict.fromkeys([*configs, plan.config])), shape)  # the anchor even if not swept
    compile_s = time.monotonic() - t0
    raw: dict = {}
    local: list[float] = []
    with Measurer(min_time=min_time, timeout=120) as measurer:
        # Passes in alternating orders: drift that the anchor misses lands early in one pass and late in the next.
        passes = [
            anchored_pass(
                name, measurer, shape, plan.config, built, configs if k % 2 == 0 else configs[::-1], raw, local
            )
            for k in range(first_passes)
        ]
    scale = float(np.median(local))
    first: dict = {}
    for c in configs:
        values = [p[c] for p in passes if p.get(c) is not None]
        first[c] = float(np.mean(values)) * scale if len(values) == len(passes) else None
    result = finals(name, shape, machine, first, final_min_time, final_rounds, top, built)
    measured = [(c, g) for c, g in first.items() if g is not None]
    rho = rank_correlation(shape, machine, measured)
    return {
        "layer": name,
        "shape": shape.to_dict(),
        "unpruned_size": len(configs),
        "reduction": len(configs) / result["pruned_size"],
        "measured": len(measured),
        "failed": len(configs) - len(measured),
        "compile_seconds": round(compile_s, 1),
        **result,
        "spearman_predicted_vs_measured": round(float(rho), 3),
        "first_passes": first_passes,
        "anchor_gflops": {"median": round(scale, 2), "min": round(min(local), 2), "max": round(max(local), 2)},
        "first_pass": [
            {"config": c.to_dict(), "gflops": round(g, 2), "raw_gflops": round(raw[c], 2)} for c, g in measured
        ],
    }


def finals(
    name: str, shape: ConvShape, machine, first: dict, min_time: float, rounds: int, top: int, built: dict | None = None
) -> dict:
    """Re-measure the first pass's leaders, the pruned space's leaders and the prediction in interleaved rounds.

    Split halves: the even rounds pick the exhaustive best and the pruned space's best (by the median of each
    one's speed relative to the prediction timed in the same round), the odd rounds measure them. Picking the
    fastest of a dozen configurations that are within noise of each other and quoting the same rounds' figure
    would flatter the pick (the winner's curse) and make the larger group look faster. Fractions
    are medians over the odd rounds of the ratio measured within each round.
    """
    plan = predict(shape, machine, 1)
    pruned = set(search_space(shape, machine, 1).configs)
    ranked = sorted((c for c, g in first.items() if g is not None), key=lambda c: first[c], reverse=True)
    finalists = list(dict.fromkeys([*ranked[:top], *[c for c in ranked if c in pruned][:TOP_PRUNED], plan.config]))
    if built is None:
        built = compile_all(finalists, shape)

    def progress(r: int) -> None:
        if (r + 1) % 10 == 0 or r + 1 == rounds:
            print(f"  {name}: final round {r + 1}/{rounds}", file=sys.stderr, flush=True)

    with Measurer(min_time=min_time, timeout=120) as measurer:
        per_round = measurer.rounds(finalists, shape, built, rounds, on_round=progress)  # rotated, as the bench's
    pick, judge = per_round[0::2], per_round[1::2]

    def median_over(half: list[dict], c) -> float:
        return float(np.median([t[c] for t in half if c in t])) if any(c in t for t in half) else 0.0

    def fraction(c, best) -> float:
        return float(np.median([t[c] / t[best] for t in judge if c in t and best in t]))

    def relative(c) -> float:
        # Within a round every finalist meets the same machine: speeds relative to the prediction timed in that
        # round carry across rounds; absolute speeds swing with the machine's phases.
        ratios = [t[c] / t[plan.config] for t in pick if c in t and plan.config in t]
        return float(np.median(ratios)) if ratios else 0.0

    best = max(finalists, key=relative)
    best_pruned = max((c for c in finalists if c in pruned), key=relative)
    return {
        "final_rounds": rounds,
        "finalists": [
            {
                "config": c.to_dict(),
                "pruned": c in pruned,
                "pick_gflops": round(median_over(pick, c), 2),
                "pick_relative_to_predicted": round(relative(c), 3),
                "judge_gflops": round(median_over(judge, c), 2),
            }
            for c in finalists
        ],
        "exhaustive_best": {"config": best.to_dict(), "gflops": round(median_over(judge, best), 2)},
        "predicted": {
            "config": plan.config.to_dict(),
            "gflops": round(median_over(judge, plan.config), 2),
            "fraction_of_best": round(fraction(plan.config, best), 3),
            "model_gflops": round(plan.predicted_gflops, 1),
        },
        "pruned_best": {
            "config": best_pruned.to_dict(),
            "gflops": round(median_over(judge, best_pruned), 2),
            "fraction_of_best": round(fraction(best_pruned, best), 3),
        },
        "pruned_size": len(pruned),
    }


def refinal(path: Path, out: Path, min_time: float, rounds: int, top: int) -> int:
    """The final rounds again, under the current model, from a committed sweep's first pass (no full sweep)."""
    doc = read_json(path)
    described = yaml.safe_load(doc["machine"]) if isinstance(doc["machine"], str) else doc["machine"]
    machine = load_machine(described["id"])  # the current bundled description, read by the current model
    layers = []
    for layer in doc["layers"]:
        shape = ConvShape(**layer["shape"])
        first = {KernelConfig.from_dict(r["config"]): r["gflops"] for r in layer["first_pass"]}
        result = finals(layer["layer"], shape, machine, first, min_time, rounds, top)
        result["reduction"] = layer["unpruned_size"] / result["pruned_size"]
        layers.append(
            {
                **layer,
                **result,
                "spearman_predicted_vs_measured": round(rank_correlation(shape, machine, list(first.items())), 3),
            }
        )
        report(layers[-1])
    run = provenance()
    write_json(
        out,
        {
            **doc,
            "provenance": run,
            "date": run["date"],
            "machine": dump_machine(machine),
            "first_pass_from": {"file": path.name, "date": doc["date"], "provenance": doc.get("provenance")},
            "layers": layers,
        },
    )
    return 0


def refine(path: Path, out: Path, min_time: float, rounds: int, within: float) -> int:
    """Re-measure, in `rounds` anchored passes in rotating order, every configuration of the current pruned space
    and every first-pass configuration within `within` of the first pass's best, and add them to each layer as
    "refined" (a table for benchmarks/tuner_replay.py).

    Two samples per configuration leave the first pass noisy, and its best is, by construction, a
    configuration whose noise came out high: a target taken from it can name configurations that the final rounds
    then find slower than the prediction. A figure here is the median over rounds of the ratio to the anchor,
    scaled by the anchor's median, so it is on the scale of this run, not the sweep's.
    """
    doc = read_json(path)
    described = yaml.safe_load(doc["machine"]) if isinstance(doc["machine"], str) else doc["machine"]
    machine = load_machine(described["id"])
    layers = []
    for layer in doc["layers"]:
        name = layer["layer"]
        shape = ConvShape(**layer["shape"])
        first = {KernelConfig.from_dict(r["config"]): r["gflops"] for r in layer["first_pass"]}
        top = max(first.values())
        plan = predict(shape, machine, 1)
        chosen = list(
            dict.fromkeys(
                [*search_space(shape, machine, 1).configs, *(c for c, g in first.items() if g >= within * top)]
            )
        )
        built = compile_all(list(dict.fromkeys([*chosen, plan.config])), shape)
        raw: dict = {}
        local: list[float] = []
        ratios: dict = {c: [] for c in chosen}
        with Measurer(min_time=min_time, timeout=120) as measurer:
            for r, order in enumerate(schedule(chosen, rounds)):  # rotate: drift hits all alike
                for c, ratio in anchored_pass(
                    name, measurer, shape, plan.config, built, order if r % 2 == 0 else order[::-1], raw, local
                ).items():
                    if ratio is not None:
                        ratios[c].append(ratio)
        scale = float(np.median(local))
        refined = [
            {"config": c.to_dict(), "gflops": round(float(np.median(v)) * scale, 2), "samples": len(v)}
            for c, v in ratios.items()
            if len(v) == rounds
        ]
        layers.append(
            {
                **layer,
                "refined": refined,
                "refine": {
                    "rounds": rounds,
                    "min_time": min_time,
                    "within_first_pass_best": within,
                    "configs": len(chosen),
                    "anchor": plan.config.to_dict(),
                    "anchor_gflops": {
                        "median": round(scale, 2),
                        "min": round(min(local), 2),
                        "max": round(max(local), 2),
                    },
                },
            }
        )
        best = max(refined, key=lambda e: e["gflops"])
        print(
            f"{name}: {len(refined)} configurations re-measured {rounds}x; best {best['gflops']} "
            f"{config_key(KernelConfig.from_dict(best['config']))} (first pass best {top})",
            flush=True,
        )
    run = provenance()
    write_json(out, {**doc, "refined_date": run["date"], "refine_provenance": run, "layers": layers})
    return 0


def report(r: dict) -> None:
    print(
        f"{r['layer']}: best {r['exhaustive_best']['gflops']} GFLOP/s; predicted {r['predicted']['gflops']} "
        f"({r['predicted']['fraction_of_best']:.1%}); pruned best {r['pruned_best']['fraction_of_best']:.1%}; "
        f"space {r['pruned_size']}/{r['unpruned_size']} (x{r['reduction']:.0f}); "
        f"spearman {r['spearman_predicted_vs_measured']}",
        flush=True,
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--machine",
        default="host",
        help="machine id or YAML path describing this host (default: this host's description)",
    )
    ap.add_argument("--layer", action="append")
    ap.add_argument("--rescore", type=Path, help="recompute the rank correlation of a committed result, no measuring")
    ap.add_argument("--min-time", type=float, default=0.03, help="seconds of timing per configuration, first pass")
    ap.add_argument(
        "--first-passes",
        type=int,
        default=2,
        help="passes over the whole space, in alternating orders, averaged (default 2)",
    )
    ap.add_argument(
        "--refinal",
        type=Path,
        help="only the final rounds again, under the current model, from this "
        "committed sweep's first pass (with --out)",
    )
    ap.add_argument(
        "--refine",
        type=Path,
        help="re-measure the pruned space and the first pass's leaders of this "
        "committed sweep in anchored rounds, for the tuner replay (with --out)",
    )
    ap.add_argument("--refine-rounds", type=int, default=6)
    ap.add_argument(
        "--refine-within",
        type=float,
        default=0.85,
        help="first-pass configurations at least this fraction of the first pass's best are re-measured",
    )
    ap.add_argument("--final-rounds", type=int, default=30)
    ap.add_argument("--final-min-time", type=float, default=0.1, help="seconds of timing per finalist per round")
    ap.add_argument("--top", type=int, default=8, help="first-pass leaders re-measured in the final rounds")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.rescore:
        return rescore(args.rescore)
    if args.refine:
        if not args.out:
            ap.error("--refine needs --out")
        return refine(args.refine, args.out, args.min_time, args.refine_rounds, args.refine_within)
    if args.refinal:
        if not args.out:
            ap.error("--refinal needs --out")
        return refinal(args.refinal, args.out, args.final_min_time, args.final_rounds, args.top)
    if not args.layer or not args.out:
        ap.error("--layer and --out are required (or --rescore FILE)")
    if args.machine == "host":
        from directconv.machines.host import host

        machine = host().machine
    else:
        machine = load_machine(args.machine)
    results = []
    for name in args.layer:
        r = sweep_layer(
            name, machine, args.min_time, args.final_min_time, args.final_rounds, args.top, args.first_passes
        )
        results.append(r)
        report(r)
    run = provenance()
    doc = {
        "provenance": run,
        "date": run["date"],
        "machine": dump_machine(machine),
        "compiler": find_compiler().version,
        "cpu": run["cpu"],
        "layers": results,
    }
    write_json(args.out, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
