"""Compile generated C into shared libraries, cached on disk by content.

The cache key hashes everything that changes the binary: the source, the compiler's resolved path and version
banner, and the flags. A second process asking for the same kernel finds the library and never runs the compiler.
Libraries are written to a temporary name and renamed into place, so concurrent processes never see half a file.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

BASE_FLAGS: tuple[str, ...] = (
    "-O3",
    "-std=gnu11",
    "-fPIC",
    "-shared",
    "-fopenmp",
    "-fno-math-errno",
    "-ffp-contract=fast",
    "-fno-trapping-math",
)

CACHE_ENV = "DIRECTCONV_CACHE_DIR"


class CompilerNotFoundError(RuntimeError):
    """No usable C compiler on this machine."""


class CompileError(RuntimeError):
    """The C compiler rejected a source; the message carries the compiler's own output."""


@dataclass(frozen=True)
class Compiler:
    path: str
    version: str  # first line of `cc --version`


@dataclass
class CacheStats:
    """What this process's compile requests did: served from disk, or built."""

    hits: int = 0
    compiled: int = 0


stats = CacheStats()
_lock = threading.Lock()


@functools.cache
def find_compiler() -> Compiler:
    """The C compiler: $CC if set, else cc, gcc or clang on PATH."""
    candidates = [os.environ["CC"]] if os.environ.get("CC") else ["cc", "gcc", "clang"]
    for name in candidates:
        path = shutil.which(name)
        if path is None:
            continue
        try:
            banner = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30, check=True)
        except (OSError, subprocess.SubprocessError):
            continue
        return Compiler(path=os.path.realpath(path), version=(banner.stdout.splitlines() or ["?"])[0].strip())
    tried = ", ".join(candidates)
    raise CompilerNotFoundError(
        f"no working C compiler found (tried {tried}). directconv builds its kernels with the system C compiler: "
        "install gcc (Debian/Ubuntu: apt-get install gcc; Fedora: dnf install gcc; macOS: xcode-select --install) "
        "or point the CC environment variable at one."
    )


def cache_dir() -> Path:
    """Per-user kernel cache: $DIRECTCONV_CACHE_DIR, else $XDG_CACHE_HOME/directconv, else ~/.cache/directconv."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "directconv"


def cache_key(source: str, flags: tuple[str, ...], compiler: Compiler) -> str:
    h = hashlib.sha256()
    for part in (source, compiler.path, compiler.version, "\0".join(flags)):
        h.update(part.encode())
        h.update(b"\0\0")
    return h.hexdigest()[:32]


def build(source: str, flags: tuple[str, ...], *, name: str = "kernel") -> Path:
    """Return the path of a shared library built from `source` with BASE_FLAGS + `flags`, compiling if not cached.

    `flags` must come from a validated source (an Isa entry, a validated machine description): they reach the
    compiler's command line as they are.
    """
    compiler = find_compiler()
    all_flags = BASE_FLAGS + tuple(flags)
    key = cache_key(source, all_flags, compiler)
    target = cache_dir() / key[:2] / f"{name}-{key}.so"

    def command(tmp: Path, src: Path, out: Path) -> list[str]:
        return [compiler.path, *all_flags, "-o", str(out), str(src)]

    return publish(target, source, command, f"on generated {name}.c with flags {' '.join(all_flags)}")


def publish(
    target: Path, source: str, command: Callable[[Path, Path, Path], list[str]], what: str,
    extra: dict[str, str] | None = None,
) -> Path:
    """Return `target` if cached; else build it in a private temporary folder and rename it into place.

    `command(tmp, src, out)` gives the compiler command that turns `src` (the source, written to `tmp` beside the
    `extra` files) into `out`. The source is published first, so a cached output never lacks the C it came from;
    another process building the same key at the same time renames an identical file over it.
    """
    if target.exists():
        with _lock:
            stats.hits += 1
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dc-build-", dir=target.parent) as tmp_name:
        tmp = Path(tmp_name)
        src = tmp / f"{target.name.split('-')[0]}.c"  # the name the compiler's messages will show
        src.write_text(source)
        for file_name, text in (extra or {}).items():
            (tmp / file_name).write_text(text)
        out = tmp / f"out{target.suffix}"
        cmd = command(tmp, src, out)
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise CompileError(f"{cmd[0]} failed (exit {result.returncode}) {what}:\n{result.stderr.strip()[:4000]}")
        os.replace(src, target.with_suffix(".c"))
        os.replace(out, target)
    with _lock:
        stats.compiled += 1
    return target
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dc-build-", dir=directory) as tmp:
        src = Path(tmp) / f"{name}.c"
        src.write_text(source)
        lib = Path(tmp) / f"{name}.so"
        cmd = [compiler.path, *all_flags, "-o", str(lib), str(src)]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise CompileError(
                f"{compiler.path} failed (exit {result.returncode}) on generated {name}.c with flags "
                f"{' '.join(all_flags)}:\n{result.stderr.strip()[:4000]}"
            )
        # Atomic publish (the source first, so that a library never lacks it): another process building the same
        # key at the same time renames an identical file over it. The source is what a user reads to see what ran.
        os.replace(src, target.with_suffix(".c"))
        os.replace(lib, target)
    with _lock:
        stats.compiled += 1
    return target
