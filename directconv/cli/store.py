"""`directconv store export`: collect the best configurations of a shared tuning storage into the config store."""

from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="store_command", metavar="ACTION", required=True)
    e = sub.add_parser(
        "export",
        help="write the best configuration of every study in a tuning storage into the config store",
        description="For every directconv study in the storage (every machine fingerprint, layer and thread count), "
        "take the best correct trial, validate it as the config store validates what it reads, and record it in "
        "the config store (kept only where faster than what the store holds). Production machines then read the "
        "YAML files and never need the database.",
    )
    e.add_argument(
        "--storage", required=True, help="Optuna storage URL the tuners used, e.g. postgresql://user@host/db"
    )
    e.add_argument("--machine", help="only this machine: a machine id or a fingerprint id (default: every machine)")
    e.add_argument("--store", help="config store directory (default: $DIRECTCONV_STORE_DIR or the XDG data dir)")
    e.add_argument("--json", action="store_true", help="print JSON")
    e.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> int:
    from directconv.tuner.fleet import export, shown_url

    results = export(args.storage, machine=args.machine, store_dir=args.store)
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=1))
    else:
        print(f"exporting {len(results)} studies from {shown_url(args.storage)}")
        for r in results:
            where = (r.entry.layer or r.entry.shape.describe()) if r.entry else r.study
            head = f"  {r.status:9} {r.machine} ({r.fingerprint_id}) {where}"
            if r.entry is not None:
                c = r.entry.config
                head += (
                    f" t{r.entry.threads}: {c.cob}x{c.wob} cib={c.cib or 'all'} u{c.unroll} {c.parallel} "
                    f"{r.entry.gflops:.1f} GFLOP/s, {r.entry.trials} trials"
                )
            print(head + (f" -> {r.path}" if r.status == "written" else ""))
            if r.detail:
                print(f"            {r.detail}")
    # Studies without a result yet are normal in a running fleet; a study that cannot be exported is not.
    return 1 if any(r.status == "invalid" for r in results) else 0
