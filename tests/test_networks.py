"""Network definitions (directconv.nn.networks): the bundled files, their checks and errors, He weights, cuts for
quick runs, and building a network into a Sequential. Correctness of a built network: test_sequential.py."""

from __future__ import annotations

import numpy as np
import pytest

from directconv.core.suite import NETWORKS, suite
from directconv.nn import networks
from directconv.nn.networks import ConvStep, NetworkError, PoolStep

EXPECTED = {  # convolutions, max-pools, final activation (channels, height, width)
    "alexnet": (5, 2, (256, 13, 13)),
    "vgg16": (13, 4, (512, 14, 14)),
    "resnet50": (49, 1, (2048, 7, 7)),
    "googlenet": (5, 2, (128, 28, 28)),
}


def test_bundled_networks_load_chain_and_have_the_published_sizes() -> None:
    defined = networks.networks()
    assert set(defined) == set(NETWORKS) == set(EXPECTED)
    for name, (convs, pools, final) in EXPECTED.items():
        n = defined[name]
        kinds = [type(s) for s in n.steps]
        assert (kinds.count(ConvStep), kinds.count(PoolStep)) == (convs, pools), name
        assert n.activations()[-1] == final, name
        assert len(set(n.names)) == len(n.steps) and n.note
    assert defined["alexnet"].size == 227 and all(defined[k].size == 224 for k in ("vgg16", "resnet50", "googlenet"))
    resnet = {step.name: step for step in defined["resnet50"].steps}
    for stage in (3, 4, 5):  # v1: the first 1x1 of stages 3-5 downsamples, the 3x3 does not
        assert resnet[f"res{stage}a_branch2a"].stride == 2 and resnet[f"res{stage}a_branch2b"].stride == 1
        assert resnet[f"res{stage}b_branch2a"].stride == 1
    assert all(step.relu for step in defined["resnet50"].steps if isinstance(step, ConvStep))


# Suite layers that no chain holds, because the architecture puts them off the path each chain follows.
OFF_THE_CHAIN = {
    "resnet50:res3_1x1s2_256to512": "the projection shortcut of res3a (the main path's strided 1x1 is 256->128)",
    "googlenet:3a_5x5": "the 5x5 branch of inception 3a (the chain follows its 3x3 branch)",
}


def test_every_suite_layer_is_in_its_network_chain_with_the_same_shape() -> None:
    defined = networks.networks()
    absent = set()
    for layer in suite():
        shapes = [shape for _, shape in defined[layer.network].conv_shapes()]
        if layer.shape not in shapes:
            absent.add(layer.name)
    assert absent == set(OFF_THE_CHAIN)


def test_with_input_cuts_and_resizes_and_checks_again() -> None:
    alexnet = networks.get_network("alexnet")
    small = alexnet.with_input(67)
    assert small.size == 67 and small.activations()[-1] == (256, 3, 3)
    assert alexnet.with_input(steps=2).names == ("conv1", "pool1")
    with pytest.raises(ValueError, match=r"steps must be an int in 1\.\.7"):
        alexnet.with_input(steps=8)
    with pytest.raises(NetworkError, match=r"step 1 \('pool1'\).*window 3 is larger than the padded input 2"):
        alexnet.with_input(15)  # conv1 gives 2x2
    with pytest.raises(ValueError, match="unknown network 'lenet'; defined networks: alexnet"):
        networks.get_network("lenet")


GOOD = """\
format: directconv-networks
version: 1
networks:
  tiny:
    input: {channels: 3, size: 16}
    steps:
      - {name: c1, op: conv, Ci: 3, Co: 8, kernel: 3, stride: 1, pad: 1, relu: true}
      - {name: p1, op: maxpool, kernel: 2, stride: 2, pad: 0}
      - {name: c2, op: conv, Ci: 8, Co: 4, kernel: 1, stride: 1, pad: 0, relu: false}
"""

