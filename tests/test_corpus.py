"""The ONNX corpus (directconv.bench.corpus): each model is clean, passes the ONNX checker, builds to the same
bytes every time and runs in onnxruntime to finite, non-degenerate logits.

The three models with hundreds of MB of weights (AlexNet, VGG-19, ZFNet-512) are slow: seconds each to build,
check and load into onnxruntime.
"""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the ONNX corpus needs the onnx package (the `test` extra)")
ort = pytest.importorskip("onnxruntime", reason="running the ONNX corpus needs onnxruntime (the `bench` extra)")

from directconv.bench import corpus  # noqa: E402  (needs onnx, hence after the skips)

BUILT = ("mobilenetv2", "resnext50")
NAMES = (*corpus.LIGHT_NAMES, *BUILT)
SLOW = {"bvlc_alexnet", "vgg19", "zfnet512"}
# DenseNet-121 ends in a 1x1 convolution, SqueezeNet in a global average pool: both keep H = W = 1.
OUTPUT_SHAPES = {"densenet121": (1, 1000, 1, 1), "squeezenet": (1, 1000, 1, 1)}


@pytest.fixture(scope="module", params=[pytest.param(n, marks=pytest.mark.slow if n in SLOW else ()) for n in NAMES])
def name(request: pytest.FixtureRequest) -> str:
    """A corpus name; module scope runs every test of one model before the next (corpus_bytes keeps two)."""
    name = request.param
    if name in corpus.LIGHT_NAMES and not (corpus.LIGHT_DIR / f"light_{name}.onnx").is_file():
        pytest.skip(f"onnx {onnx.__version__} ships no light_{name}.onnx")
    return name


def _model(name: str) -> Any:
    return onnx.load_from_string(corpus.corpus_bytes(name))


def test_corpus_names() -> None:
    assert tuple(corpus.CORPUS) == NAMES


def test_build_is_deterministic(name: str) -> None:
    assert corpus.corpus_model(name).SerializeToString() == corpus.corpus_bytes(name)


def test_model_is_clean_and_valid(name: str) -> None:
    """Full check; the image is the only graph input; every parameter is a float32 initializer, not a graph input
    (BN variances positive); the only other initializers are the light files' int64 Reshape shapes, unchanged."""
    onnx.checker.check_model(corpus.corpus_bytes(name), full_check=True)
    graph = _model(name).graph
    (image,) = graph.input
    assert image.name not in {t.name for t in graph.initializer}
    dims = tuple(d.dim_value or d.dim_param for d in image.type.tensor_type.shape.dim)
    assert dims == (("N" if name in BUILT else 1), 3, 224, 224)
    assert all(node.op_type != "ConstantOfShape" for node in graph.node)
    uses = {(node.op_type, tensor) for node in graph.node for tensor in node.input}
    initializers = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    assert set(initializers) <= {tensor for _, tensor in uses}
    original = {}
    if name in corpus.LIGHT_NAMES:
        source = onnx.load(str(corpus.LIGHT_DIR / f"light_{name}.onnx"))
        original = {t.name: onnx.numpy_helper.to_array(t) for t in source.graph.initializer}
    for tensor, values in initializers.items():
        if values.dtype == np.int64:
            assert {op for op, t in uses if t == tensor} == {"Reshape"}, tensor
            assert np.array_equal(values, original[tensor]), tensor
        else:
            assert values.dtype == np.float32 and np.isfinite(values).all(), tensor
    variances = [node.input[4] for node in graph.node if node.op_type == "BatchNormalization"]
    assert all(initializers[v].min() > 0 for v in variances)


