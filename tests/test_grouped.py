"""Grouped, depthwise and dilated convolutions: the reference against independent formulas, every kernel kind
against the reference, zero allocation and the disk cache for the new kernels.

Tolerance: kernels.reference.tolerance over the products one output sums, C_i/groups * kh * kw.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass, replace

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import directconv as dc
from directconv.core.isa import get_isa, host_isa
from directconv.core.shape import KERNEL_KINDS, ConvShape, kernel_kind
from directconv.kernels import compiler, runtime
from directconv.kernels.reference import tolerance

HOST = host_isa()
LANES = get_isa(HOST).lanes


# ---------------------------------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class Layer:
    """One test layer and the kernel configuration to run it with.

    The configuration is given in vectors (cob = vectors * lanes, cib = cib_vectors * lanes) and clamped to what
    fits the layer on the host's vector width, so the same list runs on any ISA.
    """

    ci: int
    co: int
    groups: int
    h: int
    w: int
    kernel: int | tuple[int, int]
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, int, int, int] = 0
    dilation: int | tuple[int, int] = 1
    batch: int = 1
    threads: int = 1
    bias: bool = True
    relu: bool = False
    vectors: int = 1
    wob: int = 4
    cib_vectors: int | None = None
    rows: int | None = None
    parallel: str = "co"
    unroll: int = 1

    @property
    def kh(self) -> int:
        return self.kernel if isinstance(self.kernel, int) else self.kernel[0]

    @property
    def kw(self) -> int:
        return self.kernel if isinstance(self.kernel, int) else self.kernel[1]

    def shape(self) -> ConvShape:
        return ConvShape.from_args(
            self.ci, self.co, self.h, self.w, self.kh, self.kw, self.stride, self.padding, self.dilation, self.groups
        )

    @property
    def kind(self) -> str:
        return kernel_kind(self.shape(), LANES)

    def config(self) -> dc.KernelConfig:
        return fitting_config(
            self.shape(),
            vectors=self.vectors,
            wob=self.wob,
            cib_vectors=self.cib_vectors,
            rows=self.rows,
            parallel=self.parallel,
            threads=self.threads,
            unroll=self.unroll,
        )

    def operands(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        x = rng.standard_normal((self.batch, self.ci, self.h, self.w)).astype(np.float32)
        wt = rng.standard_normal((self.co, self.ci // self.groups, self.kh, self.kw)).astype(np.float32)
        bias = rng.standard_normal(self.co).astype(np.float32) if self.bias else None
        return x, wt, bias

    def reference(self, x: np.ndarray, wt: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
        ref = dc.conv2d_reference(
            x, wt, bias, stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups
        )
        return np.maximum(ref, 0.0) if self.relu else ref

    def name(self) -> str:
        s = self.shape()
        parts = [
            self.kind,
            f"{s.ci}to{s.co}g{s.groups}",
            f"k{s.kh}x{s.kw}",
            f"s{s.sh}x{s.sw}",
            f"p{s.pt}.{s.pb}.{s.pl}.{s.pr}",
            f"d{s.dh}x{s.dw}",
            f"n{self.batch}t{self.threads}",
        ]
        return "-".join(parts) + ("-bias" if self.bias else "") + ("-relu" if self.relu else "")


def fitting_config(
    shape: ConvShape,
    *,
    vectors: int = 1,
    wob: int = 4,
    cib_vectors: int | None = None,
    rows: int | None = None,
    parallel: str = "co",
    threads: int = 1,
    unroll: int = 1,
) -> dc.KernelConfig:
    """A KernelConfig for `shape` on the host ISA with each block clamped to the layer (see KernelConfig.check_fits)."""
    kind = kernel_kind(shape, LANES)
    per_group = kind == "grouped"
    co = shape.cog if per_group else shape.co
    ci = shape.cig if per_group else shape.ci
    vectors = max(1, min(vectors, -(-co // LANES)))
    wob = max(1, min(wob, shape.kernel_view().wo))
    cib = None
    if kind in ("depthwise", "grouped-packed"):
        unroll = 1
    elif cib_vectors is not None:
        cib = min(cib_vectors, -(-ci // LANES)) * LANES
    rows = None if rows is None else min(rows, shape.ho)
    return dc.KernelConfig(
        HOST, vectors * LANES, wob, cib=cib, rows=rows, parallel=parallel, threads=threads, unroll=unroll
    )


def assert_close(y: np.ndarray, ref: np.ndarray, shape: ConvShape) -> None:
    assert y.shape == ref.shape, f"shape {y.shape}, expected {ref.shape}"
    scale = max(float(np.abs(ref).max()), 1e-30)
    err = float(np.abs(y.astype(np.float64) - ref).max()) / scale
    bound = tolerance(shape.cig, shape.kh, shape.kw)
    assert err <= bound, f"relative error {err:.3g} > {bound:.3g} on {shape.describe()}"


def run_blocked(layer: Layer, x: np.ndarray, wt: np.ndarray, bias: np.ndarray | None) -> dc.BlockedTensor:
    packed = dc.pack_weights(
        wt,
        bias,
        input_size=(layer.h, layer.w),
        stride=layer.stride,
        padding=layer.padding,
        dilation=layer.dilation,
        groups=layer.groups,
        config=layer.config(),
    )
    return dc.conv2d_blocked(dc.to_blocked(x, threads=1), packed, relu=layer.relu)


def direct_loops(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray | None,
    stride: tuple[int, int],
    padding: tuple[int, int, int, int],
    dilation: tuple[int, int],
    groups: int,
) -> np.ndarray:
    """The convolution written out as its definition: for every output pixel and tap, the input pixel it reads is
    computed from the index arithmetic (nothing padded, nothing windowed); taps outside the input read zero."""
    n, ci, h, wd = x.shape
    co, cig, kh, kw = w.shape
    (sh, sw), (pt, pb, pl, pr), (dh, dw) = stride, padding, dilation
    cog = co // groups
    ho = (h + pt + pb - (kh - 1) * dh - 1) // sh + 1
    wo = (wd + pl + pr - (kw - 1) * dw - 1) // sw + 1
    out = np.zeros((n, co, ho, wo))
    for oy in range(ho):
        for ox in range(wo):
            for ky in range(kh):
                iy = oy * sh - pt + ky * dh
                if not 0 <= iy < h:
                    continue
                for kx in range(kw):
                    ix = ox * sw - pl + kx * dw
                    if not 0 <= ix < wd:
                        continue
                    for o in range(co):
                        first = (o // cog) * cig
                        for i in range(cig):
                            out[:, o, oy, ox] += float(w[o, i, ky, kx]) * x[:, first + i, iy, ix].astype(np.float64)
    if bias is not None:
        out += np.asarray(bias, np.float64)[None, :, None, None]
    return out


# ---------------------------------------------------------------------------------------------------- the sweep

SWEEP = [
    # depthwise: groups = C_i
    Layer(16, 16, 16, 9, 9, 3, padding=1, batch=2, wob=4),
    Layer(
        13, 13, 13, 11, 10, 5, stride=2, padding=(2, 1, 0, 3), dilation=2, threads=2, relu=True, rows=2, parallel="rows"
    ),
    Layer(20, 20, 20, 13, 12, 3, stride=2, padding=(4, 4, 0, 3), dilation=4, threads=2, vectors=3, wob=2),
    Layer(32, 32, 32, 7, 9, 1, wob=6),  # 1x1, groups 32: one long row
    Layer(6, 6, 6, 12, 7, (1, 7), padding=(0, 0, 3, 2), bias=False, wob=3),
    Layer(12, 24, 12, 10, 9, 3, padding=(3, 3, 1, 2), dilation=3, relu=True, vectors=2, wob=5),  # multiplier 2
    Layer(8, 16, 8, 9, 11, 7, padding=3, batch=2, bias=False, vectors=2, wob=2),  # multiplier 2, 7x7
    # grouped-packed: groups narrower than a vector, or not whole vectors
    Layer(8, 8, 2, 10, 10, 3, padding=2, dilation=2, wob=4),  # 4 channels per group
    Layer(12, 12, 3, 11, 11, 7, padding=(3, 2, 1, 3), relu=True, wob=3),  # 4 per group, 7x7
    Layer(24, 24, 2, 9, 9, 5, stride=2, padding=(2, 1, 1, 2), threads=2, vectors=2, wob=2),  # 12 per group
    Layer(80, 80, 4, 8, 8, 1, stride=2, batch=2, vectors=3, wob=4),  # 20 per group, 1x1 stride 2
    Layer(96, 96, 32, 9, 9, 3, stride=2, padding=(1, 0, 1, 0), threads=2, vectors=2, wob=3, rows=1, parallel="rows"),
    Layer(32, 16, 4, 9, 9, 3, padding=1, dilation=(1, 2)),  # 8 in, 4 out per group
    Layer(6, 10, 2, 8, 9, 3, padding=(1, 1, 0, 0), relu=True, wob=5),  # 3 in, 5 out per group
    Layer(12, 24, 4, 13, 13, 5, stride=2, padding=(1, 0, 2, 1), dilation=2, vectors=2, wob=2),  # 3 in, 6 out
    # grouped-window: groups not whole vectors but wide enough (on 4, 8 and 16 lanes)
    Layer(136, 136, 4, 9, 9, 1, batch=2, relu=True, wob=5),  # 34 per group, 1x1: one long row; a tail on 16 lanes
    Layer(
        100,
        50,
        2,
        11,
        10,
        3,
        stride=2,
        padding=(1, 2, 0, 1),
        dilation=2,
        threads=2,
        vectors=2,
        wob=3,
        cib_vectors=1,
        rows=2,
        parallel="rows",
    ),  # 50 in, 25 out per group, windows cut into cache blocks
    Layer(100, 60, 2, 9, 9, 5, padding=2, bias=False, vectors=3, wob=2),  # 5x5, a register block over both groups
    # grouped: each group's channels are whole vectors
    Layer(16, 32, 2, 9, 9, 3, padding=1, batch=2, relu=True, vectors=2, wob=4, cib_vectors=1),  # 8 per group
    Layer(48, 48, 3, 11, 11, 3, stride=2, padding=(0, 2, 2, 0), dilation=2, threads=2, cib_vectors=1, parallel="rows"),
    Layer(192, 64, 4, 7, 7, 3, padding=1, vectors=2, wob=7, cib_vectors=2, unroll=2),  # 48 in, 16 out per group
    Layer(16, 16, 2, 13, 13, 3, padding=(4, 3, 2, 4), dilation=4, threads=2, wob=5),
    Layer(16, 32, 2, 8, 8, 1, vectors=2, wob=8),  # 1x1: one long row per group
    # plain, dilated
    Layer(5, 11, 1, 10, 11, 3, stride=2, padding=(2, 1, 0, 3), dilation=2, vectors=2, wob=3),
    Layer(9, 8, 1, 12, 12, 5, padding=(3, 2, 4, 1), dilation=3, threads=2, relu=True, wob=2, cib_vectors=1),
]


def test_sweep_exercises_every_kernel_kind() -> None:
    assert {layer.kind for layer in SWEEP} == set(KERNEL_KINDS)


@pytest.mark.compiler
@pytest.mark.parametrize("layer", SWEEP, ids=[layer.name() for layer in SWEEP])
def test_grouped_layers_match_reference(rng: np.random.Generator, layer: Layer) -> None:
    x, wt, bias = layer.operands(rng)
    ref = layer.reference(x, wt, bias)
    if layer.relu:  # through the blocked path, where ReLU is fused
        yb = run_blocked(layer, x, wt, bias)
        # Lanes past C_o stay zero, so the next layer may read whole blocks.
        flat = yb.data.transpose(0, 1, 4, 2, 3).reshape(layer.batch, -1, *yb.data.shape[2:4])
        assert not flat[:, layer.co :].any()
        y = dc.from_blocked(yb)
    else:
        y = dc.conv2d(
            x,
            wt,
            bias,
            stride=layer.stride,
            padding=layer.padding,
            dilation=layer.dilation,
            groups=layer.groups,
            config=layer.config(),
        )
    assert_close(y, ref, layer.shape())


def _first_of_each_kind() -> list[Layer]:
    return [next(layer for layer in SWEEP if layer.kind == kind) for kind in KERNEL_KINDS]


@pytest.mark.compiler
@pytest.mark.parametrize("layer", _first_of_each_kind(), ids=list(KERNEL_KINDS))
def test_result_does_not_depend_on_threads_or_split(rng: np.random.Generator, layer: Layer) -> None:
    """Threads and the parallel axis are run-time arguments of one binary: every split gives the same bits."""
    x, wt, bias = layer.operands(rng)
    results = [
        run_blocked(replace(layer, threads=threads, parallel=parallel, rows=1), x, wt, bias).data
        for threads in (1, 2)
        for parallel in ("co", "rows")
    ]
    for y in results[1:]:
        np.testing.assert_array_equal(y, results[0])


def _wide_sweep() -> list[Layer]:
    """Every grouping against every kernel size, with dilation, stride, padding, batch, threads and register blocks
    drawn from a fixed seed (the list is the same on every run)."""
    draw = np.random.default_rng(1802)
    groupings = [
        (16, 16, 16),
        (13, 13, 13),
        (40, 40, 40),
        (8, 16, 8),
        (12, 24, 12),
        (6, 6, 2),
        (12, 12, 3),
        (16, 16, 4),
        (24, 24, 2),
        (20, 20, 2),
        (64, 64, 32),
        (96, 96, 32),
        (12, 36, 4),
        (16, 32, 2),
        (48, 96, 3),
        (64, 64, 4),
        (192, 64, 4),
        (136, 136, 4),
        (100, 60, 2),
        (7, 9, 1),
    ]
    layers = []
    for ci, co, groups in groupings:
        for k in (1, 3, 5, 7):
            h, w = (int(v) for v in draw.integers(5, 14, size=2))
            pads = tuple(int(v) for v in draw.integers(0, 4, size=4))
            dilations = [
                d for d in (1, 2, 3, 4) if (k - 1) * d + 1 <= min(h + pads[0] + pads[1], w + pads[2] + pads[3])
            ]
            layers.append(
                Layer(
                    ci,
                    co,
                    groups,
                    h,
                    w,
                    k,
                    stride=int(draw.integers(1, 3)),
                    padding=pads,
                    dilation=int(draw.choice(dilations)),
                    batch=int(draw.integers(1, 3)),
                    threads=int(draw.integers(1, 3)),
                    bias=bool(draw.integers(0, 2)),
                    relu=bool(draw.integers(0, 2)),
                    vectors=int(draw.integers(1, 4)),
                    wob=int(draw.integers(1, 9)),
                    cib_vectors=None if draw.integers(0, 2) else 1,
                    parallel=str(draw.choice(["co", "rows"])),
                    rows=int(draw.integers(1, 4)),
                )
            )
    return layers


WIDE_SWEEP = _wide_sweep()


def test_wide_sweep_exercises_every_kernel_kind_kernel_size_and_dilation() -> None:
    assert {layer.kind for layer in WIDE_SWEEP} == set(KERNEL_KINDS)
    assert {layer.kh for layer in WIDE_SWEEP} == {1, 3, 5, 7}
    assert {layer.shape().dh for layer in WIDE_SWEEP if layer.kh > 1} == {1, 2, 3, 4}
    assert {layer.shape().sh for layer in WIDE_SWEEP} == {1, 2}


@pytest.mark.slow
@pytest.mark.compiler
@pytest.mark.parametrize("layer", WIDE_SWEEP, ids=[layer.name() for layer in WIDE_SWEEP])
def test_wide_sweep_matches_reference(rng: np.random.Generator, layer: Layer) -> None:
    x, wt, bias = layer.operands(rng)
    y = dc.from_blocked(run_blocked(layer, x, wt, bias))
    assert_close(y, layer.reference(x, wt, bias), layer.shape())


# Below, at and above the vector width; 34 spans more than two vectors without filling them (grouped-window).
CHANNELS_PER_GROUP = st.sampled_from((1, 2, 3, 4, 5, 7, 8, 12, 16, 34))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 2),
    groups=st.integers(1, 6),
    cig=CHANNELS_PER_GROUP,
    cog=CHANNELS_PER_GROUP,
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    kh=st.integers(1, 5),
    kw=st.integers(1, 5),
    stride=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    dilation=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    pads=st.tuples(*[st.integers(0, 2)] * 4),
    vectors=st.integers(1, 2),
    wob=st.integers(1, 6),
    threads=st.integers(1, 2),
    relu=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
@pytest.mark.slow
@pytest.mark.compiler
def test_property_random_grouped_layers(
    n, groups, cig, cog, h, w, kh, kw, stride, dilation, pads, vectors, wob, threads, relu, seed
) -> None:
    (dh, dw), (pt, pb, pl, pr) = dilation, pads
    assume((kh - 1) * dh + 1 <= h + pt + pb and (kw - 1) * dw + 1 <= w + pl + pr)  # invalid layers: test_errors
    layer = Layer(
        cig * groups,
        cog * groups,
        groups,
        h,
        w,
        (kh, kw),
        stride=stride,
        padding=pads,
        dilation=dilation,
        batch=n,
        threads=threads,
        relu=relu,
        vectors=vectors,
        wob=wob,
    )
    x, wt, bias = layer.operands(np.random.default_rng(seed))
    y = dc.from_blocked(run_blocked(layer, x, wt, bias))
    assert_close(y, layer.reference(x, wt, bias), layer.shape())


# ---------------------------------------------------------------------------------------------------- the default


DEFAULT_CONFIG_LAYERS = [
    Layer(24, 24, 24, 10, 10, 3, stride=2, padding=(1, 0, 1, 0)),  # depthwise
    Layer(24, 48, 24, 9, 9, 5, padding=4, dilation=2),  # depthwise, channel multiplier 2
    Layer(32, 32, 4, 9, 9, 3, padding=1),  # grouped-packed (on 8 lanes)
    Layer(32, 64, 2, 9, 9, 3, padding=(2, 2, 1, 1), dilation=(2, 1)),  # grouped (on 8 lanes)
    Layer(16, 24, 1, 9, 9, 3, padding=3, dilation=3),  # plain, dilated
]


@pytest.mark.compiler
@pytest.mark.parametrize("layer", DEFAULT_CONFIG_LAYERS, ids=[layer.name() for layer in DEFAULT_CONFIG_LAYERS])
def test_default_config_runs_grouped_and_dilated_layers(rng: np.random.Generator, layer: Layer) -> None:
    """config=None: the configuration production picks fits the layer and computes the right answer."""
    x, wt, bias = layer.operands(rng)
    y = dc.conv2d(
        x, wt, bias, stride=layer.stride, padding=layer.padding, dilation=layer.dilation, groups=layer.groups, threads=1
    )
    assert_close(y, layer.reference(x, wt, bias), layer.shape())


@pytest.mark.compiler
def test_conv2d_layer_with_groups_and_dilation(rng: np.random.Generator) -> None:
    layer = replace(DEFAULT_CONFIG_LAYERS[1], relu=True, batch=2)
    x, wt, bias = layer.operands(rng)
    conv = dc.Conv2d(
        wt,
        bias,
        stride=layer.stride,
        padding=layer.padding,
        dilation=layer.dilation,
        groups=layer.groups,
        activation="relu",
        threads=1,
    )
    assert (conv.in_channels, conv.out_channels) == (layer.ci, layer.co)
    assert_close(conv(x), layer.reference(x, wt, bias), layer.shape())


# ---------------------------------------------------------------------------------------------------- the reference

TINY = [
    # (N, C_i, C_o, H, W, kh, kw, stride, padding (top, bottom, left, right), dilation, groups)
    (2, 4, 6, 6, 7, 3, 3, (1, 1), (1, 0, 2, 1), (2, 1), 2),
    (1, 6, 6, 7, 5, 3, 2, (2, 1), (0, 2, 1, 0), (1, 3), 6),  # depthwise
    (1, 3, 6, 8, 8, 2, 3, (1, 2), (2, 1, 0, 3), (3, 2), 3),  # depthwise, channel multiplier 2
    (1, 6, 4, 5, 6, 1, 1, (2, 2), (1, 1, 0, 0), (1, 1), 2),  # 1x1 grouped, padded
    (1, 9, 6, 7, 7, 3, 3, (1, 1), (2, 2, 2, 2), (4, 4), 3),  # dilated past the input on every side
    (1, 2, 3, 5, 5, 5, 5, (1, 1), (0, 0, 0, 0), (1, 1), 1),
]


def _tiny(case: tuple, rng: np.random.Generator):
    n, ci, co, h, w, kh, kw, stride, padding, dilation, groups = case
    x = rng.standard_normal((n, ci, h, w)).astype(np.float32)
    wt = rng.standard_normal((co, ci // groups, kh, kw)).astype(np.float32)
    bias = rng.standard_normal(co).astype(np.float32)
    return x, wt, bias, dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


@pytest.mark.parametrize("case", TINY, ids=[f"g{c[-1]}-d{c[-2][0]}x{c[-2][1]}" for c in TINY])
def test_reference_matches_direct_loops(rng: np.random.Generator, case: tuple) -> None:
    x, wt, bias, args = _tiny(case, rng)
    expected = direct_loops(x, wt, bias, **args)
    np.testing.assert_allclose(dc.conv2d_reference(x, wt, bias, **args), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        dc.conv2d_reference(x, wt, None, **args), expected - bias[None, :, None, None], atol=1e-12
    )


def _torch_conv(x, wt, bias, stride, padding, dilation, groups) -> np.ndarray:
    torch = pytest.importorskip("torch", reason="the comparison with torch needs torch (the `bench` extra)")
    functional = torch.nn.functional
    pt, pb, pl, pr = padding
    tx = functional.pad(torch.from_numpy(x.astype(np.float64)), (pl, pr, pt, pb))
    tb = None if bias is None else torch.from_numpy(bias.astype(np.float64))
    out = functional.conv2d(
        tx, torch.from_numpy(wt.astype(np.float64)), tb, stride=stride, dilation=dilation, groups=groups
    )
    return out.numpy()


@pytest.mark.parametrize(
    "case",
    TINY + SWEEP + DEFAULT_CONFIG_LAYERS,
    ids=[f"tiny-{i}" for i in range(len(TINY))] + [layer.name() for layer in SWEEP + DEFAULT_CONFIG_LAYERS],
)
def test_reference_matches_torch(rng: np.random.Generator, case: tuple | Layer) -> None:
    """The reference against torch in float64, on the tiny cases and on every geometry the kernels are tested on."""
    if isinstance(case, Layer):
        x, wt, bias = case.operands(rng)
        s = case.shape()
        args = dict(stride=(s.sh, s.sw), padding=(s.pt, s.pb, s.pl, s.pr), dilation=(s.dh, s.dw), groups=s.groups)
    else:
        x, wt, bias, args = _tiny(case, rng)
    expected = _torch_conv(x, wt, bias, **args)
    np.testing.assert_allclose(dc.conv2d_reference(x, wt, bias, **args), expected, rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------------------------------- memory

# Python-level bookkeeping of one call (the BlockedTensor wrapper, cffi buffer objects) is a few hundred bytes.
BOOKKEEPING_BYTES = 16 * 1024

MEMORY_LAYERS = [
    Layer(64, 64, 64, 28, 28, 3, padding=2, dilation=2, threads=2, vectors=2, wob=6),
    Layer(48, 48, 4, 20, 20, 3, padding=1, threads=2, vectors=2, wob=4),
    Layer(32, 64, 2, 20, 20, 3, padding=1, threads=2, vectors=2, wob=4, cib_vectors=1),
    Layer(136, 136, 4, 14, 14, 1, threads=2, wob=7),  # 34 per group: windows on 8 and 16 lanes
]


def test_memory_layers_cover_the_new_kinds() -> None:
    assert [layer.kind for layer in MEMORY_LAYERS] == ["depthwise", "grouped-packed", "grouped", "grouped-window"]


@pytest.mark.compiler
@pytest.mark.parametrize("layer", MEMORY_LAYERS, ids=[layer.kind for layer in MEMORY_LAYERS])
def test_blocked_convolution_allocates_only_its_output(rng: np.random.Generator, layer: Layer, peak_bytes) -> None:
    x, wt, bias = layer.operands(rng)
    packed = dc.pack_weights(
        wt,
        bias,
        input_size=(layer.h, layer.w),
        padding=layer.padding,
        dilation=layer.dilation,
        groups=layer.groups,
        config=layer.config(),
    )
    xb = dc.to_blocked(x)
    out = dc.conv2d_blocked(xb, packed, relu=True)  # warm: kernel loaded, thread pool started
    assert out.data.nbytes > BOOKKEEPING_BYTES  # else the bounds below would prove nothing

    with_out = peak_bytes(lambda: dc.conv2d_blocked(xb, packed, relu=True, out=out))
    assert with_out < BOOKKEEPING_BYTES, f"{with_out} bytes allocated with a preallocated output"
    fresh = peak_bytes(lambda: dc.conv2d_blocked(xb, packed, relu=True))
    assert out.data.nbytes <= fresh < out.data.nbytes + BOOKKEEPING_BYTES
    assert_close(dc.from_blocked(out), np.maximum(layer.reference(x, wt, bias), 0.0), layer.shape())


@pytest.mark.compiler
@pytest.mark.parametrize("layer", MEMORY_LAYERS, ids=[layer.kind for layer in MEMORY_LAYERS])
def test_compiled_kernel_calls_no_allocator(layer: Layer) -> None:
    """The library of each new kind imports no heap or stack allocator: nothing in C can allocate per call."""
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("needs nm (binutils) to list the kernel library's imported symbols")
    kernel = runtime.load(layer.config(), layer.shape())
    assert kernel.kind == layer.kind
    listing = subprocess.run(
        [nm, "-D", "--undefined-only", str(kernel.path)], capture_output=True, text=True, check=True
    )
    imported = {line.split()[-1].split("@")[0] for line in listing.stdout.splitlines() if line.strip()}
    allocators = {"malloc", "calloc", "realloc", "posix_memalign", "aligned_alloc", "memalign", "valloc", "mmap"}
    assert imported & (allocators | {"alloca", "__libc_malloc", "free"}) == set(), imported
    assert any(name.startswith("GOMP_") for name in imported)  # the listing is real: OpenMP is imported


# ---------------------------------------------------------------------------------------------------- disk cache


@pytest.mark.compiler
def test_new_kernels_load_from_the_disk_cache_without_compiling(monkeypatch, tmp_path, rng) -> None:
    """With the in-process kernel cache emptied, the same layers find their libraries on disk: no compiler runs."""
    monkeypatch.setenv("DIRECTCONV_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(runtime, "_by_request", {})
    monkeypatch.setattr(runtime, "_by_library", {})
    operands = [layer.operands(rng) for layer in MEMORY_LAYERS]

    def run_all() -> list[np.ndarray]:
        return [dc.from_blocked(run_blocked(layer, *ops)) for layer, ops in zip(MEMORY_LAYERS, operands, strict=True)]

    compiled, hits = compiler.stats.compiled, compiler.stats.hits
    first = run_all()
    # The kernels, and the layout library if this process had not loaded it yet.
    assert compiler.stats.compiled - compiled >= len(MEMORY_LAYERS)
    built = sorted(p.name for p in tmp_path.rglob("conv-*.so"))
    assert len(built) == len(MEMORY_LAYERS)

    runtime._by_request.clear()
    runtime._by_library.clear()
    compiled, hits = compiler.stats.compiled, compiler.stats.hits
    second = run_all()
    assert compiler.stats.compiled == compiled
    assert compiler.stats.hits - hits == len(MEMORY_LAYERS)
    assert sorted(p.name for p in runtime.loaded_libraries()) == built
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


SECOND_PROCESS = textwrap.dedent(
    """
    import json, numpy as np, directconv as dc
    from directconv.core.isa import get_isa, host_isa
    from directconv.kernels import compiler
    lanes = get_isa(host_isa()).lanes
    # (C_i, C_o, groups): depthwise, grouped-packed, grouped
    for ci, co, groups in ((16, 16, 16), (12, 12, 3), (2 * lanes, 4 * lanes, 2)):
        x = np.ones((1, ci, 9, 9), np.float32); w = np.ones((co, ci // groups, 3, 3), np.float32)
        config = dc.KernelConfig(host_isa(), lanes, 3, threads=1)
        y = dc.conv2d(x, w, padding=2, dilation=2, groups=groups, config=config)
        assert y[0, 0, 4, 4] == 9 * (ci // groups), y[0, 0, 4, 4]
    print(json.dumps({"compiled": compiler.stats.compiled, "hits": compiler.stats.hits}))
    """
)


def _second_process(cache: str) -> dict:
    import json

    env = {**os.environ, "DIRECTCONV_CACHE_DIR": cache}
    done = subprocess.run([sys.executable, "-c", SECOND_PROCESS], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.compiler
def test_second_process_does_not_compile_the_new_kernels(tmp_path) -> None:
    first = _second_process(str(tmp_path))
    second = _second_process(str(tmp_path))
    # Three libraries, one kernel per layer: these kinds convert NCHW inside the kernel (dc_conv_nchw), so the
    # conversion library is not needed.
    assert first == {"compiled": 3, "hits": 0}
    assert second == {"compiled": 0, "hits": 3}


@pytest.mark.compiler
def test_one_pass_nchw_call_takes_a_strided_view(rng: np.random.Generator) -> None:
    """The one-pass kernels read NCHW planes in place; a view with strides is copied first, as to_blocked does."""
    x = rng.standard_normal((1, 16, 9, 20)).astype(np.float32)[..., ::2]
    w = rng.standard_normal((16, 1, 3, 3)).astype(np.float32)
    assert not x.flags.c_contiguous
    y = dc.conv2d(x, w, padding=1, groups=16, threads=1)
    ref = dc.conv2d_reference(x, w, padding=1, groups=16)
    assert np.abs(y - ref).max() <= tolerance(1, 3, 3) * np.abs(ref).max()
