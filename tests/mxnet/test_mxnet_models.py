"""Unit tests for d2l_lite.mxnet (run in the MXNet environment only).

    .venv-mxnet/bin/python -m pytest tests/mxnet -q -p no:cacheprovider
"""

import numpy as np
import pytest

mx = pytest.importorskip("mxnet")

from mxnet import nd  # noqa: E402

from d2l_lite import architecture, counting, reference  # noqa: E402
from d2l_lite import mxnet as d2l  # noqa: E402

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def book_model():
    return d2l.GoogLeNet(architecture.BOOK)


@pytest.fixture(scope="module")
def paper_model():
    return d2l.GoogLeNet(architecture.PAPER)


def _inception_3a():
    spec = architecture.INCEPTION_3A
    return d2l.Inception(spec.ch1x1, spec.ch3x3red, spec.ch3x3, spec.ch5x5red,
                         spec.ch5x5, spec.pool_proj)


def test_inception_output_shape():
    block = _inception_3a()
    block.initialize()
    assert block(nd.zeros((2, 192, 28, 28))).shape == (2, 256, 28, 28)


def test_inception_branch_parameters_match_counting():
    block = _inception_3a()
    block.initialize()
    block(nd.zeros((1, 192, 28, 28)))
    expected = {}
    for row in counting.count_inception(architecture.INCEPTION_3A, (192, 28, 28)):
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
    block = _inception_3a()
    block.initialize()
    x = np.random.default_rng(1).random((2, 192, 28, 28)).astype(np.float32)
    block(nd.array(x))
    weights = {}
    rng = np.random.default_rng(2)
    for name, branch in (("branch1", block.branch1), ("branch2", block.branch2),
                         ("branch3", block.branch3), ("branch4", block.branch4)):
        for param in branch.collect_params().values():
            value = rng.standard_normal(param.shape).astype(np.float32) * 0.05
            param.set_data(nd.array(value))
            layer, kind = param.name[len(branch.prefix):].rsplit("_", 1)
            weights[f"inception3a/{name}/{layer}/{kind}"] = value
    expected = reference.inception_forward(architecture.INCEPTION_3A, x, weights)
    np.testing.assert_allclose(block(nd.array(x)).asnumpy(), expected, atol=TOLERANCE)


def test_parameter_counts(book_model, paper_model):
    assert d2l.count_parameters(book_model) == 5_977_530
    assert d2l.count_parameters(paper_model) == 6_998_552
    for spec, model in ((architecture.BOOK, book_model), (architecture.PAPER, paper_model)):
        assert d2l.count_parameters(model) == counting.total_params(counting.count_network(spec))


def test_stem_body_head(book_model):
    for part in ("stem", "body", "head"):
        assert len(getattr(book_model, part)) == len(architecture.BOOK.part(part))


@pytest.mark.parametrize("spec", [architecture.BOOK, architecture.PAPER], ids=["book", "paper"])
def test_stage_shapes_match_spec(spec, book_model, paper_model):
    model = book_model if spec is architecture.BOOK else paper_model
    x = nd.zeros((1, spec.in_channels, spec.input_size, spec.input_size))
    for (name, size), stage in zip(spec.spatial_sizes(spec.input_size),
                                   [*model.stem, *model.body, *model.head]):
        x = stage(x)
        if name != "head":
            assert x.shape[2:] == (size, size), name
    assert x.shape == (1, spec.num_classes)


def test_layer_summary_prints_every_stage(book_model, capsys):
    d2l.layer_summary(book_model, (1, 1, 96, 96))
    out = capsys.readouterr().out
    assert "(1, 1024, 3, 3)" in out and "(1, 10)" in out
    assert all(stage.name in out for stage in architecture.BOOK.stages)


def test_canonical_parameter_names(book_model):
    names = {book_model.prefix + key.replace("/", "_")
             for key in reference.parameter_shapes(architecture.BOOK)}
    assert names == set(book_model.collect_params().keys())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_book_logits_match_reference(seed):
    model = d2l.GoogLeNet(architecture.BOOK)
    weights = reference.random_weights(architecture.BOOK, seed=seed)
    d2l.load_weights(model, weights)
    x = reference.random_input(architecture.BOOK, batch_size=2, seed=seed)
    y = d2l.logits(model, x)
    assert y.dtype == np.float32 and y.shape == (2, 10)
    np.testing.assert_allclose(y, reference.forward(architecture.BOOK, weights, x),
                               atol=TOLERANCE, rtol=0)


def test_book_logits_batch_of_8_hybridized(book_model):
    weights = reference.random_weights(architecture.BOOK, seed=3)
    d2l.load_weights(book_model, weights)
    x = reference.random_input(architecture.BOOK, batch_size=8, seed=3)
    expected = reference.forward(architecture.BOOK, weights, x)
    np.testing.assert_allclose(d2l.logits(book_model, x), expected, atol=TOLERANCE, rtol=0)
    book_model.hybridize()
    try:
        np.testing.assert_allclose(d2l.logits(book_model, x), expected,
                                   atol=TOLERANCE, rtol=0)
        with pytest.raises(ValueError, match="channels"):  # still checked when hybridized
            book_model(nd.zeros((1, 3, 96, 96)))
    finally:
        book_model.hybridize(False)


def test_paper_logits_match_reference(paper_model):
    weights = reference.random_weights(architecture.PAPER, seed=0)
    d2l.load_weights(paper_model, weights)
    x = reference.random_input(architecture.PAPER, batch_size=1, seed=0)
    np.testing.assert_allclose(d2l.logits(paper_model, x),
                               reference.forward(architecture.PAPER, weights, x),
                               atol=TOLERANCE, rtol=0)


def test_too_small_input_raises_before_any_layer(paper_model):
    calls = []
    conv1 = paper_model.stem[0][0]
    hook = conv1.register_forward_pre_hook(lambda block, inputs: calls.append(1))
    try:
        with pytest.raises(ValueError, match="too small"):
            paper_model(nd.zeros((1, 3, 160, 160)))
    finally:
        hook.detach()
    assert calls == []


def test_wrong_channel_count_raises(book_model):
    with pytest.raises(ValueError, match="3 channels"):
        book_model(nd.zeros((1, 3, 96, 96)))
    with pytest.raises(ValueError, match="N x C x H x W"):
        book_model(nd.zeros((1, 96, 96)))


def test_load_weights_rejects_other_spec(book_model):
    with pytest.raises(ValueError, match="spec"):
        d2l.load_weights(book_model, reference.random_weights(architecture.PAPER))


def test_bad_arguments():
    with pytest.raises(ValueError, match="positive ints"):
        d2l.Inception(64, 96, 128, 16, 32, 0)
    with pytest.raises(ValueError, match="GoogLeNetSpec"):
        d2l.GoogLeNet("book")


def test_try_gpu_prints_a_notice(capsys):
    device = d2l.try_gpu()
    assert isinstance(device, mx.Context)
    assert capsys.readouterr().out.startswith("MXNet: ")


def test_set_seed_makes_initialisation_reproducible():
    d2l.set_seed(7)
    first = d2l.GoogLeNet(architecture.BOOK).stem[0][0].weight.data().asnumpy()
    d2l.set_seed(7)
    second = d2l.GoogLeNet(architecture.BOOK).stem[0][0].weight.data().asnumpy()
    np.testing.assert_array_equal(first, second)
