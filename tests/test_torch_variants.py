"""The variants of the last chapter in PyTorch: BatchNorm, auxiliary heads, the
factorised 5x5 branch and the 28x28 stem, built from the same spec options."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from d2l_lite import architecture, counting, reference, training  # noqa: E402
from d2l_lite import torch as d2l  # noqa: E402

SPECS = dict(architecture.VARIANTS, **{"paper bn aux": architecture.PAPER_BN_AUX})


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.mark.parametrize("name", sorted(SPECS))
def test_parameter_count_is_the_analytic_count(name):
    spec = SPECS[name]
    assert d2l.count_parameters(d2l.GoogLeNet(spec)) == counting.total_params(
        counting.count_network(spec))


@pytest.mark.parametrize("name", sorted(architecture.VARIANTS))
def test_logits_match_the_reference(name):
    spec = architecture.VARIANTS[name]
    weights = reference.random_weights(spec, seed=1)
    model = d2l.load_weights(d2l.GoogLeNet(spec), weights)
    X = reference.random_input(spec, batch_size=2, seed=2)
    assert np.abs(d2l.logits(model, X) - reference.forward(spec, weights, X)).max() < 1e-4


def test_aux_heads_run_in_training_only():
    model = d2l.GoogLeNet(architecture.VARIANTS["aux heads"])
    X = torch.rand(2, 1, 96, 96)
    logits, aux = model.train()(X)
    assert tuple(logits.shape) == (2, 10) and [tuple(a.shape) for a in aux] == [(2, 10)] * 2
    assert tuple(model.eval()(X).shape) == (2, 10)


def test_batch_norm_state_starts_fresh():
    model = d2l.GoogLeNet(architecture.VARIANTS["batch norm"])
    bn = model.stem.b1.conv1_bn
    assert model.stem.b1.conv1.bias is None
    assert torch.all(bn.running_mean == 0) and torch.all(bn.running_var == 1)


def test_torchinfo_reports_the_tutorial_figures():
    torchinfo = pytest.importorskip("torchinfo")
    stats = torchinfo.summary(d2l.GoogLeNet(architecture.PAPER_BN_AUX),
                              input_size=(2, 3, 224, 224), verbose=0)
    assert stats.total_params == 13_385_816
    assert stats.total_mult_adds == counting.torchinfo_mult_adds(
        architecture.PAPER_BN_AUX, batch_size=2)


@pytest.mark.parametrize("name", ["aux heads", "28x28"])
def test_train_variant_smoke(name, fashion_mnist):
    spec = architecture.googlenet_spec(batch_norm=True, aux_heads=True) \
        if name == "aux heads" else architecture.VARIANTS[name]
    tiny = fashion_mnist.subset(64, 32)
    recipe = training.FAST.with_(num_epochs=1, batch_size=16, schedule="step")
    history = d2l.train(d2l.GoogLeNet(spec), tiny, recipe, device="cpu", plot=False,
                        progress=False)
    assert len(history.epochs) == 1
    e = history.epochs[0]
    assert all(math.isfinite(v) for v in (e.train_loss, e.train_acc, e.test_acc))
