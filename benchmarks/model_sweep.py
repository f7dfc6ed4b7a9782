"""Exhaustive sweep of the unpruned configuration space on this machine, to judge the model against the truth.

For each layer: compile every variant of the unpruned space (model.unpruned_space), measure every configuration
once (1 thread), re-measure the top candidates, the model's prediction and the best of the pruned space in
interleaved rounds, and report:
  - the exhaustive best, the prediction's GFLOP/s as a fraction of it, the pruned space's best as a fraction of it,
  - pruned and unpruned sizes,
  - Spearman's rank correlation between predicted and measured GFLOP/s over all swept configurations.

Usage: python benchmarks/model_sweep.py --machine zen3 --layer vgg16:conv3_2 [--layer ...] --out results.json
       python benchmarks/model_sweep.py --rescore results.json   (the rank correlation under the current model)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from scipy.stats import spearmanr

from directconv.bench.results import write_json
from directconv.kernels.compiler import find_compiler
from directconv.layers import get_layer
from directconv.machines.loader import dump_machine, load_machine, parse_machine
from directconv.kernels.config import KernelConfig
from directconv.kernels.shape import ConvShape
from directconv.model import estimate_config, predict, search_space, unpruned_space
from directconv.tuner.compile import compile_all
from directconv.tuner.measure import Measurer


def rank_correlation(shape, machine, measured: list) -> float:
    """Spearman's rho between the model's estimate of each configuration (model.estimate_config: edge tiles,
    thread balance, spills) and its measured GFLOP/s."""
    estimates = [estimate_config(shape, machine, c) for c, _ in measured]
    return float(spearmanr(estimates, [g for _, g in measured]).statistic)


def rescore(path: Path) -> int:
    """Recompute the rank correlation of a committed sweep with the current model; no measuring."""
    doc = json.loads(path.read_text())
    described = yaml.safe_load(doc["machine"]) if isinstance(doc["machine"], str) else doc["machine"]
    machine = parse_machine(described, f"{path}:machine")  # the description the sweep's model read
    for layer in doc["layers"]:
        shape = ConvShape(**layer["shape"])
        measured = [(KernelConfig.from_dict(r["config"]), r["gflops"]) for r in layer["first_pass"]]
        print(f"{layer['layer']:30} rho {rank_correlation(shape, machine, measured):+.3f} over {len(measured)} "
              f"configurations (recorded: {layer['spearman_predicted_vs_measured']:+.3f})")
    return 0


def sweep_layer(name: str, machine, min_time: float, final_rounds: int, top: int) -> dict:
    shape = get_layer(name).shape
    configs = list(unpruned_space(shape, machine, 1))
    plan = predict(shape, machine, 1)
    space = search_space(shape, machine, 1)
    t0 = time.monotonic()
    built = compile_all(configs, shape)
    compile_s = time.monotonic() - t0
    first: dict = {}
    with Measurer(min_time=min_time, timeout=120) as measurer:
        for i, config in enumerate(configs):
            b = built[config.compile_key()]
            if b.library is None:
                first[config] = None
                continue
            m = measurer.measure(config, shape, b.library)
            first[config] = m.gflops if m.ok else None
            if i % 200 == 0:
                print(f"  {name}: {i}/{len(configs)} measured", file=sys.stderr, flush=True)
        ranked = sorted((c for c, g in first.items() if g is not None), key=lambda c: first[c], reverse=True)
        pruned = set(space.configs)
        best_pruned_first = max((c for c in space.configs if first.get(c)), key=lambda c: first[c])
        finalists = set(ranked[:top]) | {plan.config, best_pruned_first}
        rounds: dict = {c: [] for c in finalists}
        for _ in range(final_rounds):  # interleaved: drift hits every finalist alike
            for c in sorted(finalists, key=lambda c: str(c)):
                m = measurer.measure(c, shape, built[c.compile_key()].library)
                if m.ok:
                    rounds[c].append(m.gflops)
    final = {c: float(np.median(v)) for c, v in rounds.items() if v}
    best_config = max(final, key=final.get)
    best = final[best_config]
    pruned_final = {c: g for c, g in final.items() if c in pruned}
    best_pruned = max(pruned_final, key=pruned_final.get) if pruned_final else None
    measured = [(c, g) for c, g in first.items() if g is not None]
    rho = rank_correlation(shape, machine, measured)
    return {
        "layer": name,
        "shape": shape.to_dict(),
        "unpruned_size": len(configs),
        "pruned_size": len(space),
        "reduction": len(configs) / len(space),
        "measured": len(measured),
        "failed": len(configs) - len(measured),
        "compile_seconds": round(compile_s, 1),
        "exhaustive_best": {"config": best_config.to_dict(), "gflops": round(best, 2)},
        "predicted": {"config": plan.config.to_dict(), "gflops": round(final.get(plan.config, 0.0), 2),
                      "fraction_of_best": round(final.get(plan.config, 0.0) / best, 3),
                      "model_gflops": round(plan.predicted_gflops, 1)},
        "pruned_best": {"config": best_pruned.to_dict() if best_pruned else None,
                        "gflops": round(pruned_final.get(best_pruned, 0.0), 2),
                        "fraction_of_best": round(pruned_final.get(best_pruned, 0.0) / best, 3)},
        "spearman_predicted_vs_measured": round(float(rho), 3),
        "first_pass": [{"config": c.to_dict(), "gflops": round(g, 2)} for c, g in measured],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--machine", default="host",
                    help="machine id or YAML path describing this host (default: this host's description)")
    ap.add_argument("--layer", action="append")
    ap.add_argument("--rescore", type=Path, help="recompute the rank correlation of a committed result, no measuring")
    ap.add_argument("--min-time", type=float, default=0.03, help="seconds of timing per configuration, first pass")
    ap.add_argument("--final-rounds", type=int, default=5)
    ap.add_argument("--top", type=int, default=8, help="first-pass leaders re-measured in the final rounds")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.rescore:
        return rescore(args.rescore)
    if not args.layer or not args.out:
        ap.error("--layer and --out are required (or --rescore FILE)")
    if args.machine == "host":
        from directconv.host import host

        machine = host().machine
    else:
        machine = load_machine(args.machine)
    results = []
    for name in args.layer:
        r = sweep_layer(name, machine, args.min_time, args.final_rounds, args.top)
        results.append(r)
        print(
            f"{name}: best {r['exhaustive_best']['gflops']} GFLOP/s; predicted {r['predicted']['gflops']} "
            f"({r['predicted']['fraction_of_best']:.1%}); pruned best {r['pruned_best']['fraction_of_best']:.1%}; "
            f"space {r['pruned_size']}/{r['unpruned_size']} (x{r['reduction']:.0f}); "
            f"spearman {r['spearman_predicted_vs_measured']}",
            flush=True,
        )
    doc = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": dump_machine(machine),
        "compiler": find_compiler().version,
        "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?"),
        "layers": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
