"""The notebooks as files: consistent, committed with outputs, side by side."""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import notebooks  # noqa: E402  (tools/notebooks.py)
import page_stats  # noqa: E402  (the page table, and the fences as it walks them)
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
            fenced = False
            for line in "".join(cell["source"]).splitlines():
                if line.lstrip().startswith(("```", "~~~")):
                    fenced = not fenced  # a "# comment" in a code block is no heading
                elif not fenced and re.match(r"#{1,2} ", line):
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


MODULES = {"pytorch": "torch", "tensorflow": "tensorflow", "jax": "jax", "mxnet": "mxnet"}
SAVE_TAG = "d2l-save"


def saved_cells(path):
    return ["".join(c["source"]) for c in load(path)["cells"]
            if c["cell_type"] == "code" and SAVE_TAG in c.get("metadata", {}).get("tags", [])]


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.stem in MODULES],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_saved_code_is_the_package_code(path):
    """A cell tagged `d2l-save` (d2l's `#@save`) is code the page teaches and later
    chapters import: it stands verbatim in a file of the framework's d2l_lite package, and
    its lines fit the page's column."""
    package = ROOT / "d2l_lite" / MODULES[path.stem]
    files = {f.name: f.read_text() for f in sorted(package.glob("*.py"))}
    for source in saved_cells(path):
        assert any(source.strip() in text for text in files.values()), \
            f"{path.relative_to(ROOT)}: this saved cell is in no file of {package.name}/:\n{source}"
        long = [line for line in source.splitlines() if len(line) > 75]
        assert not long, f"{path.relative_to(ROOT)}: lines over 75 characters: {long}"


#: A literalinclude of a Python object: ``../../d2l_lite/x.py`` and ``:pyobject: Name``.
INCLUDE = re.compile(r"\{literalinclude\}\s+\.\./\.\./(\S+)\n((?:\s*:[^\n]*\n)*)")


