"""The fused kernel entry (dc_conv_fused) that graphs call: every activation, a residual added before it, and
input, output and residual as slices of larger blocked buffers, in every kernel kind, against the reference.

Tolerance: kernels.reference.tolerance over the products one output sums, scaled by the largest activation slope
(1 for all here); sigmoid-type activations use a vector exp with relative error about 1e-7, far below it.
"""

from __future__ import annotations

import numpy as np
import pytest

import directconv as dc
from directconv.core.isa import get_isa, host_isa
from directconv.core.shape import ConvShape, kernel_kind
from directconv.kernels import layout, runtime
from directconv.kernels.reference import tolerance

pytestmark = pytest.mark.compiler

HOST = host_isa()
LANES = get_isa(HOST).lanes


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


ACTS = {
    "none": (0.0, 0.0, lambda x, a, b: x),
    "relu": (0.0, 0.0, lambda x, a, b: np.maximum(x, 0)),
    "clip": (0.0, 6.0, lambda x, a, b: np.clip(x, a, b)),
    "leaky_relu": (0.1, 0.0, lambda x, a, b: np.where(x > 0, x, a * x)),
    "sigmoid": (0.0, 0.0, lambda x, a, b: _sigmoid(x)),
    "hard_sigmoid": (0.2, 0.5, lambda x, a, b: np.clip(a * x + b, 0, 1)),
    "hard_swish": (0.0, 0.0, lambda x, a, b: x * np.clip(x / 6 + 0.5, 0, 1)),
    "silu": (0.0, 0.0, lambda x, a, b: x * _sigmoid(x)),
}

# (ci, co, groups, kernel, stride, padding): one layer per kernel kind (on 8 or 16 lanes; others may map two to one)
LAYERS = {
    "plain": (13, 20, 1, 3, 1, 1),
    "grouped": (4 * LANES, 2 * LANES, 2, 3, 2, 1),
    "depthwise": (24, 24, 24, 3, 1, 1),
    "grouped-packed": (24, 24, 6, 3, 1, (0, 1, 1, 0)),
}


