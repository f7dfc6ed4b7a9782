"""MaxPool2d and Sequential (directconv.nn): the blocked max-pool against numpy, in C bit for bit, Sequential of
convolutions and pools against a float64 step-by-step reference (a custom chain and a real network at reduced
size), its conversions, memory and thread-safety contracts, and its errors."""

from __future__ import annotations

import dataclasses
import threading
import tracemalloc

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

import directconv as dc
from directconv.bench.base import compare
from directconv.kernels import convert, layout
from directconv.kernels.reference import tolerance
from directconv.nn import networks

# Python-level bookkeeping of one call (BlockedTensor wrappers, views, cffi buffer objects): a few KiB.
BOOKKEEPING_BYTES = 32 * 1024
# np.maximum on strided views runs numpy's buffered iterator, which takes a scratch buffer of at most
# np.getbufsize() elements per operand for the call, whatever the size of the data.
UFUNC_SCRATCH_BYTES = 3 * np.getbufsize() * 4


# --- references --------------------------------------------------------------------------------------------------


def maxpool64(x: np.ndarray, kernel: int, stride: int, padding: int) -> np.ndarray:
    padded = np.pad(
        x.astype(np.float64), ((0, 0), (0, 0), (padding, padding), (padding, padding)), constant_values=-np.inf
    )
    return sliding_window_view(padded, (kernel, kernel), axis=(2, 3))[:, :, ::stride, ::stride].max(axis=(4, 5))


