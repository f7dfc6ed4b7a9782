"""The notebooks in notebooks/ run top to bottom, use only the public API, and are committed without outputs.

Each notebook's first code cell holds its parameters, tagged "parameters" as papermill expects. A test runs a notebook
in a fresh Jupyter kernel (nbclient + ipykernel) started with this interpreter, importing the directconv these tests
import, in a temporary working directory, with the kernel cache, config store, data and machine directories pointed at
temporary ones, and with quick values for some parameters (fewer trials, layers and runs) in a cell inserted after
the parameters cell, as papermill injects them.
"""

from __future__ import annotations

import ast
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

import directconv

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
CELL_TIMEOUT = 600  # seconds per cell: compiling a notebook's kernels on a slow machine, with margin

# Parameter values for a quick run of each notebook, injected after its parameters cell.
QUICK = {
    "01_predict_new_cpu.ipynb": {"LAYERS": ["resnet50:res4_3x3", "resnet50:res5_3x3"]},
    "02_autotune.ipynb": {"TRIALS": 8},
    "03_production.ipynb": {"ROUNDS": 3, "CALLS": 2, "MAX_LAYERS": 3},
}


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def code_cells(nb: dict[str, Any]) -> list[dict[str, Any]]:
    return [cell for cell in nb["cells"] if cell["cell_type"] == "code"]


def source(cell: dict[str, Any]) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_committed_notebooks_have_no_outputs() -> None:
    paths = sorted(NOTEBOOKS.glob("*.ipynb"))
    assert set(QUICK) <= {p.name for p in paths}
    for path in paths:
        nb = load(path)
        assert nb["metadata"]["kernelspec"]["name"] == "python3", f"{path.name}: kernel must be python3"
        for i, cell in enumerate(nb["cells"]):
            if cell["cell_type"] != "code":
                continue
            assert cell["outputs"] == [] and cell["execution_count"] is None, (
                f"{path.name}, cell {i} ({cell.get('id')}): committed with outputs or an execution count; clear them "
                f"(jupyter nbconvert --clear-output --inplace {path.name})"
            )


@pytest.mark.parametrize("name", sorted(QUICK))
def test_parameters_cell(name: str) -> None:
    """The first code cell is tagged "parameters", only assigns values, and assigns every quick-run parameter."""
    first = code_cells(load(NOTEBOOKS / name))[0]
    assert "parameters" in first["metadata"].get("tags", []), f"{name}: the first code cell must be tagged parameters"
    assigned = set()
    for statement in ast.parse(source(first)).body:
        assert isinstance(statement, ast.Assign) and all(isinstance(t, ast.Name) for t in statement.targets), (
            f"{name}: the parameters cell may only assign values to names, found: {ast.unparse(statement)}"
        )
        assigned.update(t.id for t in statement.targets)
    assert set(QUICK[name]) <= assigned, (
        f"{name}: quick-run parameters not in the parameters cell: {sorted(set(QUICK[name]) - assigned)}"
    )


@pytest.mark.parametrize("name", sorted(QUICK))
def test_notebook_uses_only_the_public_api(name: str) -> None:
    """`import directconv as dc` and the names in directconv.__all__, nothing from its subpackages."""
    public = set(directconv.__all__)
    nb = load(NOTEBOOKS / name)
    for cell in nb["cells"]:
        text = source(cell)
        if cell["cell_type"] == "markdown":
            used = set(re.findall(r"\bdirectconv\.(\w+)", text))
            assert used <= public, f"{name}, cell {cell.get('id')}: mentions non-public {sorted(used - public)}"
            continue
        if cell["cell_type"] != "code":
            continue
        aliases = set()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert alias.name.split(".")[0] != "directconv" or alias.name == "directconv", (
                        f"{name}, cell {cell.get('id')}: imports the internal module {alias.name}"
                    )
                    if alias.name == "directconv":
                        aliases.add(alias.asname or alias.name)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "directconv":
                assert node.module == "directconv", f"{name}, cell {cell.get('id')}: imports from {node.module}"
                imported = {alias.name for alias in node.names}
                assert imported <= public, f"{name}, cell {cell.get('id')}: imports non-public {imported - public}"
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
                assert node.attr in public, f"{name}, cell {cell.get('id')}: uses non-public directconv.{node.attr}"


