"""The config store: validation of everything read, atomic locked writes, best-result-wins, hostile files."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

from directconv.core.config import KernelConfig
from directconv.core.shape import ConvShape
from directconv.tuner import store

FP = {"vendor": "test", "model_name": "Test CPU"}
FID = "0123456789abcdef"
SHAPE = ConvShape.from_args(16, 32, 8, 8, 3, 3, 1, 1)


def entry(gflops: float, wob: int = 4, threads: int = 1, shape: ConvShape = SHAPE) -> store.Entry:
    return store.Entry(
        layer="", shape=shape, threads=threads, config=KernelConfig("avx2", 16, wob, threads=threads),
        gflops=gflops, spread=0.02, percent_of_peak=gflops, trials=10, date="2026-11-29T00:00:00+00:00",
        directconv_version="0.1.0", generator_version=1, compiler="gcc 12", flags=("-mavx2", "-mfma"),
    )


def write(tmp_path: Path, e: store.Entry) -> tuple[bool, Path]:
    return store.record(e, machine="testbox", fingerprint_id=FID, fingerprint=FP, store=tmp_path)


def test_round_trip_and_lookup(tmp_path):
    written, path = write(tmp_path, entry(50.0))
    assert written and path == tmp_path / f"testbox-{FID}.yaml"
    found = store.lookup(SHAPE, 1, FID, store=tmp_path)
    assert found is not None and found.entry == entry(50.0)
    assert store.lookup(SHAPE, 2, FID, store=tmp_path) is None
    assert store.lookup(SHAPE, 1, "ffffffffffffffff", store=tmp_path) is None
    assert [f.entry for f in store.foreign_entries(SHAPE, 1, "ffffffffffffffff", store=tmp_path)] == [entry(50.0)]


def test_faster_replaces_slower_does_not(tmp_path):
    write(tmp_path, entry(50.0, wob=4))
    assert write(tmp_path, entry(40.0, wob=2))[0] is False
    assert store.lookup(SHAPE, 1, FID, store=tmp_path).entry.gflops == 50.0
    assert write(tmp_path, entry(60.0, wob=8))[0] is True
    found = store.lookup(SHAPE, 1, FID, store=tmp_path).entry
    assert found.gflops == 60.0 and found.config.wob == 8
    assert len(store.read_store(tmp_path / f"testbox-{FID}.yaml").entries) == 1


WRITER = """
import sys
from directconv.core.config import KernelConfig
from directconv.core.shape import ConvShape
from directconv.tuner import store
directory, worker = sys.argv[1], int(sys.argv[2])
for i in range(20):
    shape = ConvShape.from_args(16, 32, 8 + i, 8, 3, 3, 1, 1)
    e = store.Entry(layer="", shape=shape, threads=1, config=KernelConfig("avx2", 16, 1 + worker), gflops=10.0 + worker + i,
                    spread=0.0, percent_of_peak=1.0, trials=1, date="d", directconv_version="v", generator_version=1,
                    compiler="cc", flags=())
    store.record(e, machine="testbox", fingerprint_id="0123456789abcdef", fingerprint={}, store=directory)
"""


def test_concurrent_writers_keep_the_best_of_both(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(w)]) for w in (0, 1)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    parsed = store.read_store(tmp_path / f"testbox-{FID}.yaml")
    assert len(parsed.entries) == 20
    assert all(e.config.wob == 2 and e.gflops == 11.0 + i for i, e in enumerate(sorted(parsed.entries, key=lambda e: e.shape.h)))
    assert not list(tmp_path.glob("*.tmp"))


def _raw(tmp_path: Path) -> dict:
    write(tmp_path, entry(50.0))
    return yaml.safe_load((tmp_path / f"testbox-{FID}.yaml").read_text())


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["entries"][0]["config"].update(cob="16; system(\"rm -rf /\")"), r"KernelConfig.cob must be an int"),
        (lambda d: d["entries"][0]["config"].update(flags="-fplugin=/tmp/evil.so"), r"unknown KernelConfig keys \['flags'\]"),
        (lambda d: d["entries"][0]["config"].update(wob=10**9), r"KernelConfig.wob must be in \[1, 64\]"),
        (lambda d: d["entries"][0]["config"].update(isa="avx2 -fplugin=x"), r"KernelConfig.isa must be one of"),
        (lambda d: d["entries"][0]["shape"].update(ci="16"), r"entries\[0\].shape.ci must be an integer"),
        (lambda d: d["entries"][0].update(gflops=float("nan")), r"entries\[0\].gflops must be a finite number"),
        (lambda d: d["entries"][0].update(compiler="gcc\n#include </etc/passwd>"), r"single-line string"),
        (lambda d: d["entries"][0].update(extra=1), r"unknown keys \['extra'\]"),
        (lambda d: d.update(machine="../../etc/passwd"), r"machine must be an id"),
        (lambda d: d["entries"][0]["config"].update(cob=64), r"does not fit layer"),
    ],
)
def test_hostile_or_broken_entries_are_rejected_with_the_file_named(tmp_path, mutate, message):
    doc = _raw(tmp_path)
    mutate(doc)
    path = tmp_path / "hostile.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(store.StoreError, match=message) as info:
        store.read_store(path)
    assert str(path) in str(info.value)


def test_yaml_tags_cannot_construct_objects(tmp_path):
    path = tmp_path / "tagged.yaml"
    path.write_text("!!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(store.StoreError, match=r"not valid YAML"):
        store.read_store(path)


def test_corrupt_file_never_breaks_lookup_and_is_kept_aside_on_write(tmp_path):
    (tmp_path / f"testbox-{FID}.yaml").write_text("entries: [unclosed\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert store.lookup(SHAPE, 1, FID, store=tmp_path) is None
    assert any("broken config store file" in str(w.message) and "testbox" in str(w.message) for w in caught)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        written, _ = write(tmp_path, entry(50.0))
    assert written
    assert len(list(tmp_path.glob(f"testbox-{FID}.yaml.corrupt-*"))) == 1
    assert store.lookup(SHAPE, 1, FID, store=tmp_path).entry.gflops == 50.0
