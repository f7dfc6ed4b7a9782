"""The production layer: Conv2d's three configuration sources, fused bias/ReLU, threads, cold start, cache safety."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

import directconv as dc
from directconv.core.isa import ISAS
from directconv.core.paths import UnsafeDirectoryError
from directconv.core.shape import kernel_kind
from directconv.kernels import compiler, runtime
from directconv.kernels.reference import conv2d_reference, tolerance
from directconv.machines.host import host
from directconv.model import estimate_config, predict
from directconv.tuner import select, store

pytestmark = pytest.mark.compiler


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """An empty user config store and kernel cache, and no bundled tuned store: each test decides what is tuned."""
    monkeypatch.setenv("DIRECTCONV_STORE_DIR", str(tmp_path / "store"))
    monkeypatch.setenv("DIRECTCONV_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(store, "_bundled_files", lambda: [])
    monkeypatch.setattr(select, "_warned", set())
    return tmp_path


def record(
    shape: dc.ConvShape, config: dc.KernelConfig, layer: str = "", generator_version: int = 2, gflops: float = 50.0
) -> None:
    h = host()
    entry = store.Entry(
        layer=layer,
        shape=shape,
        threads=config.threads,
        config=config,
        gflops=gflops,
        spread=0.01,
        percent_of_peak=50.0,
        trials=12,
        date="2026-11-30T00:00:00+00:00",
        directconv_version=dc.__version__,
        generator_version=generator_version,
        compiler="cc",
        flags=(),
    )
    store.record(entry, machine=h.machine.id, fingerprint_id=h.fingerprint_id, fingerprint=h.fingerprint)


def layer_data(rng, ci, co, h, w, k):
    x = rng.standard_normal((1, ci, h, w)).astype(np.float32)
    wt = rng.standard_normal((co, ci, k, k)).astype(np.float32)
    b = rng.standard_normal(co).astype(np.float32)
    return x, wt, b


def check(y, x, w, b, pad, relu=False):
    ref = conv2d_reference(x, w, b, padding=pad)
    if relu:
        ref = np.maximum(ref, 0)
    np.testing.assert_allclose(y, ref, rtol=0, atol=tolerance(*w.shape[1:]) * np.abs(ref).max())


def untuned_warnings(caught) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, dc.UntunedWarning)]


# ---------------------------------------------------------------------------------------------- the three sources


def test_exact_tuned_entry_is_used_without_warning(isolated, rng):
    shape = dc.ConvShape.from_args(24, 40, 12, 14, 3, 3, 1, 1)
    plan = predict(shape, host().machine, 1).config
    tuned = plan.replace(unroll=4 if plan.unroll != 4 else 1, cib=None)
    record(shape, tuned, layer="custom:a")
    x, w, b = layer_data(rng, 24, 40, 12, 14, 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        conv = dc.Conv2d(w, b, padding=1, threads=1, input_size=(12, 14))
    assert conv.source == "tuned" and conv.config == tuned
    assert "tuned on 2026-11-30" in conv.reason and not untuned_warnings(caught)
    check(conv(x), x, w, b, 1)


def test_an_entry_timed_on_the_lane_wise_kernel_of_a_grouped_window_layer_is_not_used(isolated, rng):
    """Before generator 3 a layer with 34 channels per group ran the lane-wise kernel: its entry's tile says nothing
    about the window kernel that runs it now, so the model's plan runs it until it is tuned again, and a new
    tuning replaces the old entry even when the old one measured faster."""
    shape = dc.ConvShape.from_args(136, 136, 9, 9, 1, 1, groups=4)
    machine = host().machine
    assert kernel_kind(shape, machine.n_vec) == "grouped-window"
    plan = predict(shape, machine, 1).config
    old = plan.replace(unroll=1, wob=3)
    record(shape, old, generator_version=2, gflops=80.0)
    x = rng.standard_normal((1, 136, 9, 9)).astype(np.float32)
    w = rng.standard_normal((136, 34, 1, 1)).astype(np.float32)
    with pytest.warns(dc.UntunedWarning):
        conv = dc.Conv2d(w, None, groups=4, threads=1, input_size=(9, 9))
    assert conv.source == "model" and conv.config == plan
    np.testing.assert_allclose(conv(x), conv2d_reference(x, w, None, groups=4), rtol=1e-4, atol=1e-4)
    record(shape, plan, generator_version=3, gflops=40.0)
    (entry,) = [f.entry for f in store.entries_for(host().fingerprint_id) if f.entry.shape == shape]
    assert entry.generator_version == 3 and entry.config == plan
    assert select.choose_config(shape, 1).source == "tuned"


def test_nearest_tuned_shape_is_used_when_the_model_says_it_is_no_slower(isolated, rng):
    near = dc.ConvShape.from_args(24, 40, 12, 14, 3, 3, 1, 1)
    far = dc.ConvShape.from_args(24, 40, 30, 30, 5, 5, 1, 2)
    here = dc.ConvShape.from_args(24, 40, 11, 14, 3, 3, 1, 1)  # one row fewer: the same tiles fit
    plan = predict(here, host().machine, 1)
    tuned = plan.config.replace(unroll=4 if plan.config.unroll != 4 else 1)
    assert estimate_config(here, host().machine, tuned) >= plan.predicted_gflops * (1 - 1e-9)
    record(near, tuned, layer="custom:near")
    record(far, predict(far, host().machine, 1).config.replace(unroll=1), layer="custom:far")
    x, w, b = layer_data(rng, 24, 40, 11, 14, 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        conv = dc.Conv2d(w, b, padding=1, threads=1, input_size=(11, 14))
    assert conv.source == "nearest" and conv.config == tuned
    assert "custom:near" in conv.reason and "the model predicts" in conv.reason
    assert not untuned_warnings(caught)
    check(conv(x), x, w, b, 1)


def test_a_neighbour_the_model_predicts_slower_is_not_used(isolated, rng):
    here = dc.ConvShape.from_args(24, 40, 11, 14, 3, 3, 1, 1)
    lanes = host().machine.n_vec
    slow = dc.KernelConfig(predict(here, host().machine, 1).config.isa, lanes, 1, threads=1)  # a 1x1 tile
    assert estimate_config(here, host().machine, slow) < predict(here, host().machine, 1).predicted_gflops
    record(dc.ConvShape.from_args(24, 40, 12, 14, 3, 3, 1, 1), slow)
    x, w, b = layer_data(rng, 24, 40, 11, 14, 3)
    with pytest.warns(dc.UntunedWarning):
        conv = dc.Conv2d(w, b, padding=1, threads=1, input_size=(11, 14))
    assert conv.source == "model" and "nearest tuned shape" in conv.reason and "slower" in conv.reason
    check(conv(x), x, w, b, 1)


def test_a_neighbour_more_than_twice_as_wide_or_large_is_not_used(isolated, rng):
    """Only shapes within 2x in input channels, output channels and output pixels, with the same filter and stride,
    lend their configurations; a tile tuned for a layer 4x wider says nothing here, whatever the model predicts."""
    here = dc.ConvShape.from_args(16, 96, 28, 28, 1, 1)
    plan = predict(here, host().machine, 1).config
    record(dc.ConvShape.from_args(64, 96, 28, 28, 1, 1), plan.replace(unroll=4 if plan.unroll != 4 else 1))
    assert not select.near_enough(here, dc.ConvShape.from_args(64, 96, 28, 28, 1, 1))
    assert select.near_enough(here, dc.ConvShape.from_args(32, 96, 20, 20, 1, 1))  # 2x channels, 0.51x pixels
    assert not select.near_enough(here, dc.ConvShape.from_args(16, 96, 28, 28, 3, 3, 1, 1))  # another filter
    choice = select.choose_config(here, 1, warn=False)
    assert choice.source == "model" and choice.config == plan


def test_model_fallback_warns_once_per_shape_naming_the_tune_command(isolated, rng):
    x, w, b = layer_data(rng, 10, 20, 9, 9, 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = dc.Conv2d(w, b, padding=1, threads=1)
        y = first(x)
        again = dc.Conv2d(w, b, padding=1, threads=1, input_size=(9, 9))  # same shape: no second warning
        other = dc.Conv2d(w, b, padding=1, threads=1, input_size=(8, 9))  # another shape: its own warning
    messages = untuned_warnings(caught)
    assert len(messages) == 2, messages
    assert "directconv tune --ci 10 --co 20 --h 9 --w 9 --kh 3 --kw 3 --stride 1 --pad 1 --threads 1" in messages[0]
    assert "--h 8" in messages[1]
    assert first.source == again.source == other.source == "model"
    assert first.reason.startswith("plan for machine")
    check(y, x, w, b, 1)


def test_suite_layers_are_named_in_the_tune_command(isolated):
    shape = dc.ConvShape.from_args(512, 512, 7, 7, 3, 3, 1, 1)
    with pytest.warns(dc.UntunedWarning, match=r"directconv tune --layer resnet50:res5_3x3 --threads 1"):
        select.choose_config(shape, 1)


def test_conv2d_needs_an_input_size_before_it_can_say_its_config(isolated, rng):
    _, w, _ = layer_data(rng, 4, 8, 5, 5, 3)
    conv = dc.Conv2d(w)
    with pytest.raises(RuntimeError, match=r"call it once or pass input_size"):
        conv.config  # noqa: B018
    with pytest.raises(ValueError, match=r"activation must be None or 'relu', got 'gelu'"):
        dc.Conv2d(w, activation="gelu")
    with pytest.raises(ValueError, match=r"channel mismatch: x has C_i=3 .* expects 4"):
        conv(np.zeros((1, 3, 5, 5), np.float32))


# ---------------------------------------------------------------------------------------------- fused epilogue


@pytest.mark.parametrize("bias, relu", [(True, True), (True, False), (False, True)])
def test_fused_bias_and_relu_match_the_reference_nchw_and_blocked(isolated, rng, bias, relu):
    x, w, b = layer_data(rng, 19, 37, 13, 11, 3)
    b = b if bias else None
    conv = dc.Conv2d(w, b, padding=1, activation="relu" if relu else None, threads=2)
    check(conv(x), x, w, b, 1, relu)
    yb = conv(dc.to_blocked(x, isa=conv.config.isa))
    assert isinstance(yb, dc.BlockedTensor)
    check(dc.from_blocked(yb), x, w, b, 1, relu)


def test_relu_is_applied_in_the_kernels_store_not_in_a_second_pass(isolated, rng):
    """The kernel itself clamps what it stores: an output buffer of -1 comes back non-negative and exact."""
    x, w, b = layer_data(rng, 8, 16, 6, 6, 3)
    conv = dc.Conv2d(w, b, padding=1, activation="relu", threads=1, input_size=(6, 6))
    shape = conv.bindings[(6, 6)].shape
    out = dc.BlockedTensor(np.full(runtime.load(conv.config, shape).output_shape(1), -1.0, np.float32), 16)
    assert conv.forward_blocked(dc.to_blocked(x, isa=conv.config.isa), out=out) is out
    assert (out.data >= 0).all()
    check(dc.from_blocked(out), x, w, b, 1, relu=True)


# ---------------------------------------------------------------------------------------------- threads


def test_one_conv2d_called_from_many_threads(isolated, rng):
    _, w, b = layer_data(rng, 21, 35, 10, 12, 3)
    conv = dc.Conv2d(w, b, padding=1, activation="relu", threads=1)  # bound on first use, concurrently
    inputs = [rng.standard_normal((1, 21, 10, 12)).astype(np.float32) for _ in range(8)]
    results: list = [None] * 8
    before = compiler.stats.compiled
    barrier = threading.Barrier(8)

    def work(i: int) -> None:
        barrier.wait()
        for _ in range(5):
            results[i] = conv(inputs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for x, y in zip(inputs, results, strict=True):
        check(y, x, w, b, 1, relu=True)
    assert compiler.stats.compiled - before == 1, "concurrent first calls must compile the kernel once"
    assert len(conv.bindings) == 1


def test_in_process_kernels_are_shared_by_library(isolated, rng):
    """Two configs differing only in run-time fields (cib, rows, threads) load one library once."""
    shape = dc.ConvShape.from_args(32, 16, 8, 8, 3, 3, 1, 1)
    base = predict(shape, host().machine, 1).config
    a = runtime.load(base, shape)
    b = runtime.load(base.replace(cib=ISAS[base.isa].lanes, threads=2), shape)
    assert a is b and runtime.loaded_libraries().count(a.path) == 1


# ---------------------------------------------------------------------------------------------- cold start


COLD = textwrap.dedent(
    """
    import json, sys, numpy as np, directconv as dc
    from directconv.kernels import compiler
    from directconv.core.suite import get_layer
    out = {}
    for name in sys.argv[1:]:
        s = get_layer(name).shape
        w = np.ones((s.co, s.ci, s.kh, s.kw), np.float32)
        conv = dc.Conv2d(w, stride=(s.sh, s.sw), padding=(s.pt, s.pb, s.pl, s.pr), threads=1, input_size=(s.h, s.w))
        y = conv(np.ones((1, s.ci, s.h, s.w), np.float32))
        out[name] = [conv.source, float(y[0, 0, s.ho // 2, s.wo // 2])]
    print(json.dumps({"layers": out, "compiled": compiler.stats.compiled, "hits": compiler.stats.hits}))
    """
)
COLD_LAYERS = ["resnet50:res5_3x3", "googlenet:3a_5x5"]
COLD_LIBRARIES = len(COLD_LAYERS) + 1  # each layer's kernel, and the NCHW <-> blocked conversions around them


def _cold_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DIRECTCONV_STORE_DIR": str(tmp_path / "store"),
        "DIRECTCONV_CACHE_DIR": str(tmp_path / "cache"),
        **extra,
    }


def _tune_suite_layers(tmp_path: Path) -> None:
    """Put tuned entries for COLD_LAYERS into the isolated store, as `directconv tune` would."""
    from directconv.core.suite import get_layer

    for name in COLD_LAYERS:
        shape = get_layer(name).shape
        record(shape, predict(shape, host().machine, 1).config.replace(unroll=1), layer=name)


@pytest.mark.slow
def test_second_process_loads_a_tuned_network_without_a_compiler(isolated):
    _tune_suite_layers(isolated)
    first = subprocess.run(
        [sys.executable, "-c", COLD, *COLD_LAYERS], env=_cold_env(isolated), capture_output=True, text=True, timeout=600
    )
    assert first.returncode == 0, first.stderr
    # No compiler at all in the second process: $CC names nothing and PATH holds no compiler.
    no_cc = _cold_env(isolated, CC=str(isolated / "no-such-cc"), PATH=str(isolated / "empty-bin"))
    second = subprocess.run(
        [sys.executable, "-c", COLD, *COLD_LAYERS], env=no_cc, capture_output=True, text=True, timeout=600
    )
    assert second.returncode == 0, second.stderr
    a, b = json.loads(first.stdout.splitlines()[-1]), json.loads(second.stdout.splitlines()[-1])
    assert a["compiled"] == COLD_LIBRARIES and b["compiled"] == 0 and b["hits"] == COLD_LIBRARIES
    assert a["layers"] == b["layers"] and all(src == "tuned" for src, _ in b["layers"].values())
    shown = subprocess.run(
        [
            sys.executable,
            "-m",
            "directconv",
            "show",
            "--cache",
            "--threads",
            "1",
            *[f"--layer={n}" for n in COLD_LAYERS],
        ],
        env=no_cc,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert shown.returncode == 0, shown.stderr
    assert "compiler: none found" in shown.stdout
    assert shown.stdout.count("cached, verified: loads without the compiler") == len(COLD_LAYERS)
    assert f"{len(COLD_LAYERS)} of {len(COLD_LAYERS)} layers load from the cache" in shown.stdout


@pytest.mark.slow
def test_second_process_runs_no_compiler_process_at_all(isolated):
    """With the compiler installed, a warm start does not even run `cc --version`: the banner is remembered per
    compiler binary in the cache. A wrapper compiler logs every invocation to prove it."""
    _tune_suite_layers(isolated)
    real = compiler.find_compiler().path
    log = isolated / "cc-calls.log"
    wrapper = isolated / "bin" / "cc"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\nexec "{real}" "$@"\n')
    wrapper.chmod(0o755)
    env = _cold_env(isolated, CC=str(wrapper))
    first = subprocess.run(
        [sys.executable, "-c", COLD, *COLD_LAYERS], env=env, capture_output=True, text=True, timeout=600
    )
    assert first.returncode == 0, first.stderr
    calls_first = log.read_text().splitlines()
    assert any("--version" in c for c in calls_first) and sum("-shared" in c for c in calls_first) == COLD_LIBRARIES
    second = subprocess.run(
        [sys.executable, "-c", COLD, *COLD_LAYERS], env=env, capture_output=True, text=True, timeout=600
    )
    assert second.returncode == 0, second.stderr
    assert log.read_text().splitlines() == calls_first, "the second process must not run the compiler"
    assert json.loads(second.stdout.splitlines()[-1])["compiled"] == 0


def test_without_compiler_or_cache_the_error_says_both(isolated, rng, monkeypatch):
    monkeypatch.setenv("CC", str(isolated / "no-such-cc"))
    compiler.find_compiler.cache_clear()
    try:
        _, w, _ = layer_data(rng, 3, 5, 7, 7, 3)
        with (
            pytest.raises(
                compiler.CompilerNotFoundError, match=r"no working C compiler.*holds no build of this kernel"
            ),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore")
            dc.Conv2d(w, threads=1, input_size=(7, 7))
    finally:
        compiler.find_compiler.cache_clear()


# ---------------------------------------------------------------------------------------------- cache safety


def test_cache_is_private_and_a_tampered_library_is_rebuilt(isolated):
    source = "int dc_answer(void) { return 42; }\n"
    path = compiler.build(source, (), name="probe")
    cache = Path(os.environ["DIRECTCONV_CACHE_DIR"])
    for folder in (cache, path.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, f"{folder} must be private to the user"
    assert compiler.verified(path)
    original = path.read_bytes()
    path.write_bytes(original[:-64] + b"\0" * 64)  # tampered: same size, different content
    assert not compiler.verified(path)
    before = compiler.stats.compiled
    assert compiler.build(source, (), name="probe") == path
    assert compiler.stats.compiled == before + 1 and compiler.verified(path)
    assert path.read_bytes() == original


def test_a_loose_cache_folder_is_tightened_and_a_foreign_one_refused(isolated):
    cache = Path(os.environ["DIRECTCONV_CACHE_DIR"])
    cache.mkdir(mode=0o777)
    os.chmod(cache, 0o777)
    compiler.build("int dc_a(void) { return 1; }\n", (), name="probe")
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    if os.getuid() != 0:
        pytest.skip("making a folder owned by another user needs root")
    os.chown(cache, 4321, 4321)
    with pytest.raises(UnsafeDirectoryError, match=r"belongs to uid 4321, not to this user"):
        compiler.build("int dc_b(void) { return 2; }\n", (), name="probe")


def test_hostile_store_entry_never_reaches_the_compiler(isolated, rng):
    """A store file crafted to inject C or flags is rejected; the layer runs the model's config, and no generated
    source in the cache holds the injected text."""
    shape = dc.ConvShape.from_args(12, 16, 9, 9, 3, 3, 1, 1)
    record(shape, predict(shape, host().machine, 1).config)
    path = next((isolated / "store").glob("*.yaml"))
    doc = yaml.safe_load(path.read_text())
    doc["entries"][0]["config"]["cob"] = '16\n#include "/etc/passwd"\nint x = system("touch pwned");'
    path.write_text(yaml.safe_dump(doc))
    x, w, b = layer_data(rng, 12, 16, 9, 9, 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        conv = dc.Conv2d(w, b, padding=1, threads=1, input_size=(9, 9))
    assert any(
        "ignoring a broken config store file" in str(c.message) and "KernelConfig.cob must be an int" in str(c.message)
        for c in caught
    )
    assert conv.source == "model"
    check(conv(x), x, w, b, 1)
    for c_file in Path(os.environ["DIRECTCONV_CACHE_DIR"]).rglob("*.c"):
        assert "system(" not in c_file.read_text() and "passwd" not in c_file.read_text()


def test_weights_are_kept_once_packed_and_repacked_for_a_new_input_size(isolated, rng):
    """The layer keeps only packed weights (no second OIHW copy); another input size repacks from them, and the
    caller's arrays can change afterwards without changing the layer."""
    x, w, b = layer_data(rng, 13, 20, 9, 9, 3)
    original = w.copy(), b.copy()
    conv = dc.Conv2d(w, b, padding=1, threads=1, input_size=(9, 9))
    w[:] = 0.0
    b[:] = 0.0
    assert conv._weight is None, "after the first binding only the packed weights are kept"
    check(conv(x), x, *original, 1)
    x2 = rng.standard_normal((1, 13, 6, 11)).astype(np.float32)
    check(conv(x2), x2, *original, 1)
    assert set(conv.bindings) == {(9, 9), (6, 11)}
