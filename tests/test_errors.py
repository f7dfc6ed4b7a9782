"""Bad input gets a ValueError or TypeError that says what was expected and what was given."""

from __future__ import annotations

import numpy as np
import pytest

import directconv as dc
from directconv.core.isa import ISAS, host_isa, host_isas

pytestmark = pytest.mark.compiler


@pytest.fixture
def layer(rng, random_layer):
    return random_layer(rng, 1, 4, 8, 6, 6, 3, 3)


def test_wrong_ndim(layer):
    x, w, _ = layer
    with pytest.raises(ValueError, match=r"x must be 4-D \(NCHW\), got 3-D with shape \(4, 6, 6\)"):
        dc.conv2d(x[0], w)
    with pytest.raises(ValueError, match=r"w must be 4-D \(OIHW.*got 2-D"):
        dc.conv2d(x, w[:, :, 0, 0])


def test_channel_mismatch(layer):
    x, w, _ = layer
    with pytest.raises(
        ValueError,
        match=r"channel mismatch: x has C_i=4 channels .*w's second dimension must be C_i / groups = 4, got 3",
    ):
        dc.conv2d(x, w[:, :3])


def test_bias_length(layer):
    x, w, b = layer
    with pytest.raises(ValueError, match=r"bias must have C_o=8 elements .* got 7"):
        dc.conv2d(x, w, b[:7])


def test_kernel_larger_than_padded_input(rng, random_layer):
    x, w, _ = random_layer(rng, 1, 2, 2, 4, 4, 7, 7)
    with pytest.raises(ValueError, match=r"kernel 7x7 is larger than the padded input 6x6"):
        dc.conv2d(x, w, padding=1)


@pytest.mark.parametrize("stride", [0, -1, (1, 0)])
def test_stride_below_one(layer, stride):
    x, w, _ = layer
    with pytest.raises(ValueError, match=r"stride must be >= 1 on both axes, got"):
        dc.conv2d(x, w, stride=stride)


@pytest.mark.parametrize("padding", [-1, (0, -2), (0, 0, -1, 0)])
def test_negative_padding(layer, padding):
    x, w, _ = layer
    with pytest.raises(ValueError, match=r"padding must be >= 0"):
        dc.conv2d(x, w, padding=padding)


@pytest.mark.parametrize("bad", ["1", 1.5, (1, 2, 3), None])
def test_padding_and_stride_types(layer, bad):
    x, w, _ = layer
    with pytest.raises(TypeError, match=r"padding must be"):
        dc.conv2d(x, w, padding=bad)
    with pytest.raises(TypeError, match=r"stride must be an int or a pair of ints"):
        dc.conv2d(x, w, stride=bad)


def test_empty_dimensions(layer):
    x, w, _ = layer
    with pytest.raises(ValueError, match=r"x has an empty dimension: shape \(0, 4, 6, 6\)"):
        dc.conv2d(x[:0], w)
    with pytest.raises(ValueError, match=r"w has an empty dimension"):
        dc.conv2d(x, w[:0])


def test_wrong_dtype_is_refused_not_converted(layer):
    x, w, _ = layer
    with pytest.raises(TypeError, match=r"x must be float32, got float64; .* pass x.astype\(np.float32\)"):
        dc.conv2d(x.astype(np.float64), w)
    with pytest.raises(TypeError, match=r"w must be float32, got int32"):
        dc.conv2d(x, w.astype(np.int32))
    with pytest.raises(TypeError, match=r"x must be a numpy.ndarray \(NCHW\), got list"):
        dc.conv2d(x.tolist(), w)


def test_config_that_does_not_fit(layer):
    x, w, _ = layer
    lanes = ISAS[host_isa()].lanes
    too_wide = dc.KernelConfig(host_isa(), lanes, 7)
    with pytest.raises(ValueError, match=r"does not fit layer .*W_o,b=7 exceeds the layer's output width 6"):
        dc.conv2d(x, w, padding=1, config=too_wide)
    too_many_channels = dc.KernelConfig(host_isa(), 4 * lanes if lanes > 1 else 16, 2)
    with pytest.raises(ValueError, match=r"C_o,b=\d+ exceeds the layer's 8 output channels"):
        dc.conv2d(x, w, padding=1, config=too_many_channels)