def _run(name: str, *inputs: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(pre-softmax values, model output) for each input; the pre-softmax values are made a graph output where a
    Softmax follows them."""
    model = _model(name)
    softmax = [node for node in model.graph.node if node.op_type == "Softmax"]
    if softmax:
        model.graph.output.append(onnx.helper.make_tensor_value_info(softmax[0].input[0], onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    results = []
    for x in inputs:
        outputs = session.run(None, {model.graph.input[0].name: x})
        results.append((outputs[-1], outputs[0]))
    return results


def test_onnxruntime_gives_finite_non_degenerate_logits(name: str) -> None:
    noise = np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)
    # A blocky image: with random weights, the globally pooled features of any two white-noise images nearly match.
    blocks = np.kron(np.random.default_rng(1).standard_normal((1, 3, 7, 7)), np.ones((32, 32))).astype(np.float32)
    (logits, output), (other, _) = _run(name, noise, blocks)
    assert output.shape == OUTPUT_SHAPES.get(name, (1, 1000))
    assert np.isfinite(logits).all() and np.isfinite(output).all() and np.isfinite(other).all()
    # Activations kept their scale: logits of order 1 to 10, mostly different (SqueezeNet's pass through a ReLU,
    # which zeroes about a fifth), and dependent on the input.
    assert 0.5 < float(logits.std()) < 50
    assert np.unique(logits).size > 750
    assert float((other - logits).std()) > 0.1 * float(logits.std())


def test_built_models_have_torchvision_counts() -> None:
    """Conv nodes, groups and trainable parameters (conv and linear weights, BN scales and biases) are those of
    torchvision's mobilenet_v2 and resnext50_32x4d."""
    expected = {"mobilenetv2": (52, 17, 3_504_872), "resnext50": (53, 16, 25_028_904)}
    for name, (convs, grouped, parameters) in expected.items():
        graph = _model(name).graph
        conv_nodes = [node for node in graph.node if node.op_type == "Conv"]
        groups = [next((a.i for a in node.attribute if a.name == "group"), 1) for node in conv_nodes]
        statistics = ("running_mean", "running_var")
        trainable = [
            t for t in graph.initializer if not t.name.endswith(statistics) and not t.name.startswith("relu6.")
        ]
        counts = (len(conv_nodes), sum(g > 1 for g in groups), sum(math.prod(t.dims) for t in trainable))
        assert counts == (convs, grouped, parameters), name


def test_built_models_take_any_batch() -> None:
    """The batch is symbolic: a batch of two gives what each image gives alone."""
    x = np.random.default_rng(2).standard_normal((2, 3, 224, 224), dtype=np.float32)
    session = ort.InferenceSession(corpus.corpus_bytes("mobilenetv2"), providers=["CPUExecutionProvider"])
    both = session.run(None, {"input": x})[0]
    alone = np.concatenate([session.run(None, {"input": x[i : i + 1]})[0] for i in range(2)])
    assert both.shape == (2, 1000)
    np.testing.assert_allclose(both, alone, rtol=1e-4, atol=1e-4 * float(np.abs(alone).max()))


def test_unknown_names_are_refused() -> None:
    with pytest.raises(ValueError, match="known: bvlc_alexnet, .*, mobilenetv2, resnext50"):
        corpus.corpus_model("alexnet")
    with pytest.raises(ValueError, match="unknown light model 'mobilenetv2'"):
        corpus.light_model("mobilenetv2")


def test_write_corpus_model_replaces_the_file_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "squeezenet.onnx"
    path.write_bytes(b"old")

    def fail(*args: object) -> None:
        raise OSError("replace failed")

    with monkeypatch.context() as patch:
        patch.setattr(corpus.os, "replace", fail)
        with pytest.raises(OSError, match="replace failed"):
            corpus.write_corpus_model("squeezenet", path)
    assert path.read_bytes() == b"old" and list(tmp_path.iterdir()) == [path]  # the temporary file is gone
    corpus.write_corpus_model("squeezenet", path)
    assert path.read_bytes() == corpus.corpus_bytes("squeezenet") and list(tmp_path.iterdir()) == [path]


def test_import_without_onnx_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # None in sys.modules makes `import onnx` fail
    monkeypatch.delitem(sys.modules, "directconv.bench.corpus")
    with pytest.raises(ImportError, match=r"pip install 'directconv\[onnx\]'"):
        importlib.import_module("directconv.bench.corpus")
