"""pytest configuration shared by the unit tests and nbval."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
SHARED_DATA = ROOT.parent / "shared" / "data" / "fashion-mnist"

# Tests and CI read the shared copy of Fashion-MNIST (no internet there).
if not os.environ.get("D2L_FASHION_MNIST_DIR") and SHARED_DATA.is_dir():
    os.environ["D2L_FASHION_MNIST_DIR"] = str(SHARED_DATA)

collect_ignore = ["_build", ".venv", ".venv-mxnet", "tools", "bench"]


def pytest_collection_modifyitems(items):
    # Every notebook cell is a slow test: `make test-fast` leaves them out.
    for item in items:
        if str(item.fspath).endswith(".ipynb"):
            item.add_marker(pytest.mark.slow)


def pytest_collectstart(collector):
    # TensorFlow and JAX write log lines to stderr on import when there is no
    # GPU; stderr is never part of what a notebook teaches, so nbval skips it.
    if collector.fspath and str(collector.fspath).endswith(".ipynb"):
        collector.skip_compare += ("stderr",)


@pytest.fixture(scope="session")
def fashion_mnist():
    """The whole Fashion-MNIST set, read and validated once per test session;
    training tests take a ``.subset(...)`` of it."""
    from d2l_lite import data

    return data.load_fashion_mnist(verbose=False)


@pytest.fixture(scope="module")
def torch_one_thread():
    """`make test` runs two pytest workers on two cores: one PyTorch thread each
    keeps its many small operators from waiting on each other's threads."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