def test_config_for_an_isa_the_host_cannot_run(layer):
    x, w, _ = layer
    foreign = next(name for name in ("neon", "avx512", "avx2") if name not in host_isas())
    config = dc.KernelConfig(foreign, ISAS[foreign].lanes, 2)
    with pytest.raises(ValueError, match=rf"config targets {foreign}, which this CPU cannot run"):
        dc.conv2d(x, w, config=config)


def test_config_wrong_type(layer):
    x, w, _ = layer
    with pytest.raises(TypeError, match=r"config must be a KernelConfig or None, got dict"):
        dc.conv2d(x, w, config={"cob": 8})


def test_threads_must_be_positive(layer):
    x, w, _ = layer
    with pytest.raises(ValueError, match=r"threads must be >= 1, got 0"):
        dc.conv2d(x, w, threads=0)


def test_blocked_mismatches(rng, random_layer):
    x, w, b = random_layer(rng, 1, 4, 8, 6, 6, 3, 3)
    packed = dc.pack_weights(w, b, input_size=(6, 6), padding=1)
    other = dc.to_blocked(random_layer(rng, 1, 5, 8, 6, 6, 3, 3)[0])
    with pytest.raises(ValueError, match=r"channel mismatch: x has 5 channels, the weights expect C_i=4"):
        dc.conv2d_blocked(other, packed)
    smaller = dc.to_blocked(random_layer(rng, 1, 4, 8, 5, 6, 3, 3)[0])
    with pytest.raises(ValueError, match=r"x is 5x6 but the weights were packed for 6x6 inputs"):
        dc.conv2d_blocked(smaller, packed)
    with pytest.raises(TypeError, match=r"x must be a BlockedTensor \(see to_blocked\), got ndarray"):
        dc.conv2d_blocked(x, packed)
    xb = dc.to_blocked(x)
    with pytest.raises(ValueError, match=r"out must be a BlockedTensor of shape"):
        dc.conv2d_blocked(xb, packed, out=dc.to_blocked(x))
    with pytest.raises(ValueError, match=r"BlockedTensor with 1 blocks of \d+ lanes holds"):
        dc.BlockedTensor(xb.data, 99)


def test_a_kernel_takes_only_weights_checked_for_its_geometry(rng, random_layer):
    x, w, b = random_layer(rng, 1, 4, 8, 6, 6, 3, 3)
    packed = dc.pack_weights(w, b, input_size=(6, 6), padding=1)
    other = dc.pack_weights(random_layer(rng, 1, 4, 8, 6, 6, 5, 5)[1], None, input_size=(6, 6), padding=2)
    kernel, c = packed.kernel, packed.config
    xb, out = dc.to_blocked(x).data, np.zeros(kernel.output_shape(1), np.float32)
    run = dict(cib=c.cib, rows=c.rows, parallel=c.parallel, threads=1)
    with pytest.raises(ValueError, match=r"these weights were checked for packed shapes .* this kernel takes"):
        kernel.run(xb, other.operands, out, **run)
    with pytest.raises(TypeError, match=r"weights must be WeightOperands \(see CompiledKernel.operands\), got ndarray"):
        kernel.run(xb, packed.data, out, **run)
    with pytest.raises(ValueError, match=r"packed weights must have shape"):
        kernel.operands(packed.data.reshape(-1), packed.bias)
    kernel.run(xb, packed.operands, out, **run)  # the weights packed for it run
    np.testing.assert_array_equal(out, dc.conv2d_blocked(dc.to_blocked(x), packed).data)


def test_pack_weights_needs_input_size(layer):
    _, w, _ = layer
    with pytest.raises(TypeError, match=r"input_size must be a pair \(height, width\), got 6"):
        dc.pack_weights(w, input_size=6)


# ---------------------------------------------------------------------------------------------------- groups, dilation


