"""The variants chapter's PyTorch code beyond ``tests/test_backends.py``:
auxiliary heads in training only, torchinfo's figures, and the tutorial's
conv biases beside BatchNorm (the trainer on the variants and fresh BatchNorm
state: ``test_backends.py``)."""

import numpy as np
import pytest

import torch  # noqa: E402  (in .venv; a broken install must fail, not skip)

from d2l_lite import architecture, counting, reference  # noqa: E402
from d2l_lite import torch as d2l  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_aux_heads_run_in_training_only():
    model = d2l.googlenet(architecture.VARIANTS["aux heads"])
    X = torch.zeros(2, 1, 96, 96)
    logits, aux = model.train()(X)
    assert tuple(logits.shape) == (2, 10) and [tuple(a.shape) for a in aux] == [(2, 10)] * 2
    assert tuple(model.eval()(X).shape) == (2, 10)


@pytest.mark.parametrize("spec", [architecture.PAPER_BN_AUX, architecture.TUTORIAL_V1],
                         ids=["paper-bn-aux", "tutorial-v1"])
def test_torchinfo_reports_the_counted_figures(spec):
    """torchinfo counts the auxiliary heads' parameters and, for a batch of 2,
    its own mult-adds (``counting.torchinfo_mult_adds``). The tutorial's model
    keeps conv biases beside BatchNorm, which no other test builds: it must
    still compute the reference's logits."""
    torchinfo = pytest.importorskip("torchinfo")
    model = d2l.googlenet(spec)
    stats = torchinfo.summary(model, input_size=(2, 3, 224, 224), verbose=0)
    assert stats.total_params == counting.total_params(counting.count_network(spec))
    assert stats.total_mult_adds == counting.torchinfo_mult_adds(spec, batch_size=2)
    weights = reference.random_weights(spec, seed=1)
    X = reference.random_input(spec, batch_size=1, seed=1)
    logits = d2l.logits(d2l.load_weights(model, weights), X)
    expected = reference.forward(spec, weights, X)
    assert np.abs(logits - expected).max() < reference.float32_tolerance(expected)
