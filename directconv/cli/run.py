"""`directconv run MODEL.onnx`: run an ONNX model on this machine's kernels and time it."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from directconv.cli.layers import corpus_names, onnx_source, positive_int

if TYPE_CHECKING:
    from directconv.graph import Model


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "model",
        metavar="MODEL",
        help=f"an ONNX file, or a model of the bundled corpus ({', '.join(corpus_names())})",
    )
    p.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="NAME=FILE.npy",
        help="an input's values (float32, N x C x H x W) from a .npy file (repeatable; default: standard normal "
        "values of the model's input shape, seeded)",
    )
    p.add_argument("--threads", type=positive_int, help="threads (default: every CPU this process may use)")
    p.add_argument("--batch", type=positive_int, default=1, help="images per call for generated inputs (default 1)")
    p.add_argument("--repeat", type=positive_int, default=10, help="timed calls after one warm-up call (default 10)")
    p.add_argument("--summary", action="store_true", help="print the plan: each step, its kernel and configuration")
    p.add_argument("--save", metavar="FILE.npz", help="write the outputs to this .npz file (by output name)")
    p.set_defaults(run=run_model)


def _feeds(args: argparse.Namespace, model: Model) -> dict[str, np.ndarray]:
    names = list(model.input_names)
    given: dict[str, np.ndarray] = {}
    for item in args.input:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--input takes NAME=FILE.npy, got {item!r}")
        if name not in names:
            raise ValueError(f"--input names {name!r}, which is not an input of the model; its inputs: {names}")
        # allow_pickle=False: a .npy file is data, never code.
        given[name] = np.load(path, allow_pickle=False)
    rng = np.random.default_rng(0)
    for name in names:
        if name not in given:
            given[name] = rng.standard_normal((args.batch, *model.input_dims[name])).astype(np.float32)
    return given


def run_model(args: argparse.Namespace) -> int:
    from directconv.graph import load_onnx

    start = time.perf_counter()
    model = load_onnx(onnx_source(args.model), threads=args.threads)
    loaded = time.perf_counter() - start
    feeds = _feeds(args, model)
    if args.summary:
        print(model.summary())
        print()
    outputs = model.run(feeds)  # the warm-up call: the arena is allocated here
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        model.run(feeds)
        times.append(time.perf_counter() - t0)
    batch = next(iter(feeds.values())).shape[0]
    print(f"{args.model}: loaded in {loaded:.1f} s (kernels compiled or found in the disk cache, weights packed)")
    for name, y in zip(model.output_names, outputs, strict=True):
        print(f"  output {name}: shape {tuple(y.shape)}, dtype {y.dtype}")
    print(
        f"  {1e3 * float(np.median(times)):.2f} ms per inference of batch {batch} (median of {args.repeat} calls, "
        f"min {1e3 * min(times):.2f} ms), {model.threads} thread(s)"
    )
    if args.save:
        from directconv.core.files import write_atomic

        write_atomic(Path(args.save), _npz_bytes(dict(zip(model.output_names, outputs, strict=True))))
        print(f"  outputs written to {args.save}")
    return 0


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]  # numpy's stub types the keywords as allow_pickle
    return buffer.getvalue()
