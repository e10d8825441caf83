"""Keep the book's notebooks consistent, and refresh their outputs.

    python tools/notebooks.py sync [NOTEBOOK ...]     # Colab cell, kernelspec, metadata
    python tools/notebooks.py check [NOTEBOOK ...]    # exit 1 if sync would change anything
    python tools/notebooks.py execute [--small] [--allow-errors] NOTEBOOK ...
                                  # run in place (--small: D2L_SMALL_SCALE=1), then sync
    python tools/notebooks.py repository https://github.com/OWNER/REPO
                                  # set repository.url in _config.yml, then sync all

``sync`` puts the standard first cell into every notebook (the Colab set-up,
built from ``repository.url`` in ``_config.yml`` so the URL lives in one place;
``repository`` changes that setting, and the publish workflow calls it with
the repository it publishes from),
sets the kernelspec from the file name (``mxnet.ipynb`` -> ``d2l-mxnet``, the
rest -> ``python3``) and strips metadata that changes on every run.

``execute`` runs a notebook with nbclient in the kernel it names, not at
the tests' small scale (it unsets ``D2L_SMALL_SCALE``: the full run on a GPU,
the reduced one on a CPU unless ``D2L_FULL_SCALE=1``), with the shared Fashion-MNIST copy when
``D2L_FASHION_MNIST_DIR`` is unset. Run it from the main environment. With
``--allow-errors`` (one-shot runs such as ``tools/gpu_run.sh``) a failing cell
does not stop the notebook: every cell runs, the notebook is saved with the
tracebacks, their cells are listed, and the exit status is 1.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETUP_TAG = "colab-setup"
KERNELS = {
    "python3": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
    "d2l-mxnet": {"name": "d2l-mxnet", "display_name": "Python (d2l-mxnet: MXNet 1.9)",
                  "language": "python"},
}


REPOSITORY_URL = re.compile(r"^(repository:\s*\n\s+url:\s*)(\S+)", re.M)
GITHUB_URL = re.compile(r"https://github\.com/[\w.-]+/[\w.-]+")


def repository_url() -> str:
    match = REPOSITORY_URL.search((ROOT / "_config.yml").read_text())
    if not match:
        raise SystemExit("_config.yml has no repository.url")
    return match.group(2).rstrip("/")


def with_repository(config: str, url: str) -> str:
    """``_config.yml``'s text with ``repository.url`` set to ``url``."""
    if not GITHUB_URL.fullmatch(url):
        raise SystemExit(f"not a GitHub repository URL: {url!r} "
                         f"(expected https://github.com/OWNER/REPO)")
    if not REPOSITORY_URL.search(config):
        raise SystemExit("_config.yml has no repository.url")
    return REPOSITORY_URL.sub(lambda m: m.group(1) + url, config, count=1)


def setup_source(is_mxnet: bool) -> str:
    url = repository_url()
    if is_mxnet:
        return (
            "# MXNet 1.9 cannot run on today's Colab (Python 3.12+, and MXNet\n"
            "# needs numpy<1.24, which has no wheels there). Run this notebook\n"
            "# locally in the book's d2l-mxnet kernel instead: see the README.\n"
            "# Elsewhere this cell does nothing.\n"
            "import sys\n"
            "if \"google.colab\" in sys.modules:\n"
            "    raise RuntimeError(\n"
            "        \"MXNet notebooks do not run on Colab: clone \"\n"
            f"        \"{url} and run \"\n"
            "        \"`make test` or `tools/setup_env.sh`, then pick the kernel \"\n"
            "        \"d2l-mxnet.\")"
        )
    return (
        "# On Colab, install d2l_lite from the book's repository (Colab's own\n"
        "# torch, tensorflow and jax GPU builds are kept). Elsewhere this cell\n"
        "# does nothing.\n"
        "import sys\n"
        f"repository = \"{url}\"\n"
        "if \"google.colab\" in sys.modules:  # IPython fills in {repository} below\n"
        "    %pip install -q \"d2l_lite[colab] @ git+{repository}\""
    )


def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


NOISE = re.compile(
    r"\d+%\|[^|]*\|\s*\d+/\d+ \["                        # a tqdm text bar
    r"|TqdmWarning: IProgress not found|from \.autonotebook import tqdm"
    r"|^[IW]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+:\d+\]")   # a glog/absl line


def _without_noise(output):
    """A stderr stream output without its noise lines; None if nothing else is left."""
    if output.get("output_type") != "stream" or output.get("name") != "stderr":
        return output
    text = _text(output)
    lines = [line for line in re.split(r"(?<=\n)|\r", text) if line.strip()]
    kept = [line for line in lines if not NOISE.search(line)]
    if not kept:
        return None  # only bars, blanks (a closed bar) and log lines
    return output if len(kept) == len(lines) else {**output, "text": "".join(kept)}


def _merged(outputs):
    """Consecutive stream outputs of the same name as one (a slow kernel flushes
    one print in pieces), as the book renders them (``nb_merge_streams``)."""
    merged = []
    for out in outputs:
        last = merged[-1] if merged else {}
        if (out.get("output_type") == "stream" and last.get("output_type") == "stream"
                and last.get("name") == out.get("name")):
            text = _text(last) + _text(out)
            last["text"] = text.splitlines(keepends=True)
        else:
            merged.append(out)
    return merged


