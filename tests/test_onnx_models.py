"""The ONNX corpus (directconv.bench.corpus) run end to end by directconv.load_onnx against onnxruntime's CPU
provider on the same bytes: every network, batch 1, on one seeded standard-normal image; ResNet-50 also at batch 2.

Tolerance: max |directconv - onnxruntime| <= 1e-4 * max |onnxruntime| over the whole output. The two sum each
convolution in a different order (and directconv folds every BatchNormalization into the weights), so rounding
accumulates through up to 121 layers: the largest differences measured are 6e-6 of the output's largest magnitude
(VGG-19; 4e-7 to 4e-6 for the others), a margin of more than 15 below the bound. The bound is still tight enough
for small faults: the bias of one output channel of one mid-network convolution off by 0.1 moves the output by
2e-4 to 4e-3 of its scale (ResNet-50, MobileNetV2). The outputs are logits or softmax probabilities of order 0.03
to 30, never all near zero, so no absolute term is needed.

AlexNet, VGG-19 and ZFNet-512 carry hundreds of MB of weights: building, loading and running each beside
onnxruntime takes 10 to 25 seconds even with every kernel cached, so they are slow.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the ONNX corpus needs the onnx package (the `test` extra)")
ort = pytest.importorskip("onnxruntime", reason="the reference is onnxruntime (the `test` extra)")

import directconv as dc  # noqa: E402  (the corpus needs onnx, hence after the skips)
from directconv.bench import corpus  # noqa: E402

pytestmark = [
    pytest.mark.compiler,
    # Convolutions that nothing tuned on this machine run the model's configuration, which load_onnx reports.
    pytest.mark.filterwarnings("ignore:.*run the model's configuration:UserWarning"),
]

SLOW = {"bvlc_alexnet", "vgg19", "zfnet512"}
TOLERANCE = 1e-4  # of the largest magnitude of onnxruntime's output
IMAGE = (3, 224, 224)
THREADS = 2


def image(batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, *IMAGE)).astype(np.float32)


def onnxruntime(data: bytes, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    (name,) = (i.name for i in session.get_inputs())
    return session.run(None, {name: x})[0]


def assert_close(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == np.float32 and got.shape == want.shape
    error, scale = float(np.abs(got - want).max()), float(np.abs(want).max())
    assert scale > 0
    assert error <= TOLERANCE * scale, (
        f"max |difference| {error:.3g} is {error / scale:.3g} of max |output| {scale:.3g}"
    )


@pytest.fixture(
    scope="module", params=[pytest.param(n, marks=pytest.mark.slow if n in SLOW else ()) for n in corpus.CORPUS]
)
def name(request: pytest.FixtureRequest) -> str:
    """A corpus name; module scope runs every test of one network before loading the next."""
    name = request.param
    if name in corpus.LIGHT_NAMES and not (corpus.LIGHT_DIR / f"light_{name}.onnx").is_file():
        pytest.skip(f"onnx {onnx.__version__} ships no light_{name}.onnx")
    return name


@pytest.fixture(scope="module")
def loaded(name: str) -> Iterator[tuple[Any, dc.Model]]:
    """(the ONNX graph, the Model loaded from the same bytes)."""
    data = corpus.corpus_bytes(name)
    yield onnx.load_from_string(data).graph, dc.load_onnx(data, threads=THREADS)


def test_network_matches_onnxruntime(name: str, loaded: tuple[Any, dc.Model]) -> None:
    _, model = loaded
    x = image(1)
    (got,) = model.run({model.input_names[0]: x})
    assert_close(got, onnxruntime(corpus.corpus_bytes(name), x))


def _conv_labels(graph: Any) -> list[str]:
    """How steps name the Conv nodes: by name, or by first output where the node has no name."""
    return [node.name or node.output[0] for node in graph.node if node.op_type == "Conv"]


def test_every_conv_node_runs_as_a_conv_step(loaded: tuple[Any, dc.Model]) -> None:
    graph, model = loaded
    steps = [step for step, _ in model.convolutions()]
    assert model.threads == THREADS
    assert len(steps) == [step.op for step in model._steps].count("conv")
    # Each Conv node leads its own step; what follows it (BN, activation, residual Add) may fuse in behind.
    assert sorted(step.nodes[0] for step in steps) == sorted(_conv_labels(graph))


def test_summary_mentions_every_conv(loaded: tuple[Any, dc.Model]) -> None:
    graph, model = loaded
    lines = model.summary().splitlines()
    conv_lines = [line for line in lines if line.split()[1:2] == ["conv"]]
    labels = _conv_labels(graph)
    assert len(conv_lines) == len(labels)
    for (step, conv), line in zip(model.convolutions(), conv_lines, strict=True):
        assert step.nodes[0] in line  # the Conv node's name leads the step's label (fused nodes may be cut short)
        assert f"{conv.kernel.kind} cob={conv.config.cob} wob={conv.config.wob}" in line
    assert f"{len(model._steps)} steps, {len(labels)} convolutions" in lines[-2]


def test_resnet50_batch_of_two_matches_each_image() -> None:
    """The file fixes batch 1, so onnxruntime runs each image alone; directconv runs both in one call."""
    data = corpus.corpus_bytes("resnet50")
    model = dc.load_onnx(data, threads=THREADS)
    x = image(2, seed=1)
    (got,) = model.run({model.input_names[0]: x})
    assert got.shape == (2, 1000)
    for i in range(2):
        assert_close(got[i : i + 1], onnxruntime(data, x[i : i + 1]))
    assert not np.allclose(got[0], got[1])  # two different images, not one result twice
