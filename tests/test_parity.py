"""The four frameworks are the same network: same weights in, same logits out.

One set of canonical weights (``reference.random_weights``, PyTorch layout) is
loaded by name into the PyTorch, TensorFlow, JAX and MXNet models (through
``d2l_lite.backend``); their float32 logits must agree with a float64 NumPy
forward pass (``reference.float32_tolerance``), and so with each other within
twice that. MXNet
runs in its own environment (``.venv-mxnet``) through
``tests/mxnet/parity_logits.py``.
"""

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from d2l_lite import architecture, backend, reference

ROOT = Path(__file__).resolve().parents[1]
MXNET_PYTHON = Path(os.environ.get("D2L_MXNET_PYTHON", ROOT / ".venv-mxnet" / "bin" / "python"))
SPECS = {"book": architecture.BOOK, "paper": architecture.PAPER}
pytestmark = pytest.mark.slow  # MXNet's logits come from a process of their own


def backend_logits(name, spec, weights, X):
    impl = backend.get(name)
    return impl.logits(impl.load_weights(impl.build(spec), weights), X)


def mxnet_logits(spec_name, weights, X, tmp_path):
    if not MXNET_PYTHON.exists():
        pytest.fail(f"{MXNET_PYTHON} is missing: run tools/setup_env.sh to create the MXNet "
                    f"environment (or set D2L_MXNET_PYTHON)")
    source, target = tmp_path / "in.npz", tmp_path / "out.npz"
    np.savez(source, spec=spec_name, X=X, **weights)
    result = subprocess.run([str(MXNET_PYTHON), str(ROOT / "tests/mxnet/parity_logits.py"),
                             str(source), str(target)], capture_output=True, text=True,
                            cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return np.load(target)["logits"]


@pytest.mark.parametrize("spec_name, batch_size, seed", [
    ("book", 1, 0), ("book", 1, 1), ("book", 1, 2), ("book", 8, 3), ("paper", 1, 4)])
def test_four_frameworks_agree(spec_name, batch_size, seed, tmp_path):
    spec = SPECS[spec_name]
    weights = reference.random_weights(spec, seed=seed)
    X = reference.random_input(spec, batch_size=batch_size, seed=seed)
    expected = reference.forward(spec, weights, X)
    results = {name: backend_logits(name, spec, weights, X)
               for name in ("torch", "tensorflow", "jax")}
    results["mxnet"] = mxnet_logits(spec_name, weights, X, tmp_path)
    tolerance = reference.float32_tolerance(expected)  # float32 vs float64
    for name in results:
        assert results[name].shape == (batch_size, spec.num_classes), name
        assert results[name].dtype == np.float32, name
        diff = np.abs(results[name] - expected).max()
        assert diff < tolerance, f"{name} vs float64 reference: {diff:.2e}"
    # The comparison means something: different inputs give different logits.
    assert np.abs(expected).max() > 0.1
