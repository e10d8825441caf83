"""pytest configuration shared by the unit tests and nbval."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent
SHARED_DATA = ROOT.parent / "shared" / "data" / "fashion-mnist"

# Tests and CI read the shared copy of Fashion-MNIST (no internet there).
if not os.environ.get("D2L_FASHION_MNIST_DIR") and SHARED_DATA.is_dir():
    os.environ["D2L_FASHION_MNIST_DIR"] = str(SHARED_DATA)

collect_ignore = ["_build", ".venv", ".venv-mxnet", "tools", "bench"]


def pytest_collectstart(collector):
    # TensorFlow and JAX write log lines to stderr on import when there is no
    # GPU; stderr is never part of what a notebook teaches, so nbval skips it.
    if collector.fspath and str(collector.fspath).endswith(".ipynb"):
        collector.skip_compare += ("stderr",)
