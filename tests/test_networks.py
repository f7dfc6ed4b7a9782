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
    # The suite also names networks of grouped, depthwise and dilated layers that are not chained here.
    assert set(defined) == set(EXPECTED) and set(defined) <= set(NETWORKS)
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
    for layer in (layer for layer in suite() if layer.network in defined):
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
    with pytest.raises(
        NetworkError,
        match=r"alexnet on a 15x15 input: field 'steps\[1\]': step 'pool1' cannot run "
        r"on its 96x2x2 input: pooling window 3 is larger than the padded input 2",
    ):
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


C2_FIELDS = "name, op, Ci, Co, kernel, stride, pad, relu"
STEP2 = r"field 'networks.tiny.steps\[2\]"
INPUT = "input: {channels: 3, size: 16}"


def _c2(**fields) -> str:
    row = {"name": "c2", "op": "conv", "Ci": 8, "Co": 4, "kernel": 1, "stride": 1, "pad": 0, "relu": "false"}
    row.update(fields)
    return "{" + ", ".join(f"{k}: {v}" for k, v in row.items() if v is not None) + "}"


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("steps:", "steps: [", "not valid YAML"),
        # networks.schema.json
        (
            "format: directconv-networks",
            "format: other",
            r"field 'format' must be 'directconv-networks', got 'other' \(str\); a networks file starts with",
        ),
        ("version: 1", "version: 2", r"field 'version' must be 1, the version this directconv reads, got 2 \(int\)"),
        ("version: 1", "version: true", r"field 'version' must be 1, the version this directconv reads, got True"),
        ("version: 1", "versions: 1", r"unknown field 'versions': did you mean 'version'\?"),
        ("version: 1\n", "", r"missing required field 'version'; required fields: format, version, networks"),
        ("networks:\n  tiny:", "networks: {}\nold:\n  tiny:", r"field 'networks' must be a mapping of 1 to 64 network"),
        ("  tiny:", "  Tiny:", r"field 'networks' must be keyed by a name of lowercase letters, .* got 'Tiny'"),
        ("  tiny:", "  tiny-" + "x" * 20 + ":", r"field 'networks' must be keyed by a name of lowercase letters"),
        ("    input:", "    note: [1]\n    input:", r"field 'networks.tiny.note' must be a string of at most 500"),
        ("    input:", "    comment: x\n    input:", r"unknown field 'networks.tiny.comment': expected only note"),
        (INPUT, "input: {channels: 3}", r"missing required field 'networks.tiny.input.size'"),
        (INPUT, "input: [3, 16]", r"field 'networks.tiny.input' must be a mapping of channels and size"),
        (
            INPUT,
            "input: {channels: 3, size: 16.5}",
            r"field 'networks.tiny.input.size' must be a positive integer <= 16384, got 16.5 \(float\)",
        ),
        (
            INPUT,
            "input: {channels: 0, size: 16}",
            r"field 'networks.tiny.input.channels' must be a positive integer <= 16384, got 0",
        ),
        ("    steps:\n", "    steps: []\n    old:\n", r"field 'networks.tiny.steps' must be a list of 1 to 1000 steps"),
        (C2, "[c2]", STEP2 + r"' must be a mapping with an op \(conv or maxpool\) and the fields of that op"),
        (C2, _c2(op="avgpool"), STEP2 + r".op' must be 'conv' or 'maxpool', got 'avgpool' \(str\)"),
        (C2, _c2(op=None), STEP2 + r".op'; required fields: op"),
        (C2, _c2(Co="true"), STEP2 + r".Co' must be a positive integer <= 16384, got True \(bool\)"),
        (C2, _c2(Ci=20000), STEP2 + r".Ci' must be a positive integer <= 16384, got 20000"),
        (C2, _c2(relu=1), STEP2 + r".relu' must be true or false, got 1 \(int\)"),
        (C2, _c2(stride=0), STEP2 + r".stride' must be a positive integer <= 64, got 0"),
        (C2, _c2(kernel=65), STEP2 + r".kernel' must be a positive integer <= 64, got 65"),
        (C2, _c2(pad=-1), STEP2 + r".pad' must be an integer >= 0 and <= 64, got -1"),
        (C2, _c2(name="'c 2'"), STEP2 + r".name' must be a name of letters, digits, .* got 'c 2' \(str\)"),
        (C2, _c2(name="c" * 40), STEP2 + r".name' must be a name of letters, digits, .* at most 39 characters"),
        (C2, _c2(stride=None, strides=1), STEP2 + r".strides': did you mean 'stride'\? expected only " + C2_FIELDS),
        (C2, _c2(relu=None), r"missing required field 'networks.tiny.steps\[2\].relu'; required fields: " + C2_FIELDS),
        (
            C2,
            "{name: c2, op: maxpool, kernel: 2, stride: 2, pad: 0, relu: true}",
            r"unknown field 'networks.tiny.steps\[2\].relu': .*expected only name, op, kernel, stride, pad",
        ),
        # rules between fields, in code
        (C2, _c2(Ci=7), STEP2 + r".Ci' must be 8, the channels of step 1 \('p1'\), got 7 \(int\)"),
        (
            C2,
            _c2(kernel=9),
            STEP2 + r"': step 'c2' cannot run on its 8x8x8 input: kernel 9x9 is larger than the padded "
            r"input 8x8",
        ),
        (
            C2,
            "{name: p1, op: maxpool, kernel: 2, stride: 2, pad: 0}",
            STEP2 + r".name' must be unique within the network, got 'p1' \(str\); step 1 is named 'p1' too",
        ),
        (
            "{name: p1, op: maxpool, kernel: 2, stride: 2, pad: 0}",
            "{name: p1, op: maxpool, kernel: 2, stride: 2, pad: 2}",
            r"field 'networks.tiny.steps\[1\].pad': padding must be at most kernel // 2 = 1",
        ),
    ],
)
def test_bad_network_files_say_where_and_what(old: str, new: str, message: str) -> None:
    assert set(networks.load_networks(GOOD)) == {"tiny"}
    bad = GOOD.replace(old, new)
    assert bad != GOOD
    with pytest.raises(NetworkError, match=message) as info:
        networks.load_networks(bad, "tiny.yaml")
    assert str(info.value).startswith("tiny.yaml: ")


