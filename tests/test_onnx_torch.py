"""A model exported from PyTorch (torch.onnx.export, the TorchScript exporter) loads and matches torch: the path
README's production section starts from. Needs torch (the bench extra); skips without it.

Tolerance: 1e-4 relative to the output's largest magnitude (float32 sums in another order; a few hundred products
per output).
"""

from __future__ import annotations

import io

import numpy as np
import pytest

import directconv as dc

torch = pytest.importorskip("torch", reason="exporting from PyTorch needs torch (the bench extra)")
pytest.importorskip("onnx", reason="reading ONNX files needs the onnx package")
pytestmark = pytest.mark.compiler


class Block(torch.nn.Module):
    """Conv-BN-ReLU, a depthwise conv with a residual then HardSwish, a ReLU6 1x1, pooling and a classifier."""

    def __init__(self) -> None:
        super().__init__()
        nn = torch.nn
        self.c1, self.b1 = nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.c2 = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.c3 = nn.Conv2d(16, 24, 1)
        self.fc = nn.Linear(24, 10)

    def forward(self, x):  # type: ignore[no-untyped-def]
        f = torch.nn.functional
        y = torch.relu(self.b1(self.c1(x)))
        y = f.hardswish(self.c2(y) + y)
        y = f.relu6(self.c3(y))
        return self.fc(f.adaptive_avg_pool2d(y, 1).flatten(1))


def _export(module: torch.nn.Module, exporter: str) -> bytes:
    x = torch.randn(1, 3, 20, 20)
    if exporter == "torchscript":
        buffer = io.BytesIO()
        torch.onnx.export(module, x, buffer, input_names=["x"], dynamic_axes={"x": {0: "N"}}, dynamo=False)
        return buffer.getvalue()
    pytest.importorskip("onnxscript", reason="torch's torch.export-based ONNX exporter needs onnxscript")
    program = torch.onnx.export(module, (x,), dynamo=True, dynamic_shapes={"x": {0: torch.export.Dim("N")}})
    return program.model_proto.SerializeToString()


# The TorchScript exporter, and the torch.export-based one (torch's default since 2.9: it writes the pooling as a
# ReduceMean and the flatten as a Reshape with allowzero).
@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_a_model_exported_from_pytorch_matches_torch_at_any_batch(exporter: str) -> None:
    torch.manual_seed(0)
    module = Block().eval()
    with torch.no_grad():  # BatchNorm statistics that are not the identity, so that folding it matters
        module.b1.running_mean.uniform_(-0.5, 0.5)
        module.b1.running_var.uniform_(0.5, 2.0)
    model = dc.load_onnx(_export(module, exporter), threads=1)
    convs = model.convolutions()
    assert len(convs) == 3 and all(step.params["act"] != "none" for step, _ in convs)  # BN, ReLU, HardSwish, ReLU6
    assert convs[1][0].params["residual"] is not None  # the depthwise conv adds the shortcut in its store
    for batch in (1, 3):
        x = np.random.default_rng(batch).standard_normal((batch, 3, 20, 20)).astype(np.float32)
        with torch.no_grad():
            expected = module(torch.from_numpy(x)).numpy()
        got = model(x)
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()