C2 = "{name: c2, op: conv, Ci: 8, Co: 4, kernel: 1, stride: 1, pad: 0, relu: false}"


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("steps:", "steps: [", "not valid YAML"),
        ("format: directconv-networks", "format: other", "expected a mapping with format: directconv-networks"),
        ("version: 1", "version: 2", "reads version 1, the file is version 2"),
        (C2, "{name: c2, op: conv, Ci: 7, Co: 4, kernel: 1, stride: 1, pad: 0, relu: false}",
         r"network 'tiny', step 2 \('c2'\): field 'Ci' must be 8, the channels of step 1 \('p1'\), got 7"),
        (C2, "{name: c2, op: conv, Ci: 8, Co: true, kernel: 1, stride: 1, pad: 0, relu: false}",
         r"step 2 \('c2'\): field 'Co' must be an integer, got True"),
        (C2, "{name: c2, op: conv, Ci: 8, Co: 4, kernel: 1, stride: 1, pad: 0, relu: 1}",
         r"step 2 \('c2'\): field 'relu' must be bool, got 1"),
        (C2, "{name: c2, op: conv, Ci: 8, Co: 4, kernel: 1, stride: 0, pad: 0, relu: false}",
         r"field 'stride' must be >= 1, got 0"),
        (C2, "{name: c2, op: conv, Ci: 8, Co: 4, kernel: 1, pad: 0, relu: false, strides: 1}",
         r"step 2: a conv step has exactly the fields .*; missing stride; unknown strides"),
        (C2, "{name: c2, op: avgpool, kernel: 2, stride: 2, pad: 0}",
         r"step 2: field 'op' must be 'conv' or 'maxpool'"),
        (C2, "{name: c2, op: conv, Ci: 8, Co: 4, kernel: 9, stride: 1, pad: 0, relu: false}",
         r"step 2 \('c2'\), on a 8x8x8 input: kernel 9x9 is larger than the padded input 8x8"),
        (C2, "{name: p1, op: maxpool, kernel: 2, stride: 2, pad: 0}", "'p1' is used twice"),
        ("{name: p1, op: maxpool, kernel: 2, stride: 2, pad: 0}",
         "{name: p1, op: maxpool, kernel: 2, stride: 2, pad: 2}",
         r"step 1 \('p1'\): padding must be at most kernel // 2 = 1"),
        ("input: {channels: 3, size: 16}", "input: {channels: 3}", r"'input' must be \{channels: C, size: S\}"),
    ],
)
def test_bad_network_files_say_where_and_what(old: str, new: str, message: str) -> None:
    assert set(networks.load_networks(GOOD)) == {"tiny"}
    bad = GOOD.replace(old, new)
    assert bad != GOOD
    with pytest.raises(NetworkError, match=message):
        networks.load_networks(bad, "tiny.yaml")


def test_he_weights_have_the_he_scale_and_zero_biases() -> None:
    n = networks.get_network("vgg16")
    weights = networks.he_weights(n, seed=3)
    assert len(weights) == 13
    for (w, b), (step, _) in zip(weights, n.conv_shapes(), strict=True):
        assert w.dtype == np.float32 and w.shape == (step.co, step.ci, 3, 3) and not b.any()
        assert float(w.std()) == pytest.approx(np.sqrt(2.0 / (step.ci * 9)), rel=0.1)
    np.testing.assert_array_equal(networks.he_weights(n, seed=3)[5][0], weights[5][0])


@pytest.mark.compiler
def test_build_names_and_shapes() -> None:
    built = networks.build("googlenet", threads=1, steps=3, input_size=48, batch=2)
    assert built.names == ("conv1", "pool1", "conv2_reduce") == built.model.names
    assert built.input_shape == (2, 3, 48, 48)
    assert [w.shape for w, _ in built.weights] == [(64, 3, 7, 7), (64, 64, 1, 1)]
    y = built.model(np.zeros(built.input_shape, dtype=np.float32))
    assert y.shape == (2, 64, 12, 12) and not y.any()  # zero input, zero biases, ReLU: zero out
    with pytest.raises(ValueError, match="batch must be a positive int, got 0"):
        networks.build("googlenet", batch=0)