def _run(name: str, act: str, *, residual: bool, views: bool, cib_vectors: int | None = None, batch: int = 2):
    ci, co, groups, k, stride, padding = LAYERS[name]
    shape = ConvShape.from_args(ci, co, 9, 11, k, k, stride, padding, 1, groups)
    kind = kernel_kind(shape, LANES)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((batch, ci, shape.h, shape.w)).astype(np.float32)
    w = rng.standard_normal((co, ci // groups, k, k)).astype(np.float32)
    bias = rng.standard_normal(co).astype(np.float32)
    res = rng.standard_normal((batch, co, shape.ho, shape.wo)).astype(np.float32)
    alpha, beta, f = ACTS[act]
    expected = dc.conv2d_reference(x, w, bias, stride=stride, padding=padding, groups=groups)
    if residual:
        expected = expected + res
    expected = f(expected, alpha, beta)

    cib = None
    if kind in ("plain", "grouped") and cib_vectors is not None:
        cib = cib_vectors * LANES
    config = dc.KernelConfig(HOST, cob=LANES, wob=4, cib=cib)
    kernel = runtime.load(config, shape)
    wp = layout.pack_weights(w, LANES, config.cob, groups)
    bp = layout.pack_bias(bias, shape, LANES, config.cob)
    nbi, nbo = layout.blocks(ci, LANES), layout.blocks(co, LANES)
    pad_in, pad_out, pad_res = (2, 1, 3) if views else (0, 0, 0)
    xb = np.zeros((batch, nbi + pad_in + 1 if views else nbi, shape.h, shape.w, LANES), np.float32)
    xb[:, pad_in : pad_in + nbi] = layout.nchw_to_blocked(x, LANES)
    out = np.full((batch, nbo + pad_out + 2 if views else nbo, shape.ho, shape.wo, LANES), np.nan, np.float32)
    rb = None
    if residual:
        rb = np.zeros((batch, nbo + pad_res if views else nbo, shape.ho, shape.wo, LANES), np.float32)
        rb[:, pad_res : pad_res + nbo] = layout.nchw_to_blocked(res, LANES)
    kernel.run_fused(
        xb, wp, bp, out, cib=cib, rows=None, parallel="co", threads=2,
        epilogue=runtime.Epilogue(act, alpha, beta), in_first=pad_in, out_first=pad_out,
        residual=rb, res_first=pad_res,
    )  # fmt: skip
    got = layout.blocked_to_nchw(np.ascontiguousarray(out[:, pad_out : pad_out + nbo]), co)
    np.testing.assert_allclose(got, expected, rtol=tolerance(ci // groups, k, k), atol=tolerance(ci // groups, k, k))
    if views:  # blocks outside the slice are untouched
        assert np.isnan(out[:, :pad_out]).all() and np.isnan(out[:, pad_out + nbo :]).all()


@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize("act", list(ACTS))
def test_every_activation_in_every_kind(name: str, act: str) -> None:
    _run(name, act, residual=False, views=False)


@pytest.mark.parametrize("name", list(LAYERS))
def test_residual_and_views(name: str) -> None:
    _run(name, "relu", residual=True, views=True)


# The store adds a residual in registers before ReLU or nothing, and leaves it to dc_finish before any other
# activation (codegen.store_tile): each way, in every kind.
@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize("act", ["none", "relu", "clip", "hard_swish"])
def test_residual_before_each_kind_of_activation(name: str, act: str) -> None:
    _run(name, act, residual=True, views=False)


def test_epilogue_runs_once_after_the_last_cache_block() -> None:
    # With C_i split into cache blocks, partial sums go through the output: the residual and the activation must
    # be applied once, at the end, or they would be counted per block.
    _run("plain", "sigmoid", residual=True, views=True, cib_vectors=1)


def test_bad_views_are_refused() -> None:
    shape = ConvShape.from_args(8, 8, 5, 5, 3, 3, 1, 1)
    config = dc.KernelConfig(HOST, cob=LANES, wob=2)
    kernel = runtime.load(config, shape)
    wp = layout.pack_weights(np.zeros((8, 8, 3, 3), np.float32), LANES, LANES)
    bp = layout.pack_bias(None, shape, LANES, LANES)
    nb = layout.blocks(8, LANES)
    x = np.zeros((1, nb, 5, 5, LANES), np.float32)
    out = np.zeros((1, nb, 5, 5, LANES), np.float32)
    args = dict(cib=None, rows=None, parallel="co", threads=1)
    with pytest.raises(ValueError, match=r"output channel blocks \[1, 1\+1\) must lie within its 1 blocks"):
        kernel.run_fused(x, wp, bp, out, out_first=1, **args)
    with pytest.raises(ValueError, match="residual must not overlap the output"):
        kernel.run_fused(x, wp, bp, out, residual=out, **args)
    with pytest.raises(ValueError, match="activation must be one of"):
        runtime.Epilogue("gelu")


# --- the NCHW-input entry (dc_conv_fused_x) of layers with one input-channel block: a network's first layer ----------

# (ci, co, kernel, stride, padding, dilation): 3 channels as an image has, 1, and exactly one full block.
FIRST_LAYERS = [
    (3, 20, 7, 2, 3, 1),
    (3, 2 * LANES, 3, 1, (0, 1, 2, 1), 2),
    (1, 5, 5, 3, 0, 1),
    (LANES, LANES + 3, 3, 1, 1, 1),
]


@pytest.mark.parametrize("ci, co, k, stride, padding, dilation", FIRST_LAYERS)
def test_nchw_input_entry_matches_the_reference_with_views_residual_and_activation(
    ci: int, co: int, k: int, stride: int, padding: object, dilation: int
) -> None:
    shape = ConvShape.from_args(ci, co, 13, 12, k, k, stride, padding, dilation)
    rng = np.random.default_rng(3)
    batch, skip = 2, 2  # the layer reads channels [2, 2 + ci) of a larger NCHW tensor
    x = rng.standard_normal((batch, ci + skip + 1, shape.h, shape.w)).astype(np.float32)
    w = rng.standard_normal((co, ci, k, k)).astype(np.float32)
    bias = rng.standard_normal(co).astype(np.float32)
    res = rng.standard_normal((batch, co, shape.ho, shape.wo)).astype(np.float32)
    config = dc.KernelConfig(HOST, cob=LANES, wob=4)
    kernel = runtime.load(config, shape)
    assert kernel.reads_nchw
    wp = layout.pack_weights(w, LANES, config.cob)
    bp = layout.pack_bias(bias, shape, LANES, config.cob)
    out = np.full(kernel.output_shape(batch), np.nan, np.float32)
    kernel.run_fused(
        x, wp, bp, out, cib=None, rows=3, parallel="rows", threads=2, epilogue=runtime.Epilogue("relu"),
        in_first=skip, residual=layout.nchw_to_blocked(res, LANES), nchw_input=True,
    )  # fmt: skip
    conv = dc.conv2d_reference(x[:, skip : skip + ci], w, bias, stride=stride, padding=padding, dilation=dilation)
    expected = np.maximum(conv + res, 0)
    np.testing.assert_allclose(
        layout.blocked_to_nchw(out, co), expected, rtol=tolerance(ci, k, k), atol=tolerance(ci, k, k)
    )


def test_nchw_input_entry_is_refused_where_the_kernel_has_none_and_for_bad_views() -> None:
    wide = ConvShape.from_args(LANES + 1, 8, 5, 5, 3, 3, 1, 1)
    config = dc.KernelConfig(HOST, cob=LANES, wob=2)
    kernel = runtime.load(config, wide)
    assert not kernel.reads_nchw
    wp = layout.pack_weights(np.zeros((8, LANES + 1, 3, 3), np.float32), LANES, LANES)
    bp = layout.pack_bias(None, wide, LANES, LANES)
    out = np.zeros(kernel.output_shape(1), np.float32)
    args = dict(cib=None, rows=None, parallel="co", threads=1, nchw_input=True)
    with pytest.raises(ValueError, match="reads blocked input only"):
        kernel.run_fused(np.zeros((1, LANES + 1, 5, 5), np.float32), wp, bp, out, **args)
    first = ConvShape.from_args(3, 8, 5, 5, 3, 3, 1, 1)
    kernel = runtime.load(config, first)
    wp = layout.pack_weights(np.zeros((8, 3, 3, 3), np.float32), LANES, LANES)
    bp = layout.pack_bias(None, first, LANES, LANES)
    with pytest.raises(ValueError, match=r"input channels \[2, 2\+3\) must lie within its 4 channels per image"):
        kernel.run_fused(np.zeros((1, 4, 5, 5), np.float32), wp, bp, out, in_first=2, **args)
    with pytest.raises(ValueError, match="must be a 4-d NCHW array"):
        kernel.run_fused(np.zeros((1, 1, 5, 5, LANES), np.float32), wp, bp, out, **args)


def test_conv2d_nchw_reads_a_first_layers_input_without_converting_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from directconv.kernels import convert

    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 17, 16)).astype(np.float32)
    w = rng.standard_normal((10, 3, 5, 5)).astype(np.float32)
    packed = dc.pack_weights(w, input_size=(17, 16), stride=2, padding=2, config=dc.KernelConfig(HOST, LANES, 4))

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a first layer's input must not be converted")

    monkeypatch.setattr(convert, "to_blocked", refuse)
    got = dc.conv2d_nchw(x, packed, relu=True, threads=2)
    expected = np.maximum(dc.conv2d_reference(x, w, stride=2, padding=2), 0)
    np.testing.assert_allclose(got, expected, rtol=tolerance(3, 5, 5), atol=tolerance(3, 5, 5))
