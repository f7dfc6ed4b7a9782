"""`directconv selftest`: a machine's kernels on a sweep of shapes against the reference, run however this host can.

Exit status 0 when every case passes, 1 when one fails, 2 when this host cannot run the machine's code at all or
the arguments are wrong (printed by directconv.cli.main).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from directconv.cli.layers import add_machine_option, selected_machine


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_machine_option(p)
    p.add_argument("--json", action="store_true", help="print JSON: machine, how, passed, failed, cases")
    p.set_defaults(run=run)


def _print_case(case: Any, result: Any) -> None:
    cfg = result.config
    verdict = "ok  " if result.passed else "FAIL"
    error = f"  max rel. error {result.max_rel_error:.2g}" if result.max_rel_error is not None else ""
    print(
        f"  {verdict} {case.name:<34} {cfg['cob']}x{cfg['wob']} t{cfg['threads']}{error}"
        + (f"\n       {result.error}" if result.error else "")
    )


def run(args: argparse.Namespace) -> int:
    from directconv.kernels.selftest import cases, how_to_run, selftest

    machine = selected_machine(args)
    sweep = cases(machine)
    if not args.json:
        how, detail = how_to_run(machine)  # the header, before the first case runs
        print(f"selftest of {machine.id}: {len(sweep)} cases, {how}: {detail}")
    report = selftest(machine, sweep, on_result=None if args.json else _print_case)
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
    else:
        print(f"{report.passed} passed, {report.failed} failed")
    return 0 if report.failed == 0 else 1
