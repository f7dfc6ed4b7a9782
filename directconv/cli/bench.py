"""`directconv bench`: the command line. The bench itself is directconv.bench (per_layer, end_to_end, onnx_model,
session).

Exit status: 0 when every directconv implementation computed correct answers, 1 when one did not (peers that
are wrong or fail are reported but do not change the status), 2 on bad arguments (raised as ValueError and
printed by directconv.cli.main).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from directconv.bench import end_to_end, kind, onnx_model, per_layer, session
from directconv.bench.base import SOURCES
from directconv.bench.corpus_names import CORPUS_NAMES
from directconv.bench.runner import DEFAULT, QUICK, settings_for
from directconv.core.suite import NETWORKS


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {value}")
    return value


def _thread_list(text: str) -> list[int]:
    return [_positive_int(part.strip()) for part in text.split(",") if part.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the bench options to `parser` and make `run` its action (parser.set_defaults(run=...))."""
    parser.add_argument(
        "--layer",
        action="append",
        metavar="NAME",
        help="a suite layer, e.g. vgg16:conv3_2 or vgg16_conv3_2 (repeatable; default: the whole suite)",
    )
    parser.add_argument(
        "--network",
        action="append",
        metavar="NAME",
        help=f"every layer of a network: {', '.join(NETWORKS)} (repeatable); with --end-to-end, the whole network "
        "(those chained in directconv/nn/networks.yaml)",
    )
    parser.add_argument(
        "--end-to-end",
        action="store_true",
        help="time each --network as one chained model (directconv.Sequential against the same stack in torch and "
        "onnxruntime), with its memory high-water mark",
    )
    parser.add_argument(
        "--onnx",
        action="append",
        metavar="MODEL",
        help="an ONNX file, or else a model of the corpus of that name (when no such file exists: "
        f"{', '.join(CORPUS_NAMES)}) (repeatable): time directconv.load_onnx against an onnxruntime session on the "
        "same model, NCHW in and out, outputs checked against onnxruntime's, each one's memory high-water mark "
        "measured, directconv's load time reported apart",
    )
    parser.add_argument(
        "--batch",
        type=_positive_int,
        metavar="N",
        help="with --onnx: images per inference (default 1; a file that fixes its batch accepts only that one)",
    )
    parser.add_argument(
        "--input-size",
        type=_positive_int,
        metavar="S",
        help="with --end-to-end: run the networks on an S x S input instead of their own (a quick look)",
    )
    parser.add_argument(
        "--steps",
        type=_positive_int,
        metavar="N",
        help="with --end-to-end: only the first N steps of each network (a quick look)",
    )
    parser.add_argument(
        "--threads",
        action="append",
        type=_thread_list,
        metavar="T[,T...]",
        help=f"thread counts (repeatable or comma-separated; default: {','.join(map(str, kind.DEFAULT_THREADS))})",
    )
    parser.add_argument(
        "--impl",
        action="append",
        metavar="NAME",
        help=f"only these implementations: {', '.join(per_layer.REGISTRY.names())} (with --end-to-end: "
        f"{', '.join(end_to_end.REGISTRY.names())}; with --onnx: {', '.join(onnx_model.REGISTRY.names())})",
    )
    parser.add_argument(
        "--rounds",
        type=_positive_int,
        metavar="N",
        help=f"interleaved rounds per layer and thread count (default {DEFAULT.rounds}, --quick {QUICK.rounds})",
    )
    parser.add_argument(
        "--min-time",
        type=_positive_float,
        metavar="SECONDS",
        help=f"duration of one timed batch of calls (default {DEFAULT.min_time}, --quick {QUICK.min_time})",
    )
    parser.add_argument(
        "--source",
        choices=SOURCES,
        default="store",
        help="directconv's configuration: the one it would choose (tuned store, nearest tuned shape, else the model; "
        "default) or the model's plan for every layer",
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds and shorter batches: a smoke test")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write every measurement to FILE")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs and weights (default 0)")
    parser.set_defaults(run=run)


def request(args: argparse.Namespace) -> kind.Request:
    """The parsed command line as the bench's Request (threads flattened in order, duplicates dropped)."""
    threads = tuple(dict.fromkeys(t for group in args.threads for t in group)) if args.threads else None
    return kind.Request(
        layers=tuple(args.layer or ()),
        networks=tuple(args.network or ()),
        end_to_end=bool(args.end_to_end),
        input_size=args.input_size,
        steps=args.steps,
        threads=kind.DEFAULT_THREADS if threads is None else threads,
        impls=tuple(args.impl or ()),
        settings=settings_for(args.quick, args.rounds, args.min_time),
        quick=bool(args.quick),
        json=args.json,
        seed=args.seed,
        source=args.source,
    )


def run(args: argparse.Namespace) -> int:
    parsed = request(args)
    if args.onnx:
        return session.run(onnx_model.kind(args.onnx, args.batch or 1), parsed)
    if args.batch is not None:
        raise ValueError("--batch sets the batch of --onnx models: give --onnx MODEL")
    return session.run(end_to_end.KIND if parsed.end_to_end else per_layer.KIND, parsed)