def included(file, name):
    """The lines of a module-level class or function ``name`` (its decorators too)."""
    source = (ROOT / file).read_text()
    for node in ast.parse(source).body:
        if getattr(node, "name", None) == name:
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            return source.splitlines()[first - 1:node.end_lineno]
    raise AssertionError(f"{file} defines no {name}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_code_a_page_shows_fits_its_column(path):
    """Code cells (collapsed ones too: a reader can open them), the code blocks
    of the prose and the objects a page literal-includes fit the content
    column, 75 characters. (The browser test measures the rendered page, where
    a tab or a note is a little narrower.)"""
    long = []
    for index, cell in enumerate(load(path)["cells"]):
        source = "".join(cell["source"])
        tags = set(cell.get("metadata", {}).get("tags", []))
        if cell["cell_type"] == "code" and not tags & {"remove-cell", "remove-input"}:
            long += [(index, line) for line in source.splitlines() if len(line) > 75]
        if cell["cell_type"] != "markdown":
            continue
        long += [(index, line) for line in page_stats.code_block_lines(source) if len(line) > 75]
        for file, options in INCLUDE.findall(source):
            name = re.search(r":pyobject:\s*(\S+)", options)
            lines = included(file, name.group(1)) if name else []
            long += [(index, f"{file}: {line}") for line in lines if len(line) > 75]
    assert not long, f"{path.relative_to(ROOT)}: lines over 75 characters: {long}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_page_keeps_the_readers_budgets(path):
    """``tools/page_stats.py``'s budgets: visible code lines, words of prose
    on a framework page, each scale, device or precision notice at most once
    (not once per run of a loop). (Wide lines are the browser test's, which
    measures the rendered page.)"""
    page = str(path.relative_to(ROOT / "chapters").with_suffix(""))
    problems = [p for p in page_stats.over_budget(page, page_stats.stats(path))
                if "characters" not in p]
    assert not problems, f"{page}: {problems}"


def class_length(source, name):
    match = re.search(rf"^class {name}\b.*?(?=^\S|\Z)", source, re.S | re.M)
    return len(match.group(0).rstrip().splitlines()) if match else None


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_pages_show_the_textbook_code(fw):
    """The Inception page shows a short Inception class; the GoogLeNet page the
    stem, body and head written out; the training page its training step."""
    inception = "\n".join(saved_cells(ROOT / "chapters" / "inception" / f"{fw}.ipynb"))
    assert class_length(inception, "Inception") is not None, "no Inception class on the page"
    assert class_length(inception, "Inception") <= 30
    googlenet = "\n".join(saved_cells(ROOT / "chapters" / "googlenet" / f"{fw}.ipynb"))
    assert all(re.search(rf"\b{stage}\b", googlenet)
               for stage in ("b1", "b2", "b3", "b4", "b5")), "stages not written out"
    assert "head" in googlenet
    step = "\n".join(saved_cells(ROOT / "chapters" / "training" / f"{fw}.ipynb"))
    assert "step" in step, "the training page shows no training step"


def test_the_colab_cells_install_from_the_repository_setting():
    """One setting names the repository (``repository.url`` in ``_config.yml``):
    every set-up cell installs from it (``notebooks.py check`` above keeps them
    equal), ``notebooks.py repository`` changes it, and the publish workflow
    sets it to the repository it publishes from."""
    url = notebooks.repository_url()
    for path in NOTEBOOKS:
        setup = next("".join(c["source"]) for c in load(path)["cells"]
                     if "colab-setup" in c.get("metadata", {}).get("tags", []))
        assert url in setup, f"{path.relative_to(ROOT)} names another repository"
    config = (ROOT / "_config.yml").read_text()
    changed = notebooks.with_repository(config, "https://github.com/someone/fork")
    assert "url: https://github.com/someone/fork\n" in changed
    assert changed.replace("someone/fork", url.split("github.com/")[1]) == config
    with pytest.raises(SystemExit, match="not a GitHub repository URL"):
        notebooks.with_repository(config, "https://example.com/book")
    publish = (ROOT / ".github" / "workflows" / "publish.yml").read_text()
    assert 'notebooks.py repository "https://github.com/$REPOSITORY"' in publish
    assert "REPOSITORY: ${{ github.repository }}" in publish


def test_on_colab_the_setup_cell_asks_pip_for_the_repository(monkeypatch):
    """The set-up cell as IPython runs it on Colab: its ``%pip`` line becomes
    ``run_line_magic``, whose ``{repository}`` IPython fills in from the cell's
    variables before pip sees the line (``InteractiveShell.var_expand``)."""
    transformer = pytest.importorskip("IPython.core.inputtransformer2")
    from IPython.utils.text import DollarFormatter
    calls = []

    class Shell:  # the two things the transformed cell asks of IPython
        def run_line_magic(self, name, line):
            calls.append((name, DollarFormatter().vformat(line, [], namespace)))

    source = transformer.TransformerManager().transform_cell(
        notebooks.setup_source(is_mxnet=False))
    namespace = {"get_ipython": Shell}
    exec(source, namespace)
    assert calls == [], "off Colab the cell must do nothing"
    monkeypatch.setitem(sys.modules, "google.colab", type(sys)("google.colab"))
    exec(source, namespace)
    assert calls == [("pip", f'install -q "d2l_lite[colab] @ git+'
                             f'{notebooks.repository_url()}"')]


def test_no_backtick_fence_has_a_backtick_in_its_title():
    """CommonMark ends a backtick fence's info string at a backtick, so
    ```{admonition} Going deeper: `x` renders as text and an empty code block;
    such a title needs a ~~~ fence."""
    bad = [(str(path.relative_to(ROOT)), line) for path in NOTEBOOKS
           for cell in load(path)["cells"] if cell["cell_type"] == "markdown"
           for line in "".join(cell["source"]).splitlines()
           if re.match(r"\s*`{3,}(?!`)[^`]*`", line)]
    assert not bad, bad
