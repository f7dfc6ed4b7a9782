"""The host's C compiler: which one, and its version banner (part of every kernel's cache key).

Finding it is host detection: `directconv probe` reads the banner to choose archspec's flags, the kernel cache to
key builds. The banner is remembered per binary in the kernel cache, so a process whose kernels are all cached
starts without running the compiler at all.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from dataclasses import dataclass

from directconv.core.files import write_json
from directconv.core.paths import UnsafeDirectoryError, cache_dir, private_dir


class CompilerNotFoundError(RuntimeError):
    """No usable C compiler on this machine."""


@dataclass(frozen=True)
class Compiler:
    path: str
    version: str  # first line of `cc --version`


@functools.cache
def find_compiler() -> Compiler:
    """The C compiler: $CC if set, else cc, gcc or clang on PATH."""
    candidates = [os.environ["CC"]] if os.environ.get("CC") else ["cc", "gcc", "clang"]
    for name in candidates:
        path = shutil.which(name)
        if path is None:
            continue
        real = os.path.realpath(path)
        version = _known_version(real)
        if version is None:
            try:
                banner = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30, check=True)
            except (OSError, subprocess.SubprocessError):
                continue
            version = (banner.stdout.splitlines() or ["?"])[0].strip()
            _remember_version(real, version)
        return Compiler(path=real, version=version)
    tried = ", ".join(candidates)
    raise CompilerNotFoundError(
        f"no working C compiler found (tried {tried}). directconv builds its kernels with the system C compiler: "
        "install gcc (Debian/Ubuntu: apt-get install gcc; Fedora: dnf install gcc; macOS: xcode-select --install) "
        "or point the CC environment variable at one."
    )


# The compiler's version banner, remembered per binary (path, size, mtime, inode) in the kernel cache: a process
# whose kernels are all cached then starts without running the compiler at all, not even `cc --version`.
_COMPILERS_FILE = "compilers.json"


def _stamp(path: str) -> list[int]:
    st = os.stat(path)
    return [st.st_mtime_ns, st.st_size, st.st_ino]


def _known_version(path: str) -> str | None:
    try:
        known = json.loads((cache_dir() / _COMPILERS_FILE).read_text())
        entry = known.get(path) if isinstance(known, dict) else None
        if isinstance(entry, dict) and entry.get("stamp") == _stamp(path) and isinstance(entry.get("version"), str):
            return entry["version"]
    except (OSError, ValueError):
        pass
    return None


def _remember_version(path: str, version: str) -> None:
    """Best effort: a cache that cannot be written only costs the next process one `--version` call."""
    target = cache_dir() / _COMPILERS_FILE
    try:
        private_dir(cache_dir())
        try:
            known = json.loads(target.read_text())
            known = known if isinstance(known, dict) else {}
        except (OSError, ValueError):
            known = {}
        known[path] = {"stamp": _stamp(path), "version": version}
        write_json(target, known)
    except (OSError, UnsafeDirectoryError):
        pass
