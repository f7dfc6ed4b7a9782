"""The measurement worker: a separate process that loads candidate kernels, checks them and times them.

A candidate runs here, never in the tuner, so that one which crashes or hangs takes only this process down; the
tuner notices (EOF or timeout), records the failure and starts a new worker.

Protocol: one JSON request per line on stdin, one JSON reply per line on stdout.
  request: {"lib": path, "config": KernelConfig dict, "shape": ConvShape dict, "min_time": s, "max_samples": n}
  reply:   {"status": "ok", "samples": [seconds...], "max_rel_error": e}
           {"status": "wrong", "max_rel_error": e, "tolerance": t}
           {"status": "error", "detail": message}
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from directconv.core.config import KernelConfig
from directconv.core.shape import ConvShape
from directconv.kernels import layout, runtime
from directconv.kernels.reference import reference_for, tolerance
from directconv.kernels.selftest import random_operands

_problems: dict[ConvShape, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}


def _problem(shape: ConvShape) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Random input, weights, bias and the float64 reference output for a shape (computed once per worker)."""
    if shape not in _problems:
        x, w, b = random_operands(shape, batch=1, seed=12345)
        _problems[shape] = (x, w, b, reference_for(shape, x, w, b))
    return _problems[shape]


def handle(request: dict[str, Any]) -> dict[str, Any]:
    config = KernelConfig.from_dict(request["config"])
    shape = ConvShape(**request["shape"])
    x, w, b, ref = _problem(shape)
    kernel = runtime.open_library(Path(request["lib"]), config, shape)
    xb = layout.nchw_to_blocked(x, config.lanes)
    wp = layout.pack_weights(w, config.lanes, config.cob, shape.groups)
    bp = layout.pack_bias(b, shape, config.lanes, config.cob)
    out = layout.empty_aligned(kernel.output_shape(1))  # as production allocates it
    args: dict[str, Any] = dict(cib=config.cib, rows=config.rows, parallel=config.parallel, threads=config.threads)
    operands = kernel.operands(wp, bp)
    kernel.run(xb, operands, out, **args)
    y = layout.blocked_to_nchw(out, shape.co)
    err = float(np.abs(y - ref).max() / max(float(np.abs(ref).max()), 1e-30))
    if not np.isfinite(err) or err > tolerance(shape.cig, shape.kh, shape.kw):
        return {"status": "wrong", "max_rel_error": err, "tolerance": tolerance(shape.cig, shape.kh, shape.kw)}
    samples = kernel.bench(
        xb,
        operands,
        out,
        **args,
        min_seconds=float(request.get("min_time", 0.2)),
        max_samples=int(request.get("max_samples", 2000)),
    )
    return {"status": "ok", "samples": samples.tolist(), "max_rel_error": err}


def main() -> int:
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            reply = handle(json.loads(line))
        except Exception as exc:  # a failure is a reply, not the end of the worker
            reply = {"status": "error", "detail": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
