"""`directconv predict`: the model's plan for a layer on a machine, with its reasons, without running anything."""

from __future__ import annotations

import argparse
import json

from directconv.cli.layers import add_layer_options, add_machine_option, selected_layers, selected_machine


def add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="the model's configuration for a layer on a machine, and why",
        description="Predict the blocking of a layer on a machine from its description alone.",
    )
    add_machine_option(p)
    add_layer_options(p, shape_options=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--json",
        action="store_true",
        help="print JSON: kernel kind, what bounds it, config, explanation, space sizes, GFLOP/s and %% of peak",
    )
    p.set_defaults(run=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    from directconv.model import predict, search_space

    machine = selected_machine(args)
    out = []
    for layer in selected_layers(args):
        plan = predict(layer.shape, machine, args.threads)
        space = search_space(layer.shape, machine, args.threads)
        view = layer.shape.kernel_view()
        if args.json:
            out.append(
                {
                    "layer": layer.name,
                    "machine": machine.id,
                    "shape": layer.shape.to_dict(),
                    "kind": plan.kind,
                    "input_layout": next(r.value for r in plan.reasons if r.parameter == "input"),
                    "bound": plan.bound,
                    "config": plan.config.to_dict(),
                    "explanation": [str(r) for r in plan.reasons],
                    "space_size": len(space),
                    "unpruned_size": space.unpruned_size,
                    "predicted_gflops": round(plan.predicted_gflops, 2),
                    "predicted_percent_of_peak": round(100 * plan.predicted_gflops / machine.peak(args.threads), 1),
                    # of the nominal FLOPs, the multiply-adds the kernel runs (it skips the taps in the padding)
                    "executed_fraction": round(view.executed_flops() / view.flops(), 4),
                    "cuts": list(space.cuts),
                }
            )
        else:
            print(f"{layer.name}: {layer.shape.describe()}")
            print(plan.explain())
            print(f"  search space: {len(space)} configurations of {space.unpruned_size} (x{space.reduction:.0f})")
            print()
    if args.json:
        print(json.dumps(out[0] if len(out) == 1 else out, indent=1))
    return 0
