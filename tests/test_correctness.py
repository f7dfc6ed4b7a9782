"""The compiled kernels agree with the float64 reference over a wide sweep of shapes, configs and threads.

Tolerance: kernels.reference.tolerance (32 * sqrt(C_i*kh*kw) * 2^-24 relative to max |output|), justified there.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import directconv as dc
from directconv.core.isa import get_isa, host_isa, host_isas
from directconv.kernels.reference import tolerance

pytestmark = pytest.mark.compiler

HOST = host_isa()
LANES = get_isa(HOST).lanes


def assert_close(y: np.ndarray, ref: np.ndarray, ci: int, kh: int, kw: int) -> None:
    assert y.shape == ref.shape
    scale = max(float(np.abs(ref).max()), 1e-30)
    err = float(np.abs(y.astype(np.float64) - ref).max()) / scale
    assert err <= tolerance(ci, kh, kw), f"relative error {err:.3g} > {tolerance(ci, kh, kw):.3g}"


# (batch, C_i, C_o, H, W, kh, kw, stride, padding, threads)
SWEEP = [
    (1, 1, 1, 5, 5, 3, 3, 1, 1, 1),  # single channel in and out
    (1, 3, 96, 35, 35, 11, 11, 4, 0, 1),  # AlexNet conv1 style: C_i=3, stride 4
    (1, 3, 64, 30, 30, 7, 7, 2, 3, 2),  # ResNet-50 conv1 style
    (2, 5, 11, 9, 13, 3, 3, 1, 1, 1),  # odd channels, batch 2
    (1, 17, 33, 8, 3, 3, 3, 1, 1, 2),  # width smaller than any register block
    (1, 16, 32, 7, 61, 3, 3, 1, 1, 1),  # width much larger than the register block, odd
    (3, 8, 16, 6, 6, 1, 1, 1, 0, 2),  # 1x1, batch 3
    (1, 33, 40, 14, 14, 1, 1, 2, 0, 1),  # 1x1 stride 2
    (1, 16, 24, 12, 12, 5, 5, 1, 2, 2),  # 5x5
    (1, 9, 13, 15, 11, 1, 7, 1, (0, 3), 1),  # 1x7
    (1, 9, 13, 11, 15, 7, 1, 1, (3, 0), 2),  # 7x1
    (1, 12, 20, 16, 17, 3, 3, (2, 1), (1, 2, 0, 3), 1),  # per-axis stride, asymmetric padding
    (2, 7, 9, 13, 14, 3, 5, (3, 4), (2, 0, 1, 4), 2),  # strides 3 and 4, padding on some sides only
    (1, 20, 8, 9, 9, 3, 3, 1, (0, 2, 2, 0), 1),  # padding bottom/left only
    (1, 64, 64, 10, 10, 3, 3, 1, 1, 2),  # multiples of the vector width
    (1, 2, 5, 4, 4, 4, 4, 1, 0, 1),  # kernel as large as the input
    (1, 4, 4, 3, 3, 5, 5, 1, 1, 1),  # kernel larger than the input, fits the padded input
]


@pytest.mark.parametrize("case", SWEEP, ids=[str(i) for i in range(len(SWEEP))])
def test_conv2d_matches_reference(rng: np.random.Generator, case: tuple, random_layer) -> None:
    n, ci, co, h, w, kh, kw, stride, padding, threads = case
    x, wt, bias = random_layer(rng, n, ci, co, h, w, kh, kw)
    y = dc.conv2d(x, wt, bias, stride=stride, padding=padding, threads=threads)
    ref = dc.conv2d_reference(x, wt, bias, stride=stride, padding=padding)
    assert_close(y, ref, ci, kh, kw)


def _configs_for(shape: dc.ConvShape, isa: str) -> list[dc.KernelConfig]:
    """A spread of register blocks, cache blocks and parallel splits that fit `shape`."""
    lanes = get_isa(isa).lanes
    co_vectors = -(-shape.co // lanes)
    out = []
    for vectors, wob in ((1, 1), (1, 5), (2, 3), (3, 4), (2, 7)):
        if vectors > co_vectors or wob > shape.wo:
            continue
        for cib, rows, parallel, threads in ((None, None, "co", 1), (lanes, 1, "rows", 2), (2 * lanes, 3, "co", 2)):
            if cib is not None and cib > -(-shape.ci // lanes) * lanes:
                cib = None
            rows = None if rows is None else min(rows, shape.ho)
            out.append(
                dc.KernelConfig(isa, vectors * lanes, wob, cib=cib, rows=rows, parallel=parallel, threads=threads)
            )
    return out


@pytest.mark.parametrize("isa", host_isas())
@pytest.mark.parametrize(
    "geometry",
    [
        (2, 19, 37, 11, 13, 3, 3, (1, 1), (1, 1, 1, 1)),
        (1, 40, 20, 9, 10, 5, 3, (2, 1), (2, 1, 0, 2)),
        (1, 24, 70, 6, 23, 1, 1, (1, 1), (0, 0, 0, 0)),
    ],
    ids=["3x3-tails", "5x3-strided-asym", "1x1-wide"],
)
def test_every_config_and_isa_matches_reference(
    rng: np.random.Generator, isa: str, geometry: tuple, random_layer
) -> None:
    """Register blocks (full and partial tiles), cache blocks, parallel axes and ISAs all give the right answer."""
    n, ci, co, h, w, kh, kw, stride, padding = geometry
    x, wt, bias = random_layer(rng, n, ci, co, h, w, kh, kw)
    ref = dc.conv2d_reference(x, wt, bias, stride=stride, padding=padding)
    shape = dc.ConvShape.from_args(ci, co, h, w, kh, kw, stride, padding)
    for config in _configs_for(shape, isa):
        y = dc.conv2d(x, wt, bias, stride=stride, padding=padding, config=config)
        assert_close(y, ref, ci, kh, kw)


@pytest.mark.parametrize("parallel", ["co", "rows"])
def test_results_identical_for_any_thread_count(rng: np.random.Generator, parallel: str, random_layer) -> None:
    x, wt, bias = random_layer(rng, 2, 21, 45, 13, 17, 3, 3)
    base = dc.default_config(dc.ConvShape.from_args(21, 45, 13, 17, 3, 3, 1, 1))
    results = [
        dc.conv2d(x, wt, bias, padding=1, config=base.replace(parallel=parallel, rows=2, threads=t))
        for t in (1, 2, 3, 4)
    ]
    for y in results[1:]:
        np.testing.assert_array_equal(y, results[0])


@pytest.mark.parametrize("parallel", ["co", "rows"])
def test_a_single_row_kernel_splits_its_tiles_into_tasks_of_rows_tiles(
    rng: np.random.Generator, parallel: str, random_layer
) -> None:
    """A 1x1 layer runs as one long row; `rows` then counts register tiles per task (core.shape.split_units), up to
    every tile in one task and with a last task of fewer: each split computes the reference, bit for bit alike."""
    lanes = get_isa(host_isa()).lanes
    x, wt, bias = random_layer(rng, 2, 5, lanes + 3, 4, 5, 1, 1)  # 20 pixels: 4 tiles of 6 columns, the last of 2
    shape = dc.ConvShape.from_args(5, lanes + 3, 4, 5, 1, 1, 1, 0)
    base = dc.KernelConfig(host_isa(), lanes, 6, parallel=parallel)
    ref = dc.conv2d_reference(x, wt, bias)
    results = []
    for rows in (1, 2, 3, 4):
        config = base.replace(rows=rows, threads=2)
        config.check_fits(shape)
        results.append(dc.conv2d(x, wt, bias, config=config))
    assert_close(results[0], ref, 5, 1, 1)
    for y in results[1:]:
        np.testing.assert_array_equal(y, results[0])


def test_blocked_chain_relu_and_bias(rng: np.random.Generator, random_layer) -> None:
    """Two layers with different register blocks chained in the blocked layout, with fused bias and ReLU."""
    x, w1, b1 = random_layer(rng, 1, 10, 27, 12, 12, 3, 3)
    w2 = rng.standard_normal((19, 27, 1, 1)).astype(np.float32)
    c1 = dc.KernelConfig(HOST, LANES * min(3, -(-27 // LANES)), 4)
    c2 = dc.KernelConfig(HOST, LANES, 5)
    p1 = dc.pack_weights(w1, b1, input_size=(12, 12), padding=1, config=c1)
    p2 = dc.pack_weights(w2, None, input_size=(12, 12), config=c2)
    xb = dc.to_blocked(x)
    hidden = dc.conv2d_blocked(xb, p1, relu=True)
    # Padded channels of the blocked output stay zero, so the next layer may read whole blocks.
    assert not hidden.data.transpose(0, 1, 4, 2, 3).reshape(1, -1, 12, 12)[:, 27:].any()
    y = dc.from_blocked(dc.conv2d_blocked(hidden, p2))
    ref1 = np.maximum(dc.conv2d_reference(x, w1, b1, padding=1), 0.0)
    ref = dc.conv2d_reference(ref1.astype(np.float32), w2)
    assert_close(y, ref, 27, 1, 1)
    assert_close(dc.from_blocked(hidden), ref1, 10, 3, 3)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(
    n=st.integers(1, 2),
    ci=st.integers(1, 20),
    co=st.integers(1, 40),
    h=st.integers(1, 12),
    w=st.integers(1, 20),
    kh=st.integers(1, 5),
    kw=st.integers(1, 5),
    sh=st.integers(1, 3),
    sw=st.integers(1, 3),
    pads=st.tuples(*[st.integers(0, 2)] * 4),
    threads=st.integers(1, 2),
    seed=st.integers(0, 2**32 - 1),
)
@pytest.mark.slow
def test_property_random_layers(n, ci, co, h, w, kh, kw, sh, sw, pads, threads, seed, random_layer) -> None:
    pt, pb, pl, pr = pads
    assume(kh <= h + pt + pb and kw <= w + pl + pr)  # invalid layers have their own tests
    rng = np.random.default_rng(seed)
    x, wt, bias = random_layer(rng, n, ci, co, h, w, kh, kw)
    y = dc.conv2d(x, wt, bias, stride=(sh, sw), padding=pads, threads=threads)
    assert_close(y, dc.conv2d_reference(x, wt, bias, stride=(sh, sw), padding=pads), ci, kh, kw)
