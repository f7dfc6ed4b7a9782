"""Re-check the model after a change without a full sweep: its current prediction against a sweep's exhaustive best.

For each layer of a committed sweep (benchmarks/model_sweep.py), the configuration the current model predicts, the
sweep's exhaustive best and the sweep's prediction are compiled, checked against the reference and timed in C in
interleaved rounds (the order rotating every round), on one thread. Reports each one's median GFLOP/s and the
current prediction as a fraction of the exhaustive best measured in the same rounds.

Usage: python benchmarks/predicted_vs_best.py --sweep SWEEP.json.gz [--rounds 11] [--json results.json]
(SWEEP: a model_sweep.py result, gzip-compressed or not)
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

import numpy as np
import yaml
from provenance import provenance, read_json, write_json

from directconv.core.config import KernelConfig
from directconv.core.shape import ConvShape
from directconv.kernels import layout, runtime
from directconv.kernels.reference import conv2d_reference, tolerance
from directconv.machines.loader import load_machine
from directconv.model import predict
from directconv.tuner.harness import interleaved_medians


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sweep", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--min-time", type=float, default=0.2, help="seconds of timing per sample")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    sweep = read_json(args.sweep)
    described = yaml.safe_load(sweep["machine"]) if isinstance(sweep["machine"], str) else sweep["machine"]
    machine = load_machine(described["id"])  # the current bundled description, read by the current model
    rng = np.random.default_rng(0)
    rows = []
    for layer in sweep["layers"]:
        s = ConvShape(**layer["shape"])
        candidates = {
            "now": predict(s, machine, 1).config,
            "best": KernelConfig.from_dict(layer["exhaustive_best"]["config"]),
            "swept": KernelConfig.from_dict(layer["predicted"]["config"]),
        }
        x = rng.standard_normal((1, s.ci, s.h, s.w)).astype(np.float32)
        w = rng.standard_normal((s.co, s.ci, s.kh, s.kw)).astype(np.float32)
        ref = conv2d_reference(x, w, None, stride=(s.sh, s.sw), padding=(s.pt, s.pb, s.pl, s.pr))
        prepared = {}
        for label, cfg in candidates.items():
            k = runtime.load(cfg, s)
            xb = layout.nchw_to_blocked(x, cfg.lanes)
            wp = layout.pack_weights(w, cfg.lanes, cfg.cob)
            bias = layout.pack_bias(None, s, cfg.lanes, cfg.cob)
            out = np.zeros(k.output_shape(1), np.float32)
            k.run(xb, k.operands(wp, bias), out, cib=cfg.cib, rows=cfg.rows, parallel=cfg.parallel, threads=1)
            y = layout.blocked_to_nchw(out, s.co)
            if np.abs(y - ref).max() > tolerance(s.ci, s.kh, s.kw) * np.abs(ref).max():
                raise SystemExit(f"{layer['layer']}: {label} config {cfg} computes a wrong answer")
            prepared[label] = (k, cfg, xb, wp, bias, out)

        def run(k, cfg, xb, wp, bias, out) -> float:
            return float(
                np.median(
                    k.bench(
                        xb,
                        k.operands(wp, bias),
                        out,
                        cib=cfg.cib,
                        rows=cfg.rows,
                        parallel=cfg.parallel,
                        threads=1,
                        min_seconds=args.min_time,
                    )
                )
            )

        seconds = interleaved_medians({label: partial(run, *p) for label, p in prepared.items()}, args.rounds)
        g = {label: s.flops() / t / 1e9 for label, t in seconds.items()}
        row = {
            "layer": layer["layer"],
            **{f"{k}_config": c.to_dict() for k, c in candidates.items()},
            **{f"{k}_gflops": round(v, 2) for k, v in g.items()},
            "now_fraction_of_best": round(g["now"] / g["best"], 3),
            "swept_fraction_of_best": round(g["swept"] / g["best"], 3),
        }
        rows.append(row)
        short = {k: f"{c.cob}x{c.wob} cib={c.cib or 'all'} u{c.unroll}" for k, c in candidates.items()}
        print(
            f"{layer['layer']:28} now {short['now']:20} {g['now']:6.1f} | best {short['best']:20} {g['best']:6.1f} | "
            f"swept prediction {short['swept']:20} {g['swept']:6.1f} | now/best {g['now'] / g['best']:.1%}",
            flush=True,
        )
    if args.json:
        write_json(
            args.json,
            {
                "provenance": provenance(),
                "sweep": args.sweep.name,
                "machine": machine.id,
                "rounds": args.rounds,
                "layers": rows,
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