@pytest.fixture
def grouped_layer(rng):
    x = rng.standard_normal((1, 8, 6, 6)).astype(np.float32)
    w = rng.standard_normal((12, 4, 3, 3)).astype(np.float32)  # groups=2: C_i / groups = 4 inputs per filter
    return x, w


def test_groups_must_divide_input_channels(grouped_layer):
    x, w = grouped_layer
    with pytest.raises(
        ValueError,
        match=r"groups=3 must divide both channel counts, got C_i=8 \(x, NCHW shape \(1, 8, 6, 6\)\) and C_o=12",
    ):
        dc.conv2d(x, w[:, :2], groups=3)
    with pytest.raises(ValueError, match=r"groups=3 must divide both channel counts, got C_i=8 and C_o=12"):
        dc.ConvShape.from_args(8, 12, 6, 6, 3, 3, groups=3)


def test_groups_must_divide_output_channels(grouped_layer):
    x, w = grouped_layer
    with pytest.raises(
        ValueError, match=r"groups=2 must divide both channel counts, got C_i=8 .* and C_o=11 \(w, OIHW shape"
    ):
        dc.conv2d(x, w[:11], groups=2)
    with pytest.raises(ValueError, match=r"groups=2 must divide C_o=11 \(w has OIHW shape \(11, 4, 3, 3\)\)"):
        dc.pack_weights(w[:11], input_size=(6, 6), groups=2)
    with pytest.raises(ValueError, match=r"groups=2 must divide C_o=11 \(weight OIHW shape \(11, 4, 3, 3\)\)"):
        dc.Conv2d(w[:11], groups=2)


def test_weight_second_dimension_must_be_input_channels_per_group(grouped_layer):
    x, w = grouped_layer
    with pytest.raises(
        ValueError,
        match=r"x has C_i=8 channels \(NCHW shape \(1, 8, 6, 6\)\), so w's second dimension must be "
        r"C_i / groups = 2, got 4 \(OIHW shape \(12, 4, 3, 3\)\)",
    ):
        dc.conv2d(x, w, groups=4)
    with pytest.raises(ValueError, match=r"w's second dimension must be C_i / groups = 8, got 4"):
        dc.conv2d(x, w)  # groups forgotten: a grouped layer's weights taken for a plain one


@pytest.mark.parametrize("dilation", [0, -1, (1, 0), (-2, 1)])
def test_dilation_below_one(grouped_layer, dilation):
    x, w = grouped_layer
    with pytest.raises(
        ValueError, match=r"dilation must be >= 1 on both axes, got \(dilation_h=-?\d, dilation_w=-?\d\)"
    ):
        dc.conv2d(x, w, groups=2, dilation=dilation)
    with pytest.raises(ValueError, match=r"dilation must be >= 1 on both axes"):
        dc.pack_weights(w, input_size=(6, 6), groups=2, dilation=dilation)
    with pytest.raises(ValueError, match=r"dilation must be >= 1 on both axes"):
        dc.conv2d_reference(x, w, groups=2, dilation=dilation)


@pytest.mark.parametrize("dilation", ["2", 1.0, (1, 2, 3), None, True])
def test_dilation_type(grouped_layer, dilation):
    x, w = grouped_layer
    with pytest.raises(TypeError, match=r"dilation must be an int or a pair of ints, got"):
        dc.conv2d(x, w, groups=2, dilation=dilation)


@pytest.mark.parametrize("groups", [0, -2])
def test_groups_below_one(grouped_layer, groups):
    x, w = grouped_layer
    with pytest.raises(ValueError, match=rf"groups must be >= 1, got {groups}"):
        dc.conv2d(x, w, groups=groups)
    with pytest.raises(ValueError, match=rf"groups must be >= 1, got {groups}"):
        dc.pack_weights(w, input_size=(6, 6), groups=groups)