def test_a_networks_file_with_several_problems_reports_all_of_them_sorted_by_field() -> None:
    bad = (
        GOOD.replace("version: 1", "version: 2")
        .replace("kernel: 3, stride: 1, pad: 1, relu: true", "kernel: 3, stride: 1, pad: 1, relu: yes please")
        .replace(C2, _c2(Ci=7, name="p1"))
    )
    bad += "  other:\n    input: {channels: 3, size: 4}\n    steps:\n      - " + _c2(Ci=3, kernel=5) + "\n"
    with pytest.raises(NetworkError) as info:
        networks.load_networks(bad, "two.yaml")
    expected = [
        "field 'networks.other.steps[0]': step 'c2' cannot run on its 3x4x4 input: kernel 5x5 is larger",
        "field 'networks.tiny.steps[0].relu' must be true or false, got 'yes please' (str)",
        "field 'version' must be 1, the version this directconv reads, got 2 (int)",
    ]
    assert [p[: len(start)] for p, start in zip(info.value.problems, expected, strict=True)] == expected
    assert str(info.value).startswith("two.yaml: 3 problems:\n")
    # A network with a problem in its fields is not chained (its names and Ci wait for its fields); a valid one is.
    fixed = bad.replace("relu: yes please", "relu: true")
    with pytest.raises(NetworkError) as info:
        networks.load_networks(fixed, "two.yaml")
    assert [p.split("'")[1] for p in info.value.problems] == [
        "networks.other.steps[0]",
        "networks.tiny.steps[2].Ci",
        "networks.tiny.steps[2].name",
        "version",
    ]


def test_networks_schema_documents_every_field() -> None:
    schema = networks._SCHEMA
    rules = [
        *schema["properties"].values(),
        *schema["$defs"].values(),
        *schema["$defs"]["network"]["properties"].values(),
        *schema["$defs"]["conv"]["properties"].values(),
    ]
    # A $ref is documented where it points; a step's op is documented once, in the step.
    assert all(rule.get("description") or "$ref" in rule or rule.get("const") in ("conv", "maxpool") for rule in rules)
    assert (networks.FORMAT, networks.VERSION) == ("directconv-networks", 1)


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
