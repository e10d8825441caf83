"""Unit tests for d2l_lite.mxnet's textbook model (MXNet environment only).

    .venv-mxnet/bin/python -m pytest tests/mxnet -q -p no:cacheprovider

Counts, stage shapes and logits of every variant against the spec are in
``test_contract_mxnet.py``; this file checks the pieces.
"""

import numpy as np
import pytest

mx = pytest.importorskip("mxnet")

from mxnet import nd  # noqa: E402
from mxnet.gluon import nn  # noqa: E402

from d2l_lite import architecture, counting, reference  # noqa: E402
from d2l_lite import mxnet as d2l  # noqa: E402

A = architecture.INCEPTION_3A


@pytest.fixture(scope="module")
def book_model():
    return d2l.googlenet(architecture.BOOK)


def _inception_3a(cls=d2l.Inception):
    return cls(A.ch1x1, A.ch3x3red, A.ch3x3, A.ch5x5red, A.ch5x5, A.pool_proj)


def test_inception_output_shape():
    block = _inception_3a()
    block.initialize()
    assert block(nd.zeros((2, 192, 28, 28))).shape == (2, 256, 28, 28)


def test_inception_branch_parameters_match_counting():
    block = _inception_3a()
    block.initialize()
    block(nd.zeros((1, 192, 28, 28)))
    expected = {}
    for row in counting.count_inception(A, (192, 28, 28)):
        branch = row.name.split("/")[1]
        expected[branch] = expected.get(branch, 0) + row.params
    assert d2l.branch_parameters(block) == expected
    assert d2l.count_parameters(block) == 163_696


def test_unbuilt_block_cannot_be_counted():
    block = _inception_3a()
    block.initialize()  # deferred: input channels still unknown
    with pytest.raises(ValueError, match="forward pass"):
        d2l.count_parameters(block)


def test_inception_matches_reference():
    """Random weights set in the block's own order (collect_params), named
    the canonical way, give the reference block's output."""
    block = _inception_3a()
    block.initialize()
    x = np.random.default_rng(1).random((2, 192, 28, 28)).astype(np.float32)
    block(nd.array(x))
    weights = reference.random_weights(architecture.BOOK, seed=2)
    mine = [(k, v) for k, v in weights.items() if k.startswith("inception3a/")]
    params = list(block.collect_params().values())
    assert [p.shape for p in params] == [v.shape for _, v in mine]
    for param, (_, value) in zip(params, mine):
        param.set_data(nd.array(value))
    expected = reference.inception_forward(A, x, weights)
    np.testing.assert_allclose(block(nd.array(x)).asnumpy(), expected, rtol=0,
                               atol=reference.float32_tolerance(expected))


def test_gluon_lists_parameters_in_creation_order():
    """load_weights relies on it: a replaced branch keeps its place."""
    naive = _inception_3a(d2l.NaiveInception)
    naive.initialize()
    naive(nd.zeros((1, 192, 28, 28)))
    shapes = [p.shape for p in naive.collect_params().values()]
    assert shapes == [(64, 192, 1, 1), (64,), (128, 192, 3, 3), (128,),
                      (32, 192, 5, 5), (32,), (32, 192, 1, 1), (32,)]


def test_stem_body_head(book_model):
    assert [len(part) for part in (book_model.stem, book_model.body, book_model.head)] \
        == [2, 3, 2]
    assert [len(stage) for stage in book_model.body] == [3, 6, 2]
    assert isinstance(book_model.head[0], nn.GlobalAvgPool2D)
    assert isinstance(d2l.googlenet(architecture.PAPER).head[0], nn.AvgPool2D)


def test_layer_summary_prints_every_stage(book_model, capsys):
    d2l.layer_summary(book_model, (1, 1, 96, 96))
    out = capsys.readouterr().out
    assert "(1, 1024, 3, 3)" in out and "(1, 10)" in out
    assert all(stage.name in out for stage in architecture.BOOK.stages)


@pytest.mark.parametrize("seed", [0, 1])
def test_book_logits_match_reference_hybridized(seed):
    model = d2l.googlenet(architecture.BOOK)
    weights = reference.random_weights(architecture.BOOK, seed=seed)
    assert d2l.load_weights(model, weights) is model
    x = reference.random_input(architecture.BOOK, batch_size=8, seed=seed)
    expected = reference.forward(architecture.BOOK, weights, x)
    np.testing.assert_allclose(d2l.logits(model, x), expected, rtol=0,
                               atol=reference.float32_tolerance(expected))
    model.hybridize()
    np.testing.assert_allclose(d2l.logits(model, x), expected, rtol=0,
                               atol=reference.float32_tolerance(expected))


def test_load_weights_rejects_other_spec(book_model):
    with pytest.raises(ValueError, match="conv1/weight"):
        d2l.load_weights(book_model, reference.random_weights(architecture.PAPER))
    with pytest.raises(ValueError, match="tensors"):
        d2l.load_weights(book_model, reference.random_weights(architecture.VARIANTS["batch norm"]))


def test_googlenet_refuses_what_no_textbook_class_builds():
    with pytest.raises(ValueError, match="small stem and aux heads"):
        d2l.googlenet(architecture.googlenet_spec(input_size=28, stem="small",
                                                  aux_heads=True))
    with pytest.raises(ValueError, match="naive and factorised"):
        d2l.googlenet(architecture.googlenet_spec(reduce=False, factorize=True))
    with pytest.raises(ValueError, match="factorised and residual"):
        d2l.googlenet(architecture.googlenet_spec(factorize=True, residual=True))


def test_try_gpu_prints_a_notice(capsys):
    device = d2l.try_gpu()
    assert isinstance(device, mx.Context)
    assert capsys.readouterr().out.startswith("MXNet: ")


def test_set_seed_makes_initialisation_reproducible():
    d2l.set_seed(7)
    first = d2l.googlenet(architecture.BOOK).stem[0][0].weight.data().asnumpy()
    d2l.set_seed(7)
    second = d2l.googlenet(architecture.BOOK).stem[0][0].weight.data().asnumpy()
    np.testing.assert_array_equal(first, second)


def test_paper_model_fails_exactly_below_the_spec_minimum():
    """The GoogLeNet page quotes ``architecture.PAPER.check_input`` for a too
    small image; the Gluon model fails at the same size."""
    model = d2l.googlenet(architecture.PAPER)
    smallest = architecture.PAPER.min_input_size()
    assert model(nd.zeros((1, 3, smallest, smallest))).shape == (1, 1000)
    with pytest.raises(mx.base.MXNetError, match="kernel size"):
        model(nd.zeros((1, 3, smallest - 1, smallest - 1))).wait_to_read()
