"""`directconv export`: write the kernels of some layers for one machine as a self-contained C library folder."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import tempfile
from pathlib import Path

from directconv.cli.layers import add_layer_options, selected_layers


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_layer_options(p, shape_options=True)
    p.add_argument(
        "--machine",
        metavar="ID_OR_YAML",
        help="bundled machine id or YAML path to generate for (default: this host, with its tuned "
        "configurations where the config store has them, else the model's)",
    )
    p.add_argument("--threads", type=int, default=1, help="thread count the configurations are chosen for")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write (must not exist or be empty)")
    p.add_argument("--force", action="store_true", help="replace DIR when it holds an earlier export")
    p.add_argument("--prefix", default="dc", help="prefix of every C symbol (a C identifier; default dc)")
    p.set_defaults(run=run_export)


def _check_out(out: Path, force: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder; name a new or empty folder")
    if not any(out.iterdir()):
        return
    manifest = out / "manifest.json"
    earlier = False
    if manifest.is_file():
        try:
            earlier = json.loads(manifest.read_text()).get("generator") == "directconv export"
        except (OSError, ValueError, AttributeError):
            earlier = False
    if not force:
        hint = "pass --force to replace it" if earlier else "name a new or empty folder"
        raise ValueError(f"--out {out} is not empty; {hint}")
    if not earlier:
        # --force replaces a whole folder, so only one this command wrote: never a folder of someone's files.
        raise ValueError(
            f"--out {out} is not empty and holds no earlier export (no directconv manifest.json), so "
            "--force does not replace it; name a new or empty folder"
        )


def write_atomically(files: dict[str, str], out: Path, force: bool) -> None:
    """Write `files` into a temporary folder beside `out`, then rename it into place (replacing an earlier export
    only with `force`): a reader never sees half an export."""
    _check_out(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        for name, text in files.items():
            (tmp / name).write_text(text, encoding="utf-8")
        tmp.chmod(0o755)
        old = None
        if out.exists() and any(out.iterdir()):
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / "export")
        os.replace(tmp, out)  # rename(2) replaces an empty folder
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def run_export(args: argparse.Namespace) -> int:
    from directconv.kernels import cross
    from directconv.kernels.export import ExportLayer, check_prefix, export_files

    check_prefix(args.prefix)
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    out = Path(args.out)
    _check_out(out, args.force)  # before any work: a refusal should be immediate
    layers = selected_layers(args)
    provenance: dict[str, object] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "threads": args.threads,
    }
    chosen: list[ExportLayer] = []
    if args.machine:
        from directconv.machines.loader import load_machine
        from directconv.model import predict

        machine = load_machine(args.machine)
        target = cross.target_for(machine)
        provenance["config_origin"] = "model prediction for the machine description"
        for layer in layers:
            plan = predict(layer.shape, machine, args.threads)
            chosen.append(ExportLayer(layer.name, layer.shape, plan.config, "model", plan.explain()))
    else:
        from directconv.machines.host import host
        from directconv.tuner.select import choose_config

        h = host()
        machine = h.machine
        target = cross.target_for(machine)
        provenance.update(
            config_origin="this host: config store, else model",
            fingerprint_id=h.fingerprint_id,
            host_machine_source=h.source,
        )
        for layer in layers:
            choice = choose_config(layer.shape, args.threads, warn=False)
            chosen.append(ExportLayer(layer.name, layer.shape, choice.config, choice.source, choice.detail))
    files = export_files(chosen, target, args.prefix, provenance)
    write_atomically(files, out, args.force)
    print(
        f"wrote {out}/ for machine {target.machine} ({target.isa}): {len(chosen)} layer(s), "
        f"{len(files)} files; build with `make -C {out}`"
    )
    for exported in chosen:
        cfg, described = exported.config, exported.shape.describe()
        label = described if exported.name == described else f"{exported.name}: {described}"
        print(f"  {label}  cob={cfg.cob} wob={cfg.wob} ({exported.source})")
    return 0
