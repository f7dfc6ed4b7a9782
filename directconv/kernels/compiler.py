"""Compile generated C into shared libraries, cached on disk by content.

The cache key hashes everything that changes the binary: the source, the compiler's resolved path and version
banner, and the flags. A second process asking for the same kernel finds the library and never runs the compiler.
Libraries are written to a temporary name and renamed into place, so concurrent processes never see half a file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from directconv.core.paths import cache_dir, private_dir
from directconv.machines.toolchain import Compiler, CompilerNotFoundError, find_compiler

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


class CompileError(RuntimeError):
    """The C compiler rejected a source; the message carries the compiler's own output."""


@dataclass
class CacheStats:
    """What this process's compile requests did: served from disk, or built."""

    hits: int = 0
    compiled: int = 0


stats = CacheStats()
log = logging.getLogger("directconv.cache")
_lock = threading.Lock()


def source_key(source: str, flags: tuple[str, ...]) -> str:
    """What a kernel is, independent of the compiler that builds it."""
    h = hashlib.sha256()
    for part in (source, "\0".join(flags)):
        h.update(part.encode())
        h.update(b"\0\0")
    return h.hexdigest()[:24]


def compiler_key(compiler: Compiler) -> str:
    return hashlib.sha256(f"{compiler.path}\0{compiler.version}".encode()).hexdigest()[:8]


def cache_key(source: str, flags: tuple[str, ...], compiler: Compiler) -> str:
    """The cache name of a build: the source and flags, then the compiler (path and version banner)."""
    return f"{source_key(source, flags)}-{compiler_key(compiler)}"


def file_digest(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _digest_path(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def verified(target: Path) -> bool:
    """True when `target` exists and its content hashes to the digest recorded when it was built."""
    try:
        recorded = _digest_path(target).read_text().strip()
        return recorded == file_digest(target)
    except OSError:
        return False


def _log_hit(target: Path, why: str) -> None:
    with _lock:
        stats.hits += 1
    log.info("kernel cache hit: %s (%s); no compiler call", target.name, why)


def lookup(source: str, flags: tuple[str, ...], *, name: str = "kernel") -> Path | None:
    """A verified cached library for `source` with BASE_FLAGS + `flags` built by *any* compiler, or None.

    This is what runs when no compiler is installed (a deployment box that only runs kernels tuned and built
    elsewhere or earlier): the newest matching build whose hash checks out.
    """
    key = source_key(source, BASE_FLAGS + tuple(flags))
    folder = cache_dir() / key[:2]
    found = (
        sorted(folder.glob(f"{name}-{key}-*.so"), key=lambda p: p.stat().st_mtime, reverse=True)
        if folder.is_dir()
        else []
    )
    return next((p for p in found if verified(p)), None)


def _target(source: str, all_flags: tuple[str, ...], compiler: Compiler, name: str) -> Path:
    key = cache_key(source, all_flags, compiler)
    return cache_dir() / key[:2] / f"{name}-{key}.so"


def cached(source: str, flags: tuple[str, ...], *, name: str = "kernel") -> Path | None:
    """The verified library build() would return without running the compiler, or None (it would compile)."""
    try:
        compiler = find_compiler()
    except CompilerNotFoundError:
        return lookup(source, flags, name=name)
    target = _target(source, BASE_FLAGS + tuple(flags), compiler, name)
    return target if verified(target) else None


def build(source: str, flags: tuple[str, ...], *, name: str = "kernel") -> Path:
    """Return the path of a shared library built from `source` with BASE_FLAGS + `flags`, compiling if not cached.

    `flags` must come from a validated source (an Isa entry, a validated machine description): they reach the
    compiler's command line as they are. Without a compiler, a verified build of the same source and flags by
    any earlier compiler is used (see lookup); only when there is none does CompilerNotFoundError reach the caller.
    """
    try:
        compiler = find_compiler()
    except CompilerNotFoundError as exc:
        cached = lookup(source, flags, name=name)
        if cached is None:
            raise CompilerNotFoundError(
                f"{exc} (and the kernel cache {cache_dir()} holds no build of this kernel)"
            ) from None
        _log_hit(cached, "no compiler on this machine; built earlier")
        return cached
    all_flags = BASE_FLAGS + tuple(flags)
    target = _target(source, all_flags, compiler, name)

    def command(tmp: Path, src: Path, out: Path) -> list[str]:
        return [compiler.path, *all_flags, "-o", str(out), str(src)]

    return publish(target, source, command, f"on generated {name}.c with flags {' '.join(all_flags)}")


def publish(
    target: Path,
    source: str,
    command: Callable[[Path, Path, Path], list[str]],
    what: str,
    extra: dict[str, str] | None = None,
) -> Path:
    """Return `target` if cached and intact; else build it in a private temporary folder and rename it into place.

    `command(tmp, src, out)` gives the compiler command that turns `src` (the source, written to `tmp` beside the
    `extra` files) into `out`. The source and the output's SHA-256 are published first and the output last, so a
    cached output never lacks the C it came from; a cached output whose content no longer matches its digest
    (truncated, tampered with) is rebuilt, never loaded. Another process building the same key at the same time
    renames an identical file over it (or, should the two differ, leaves a pair the next load rebuilds).
    """
    if verified(target):
        _log_hit(target, "verified")
        return target
    if target.exists():
        log.warning("kernel cache: %s does not match its recorded SHA-256; rebuilding it", target)
    private_dir(cache_dir())
    private_dir(target.parent)
    with tempfile.TemporaryDirectory(prefix="dc-build-", dir=target.parent) as tmp_name:
        tmp = Path(tmp_name)
        src = tmp / f"{target.name.split('-')[0]}.c"  # the name the compiler's messages will show
        src.write_text(source)
        for file_name, text in (extra or {}).items():
            (tmp / file_name).write_text(text)
        out = tmp / f"out{target.suffix}"
        cmd = command(tmp, src, out)
        log.info("compiling %s", target.name)
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise CompileError(f"{cmd[0]} failed (exit {result.returncode}) {what}:\n{result.stderr.strip()[:4000]}")
        digest = tmp / "digest"
        digest.write_text(file_digest(out) + "\n")
        os.replace(src, target.with_suffix(".c"))
        os.replace(digest, _digest_path(target))
        os.replace(out, target)
    with _lock:
        stats.compiled += 1
    return target
