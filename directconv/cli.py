"""The `directconv` command line: one command, one subcommand per job."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _add_bench(sub: argparse._SubParsersAction) -> None:
    from directconv.bench.command import add_arguments

    p = sub.add_parser(
        "bench",
        help="time directconv against numpy im2col+BLAS, torch and onnxruntime on the layer suite",
        description="Time directconv (blocked and NCHW) beside its peers on suite layers, interleaved, and print "
        "GFLOP/s and %% of this machine's measured FMA peak per layer.",
    )
    add_arguments(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="directconv", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_bench(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, RuntimeError) as exc:
        # Expected failures (bad arguments, a missing compiler, a compiler error) end with a message, not a trace.
        print(f"directconv {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