def _text(output) -> str:
    text = output.get("text", "")
    return "".join(text) if isinstance(text, list) else text


def sync(path: Path, write: bool = True) -> bool:
    """Normalise one notebook in place (``write=False``: only say whether it
    would change); return True if it changed."""
    before = path.read_text()
    nb = json.loads(before)
    is_mxnet = path.stem.startswith("mxnet")
    # Kernel and volatile notebook metadata.
    meta = nb.setdefault("metadata", {})
    meta["kernelspec"] = KERNELS["d2l-mxnet" if is_mxnet else "python3"]
    meta["language_info"] = {"name": "python"}
    for key in ("widgets", "toc", "varInspector", "colab", "accelerator"):
        meta.pop(key, None)
    # The standard first code cell.
    cells = nb["cells"]
    setup = next((c for c in cells if SETUP_TAG in c.get("metadata", {}).get("tags", [])), None)
    if setup is None:
        setup = {"cell_type": "code", "execution_count": None, "metadata": {},
                 "outputs": [], "source": ""}
        first_code = next((i for i, c in enumerate(cells) if c["cell_type"] == "code"), len(cells))
        cells.insert(first_code, setup)
    setup["source"] = setup_source(is_mxnet)
    setup["metadata"]["tags"] = [SETUP_TAG, "hide-cell", "nbval-ignore-output"]
    # Cell metadata that changes on every run.
    for cell in cells:
        cell.get("metadata", {}).pop("execution", None)
        cell.get("metadata", {}).pop("ExecuteTime", None)
        cell.pop("id", None)
        if cell["cell_type"] == "code":
            # Progress-bar widgets have no state once the kernel is gone: they
            # would render as nothing (or an error) in the book. Drop them.
            # Where ipywidgets is missing (the GPU machine), tqdm falls back to
            # text bars on stderr, hundreds of lines per run; drop them too, with
            # its warning about the missing widgets and the frameworks' glog-style
            # W/I log lines (timestamp, process id, source line), which say
            # nothing to a reader.
            cell["outputs"] = _merged([
                o for o in map(_without_noise, cell.get("outputs", []))
                if o is not None and "application/vnd.jupyter.widget-view+json"
                not in o.get("data", {})])
            for out in cell["outputs"]:
                out.get("metadata", {}).pop("execution", None)
    nb["nbformat"], nb["nbformat_minor"] = 4, 4
    after = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    if after != before and write:
        path.write_text(after)
    return after != before


def execute(path: Path, small: bool = False, allow_errors: bool = False) -> int:
    """Run ``path`` in place; return the number of cells that raised."""
    import nbformat
    from nbclient import NotebookClient

    env_backup = dict(os.environ)
    if small:
        os.environ["D2L_SMALL_SCALE"] = "1"
    else:
        os.environ.pop("D2L_SMALL_SCALE", None)
    shared = ROOT.parent / "shared" / "data" / "fashion-mnist"
    if not os.environ.get("D2L_FASHION_MNIST_DIR") and shared.is_dir():
        os.environ["D2L_FASHION_MNIST_DIR"] = str(shared)
    try:
        nb = nbformat.read(path, as_version=4)
        kernel = nb.metadata.get("kernelspec", {}).get("name", "python3")
        print(f"executing {path} in kernel {kernel}", flush=True)
        NotebookClient(nb, timeout=None, kernel_name=kernel, allow_errors=allow_errors,
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        nbformat.write(nb, path)
    finally:
        os.environ.clear()
        os.environ.update(env_backup)
    sync(path)
    failed = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code" and any(
        out.get("output_type") == "error" for out in cell.get("outputs", []))]
    for i in failed:
        error = next(o for o in nb.cells[i].outputs if o.get("output_type") == "error")
        print(f"{path.name}: cell {i} raised {error.get('ename')}: {error.get('evalue')}")
    return len(failed)


def all_notebooks():
    return sorted((ROOT / "chapters").rglob("*.ipynb"))


def main(argv) -> int:
    if not argv or argv[0] not in ("sync", "check", "execute", "repository"):
        print(__doc__)
        return 2
    if argv[0] == "repository":
        if len(argv) != 2:
            print(__doc__)
            return 2
        config = ROOT / "_config.yml"
        config.write_text(with_repository(config.read_text(), argv[1].rstrip("/")))
        argv = ["sync"]
    flags = {"--small", "--allow-errors"}
    small, allow_errors = "--small" in argv[1:], "--allow-errors" in argv[1:]
    command = argv[0]
    unknown = [a for a in argv[1:] if a.startswith("-") and a not in flags]
    if unknown or (command == "execute" and not set(argv[1:]) - flags):
        print(f"unknown option {unknown[0]}" if unknown else
              "execute overwrites each notebook's outputs: name the notebooks")
        print(__doc__)
        return 2
    paths = [Path(p).resolve() for p in argv[1:] if p not in flags] or all_notebooks()
    paths = [p for p in paths if ".ipynb_checkpoints" not in p.parts]
    if command == "execute":
        return int(sum(execute(path, small, allow_errors) for path in paths) > 0)
    changed = []
    for path in paths:
        if sync(path, write=command != "check"):
            changed.append(path)
    for path in changed:
        print(f"{'would change' if command == 'check' else 'synced'}: {path.relative_to(ROOT)}")
    return 1 if command == "check" and changed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
