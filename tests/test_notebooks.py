"""The notebooks as files: consistent, committed with outputs, side by side."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORKS = ("pytorch", "tensorflow", "jax", "mxnet")
CHAPTERS = sorted(p for p in (ROOT / "chapters").iterdir()
                  if p.is_dir() and any(p.glob("*.ipynb")))
NOTEBOOKS = sorted((ROOT / "chapters").rglob("*.ipynb"))


def load(path):
    return json.loads(path.read_text())


def headings(path):
    """The level-1 and level-2 headings, with the framework's name taken out."""
    out = []
    for cell in load(path)["cells"]:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                if re.match(r"#{1,2} ", line):
                    out.append(re.sub(r"\b(PyTorch|TensorFlow|JAX|MXNet)\b", "<fw>", line))
    return out


def test_notebooks_are_synced():
    """`tools/notebooks.py sync` would change nothing (set-up cell, kernel, metadata)."""
    result = subprocess.run([sys.executable, "tools/notebooks.py", "check"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_committed_with_outputs_and_without_errors(path):
    code = [c for c in load(path)["cells"] if c["cell_type"] == "code"]
    assert any(c.get("outputs") for c in code), "committed without outputs: nbval compares nothing"
    for cell in code:
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", f"error output in {path.name}: {out.get('ename')}"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_frameworks_side_by_side(chapter):
    """Each chapter has all four framework notebooks, with the same headings."""
    present = [fw for fw in FRAMEWORKS if (chapter / f"{fw}.ipynb").exists()]
    assert present == list(FRAMEWORKS), f"{chapter.name} lacks {set(FRAMEWORKS) - set(present)}"
    reference = headings(chapter / "pytorch.ipynb")
    for fw in FRAMEWORKS[1:]:
        assert headings(chapter / f"{fw}.ipynb") == reference, f"{fw} headings differ from pytorch"


def test_mxnet_notebooks_use_their_kernel_and_warn_about_colab():
    for path in (ROOT / "chapters").rglob("mxnet.ipynb"):
        nb = load(path)
        assert nb["metadata"]["kernelspec"]["name"] == "d2l-mxnet"
        first_markdown = next(c for c in nb["cells"] if c["cell_type"] == "markdown")
        text = "".join(first_markdown["source"]) + "".join(nb["cells"][1]["source"])
        assert "Colab" in text, f"{path} must say at the top that MXNet cannot run on Colab"
