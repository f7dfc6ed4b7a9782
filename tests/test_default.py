"""The default configuration rule: always valid, within the register budget, and sensitive to the layer."""

from __future__ import annotations

import pytest

from directconv.kernels.isa import ISAS
from directconv.layers import get_layer, network_layers, suite
from directconv.model.default import default_config, layer_cycles, tile_cycles


@pytest.mark.parametrize("isa", sorted(ISAS))
def test_default_fits_every_suite_layer_and_the_registers(isa):
    for layer in suite():
        for threads in (1, 2, 3):
            config = default_config(layer.shape, isa=isa, threads=threads)
            config.check_fits(layer.shape)
            assert config.vectors * config.wob + config.vectors + 1 <= ISAS[isa].registers
            assert config.threads == threads


def test_tile_estimate_is_bound_by_latency_throughput_and_loads():
    assert tile_cycles(1, 1) == 4  # one accumulator: latency bound
    assert tile_cycles(2, 6) == 6  # 12 FMAs on 2 pipes
    assert tile_cycles(1, 14) == 7.5  # 15 loads on 2 ports


def test_partial_tiles_are_counted():
    shape = get_layer("vgg16:conv3_2").shape  # W_o = 56
    # 56 = 9 * 6 + 2: the 2-wide tile costs a full latency period.
    assert layer_cycles(shape, 8, 2, 6) == (256 // 16) * (9 * 6 + 4)


def test_suite_lookup():
    assert get_layer("vgg16_conv3_2") == get_layer("vgg16:conv3_2")
    assert len(suite()) == 22 and len(network_layers("resnet50")) == 10
    with pytest.raises(ValueError, match=r"unknown layer 'vgg16:conv9'; known layers: alexnet:conv1"):
        get_layer("vgg16:conv9")
    with pytest.raises(ValueError, match=r"unknown network 'lenet'"):
        network_layers("lenet")
