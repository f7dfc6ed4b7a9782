"""The `directconv` command line: one command, one subcommand per job."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

# (name, module with add_arguments(parser), help, description). Modules load when the parser is built, one each.
_SUBCOMMANDS: tuple[tuple[str, str, str, str], ...] = (
    (
        "bench",
        "directconv.cli.bench",
        "time directconv against numpy im2col+BLAS, torch and onnxruntime on the layer suite",
        "Time directconv (blocked and NCHW) beside its peers on suite layers, interleaved, and print GFLOP/s and % "
        "of this machine's measured FMA peak per layer.",
    ),
    (
        "run",
        "directconv.cli.run",
        "run an ONNX model on this machine's kernels: outputs' shapes, time per inference, the plan",
        "Load an ONNX model (its convolutions run their tuned configurations, else the nearest tuned or the "
        "model's), run it on the given or generated inputs, and print each output's shape and the time per "
        "inference; --summary prints the plan.",
    ),
    (
        "probe",
        "directconv.cli.probe",
        "describe this CPU (identity, caches, cores) and measure its FMA latency, throughput, clock and peak",
        "Detect this host's CPU, ISA, caches and cores, time its FMA units with small C loops, write a machine "
        "description (YAML) to the user machine store and say which bundled machine it matches.",
    ),
    (
        "machines",
        "directconv.cli.machines",
        "list the machine descriptions (bundled and user) with their model numbers, or show one in full",
        "List bundled and user machine descriptions: ISA, N_vec x N_reg, N_fma, L_fma, the FMA work in flight they "
        "need (paper eq. 1) and peak GFLOP/s per core. A user file shadows the bundled one with the same id; files "
        "that fail to load are listed with their error.",
    ),
    (
        "store",
        "directconv.cli.store",
        "manage the config store: export the best configurations of a shared tuning storage into it",
        "The config store holds the best configuration per machine fingerprint, layer and thread count as YAML. "
        "`store export --storage URL` fills it from a tuning storage shared by many workers and machines.",
    ),
    (
        "inspect",
        "directconv.cli.inspect",
        "read a kernel's machine code for any described machine: registers, spills, FMAs and loads per step",
        "Build the model's kernel (or --config) for a machine with its flags and compiler, disassemble it with "
        "objdump and compare the hot loop of the interior tile with the model's register plan.",
    ),
    (
        "selftest",
        "directconv.cli.selftest",
        "run a machine's kernels on a sweep of shapes against the reference: natively, under qemu, or as host code",
        "Build the kernels of a machine description (default: this host's) for a sweep of shapes (tails, strides, "
        "padding, 1x1 to 11x11 filters, threads, batch) and check each against the float64 reference: natively when "
        "this host runs the ISA, under qemu-user for AArch64, and for an x86 ISA this host lacks with the same "
        "generated vector code compiled for this host's ISA.",
    ),
    (
        "export",
        "directconv.cli.export",
        "write the kernels of some layers for a machine as a C library folder (sources, header, Makefile)",
        "Generate the kernels of the named layers for this host (its tuned configurations, else the model's) or "
        "for a described machine (--machine, the model's), with a documented C API to pack weights, convert layouts "
        "and run each layer, a Makefile and a manifest.",
    ),
)


def build_parser() -> argparse.ArgumentParser:
    import importlib

    from directconv.cli.predict import add_predict
    from directconv.cli.tune import add_show, add_tune

    parser = argparse.ArgumentParser(prog="directconv", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module, help_text, description in _SUBCOMMANDS:
        p = sub.add_parser(name, help=help_text, description=description)
        importlib.import_module(module).add_arguments(p)
    add_predict(sub)
    add_tune(sub)
    add_show(sub)
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
