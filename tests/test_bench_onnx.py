"""`directconv bench --onnx`: the arguments and models it refuses, how a MODEL argument resolves, the memory child's
spec, and the command once, small: on a two-convolution model, then with directconv's outputs made wrong."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from directconv.bench import onnx_model
from directconv.cli.main import main

onnx = pytest.importorskip("onnx", reason="the --onnx bench reads ONNX models")
pytest.importorskip("onnxruntime", reason="the --onnx bench checks directconv against onnxruntime")


def two_convs(folder: Path, batch: int | str = "N") -> Path:
    """x (batch, 3, 20, 20) -> Conv 3x3 pad 1 + Relu -> Conv 3x3 stride 2 pad 1 -> y (batch, 16, 10, 10)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    weights = {
        "w1": rng.standard_normal((8, 3, 3, 3), dtype=np.float32) * np.float32(0.5),
        "b1": rng.standard_normal(8, dtype=np.float32) * np.float32(0.1),
        "w2": rng.standard_normal((16, 8, 3, 3), dtype=np.float32) * np.float32(0.2),
        "b2": rng.standard_normal(16, dtype=np.float32) * np.float32(0.1),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "two_convs",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 20, 20])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 16, 10, 10])],
        initializer=[numpy_helper.from_array(values, name) for name, values in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by any onnxruntime this project supports
    path = folder / "two_convs.onnx"
    onnx.save(model, str(path))
    return path


def test_bad_models_and_arguments_end_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "notes.onnx"
    bad.write_text("these are notes, not a model\n")
    assert main(["bench", "--onnx", str(bad)]) == 2
    assert f"directconv bench: error: --onnx {bad}: not an ONNX model" in capsys.readouterr().err
    assert main(["bench", "--onnx", str(tmp_path / "missing.onnx")]) == 2
    assert "no such file, and no corpus model of that name (bvlc_alexnet" in capsys.readouterr().err
    fixed = two_convs(tmp_path, batch=1)
    assert main(["bench", "--onnx", str(fixed), "--batch", "2"]) == 2
    assert "input 'x' has its batch fixed to 1 in the file: --batch 2 cannot be fed to it" in capsys.readouterr().err
    assert main(["bench", "--onnx", str(fixed), "--end-to-end", "--network", "alexnet"]) == 2
    assert "give no --layer, --network or --end-to-end with it" in capsys.readouterr().err
    assert main(["bench", "--layer", "vgg16:conv1_2", "--batch", "2"]) == 2
    assert "--batch sets the batch of --onnx models" in capsys.readouterr().err


def test_a_file_wins_over_the_corpus_name_and_the_child_spec_round_trips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert onnx_model.ModelRef.resolve("squeezenet") == onnx_model.ModelRef("squeezenet", None)
    (tmp_path / "squeezenet").write_bytes(b"")
    assert onnx_model.ModelRef.resolve("squeezenet").path == Path("squeezenet")
    spec = onnx_model.ChildSpec("/models/a.onnx", 2, (("x", (1, 3, 8, 8)), ("z", (1, 1, 4, 4))), seed=3)
    assert onnx_model.ChildSpec.from_json(spec.to_json()) == spec
    assert onnx_model.main([]) == 2  # the child's entry point wants a spec and an implementation


def _run(tmp_path: Path, model: Path) -> tuple[int, dict[str, Any]]:
    out = tmp_path / "onnx.json"
    args = ["bench", "--onnx", str(model), "--threads", "1", "--quick", "--rounds", "2", "--json", str(out)]
    status = main(args)
    return status, json.loads(out.read_text())


@pytest.mark.compiler
def test_onnx_bench_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = two_convs(tmp_path)
    status, data = _run(tmp_path, model)
    text = capsys.readouterr().out
    assert status == 0, text
    assert f"{model} (file), 1 thread, batch 1: x 1x3x20x20 -> y 1x16x10x10" in text
    assert "directconv: 2 convolutions" in text and "loaded in" in text
    heading = next(line for line in text.splitlines() if line.startswith("implementation"))
    assert heading.split() == ["implementation", "median", "ms", "spread", "GFLOP/s", "%peak"] + [
        "max", "rel", "err", "peak", "RSS", "above", "base"
    ]  # fmt: skip
    assert "speedup onnxruntime / directconv (median of per-round ratios): " in text
    assert "Summary, 1 thread:" in text and "geomean over 1 of 1 model(s)" in text

    assert data["format"] == "directconv-bench-onnx" and {"date", "cpu", "isa", "versions"} <= set(data["metadata"])
    assert data["settings"]["onnx"] == [{"model": str(model), "file": str(model.resolve())}]
    records = {r["impl"]: r for r in data["records"]}
    assert set(records) == {"directconv", "onnxruntime"}
    for r in records.values():
        assert r["status"] == "ok" and r["correct"] is True and r["median_ms"] > 0 and len(r["samples_ms"]) == 2
        assert (r["peak_rss_bytes"] is not None and r["above_baseline_bytes"] > 0) or r["memory_note"]
    assert records["directconv"]["arena_bytes"] > 0 and records["directconv"]["max_rel_error"] < 1e-4
    (row,) = data["models"]
    assert row["threads"] == 1 and row["batch"] == 1 and row["outputs"] == {"y": [1, 16, 10, 10]}
    assert row["convolutions"] == 2 and sum(row["config_sources"].values()) == 2 and row["load_seconds"] > 0
    assert row["speedup"] == pytest.approx(float(np.median(row["speedup_rounds"])))
    assert len(row["times_ms"]["directconv"]) == len(row["times_ms"]["onnxruntime"]) == 2
    assert row["max_rel_error"] == records["directconv"]["max_rel_error"] and row["tolerance"] == 1e-4
    assert set(row["memory"]) == {"directconv", "onnxruntime"}
    assert data["summary"]["1"]["geomean_speedup"] == pytest.approx(row["speedup"])
    summary_row = next(line for line in text.splitlines() if line.startswith(f"  {model}"))
    assert f"{row['speedup']:.2f}x" in summary_row
    assert summary_row.endswith(f"  {onnx_model.sources_text(row['config_sources'])}")


@pytest.mark.compiler
def test_a_wrong_directconv_output_fails_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from directconv.graph import Model

    real_run = Model.run
    monkeypatch.setattr(Model, "run", lambda self, feeds: [np.zeros_like(y) for y in real_run(self, feeds)])
    # Its child would run the real Model: the memory is beside the point here.
    monkeypatch.setattr(onnx_model, "measure_footprint", lambda spec, impl: "not measured in this test")
    status, data = _run(tmp_path, two_convs(tmp_path))
    captured = capsys.readouterr()
    assert status == 1
    assert "WRONG: not timed" in captured.out
    assert "directconv: output 'y': max relative error 1.00e+00 exceeds the tolerance 1.00e-04" in captured.out
    assert "directconv bench: directconv on" in captured.err and "at 1 thread(s): wrong" in captured.err
    records = {r["impl"]: r for r in data["records"]}
    assert records["directconv"]["status"] == "wrong" and records["directconv"]["max_rel_error"] == 1.0
    assert records["onnxruntime"]["status"] == "ok"
    (row,) = data["models"]
    assert row["speedup"] is None and row["max_rel_error"] == 1.0 and data["summary"]["1"]["geomean_speedup"] is None
