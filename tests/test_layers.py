"""The named layer suite shipped as package data."""

from __future__ import annotations

import pytest

from directconv.layers import get_layer, network_layers, suite


def test_suite_lookup():
    assert get_layer("vgg16_conv3_2") == get_layer("vgg16:conv3_2")
    assert len(suite()) == 22 and len(network_layers("resnet50")) == 10
    assert get_layer("alexnet:conv1").shape.wo == 55
    with pytest.raises(ValueError, match=r"unknown layer 'vgg16:conv9'; known layers: alexnet:conv1"):
        get_layer("vgg16:conv9")
    with pytest.raises(ValueError, match=r"unknown network 'lenet'"):
        network_layers("lenet")
