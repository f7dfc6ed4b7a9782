"""Where a result came from, written inside it; and result files read and written whether gzip-compressed or not.

Every script that writes a result puts `provenance()` at the top of its data: the date (UTC), the git commit of
the checkout (null outside one, with whether the tree had uncommitted changes), the machine description's id
(directconv.machines.host) and the CPU model name. A file whose name ends in .gz is read and written through gzip,
so a large result can be committed compressed and read back by the scripts as it is.

Imported by the scripts beside it (`python benchmarks/<script>.py` puts this folder on the import path). Run as
`python benchmarks/provenance.py FILE...`, it adds the provenance to results other commands wrote (`directconv bench
--json`, `directconv tune --json`, a printed report) before they are committed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from directconv.core.files import write_atomic

ROOT = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def now() -> str:
    """The current UTC time, to the second, ISO 8601."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def provenance(note: str | None = None) -> dict[str, Any]:
    """{"date", "commit", "uncommitted_changes", "machine", "cpu", "fingerprint_id"} of this run, "note" if given."""
    from directconv.machines.host import host  # reads /proc and /sys once per process

    h = host()
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    record: dict[str, Any] = {
        "date": now(),
        "commit": commit,
        "uncommitted_changes": None if status is None else bool(status),
        "machine": h.machine.id,
        "cpu": h.fingerprint.get("model_name") or h.machine.name,
        "fingerprint_id": h.fingerprint_id,
    }
    if note:
        record["note"] = note
    return record


def provenance_line(note: str | None = None) -> str:
    """provenance() as one line, for results written as text."""
    p = provenance(note)
    commit = p["commit"] or "none (not a git checkout)"
    if p["uncommitted_changes"]:
        commit += " with uncommitted changes"
    line = (
        f"provenance: date {p['date']}; commit {commit}; machine {p['machine']} ({p['cpu']}, fingerprint "
        f"{p['fingerprint_id']})"
    )
    return line + (f"; {note}" if note else "")


def read_json(path: str | Path) -> Any:
    """A JSON result file, gzip-compressed when its name ends in .gz."""
    path = Path(path)
    if path.name.endswith(".gz"):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return json.load(f)
    return json.loads(path.read_text(encoding="utf-8"))


def write_json(path: str | Path, data: Any) -> Path:
    """`data` as indented JSON, written atomically; gzip-compressed when the name ends in .gz."""
    text = json.dumps(data, indent=1, allow_nan=False) + "\n"
    if Path(path).name.endswith(".gz"):
        return write_atomic(path, gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0))
    return write_atomic(path, text)


def stamp(path: str | Path, note: str | None = None) -> bool:
    """Add this run's provenance to a result another command wrote (`directconv bench --json`, `directconv tune
    --json`, a printed report): a top-level "provenance" object in JSON, a first line in text. False if it had one."""
    path = Path(path)
    if path.name.endswith((".json", ".json.gz")):
        doc = read_json(path)
        if not isinstance(doc, dict) or "provenance" in doc:
            return False
        write_json(path, {"provenance": provenance(note), **doc})
        return True
    text = path.read_text(encoding="utf-8")
    if text.startswith("provenance: "):
        return False
    write_atomic(path, provenance_line(note) + "\n\n" + text)
    return True


def main() -> int:
    ap = argparse.ArgumentParser(
        description="Add this checkout's and this machine's provenance to result files "
        "written by other commands (run it on the machine that produced them)."
    )
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--note", help="what the run was for")
    args = ap.parse_args()
    for f in args.files:
        print(f"{f}: {'provenance added' if stamp(f, args.note) else 'already has a provenance'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
