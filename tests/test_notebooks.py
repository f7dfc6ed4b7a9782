"""The notebooks in notebooks/ run top to bottom, and are committed without outputs.

Each notebook runs in a fresh Jupyter kernel (nbclient + ipykernel) started with this interpreter, importing the
directconv these tests import, in a temporary working directory, with the kernel cache, config store, data and
machine directories pointed at temporary ones and DIRECTCONV_NOTEBOOK_QUICK=1 (fewer trials, layers and runs).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

import directconv
from directconv.core.suite import network_layers

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
CELL_TIMEOUT = 600  # seconds per cell: compiling a notebook's kernels on a slow machine, with margin


def test_committed_notebooks_have_no_outputs() -> None:
    paths = sorted(NOTEBOOKS.glob("*.ipynb"))
    assert {"01_predict_new_cpu.ipynb", "02_autotune.ipynb", "03_production.ipynb"} <= {p.name for p in paths}
    for path in paths:
        nb = json.loads(path.read_text(encoding="utf-8"))
        assert nb["metadata"]["kernelspec"]["name"] == "python3", f"{path.name}: kernel must be python3"
        for i, cell in enumerate(nb["cells"]):
            if cell["cell_type"] != "code":
                continue
            assert cell["outputs"] == [] and cell["execution_count"] is None, (
                f"{path.name}, cell {i} ({cell.get('id')}): committed with outputs or an execution count; clear them "
                f"(jupyter nbconvert --clear-output --inplace {path.name})"
            )


@pytest.fixture
def kernel_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A sandbox for one notebook run; returns the working directory. The kernel inherits this environment."""
    pytest.importorskip("nbclient", reason="executing the notebooks needs nbclient (the `test` extra)")
    pytest.importorskip("nbformat", reason="executing the notebooks needs nbformat (the `test` extra)")
    kernelspec = pytest.importorskip("ipykernel.kernelspec",
                                     reason="executing the notebooks needs ipykernel (the `test` extra)")
    pytest.importorskip("matplotlib", reason="the notebooks plot with matplotlib (the `test` extra)")
    for var, name in (("DIRECTCONV_CACHE_DIR", "cache"), ("DIRECTCONV_STORE_DIR", "store"),
                      ("DIRECTCONV_DATA_DIR", "data"), ("DIRECTCONV_MACHINES_DIR", "machines"),
                      ("IPYTHONDIR", "ipython"), ("JUPYTER_RUNTIME_DIR", "runtime")):
        monkeypatch.setenv(var, str(tmp_path / name))
    monkeypatch.setenv("DIRECTCONV_NOTEBOOK_QUICK", "1")
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
    """Execute notebook `name` in `workdir`; return its text output and the number of images it displayed."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(nb, kernel_name="python3", timeout=CELL_TIMEOUT,
                   resources={"metadata": {"path": str(workdir)}}).execute()
    texts, images = [], 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                texts.append(output.text)
            elif output.output_type in ("display_data", "execute_result"):
                images += "image/png" in output.data
                texts.append(output.data.get("text/plain", ""))
    return "\n".join(texts), images


def test_predict_notebook(kernel_env: Path) -> None:
    text, images = run_notebook("01_predict_new_cpu.ipynb", kernel_env)
    assert "plan for machine haswell: predicted" in text
    assert "plan for machine cortex-a57: predicted" in text
    assert re.search(r"wob = \d+: E = \dx\d+ = \d+ accumulator vectors >= N_fma\*L_fma = 2\*5 = 10", text)  # Haswell
    assert "unpruned  pruned reduction" in text
    assert "field 'n_vec' must be 8 for isa 'avx2'" in text
    assert images >= 3


@pytest.mark.compiler
def test_autotune_notebook(kernel_env: Path, tmp_path: Path) -> None:
    text, images = run_notebook("02_autotune.ipynb", kernel_env)
    assert "best configuration: KernelConfig(" in text
    assert "config store entry written in the sandbox store" in text
    assert "model rank  estimate  measured" in text
    assert images >= 2
    # The notebook tunes into its own sandbox: neither the config store nor the tuning database of the environment
    # it runs in is touched.
    assert not (tmp_path / "store").exists()
    assert not list((tmp_path / "data").glob("*.sqlite3"))


@pytest.mark.compiler
def test_production_notebook(kernel_env: Path) -> None:
    text, images = run_notebook("03_production.ipynb", kernel_env)
    assert "peer: " in text
    assert "all correct" in text
    for layer in network_layers("resnet50")[:3]:
        assert layer.name in text
    assert "geometric mean" in text
    assert images == 1
    assert (kernel_env / "images" / "production_resnet50.png").stat().st_size > 0