@pytest.mark.parametrize("groups", [2.0, "2", None, True, (2,)])
def test_groups_must_be_an_int(grouped_layer, groups):
    x, w = grouped_layer
    with pytest.raises(TypeError, match=r"groups must be an int, got"):
        dc.conv2d(x, w, groups=groups)
    with pytest.raises(TypeError, match=r"groups must be an int, got"):
        dc.pack_weights(w, input_size=(6, 6), groups=groups)
    with pytest.raises(TypeError, match=r"groups must be an int, got"):
        dc.ConvShape.from_args(8, 12, 6, 6, 3, 3, groups=groups)


def test_dilated_kernel_larger_than_padded_input(grouped_layer):
    x, w = grouped_layer
    with pytest.raises(
        ValueError,
        match=r"kernel 7x3 \(kernel 3x3 at dilation 3x1\) is larger than the padded input 6x8 "
        r"\(input 6x6, padding top=0 bottom=0 left=1 right=1\)",
    ):
        dc.conv2d(x, w, groups=2, padding=(0, 0, 1, 1), dilation=(3, 1))
    with pytest.raises(ValueError, match=r"kernel 9x9 \(kernel 3x3 at dilation 4x4\) is larger than the padded input"):
        dc.pack_weights(w, input_size=(6, 6), groups=2, padding=1, dilation=4)
    # The same dilation fits once the padding makes room: the error is about the padded input, not the dilation.
    assert dc.ConvShape.from_args(8, 12, 6, 6, 3, 3, 1, (1, 0, 1, 1), (3, 1), 2).ho == 1


def test_config_fields_a_grouped_kernel_does_not_have():
    isa, lanes = host_isa(), ISAS[host_isa()].lanes
    depthwise = dc.ConvShape.from_args(2 * lanes, 2 * lanes, 6, 6, 3, 3, groups=2 * lanes)
    with pytest.raises(
        ValueError, match=rf"C_i,b={lanes} is given, but a depthwise kernel has no input-channel blocking"
    ):
        dc.KernelConfig(isa, lanes, 2, cib=lanes).check_fits(depthwise)
    packed = dc.ConvShape.from_args(lanes, lanes, 6, 6, 3, 3, groups=2)  # lanes / 2 channels per group
    with pytest.raises(ValueError, match=r"unroll=2 is given, but a grouped-packed kernel has no input-channel loop"):
        dc.KernelConfig(isa, lanes, 2, unroll=2).check_fits(packed)
    grouped = dc.ConvShape.from_args(2 * lanes, 2 * lanes, 6, 6, 3, 3, groups=2)  # one vector per group
    with pytest.raises(ValueError, match=rf"C_o,b={2 * lanes} exceeds the layer's {lanes} output channels per group"):
        dc.KernelConfig(isa, 2 * lanes, 2).check_fits(grouped)


def test_config_that_does_not_fit_a_grouped_layer_is_refused_by_conv2d(rng):
    lanes = ISAS[host_isa()].lanes
    x = rng.standard_normal((1, 2 * lanes, 6, 6)).astype(np.float32)
    w = rng.standard_normal((2 * lanes, 1, 3, 3)).astype(np.float32)
    with pytest.raises(ValueError, match=r"does not fit layer .* g\d+ .*no input-channel blocking"):
        dc.conv2d(x, w, groups=2 * lanes, config=dc.KernelConfig(host_isa(), lanes, 2, cib=lanes))


def test_conv2d_nchw_checks_its_input_and_threads(rng):
    w = rng.standard_normal((8, 1, 3, 3)).astype(np.float32)
    packed = dc.pack_weights(w, input_size=(6, 6), padding=1, groups=8, threads=1)
    x = rng.standard_normal((1, 8, 6, 6)).astype(np.float32)
    with pytest.raises(
        ValueError, match=r"x has NCHW shape \(1, 8, 5, 6\), the weights were packed for 8 channels of 6x6"
    ):
        dc.conv2d_nchw(x[:, :, :5], packed)
    with pytest.raises(ValueError, match=r"threads must be >= 1, got 0"):
        dc.conv2d_nchw(x, packed, threads=0)
    with pytest.raises(TypeError, match=r"weights must be PackedWeights"):
        dc.conv2d_nchw(x, w)
