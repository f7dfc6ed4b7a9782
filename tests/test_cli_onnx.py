"""The commands on an ONNX file: tune --onnx fills the config store with the model's distinct convolutions, after
which show --cache --onnx and run --summary say they run tuned; run prints the outputs and their time and saves
them; export --onnx writes the model's kernels; bad arguments end with a message."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="ONNX files need the onnx package (the `test` extra)")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402  (needs onnx, hence after the skip)

from directconv.cli.main import main  # noqa: E402
from directconv.tuner import select  # noqa: E402

pytestmark = [pytest.mark.compiler, pytest.mark.filterwarnings("ignore:.*run the model's configuration")]


def _model(path: Path) -> Path:
    """Two 3x3 convolutions (the second twice, so the model has two distinct shapes among three nodes), ReLUs."""
    rng = np.random.default_rng(0)
    weights = {
        "w1": rng.standard_normal((16, 3, 3, 3)).astype(np.float32) / 5,
        "w2": rng.standard_normal((16, 16, 3, 3)).astype(np.float32) / 12,
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], name="first", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["b"], name="relu1"),
        helper.make_node("Conv", ["b", "w2"], ["c"], name="second", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["d"], name="relu2"),
        helper.make_node("Conv", ["d", "w2"], ["y"], name="third", pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "two-shapes",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 12, 12])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16, 12, 12])],
        [numpy_helper.from_array(value, name) for name, value in weights.items()],
    )
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString())
    return path


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty user config store and no bundled one, so that what is tuned here is all there is."""
    from directconv.tuner import store

    monkeypatch.setenv("DIRECTCONV_STORE_DIR", str(tmp_path / "store"))
    monkeypatch.setattr(store, "_bundled_files", lambda: [])
    monkeypatch.setattr(select, "_warned", set())
    return tmp_path


def test_tune_onnx_then_run_and_show_say_tuned(isolated: Path, url: str, capsys: pytest.CaptureFixture[str]) -> None:
    model = _model(isolated / "net.onnx")
    assert main(["show", "--cache", "--onnx", str(model), "--threads", "1"]) == 0
    before = capsys.readouterr().out
    assert before.count("net:") == 2 and "model" in before  # two distinct shapes, nothing tuned yet
    summary = isolated / "tune.json"
    args = ["tune", "--onnx", str(model), "--trials", "3", "--min-time", "0.02", "--storage", url]
    assert main([*args, "--json", str(summary)]) == 0
    rows = json.loads(summary.read_text())["layers"]
    assert sorted(row["layer"] for row in rows) == ["net:first", "net:second"]
    assert all(row["best_config"] for row in rows)
    capsys.readouterr()
    assert main(["show", "--cache", "--onnx", str(model), "--threads", "1"]) == 0
    after = capsys.readouterr().out
    assert after.count("tuned") >= 2 and " model " not in after
    saved = isolated / "out.npz"
    assert (
        main(["run", str(model), "--threads", "1", "--summary", "--repeat", "2", "--batch", "2", "--save", str(saved)])
        == 0
    )
    out = capsys.readouterr().out
    assert "3 convolutions (configurations: 3 tuned, 0 nearest, 0 model)" in out
    assert "output y: shape (2, 16, 12, 12)" in out and "ms per inference of batch 2" in out
    with np.load(saved) as data:
        assert data["y"].shape == (2, 16, 12, 12) and np.isfinite(data["y"]).all()


def test_run_reads_inputs_from_npy_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = _model(tmp_path / "net.onnx")
    x = np.random.default_rng(3).standard_normal((3, 3, 12, 12)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert (
        main(
            [
                "run",
                str(model),
                "--input",
                f"x={tmp_path / 'x.npy'}",
                "--repeat",
                "1",
                "--save",
                str(tmp_path / "y.npz"),
            ]
        )
        == 0
    )
    assert "output y: shape (3, 16, 12, 12)" in capsys.readouterr().out
    import directconv as dc

    with np.load(tmp_path / "y.npz") as data:
        np.testing.assert_array_equal(data["y"], dc.load_onnx(model, threads=os.cpu_count())(x))


def test_export_onnx_writes_the_models_kernels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = _model(tmp_path / "net.onnx")
    assert main(["export", "--onnx", str(model), "--out", str(tmp_path / "lib")]) == 0
    files = sorted(p.name for p in (tmp_path / "lib").iterdir())
    assert "layer_net_first.c" in files and "layer_net_second.c" in files and "Makefile" in files
    assert "2 layer(s)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "MISSING.onnx"], "no ONNX file at 'MISSING.onnx'"),
        (["run", "{model}", "--input", "x"], "--input takes NAME=FILE.npy, got 'x'"),
        (["run", "{model}", "--input", "z=a.npy"], "--input names 'z', which is not an input of the model"),
        (["tune", "--onnx", "{junk}"], "not an ONNX model"),
    ],
)
def test_bad_arguments_end_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    model = _model(tmp_path / "net.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01 not a protobuf")
    argv = [a.format(model=model, junk=junk) for a in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
