"""`directconv show --cache`: would loading these layers run the compiler? Answered without running it."""

from __future__ import annotations

import argparse
import json
import os
import stat

from directconv.cli.layers import selected_layers
from directconv.core.suite import Layer
from directconv.kernels import compiler, runtime
from directconv.nn.api import available_threads


def _default_layers(threads: int) -> list[Layer]:
    """The layers this host has tuned entries for (what a deployment loads), else the whole suite."""
    from directconv.core.suite import suite
    from directconv.machines.host import host
    from directconv.tuner import store

    tuned = {(f.entry.shape, f.entry.threads) for f in store.entries_for(host().fingerprint_id)}
    return [layer for layer in suite() if (layer.shape, threads) in tuned] or list(suite())


def cache_rows(layers: list[Layer], threads: int) -> list[dict]:
    from directconv.tuner.select import choose_config

    rows = []
    for layer in layers:
        choice = choose_config(layer.shape, threads, warn=False)
        path = runtime.cached_library(choice.config, layer.shape)
        rows.append(
            {
                "layer": layer.name,
                "threads": threads,
                "source": choice.source,
                "config": choice.config.to_dict(),
                "cached": path is not None,
                "library": str(path) if path else None,
            }
        )
    return rows


def print_cache_report(args: argparse.Namespace) -> int:
    threads = args.threads or available_threads()
    layers = selected_layers(args, required=False) or _default_layers(threads)
    try:
        cc = compiler.find_compiler()
        who = f"{cc.path} ({cc.version})"
    except compiler.CompilerNotFoundError:
        who = "none found: only cached kernels can load"
    folder = compiler.cache_dir()
    libraries = sorted(folder.rglob("*.so")) if folder.is_dir() else []
    mode = f"{stat.S_IMODE(folder.stat().st_mode):o}" if folder.is_dir() else "absent"
    rows = cache_rows(layers, threads)
    if args.json:
        print(
            json.dumps(
                {"cache_dir": str(folder), "mode": mode, "compiler": who, "libraries": len(libraries), "layers": rows},
                indent=1,
            )
        )
        return 0
    size = sum(p.stat().st_size for p in libraries) / 2**20
    print(
        f"kernel cache {folder} (mode {mode}, owner uid {folder.stat().st_uid if folder.is_dir() else '-'}, "
        f"this user {os.getuid()}): {len(libraries)} libraries, {size:.1f} MiB"
    )
    print(f"compiler: {who}")
    for r in rows:
        c = r["config"]
        state = "cached, verified: loads without the compiler" if r["cached"] else "not cached: the first load compiles"
        print(f"  {r['layer']:32} t{r['threads']} {r['source']:7} {c['cob']}x{c['wob']} u{c['unroll']}  {state}")
    missing = sum(not r["cached"] for r in rows)
    print(
        f"{len(rows) - missing} of {len(rows)} layers load from the cache"
        + (f"; {missing} would compile (load them once on this machine while it has its compiler)" if missing else "")
    )
    return 0
