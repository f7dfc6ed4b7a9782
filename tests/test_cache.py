"""Compiled kernels are cached on disk; a second process reuses them without compiling."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from directconv.kernels import compiler

pytestmark = pytest.mark.compiler

SCRIPT = textwrap.dedent(
    """
    import json, numpy as np, directconv as dc
    from directconv.kernels import compiler
    x = np.ones((1, 5, 9, 9), np.float32); w = np.ones((6, 5, 3, 3), np.float32)
    y = dc.conv2d(x, w, padding=1, threads=1)
    print(json.dumps({"compiled": compiler.stats.compiled, "hits": compiler.stats.hits, "center": float(y[0, 0, 4, 4])}))
    """
)


def _run(cache: str) -> dict:
    env = {**os.environ, "DIRECTCONV_CACHE_DIR": cache}
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    import json

    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_second_process_does_not_compile(tmp_path):
    first = _run(str(tmp_path))
    second = _run(str(tmp_path))
    # Two libraries: the kernel, and the NCHW <-> blocked conversions around it (kernels/convert.py).
    assert first["compiled"] == 2 and first["hits"] == 0
    assert second["compiled"] == 0 and second["hits"] == 2
    assert first["center"] == second["center"] == 45.0
    libraries = sorted(tmp_path.rglob("*.so"), key=lambda p: p.name)
    assert [p.name.split("-")[0] for p in libraries] == ["conv", "layout"]
    assert all(p.with_suffix(".c").exists() for p in libraries)
    assert not list(tmp_path.rglob("dc-build-*")), "temporary build folders must not be left behind"


def test_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DIRECTCONV_CACHE_DIR", str(tmp_path / "a"))
    assert compiler.cache_dir() == tmp_path / "a"
    monkeypatch.delenv("DIRECTCONV_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compiler.cache_dir() == tmp_path / "xdg" / "directconv"


def test_cache_key_covers_source_flags_and_compiler():
    cc = compiler.Compiler("/usr/bin/cc", "cc 1.0")
    key = compiler.cache_key("int f;", ("-O3",), cc)
    assert key != compiler.cache_key("int g;", ("-O3",), cc)
    assert key != compiler.cache_key("int f;", ("-O2",), cc)
    assert key != compiler.cache_key("int f;", ("-O3",), compiler.Compiler("/usr/bin/cc", "cc 2.0"))
    assert key != compiler.cache_key("int f;", ("-O3",), compiler.Compiler("/opt/cc", "cc 1.0"))


def test_compiler_error_shows_the_compiler_message(monkeypatch, tmp_path):
    monkeypatch.setenv("DIRECTCONV_CACHE_DIR", str(tmp_path))
    with pytest.raises(compiler.CompileError, match=r"failed \(exit \d+\) on generated bad.c[\s\S]*undeclared_thing"):
        compiler.build("int f(void) { return undeclared_thing; }\n", (), name="bad")
    assert not list(tmp_path.rglob("*.so"))


def test_missing_compiler_names_what_to_install(monkeypatch):
    compiler.find_compiler.cache_clear()
    monkeypatch.setenv("CC", "no-such-cc-anywhere")
    try:
        with pytest.raises(
            compiler.CompilerNotFoundError,
            match=r"no working C compiler found \(tried no-such-cc-anywhere\).*install gcc",
        ):
            compiler.find_compiler()
    finally:
        compiler.find_compiler.cache_clear()


def test_compiler_banner_is_remembered_until_the_binary_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("DIRECTCONV_CACHE_DIR", str(tmp_path / "cache"))
    fake = tmp_path / "fakecc"
    calls = tmp_path / "calls"

    def install(version: str) -> None:
        fake.write_text(f'#!/bin/sh\necho x >> "{calls}"\necho "{version}"\n')
        fake.chmod(0o755)

    install("fakecc 1.0")
    monkeypatch.setenv("CC", str(fake))
    try:
        for _ in range(2):  # two "processes": the second reads the banner from the cache
            compiler.find_compiler.cache_clear()
            assert compiler.find_compiler().version == "fakecc 1.0"
        assert calls.read_text().count("x") == 1
        install("fakecc 2.0 (upgraded)")  # another size: the remembered banner no longer applies
        compiler.find_compiler.cache_clear()
        assert compiler.find_compiler().version == "fakecc 2.0 (upgraded)"
        assert calls.read_text().count("x") == 2
    finally:
        compiler.find_compiler.cache_clear()
