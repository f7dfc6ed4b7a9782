"""`directconv inspect`: the machine code of a machine's kernel beside the model's register plan.

Exit status 0 when every kernel agrees with the plan, 1 when one does not (spills, too many registers, accumulators
other than planned), 2 on bad arguments or a missing tool (printed by directconv.cli.main).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from directconv.cli.layers import add_layer_options, add_machine_option, selected_layers, selected_machine


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_machine_option(p)
    add_layer_options(p, shape_options=True)
    p.add_argument("--threads", type=int, default=1, help="the thread count the model predicts for (default 1)")
    p.add_argument(
        "--config",
        metavar="JSON",
        help="inspect this configuration instead of the prediction: a JSON object whose keys override "
        'the predicted ones, e.g. \'{"cob": 16, "wob": 6}\'',
    )
    p.add_argument("--listing", action="store_true", help="print the hot loop's instructions too")
    p.add_argument(
        "--json",
        action="store_true",
        help="print JSON: machine, layer, config, model, compiled, agrees, notes (a list for several)",
    )
    p.set_defaults(run=run)


def _config(base: Any, override: str | None) -> Any:
    from directconv.core.config import KernelConfig

    if override is None:
        return base
    try:
        changes = json.loads(override)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--config must be a JSON object, e.g. '{{\"cob\": 16}}', got {override!r} ({exc})") from None
    if not isinstance(changes, dict):
        raise ValueError(f"--config must be a JSON object of KernelConfig fields, got {type(changes).__name__}")
    return KernelConfig.from_dict({**base.to_dict(), **changes})


def _print(result: Any, listing: bool) -> None:
    c, m = result.compiled, result.model
    cfg = result.config
    print(
        f"{result.layer} on {result.machine}: {cfg.isa} cob={cfg.cob} wob={cfg.wob} unroll={cfg.unroll} "
        f"(flags {' '.join(result.flags)})"
    )
    named = m["accumulators"] + m["weight_vectors"] + m["broadcast_registers"]
    print(
        f"  model:    {m['accumulators']} accumulators + {m['weight_vectors']} weight vectors + "
        f"{m['broadcast_registers']} {'input' if m.get('lane_wise') else 'broadcast'} = {named} of {m['n_reg']} "
        "registers; "
        f"{m['fmas_per_step']} FMAs and {m['loads_per_step']} loads per step; "
        f"N_fma * L_fma = {m['fmas_in_flight_needed']}"
    )
    if c is not None:
        print(
            f"  compiled: {c['vector_registers_used']} vector registers, {c['accumulators']} accumulators, "
            f"{c['spills']} spills, {c['reloads']} reloads; {c['fmas_per_step']:g} FMAs and "
            f"{c['loads_per_step']:g} loads per step ({c['steps_in_loop']:g} steps per loop pass)"
        )
    print(f"  {'agrees' if result.agrees else 'DISAGREES'}" + "".join(f"\n  - {n}" for n in result.notes))
    if listing and result.loop is not None:
        print(result.loop.listing())


def run(args: argparse.Namespace) -> int:
    from directconv.kernels.inspect import inspect_kernel
    from directconv.model import predict

    machine = selected_machine(args)
    results = []
    for layer in selected_layers(args):
        config = _config(predict(layer.shape, machine, args.threads).config, args.config)
        results.append(inspect_kernel(machine, layer.shape, config, layer.name))
    if args.json:
        docs = [r.to_dict() for r in results]
        print(json.dumps(docs[0] if len(docs) == 1 else docs, indent=1))
    else:
        for r in results:
            _print(r, args.listing)
    return 0 if all(r.agrees for r in results) else 1
