"""The named layer suite shipped as package data."""

from __future__ import annotations

import pytest

from directconv.core.suite import get_layer, network_layers, suite


def test_suite_lookup():
    assert get_layer("vgg16_conv3_2") == get_layer("vgg16:conv3_2")
    assert len(suite()) == 38 and len(network_layers("resnet50")) == 10 and len(network_layers("mobilenetv2")) == 6
    assert get_layer("alexnet:conv1").shape.wo == 55
    with pytest.raises(ValueError, match=r"unknown layer 'vgg16:conv9'; known layers: alexnet:conv1"):
        get_layer("vgg16:conv9")
    with pytest.raises(ValueError, match=r"unknown network 'lenet'"):
        network_layers("lenet")


def test_network_option_names_every_convolution_of_the_chain():
    # --network (tune, predict, export, show) means every convolution the network runs end to end: its suite layers
    # under their suite names, then each further shape of its chain, named network:step; no shape twice.
    import argparse

    from directconv.cli.layers import selected_layers
    from directconv.nn.networks import get_network

    layers = selected_layers(argparse.Namespace(layer=["vgg16:conv3_2"], network=["resnet50"]))
    shapes = [layer.shape for layer in layers]
    assert len(set(shapes)) == len(shapes)
    chain = {shape for _, shape in get_network("resnet50").conv_shapes()}
    suite_layers = network_layers("resnet50")
    assert set(shapes) == chain | {layer.shape for layer in suite_layers} | {get_layer("vgg16:conv3_2").shape}
    assert len(chain - {layer.shape for layer in suite_layers}) == 8  # res3a_branch2a, res4a_branch2a, ...
    names = [layer.name for layer in layers]
    assert names[0] == "vgg16:conv3_2" and {layer.name for layer in suite_layers} <= set(names)
    assert "resnet50:res4a_branch2a" in names