@pytest.fixture
def kernel_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A sandbox for one notebook run; returns the working directory. The kernel inherits this environment."""
    pytest.importorskip("nbclient", reason="executing the notebooks needs nbclient (the `test` extra)")
    pytest.importorskip("nbformat", reason="executing the notebooks needs nbformat (the `test` extra)")
    kernelspec = pytest.importorskip(
        "ipykernel.kernelspec", reason="executing the notebooks needs ipykernel (the `test` extra)"
    )
    pytest.importorskip("matplotlib", reason="the notebooks plot with matplotlib (the `test` extra)")
    for var, name in (
        ("DIRECTCONV_CACHE_DIR", "cache"),
        ("DIRECTCONV_STORE_DIR", "store"),
        ("DIRECTCONV_DATA_DIR", "data"),
        ("DIRECTCONV_MACHINES_DIR", "machines"),
        ("IPYTHONDIR", "ipython"),
        ("JUPYTER_RUNTIME_DIR", "runtime"),
    ):
        monkeypatch.setenv(var, str(tmp_path / name))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend, whatever the caller uses
    # The kernel must import this same directconv, installed or from a checkout (as the tuner's worker does).
    package_root = str(Path(directconv.__file__).resolve().parent.parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p))
    # A kernelspec "python3" running this interpreter, found before any the user has installed.
    kernelspec.write_kernel_spec(tmp_path / "jupyter" / "kernels" / "python3")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    workdir = tmp_path / "work"
    workdir.mkdir()
    return workdir


def run_notebook(name: str, workdir: Path) -> tuple[str, int]:
    """Execute notebook `name` in `workdir` with its QUICK parameters; return its text output and images shown."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    index = next(i for i, cell in enumerate(nb.cells) if "parameters" in cell.metadata.get("tags", []))
    injected = nbformat.v4.new_code_cell("\n".join(f"{key} = {value!r}" for key, value in QUICK[name].items()))
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(index + 1, injected)
    NotebookClient(
        nb, kernel_name="python3", timeout=CELL_TIMEOUT, resources={"metadata": {"path": str(workdir)}}
    ).execute()
    texts, images = [], 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                texts.append(output.text)
            elif output.output_type in ("display_data", "execute_result"):
                images += "image/png" in output.data
                texts.append(output.data.get("text/plain", ""))
    return "\n".join(texts), images


@pytest.mark.slow
def test_predict_notebook(kernel_env: Path) -> None:
    text, images = run_notebook("01_predict_new_cpu.ipynb", kernel_env)
    assert re.search(r"plan for machine haswell: plain kernel, [a-zA-Z -]+, predicted", text)
    assert re.search(r"plan for machine cortex-a57: plain kernel, [a-zA-Z -]+, predicted", text)
    assert re.search(r"wob = \d+: E = \dx\d+ = \d+ accumulator vectors >= N_fma\*L_fma = 2\*5 = 10", text)  # Haswell
    assert "unpruned  pruned reduction" in text
    assert "vgg16:conv3_2" not in text  # the injected LAYERS replaced the notebook's own
    assert "field 'n_vec' must be 8 for isa 'avx2'" in text
    assert images >= 3


@pytest.mark.slow
@pytest.mark.compiler
def test_autotune_notebook(kernel_env: Path, tmp_path: Path) -> None:
    text, images = run_notebook("02_autotune.ipynb", kernel_env)
    assert "best configuration: KernelConfig(" in text
    assert "config store entry written in the sandbox store" in text
    assert "model rank  estimate  measured" in text
    assert f"{QUICK['02_autotune.ipynb']['TRIALS']} trials requested" in text
    assert images >= 2
    # The notebook tunes into its own sandbox: neither the config store nor the tuning database of the environment
    # it runs in is touched.
    assert not (tmp_path / "store").exists()
    assert not list((tmp_path / "data").glob("*.sqlite3"))


@pytest.mark.slow
@pytest.mark.compiler
def test_production_notebook(kernel_env: Path) -> None:
    text, images = run_notebook("03_production.ipynb", kernel_env)
    assert "peer: " in text
    assert "all correct" in text
    assert "NCHW in and out on both sides" in text
    layers = directconv.network_layers("resnet50")
    for layer in layers[: QUICK["03_production.ipynb"]["MAX_LAYERS"]]:
        assert layer.name in text
    assert layers[-1].name not in text  # the injected MAX_LAYERS replaced the notebook's own
    assert "geometric mean" in text
    assert images == 1
    assert (kernel_env / "images" / "production_resnet50.png").stat().st_size > 0