def reference_chain(
    model: dc.Sequential,
    x: np.ndarray,
    weights: list[tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, float]:
    """float64, step by step (conv2d_reference, ReLU, numpy max-pool); and the summed per-layer tolerance."""
    y = x.astype(np.float64)
    pairs = iter(weights)
    tol = 0.0
    for step in model:
        if isinstance(step, dc.Conv2d):
            w, b = next(pairs)
            y = dc.conv2d_reference(y, w, b, stride=step.stride, padding=step.padding)
            if step.activation == "relu":
                y = np.maximum(y, 0.0)
            tol += tolerance(step.in_channels, *step.kernel_size)
        else:
            y = maxpool64(y, step.kernel, step.stride, step.padding)
    return y, tol


def _peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - before


def he(rng: np.random.Generator, co: int, ci: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    w = (rng.standard_normal((co, ci, k, k)) * np.sqrt(2.0 / (ci * k * k))).astype(np.float32)
    return w, (0.1 * rng.standard_normal(co)).astype(np.float32)


def small_chain(rng: np.random.Generator, threads: int = 2) -> tuple[dc.Sequential, list]:
    """Odd sizes, channel counts that are no multiple of any vector width, padded pools, strides, no-ReLU steps."""
    weights = [he(rng, 13, 3, 3), he(rng, 20, 13, 1), he(rng, 9, 20, 5)]
    steps: list[dc.Conv2d | dc.MaxPool2d] = [
        dc.Conv2d(*weights[0], padding=1, activation="relu", threads=threads),
        dc.MaxPool2d(3, 2, 1),
        dc.Conv2d(*weights[1], stride=2, threads=threads),
        dc.Conv2d(*weights[2], padding=2, activation="relu", threads=threads),
        dc.MaxPool2d(2, 2),
    ]
    return dc.Sequential(steps, names=["a", "pool_a", "b", "c", "pool_c"]), weights


# --- blocked max-pool (in C, numpy without a compiler) ------------------------------------------------------------


@pytest.mark.parametrize(
    "kernel, stride, padding", [(3, 2, 1), (3, 2, 0), (2, 2, 0), (2, 1, 1), (3, 1, 1), (5, 3, 2), (1, 1, 0), (4, 3, 2)]
)
@pytest.mark.parametrize("lanes", [4, 8, 16])
def test_maxpool_matches_numpy_reference(rng, kernel: int, stride: int, padding: int, lanes: int) -> None:
    x = rng.standard_normal((2, 11, 13, 9)).astype(np.float32)  # odd sizes, 11 channels: a partial block
    xb = dc.BlockedTensor(layout.nchw_to_blocked(x, lanes), 11)
    pool = dc.MaxPool2d(kernel, stride, padding)
    yb = pool(xb)
    np.testing.assert_array_equal(dc.from_blocked(yb), maxpool64(x, kernel, stride, padding))
    channels = yb.data.transpose(0, 1, 4, 2, 3).reshape(2, -1, *yb.data.shape[2:4])
    assert not channels[:, 11:].any()  # the zero channels past C stay zero
    assert pool.output_size(13, 9) == yb.data.shape[2:4]


@pytest.mark.parametrize("size", [56, 112])
def test_maxpool_with_out_allocates_no_activation_memory(rng, size: int) -> None:
    x = rng.standard_normal((1, 64, size, size)).astype(np.float32)
    xb = dc.BlockedTensor(layout.nchw_to_blocked(x, 8), 64)
    pool = dc.MaxPool2d(3, 2, 1)
    out = pool(xb)
    peak = _peak_bytes(lambda: pool(xb, out=out))
    assert peak < UFUNC_SCRATCH_BYTES + BOOKKEEPING_BYTES < out.data.nbytes


def test_maxpool_checks_its_output() -> None:
    x = np.ones((1, 64, 12, 12), dtype=np.float32)
    xb = dc.BlockedTensor(layout.nchw_to_blocked(x, 8), 64)
    pool = dc.MaxPool2d(3, 2, 1)
    out = pool(xb)
    with pytest.raises(ValueError, match=r"out must be a BlockedTensor of shape \(1, 8, 6, 6, 8\)"):
        pool(xb, out=xb)
    inside_input = dc.BlockedTensor(xb.data.reshape(-1)[: out.data.size].reshape(out.data.shape), 64)
    with pytest.raises(ValueError, match="must not overlap"):
        pool(xb, out=inside_input)
    with pytest.raises(TypeError, match="MaxPool2d runs on a BlockedTensor"):
        pool(x)


def test_maxpool_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match=r"at most kernel // 2 = 1 \(else .*\), got padding=2 for kernel=3"):
        dc.MaxPool2d(3, 2, 2)
    with pytest.raises(ValueError, match="kernel must be an int >= 1, got 0"):
        dc.MaxPool2d(0)
    with pytest.raises(ValueError, match="stride must be an int >= 1, got True"):
        dc.MaxPool2d(2, True)
    with pytest.raises(ValueError, match="pooling window 5 is larger than the padded input 4"):
        dc.MaxPool2d(5, 1, 1).output_size(2, 9)


@pytest.mark.compiler
@pytest.mark.parametrize("lanes", [4, 8, 16])
def test_maxpool_in_c_matches_the_numpy_reference_bit_for_bit(rng, lanes: int) -> None:
    # The C pool (kernels/c/dc_graph.c) against MaxPool2d's numpy reference on the same blocked data, NaN and
    # -infinity included (numpy's maximum propagates NaN), ties between signed zeros (the later tap wins), on 1 and 2
    # threads.
    x = rng.standard_normal((2, 19, 15, 14)).astype(np.float32)
    x[0, 3, 4, 5], x[1, 17, 0, 0], x[0, 0, 7, 7] = np.nan, -np.inf, np.inf
    x[1, 2, 3:6, 3:6] = np.where(np.arange(9).reshape(3, 3) % 2, 0.0, -0.0)  # ties between signed zeros
    xb = dc.BlockedTensor(layout.nchw_to_blocked(x, lanes), 19)
    # 3x3 windows inside the input run unrolled (dc_max3x3): with and without padding, strides 1 to 3.
    for kernel, stride, padding in [(3, 2, 1), (2, 2, 0), (3, 1, 1), (5, 3, 2), (3, 2, 0), (3, 3, 1)]:
        pool = dc.MaxPool2d(kernel, stride, padding)
        reference = np.empty(pool.output_shape(xb), dtype=np.float32)
        pool._pool(xb.data, reference)
        for threads in (1, 2):
            got = pool(xb, threads=threads).data
            assert np.array_equal(got.view(np.uint32), reference.view(np.uint32)), (kernel, stride, padding, threads)
    with pytest.raises(ValueError, match="threads must be a positive int, got 0"):
        dc.MaxPool2d(3, 2, 1)(xb, threads=0)
    frozen = dc.MaxPool2d(3, 2, 1)(xb)
    frozen.data.flags.writeable = False
    with pytest.raises(ValueError, match="output buffer is read-only"):
        dc.MaxPool2d(3, 2, 1)(xb, out=frozen)


def test_sequential_of_pools_runs_without_a_compiler(rng, monkeypatch) -> None:
    from directconv.kernels import compiler, convert, graph_ops

    def no_compiler(*args, **kwargs):
        raise compiler.CompilerNotFoundError("no C compiler found (test)")

    monkeypatch.setattr(compiler, "build", no_compiler)
    monkeypatch.setattr(convert, "_libraries", {})
    monkeypatch.setattr(graph_ops, "_libraries", {})  # the libraries' "none here" must not outlive the test
    x = rng.standard_normal((1, 5, 17, 12)).astype(np.float32)
    model = dc.Sequential([dc.MaxPool2d(3, 2, 1), dc.MaxPool2d(2)])
    expected = maxpool64(maxpool64(x, 3, 2, 1), 2, 2, 0)
    np.testing.assert_array_equal(model(x), expected)


# --- Sequential: correctness against float64 (compiler) ------------------------------------------------------------


@pytest.mark.compiler
def test_custom_sequential_matches_float64_step_by_step_reference(rng) -> None:
    model, weights = small_chain(rng)
    x = rng.standard_normal((2, 3, 23, 19)).astype(np.float32)
    expected, tol = reference_chain(model, x, weights)
    y = model(x)
    assert y.shape == expected.shape == (2, 9, 3, 2)
    verdict = compare(y, expected, tol)
    assert verdict.correct, verdict.problem
    plan = model.plan(3, 23, 19)
    yb = model(dc.to_blocked(x, isa=plan.isa))
    assert isinstance(yb, dc.BlockedTensor) and yb.channels == 9
    np.testing.assert_array_equal(dc.from_blocked(yb), y)
    assert [s.name for s in plan.outputs] == ["a", "pool_a", "b", "c", "pool_c"]


@pytest.mark.slow
@pytest.mark.compiler
def test_real_network_at_reduced_size_matches_float64_reference() -> None:
    built = networks.build("alexnet", threads=2, seed=1, input_size=67, batch=2)
    assert built.input_shape == (2, 3, 67, 67) and built.input_size == 67
    assert built.names == ("conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5")
    x = np.random.default_rng(2).standard_normal(built.input_shape, dtype=np.float32)
    expected, tol = reference_chain(built.model, x, list(built.weights))
    verdict = compare(built.model(x), expected, tol)
    assert verdict.correct, verdict.problem
    assert verdict.max_rel_error < tol / 10  # the bound is loose; an error near it would be suspicious


@pytest.mark.compiler
@pytest.mark.parametrize("first", ["image", "pool", "wide"])
def test_nchw_call_converts_once_out_and_in_only_where_the_first_layer_cannot_read_nchw(
    rng, monkeypatch, first
) -> None:
    model, weights = small_chain(rng)
    channels = 3
    if first == "pool":  # a max-pool first: it runs on blocked data, so the input is converted
        model = dc.Sequential([dc.MaxPool2d(3, 1, 1), *model.steps], names=["p0", *model.names])
    elif first == "wide":  # more input channels than one block: converted too
        channels = 20
        wide = he(rng, 13, channels, 3)
        model = dc.Sequential([dc.Conv2d(*wide, padding=1, threads=2), *model.steps[1:]])
    x = rng.standard_normal((1, channels, 23, 19)).astype(np.float32)
    y = model(x)  # bound first: the count below covers one call and nothing of the set-up
    plan = model.plan(channels, 23, 19)
    assert plan.reads_nchw == (first == "image")
    calls = {"in": 0, "out": 0}
    to_blocked, to_nchw = convert.to_blocked, convert.from_blocked

    def counting_in(*args, **kwargs):
        calls["in"] += 1
        return to_blocked(*args, **kwargs)

    def counting_out(*args, **kwargs):
        calls["out"] += 1
        return to_nchw(*args, **kwargs)

    monkeypatch.setattr(convert, "to_blocked", counting_in)
    monkeypatch.setattr(convert, "from_blocked", counting_out)
    np.testing.assert_array_equal(model(x), y)
    converted_in = 0 if first == "image" else 1
    assert calls == {"in": converted_in, "out": 1}
    xb = dc.BlockedTensor(to_blocked(x, plan.lanes), channels)
    np.testing.assert_array_equal(dc.from_blocked(model(xb)), y)  # the blocked path computes the same
    assert calls == {"in": converted_in, "out": 1 + 1}  # (its from_blocked is the test's own)


@pytest.mark.compiler
def test_a_call_allocates_only_its_result_and_a_concurrent_call_the_pair_of_buffers(rng) -> None:
    model, _ = small_chain(rng)
    x = rng.standard_normal((1, 3, 96, 81)).astype(np.float32)
    plan = model.plan(3, 96, 81)
    lanes = plan.lanes
    sizes = [s.floats(1, lanes) for s in plan.outputs]
    # Step i writes buffer i % 2: a blocked call keeps the intermediates there, an NCHW call also the last output.
    # The first convolution (3 channels) reads the NCHW input itself: no blocked copy of it in buffer 1.
    assert plan.reads_nchw
    assert plan.buffer_floats(1, nchw=False) == (max(sizes[0], sizes[2]), max(sizes[1], sizes[3]))
    assert plan.buffer_floats(1, nchw=True) == (max(sizes[0], sizes[2], sizes[4]), max(sizes[1], sizes[3]))
    converting = dataclasses.replace(plan, reads_nchw=False)
    assert converting.buffer_floats(1, nchw=True)[1] == max(sizes[1], sizes[3], plan.input.floats(1, lanes))
    buffers = 4 * sum(plan.buffer_floats(1, nchw=False))
    slack = BOOKKEEPING_BYTES + UFUNC_SCRATCH_BYTES  # see the constants: nothing the size of an activation
    assert buffers > 2 * slack  # else the bounds below would prove little

    xb = dc.to_blocked(x, isa=plan.isa)
    out = model(xb)  # binds the kept pair of buffers for blocked calls of this shape
    assert _peak_bytes(lambda: model(xb, out=out)) < slack
    assert out.data.nbytes <= _peak_bytes(lambda: model(xb)) < out.data.nbytes + slack
    (_, kept) = model._bound[False]
    with kept.lock:  # another call holds the kept buffers: this one allocates a pair of its own
        with_out = _peak_bytes(lambda: model(xb, out=out))
        np.testing.assert_array_equal(model(xb).data, out.data)
    assert buffers <= with_out < buffers + slack
    y = model(x)  # binds a pair for NCHW calls, keeping the blocked calls' pair
    nchw = _peak_bytes(lambda: model(x))
    assert y.nbytes <= nchw < y.nbytes + slack
    assert _peak_bytes(lambda: model(xb, out=out)) < slack
    with model._bound[True][1].lock:
        assert _peak_bytes(lambda: model(x)) < 4 * sum(plan.buffer_floats(1, nchw=True)) + y.nbytes + slack


@pytest.mark.compiler
def test_one_sequential_called_from_four_threads(rng) -> None:
    model, _ = small_chain(rng, threads=1)
    inputs = [rng.standard_normal((1, 3, 29, 31)).astype(np.float32) for _ in range(4)]
    expected = [model(x) for x in inputs]
    errors: list[BaseException] = []
    results: dict[int, list[np.ndarray]] = {i: [] for i in range(4)}
    start = threading.Barrier(4)

    def work(i: int) -> None:
        try:
            start.wait()
            for _ in range(20):
                results[i].append(model(inputs[i]))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i in range(4):
        assert len(results[i]) == 20
        for y in results[i]:
            np.testing.assert_array_equal(y, expected[i])


@pytest.mark.compiler
def test_sequential_errors_say_what_was_expected(rng) -> None:
    w8, b8 = he(rng, 8, 3, 3)
    w4, b4 = he(rng, 4, 5, 1)
    with pytest.raises(ValueError, match="at least one step"):
        dc.Sequential([])
    with pytest.raises(TypeError, match=r"step 1 must be a directconv.Conv2d or directconv.MaxPool2d, got str"):
        dc.Sequential([dc.MaxPool2d(2), "relu"])
    with pytest.raises(ValueError, match="names must be 2 non-empty strings"):
        dc.Sequential([dc.MaxPool2d(2), dc.MaxPool2d(2)], names=["only one"])
    broken = dc.Sequential([dc.Conv2d(w8, b8, padding=1), dc.MaxPool2d(2), dc.Conv2d(w4, b4)])
    x = rng.standard_normal((1, 3, 12, 12)).astype(np.float32)
    with pytest.raises(
        ValueError,
        match=r"step 2 \('conv2'\), on a 8x6x6 input: expects 5 input channels, but step 1 "
        r"\('pool1'\) gives 8",
    ):
        broken(x)
    model = dc.Sequential([dc.Conv2d(w8, b8, padding=1), dc.MaxPool2d(2)])
    with pytest.raises(
        ValueError,
        match=r"step 0 \('conv0'\), on a 4x12x12 input: expects 3 input channels, but the "
        r"input gives 4",
    ):
        model(rng.standard_normal((1, 4, 12, 12)).astype(np.float32))
    with pytest.raises(TypeError, match="x must be float32, got float64"):
        model(x.astype(np.float64))
    with pytest.raises(ValueError, match=r"on a 8x1x1 input: pooling window 2 is larger than the padded input 1"):
        model(x[:, :, :1, :1].copy())
    lanes = model.plan(3, 12, 12).lanes
    other = 4 if lanes != 4 else 8
    with pytest.raises(ValueError, match=f"x is blocked by {other} lanes but this chain runs"):
        model(dc.BlockedTensor(layout.nchw_to_blocked(x, other), 3))
    xb = dc.BlockedTensor(layout.nchw_to_blocked(x, lanes), 3)
    with pytest.raises(ValueError, match=r"out must be a BlockedTensor of shape \(1, \d+, 6, 6, \d+\)"):
        model(xb, out=xb)
    with pytest.raises(TypeError, match="out= is for blocked calls"):
        model(x, out=xb)
