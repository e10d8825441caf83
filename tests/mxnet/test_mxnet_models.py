"""What only MXNet's textbook model does (MXNet environment only): Gluon's deferred
shapes, hybridizing, the blocks alone, its FLOP hooks. Counts, stage shapes, logits,
ports by name and FLOPs of whole networks: ``tests/test_backends.py``.

    .venv-mxnet/bin/python -m pytest tests/mxnet -q -p no:cacheprovider
"""

from dataclasses import replace

import numpy as np
import pytest

mx = pytest.importorskip("mxnet")

from mxnet import autograd, nd  # noqa: E402

from d2l_lite import architecture, counting, reference  # noqa: E402
from d2l_lite import mxnet as d2l  # noqa: E402

A = architecture.INCEPTION_3A
BN_AUX = architecture.googlenet_spec(batch_norm=True, aux_heads=True)


def built(cls, conv=d2l.conv_relu, hybridize=False):
    block = cls(A.ch1x1, A.ch3x3red, A.ch3x3, A.ch5x5red, A.ch5x5, A.pool_proj, conv)
    block.initialize()
    block.hybridize(hybridize)
    block(nd.zeros((1, 192, 28, 28)))
    return block


@pytest.mark.parametrize("cls", [d2l.Inception, d2l.NaiveInception, d2l.FactorizedInception])
def test_blocks_count_and_hook_like_the_description(cls):
    spec = {d2l.Inception: A, d2l.NaiveInception: replace(A, reduce=False),
            d2l.FactorizedInception: replace(A, factorize=True)}[cls]
    block = built(cls)
    assert block(nd.zeros((2, 192, 28, 28))).shape == (2, 256, 28, 28)
    expected = {}
    for row in counting.count_inception(spec, (192, 28, 28)):
        branch = row.name.split("/")[1]
        expected[branch] = expected.get(branch, 0) + row.params
    assert d2l.branch_parameters(block) == expected
    flops = counting.analytic_flops(spec, (192, 28, 28))
    assert d2l.count_flops(block, (3, 192, 28, 28)) == 3 * flops  # the batch scales it


def test_what_cannot_be_counted_says_why():
    block = d2l.Inception(*[8] * 6)
    block.initialize()  # deferred: input channels still unknown
    with pytest.raises(ValueError, match="forward pass"):
        d2l.count_parameters(block)
    with pytest.raises(ValueError, match="hybridize"):
        d2l.count_flops(built(d2l.Inception, hybridize=True), (1, 192, 28, 28))
    with pytest.raises(ValueError, match="N x C x H x W"):
        d2l.count_flops(built(d2l.Inception), (192, 28, 28))


def test_hybridized_logits_and_the_summary(capsys):
    model = d2l.googlenet(architecture.BOOK)
    weights = reference.random_weights(architecture.BOOK, seed=1)
    x = reference.random_input(architecture.BOOK, batch_size=4, seed=1)
    eager = d2l.logits(d2l.load_weights(model, weights), x)
    model.hybridize()
    # both float32, each within float32_tolerance of the exact logits; the
    # cached graph may add in another order (equal to the bit on this machine)
    np.testing.assert_allclose(d2l.logits(model, x), eager, rtol=0,
                               atol=2 * reference.float32_tolerance(eager))
    d2l.layer_summary(model, (1, 1, 96, 96))
    out = capsys.readouterr().out
    assert "(1, 1024, 3, 3)" in out and "(1, 10)" in out
    assert all(stage.name in out for stage in architecture.BOOK.stages)


def test_names_come_from_the_structure_of_any_textbook_model():
    """A model the page builds by hand (SyncBatchNorm) takes the weights by name; a
    spec's weights meet another spec's model as a ValueError naming the tensor."""
    for spec in architecture.VARIANTS.values():
        model = d2l.googlenet(spec)
        assert d2l.spec_of(model) == spec
        del model.spec  # as if built by hand: the description read from the layers
        assert d2l.spec_of(model) == spec
    sync = d2l.sync_bn_googlenet([mx.cpu(0)])
    weights = reference.random_weights(architecture.VARIANTS["batch norm"])
    d2l.load_weights(sync, weights)
    back = d2l.get_weights(sync)
    assert all((back[k] == v).all() for k, v in weights.items())
    with pytest.raises(ValueError, match=r"lack \d+ tensor\(s\) of the MXNet model "
                                         r"\['conv1/bias'"):
        d2l.load_weights(d2l.googlenet(architecture.BOOK), weights)


def test_batch_norm_and_aux_heads_count_flops_and_take_weights_by_name():
    """(Their Gluon layers and settings: test_mxnet_variants.py.)"""
    model = d2l.googlenet(BN_AUX)
    assert d2l.count_flops(model, (1, 1, 96, 96)) == counting.analytic_flops(BN_AUX)
    weights = reference.random_weights(BN_AUX)
    d2l.load_weights(model, weights)  # same-shaped heads: aux2's tensors go to aux2
    np.testing.assert_array_equal(model.aux2[2].weight.data().asnumpy(),
                                  weights["aux2/fc1/weight"])


@pytest.mark.parametrize("hybridize", [False, True], ids=["eager", "hybridized"])
def test_training_mode_returns_aux_logits(hybridize, recwarn):
    spec = architecture.VARIANTS["aux heads"]
    model = d2l.googlenet(spec)
    weights = reference.random_weights(spec, seed=2)
    d2l.load_weights(model, weights)
    x = reference.random_input(spec, batch_size=2, seed=2)
    model.hybridize(hybridize)
    with autograd.record():
        main, aux = model(nd.array(x))
    assert [a.shape for a in (main, *aux)] == [(2, 10)] * 3
    y = d2l.logits(model, x)  # prediction mode after training mode: logits only
    expected = reference.forward(spec, weights, x)
    tolerance = reference.float32_tolerance(expected)
    np.testing.assert_allclose(y, expected, atol=tolerance, rtol=0)
    np.testing.assert_allclose(main.asnumpy(), y, atol=tolerance, rtol=0)
    assert not [w for w in recwarn if "is not used" in str(w.message)]  # Gluon's warning


def test_device_seed_and_timing(capsys):
    assert isinstance(d2l.try_gpu(), mx.Context)
    assert capsys.readouterr().out.startswith("MXNet: ")
    first = [d2l.set_seed(7), d2l.googlenet(architecture.BOOK)][1]
    second = [d2l.set_seed(7), d2l.googlenet(architecture.BOOK)][1]
    np.testing.assert_array_equal(first.stem[0][0].weight.data().asnumpy(),
                                  second.stem[0][0].weight.data().asnumpy())
    assert 0 < d2l.time_forward(built(d2l.Inception), (2, 192, 28, 28), 3, 1) < 60
