"""Unit tests for d2l_lite.tensorflow: shapes, counts and logits against the spec."""

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("keras")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from d2l_lite import architecture, counting, reference  # noqa: E402
from d2l_lite import tensorflow as d2l  # noqa: E402

TOLERANCE = 1e-4


def _inception(block: architecture.Inception) -> d2l.Inception:
    return d2l.Inception(block.ch1x1, block.ch3x3red, block.ch3x3, block.ch5x5red,
                         block.ch5x5, block.pool_proj, name=block.name)


@pytest.fixture(scope="module")
def book_model():
    model = d2l.GoogLeNet(architecture.BOOK)
    d2l.load_weights(model, reference.random_weights(architecture.BOOK, seed=0))
    return model


@pytest.fixture(scope="module")
def paper_model():
    model = d2l.GoogLeNet(architecture.PAPER)
    d2l.load_weights(model, reference.random_weights(architecture.PAPER, seed=1))
    return model


def test_inception_output_shape_and_branch_parameters():
    spec = architecture.INCEPTION_3A
    block = _inception(spec)
    Y = block(tf.zeros((2, 28, 28, 192)))
    assert tuple(Y.shape) == (2, 28, 28, spec.out_channels) == (2, 28, 28, 256)
    analytic = {}
    for row in counting.count_inception(spec, (192, 28, 28)):
        branch = row.name.split("/")[1]
        analytic[branch] = analytic.get(branch, 0) + row.params
    assert d2l.branch_parameters(block) == analytic
    assert d2l.count_parameters(block) == sum(analytic.values()) == 163_696


def test_inception_matches_reference():
    spec = architecture.INCEPTION_3A
    block = _inception(spec)
    block(tf.zeros((1, 8, 8, 192)))
    rng = np.random.default_rng(3)
    weights = {}
    for branch in block.branches:
        for layer in branch.layers:
            if isinstance(layer, keras.layers.Conv2D):
                kernel, bias = [rng.standard_normal(w.shape).astype(np.float32) * 0.1
                                for w in layer.weights]
                layer.set_weights([kernel, bias])
                path = f"{spec.name}/{branch.name}/{layer.name}"
                weights[f"{path}/weight"] = kernel.transpose(3, 2, 0, 1)  # HWIO -> OIHW
                weights[f"{path}/bias"] = bias
    X = rng.random((2, 192, 8, 8)).astype(np.float32)
    expected = reference.inception_forward(spec, X, weights)
    got = block(np.transpose(X, (0, 2, 3, 1))).numpy().transpose(0, 3, 1, 2)
    assert np.abs(got - expected).max() < TOLERANCE


def test_inception_rejects_bad_widths():
    with pytest.raises(ValueError, match="ch3x3"):
        d2l.Inception(64, 96, 0, 16, 32, 32)


@pytest.mark.parametrize("spec, expected", [(architecture.BOOK, 5_977_530),
                                            (architecture.PAPER, 6_998_552)])
def test_parameter_count(spec, expected, book_model, paper_model):
    model = book_model if spec is architecture.BOOK else paper_model
    assert d2l.count_parameters(model) == expected
    assert expected == counting.total_params(counting.count_network(spec))


def test_count_parameters_needs_a_built_model():
    with pytest.raises(ValueError, match="not built"):
        d2l.count_parameters(d2l.GoogLeNet())


def test_parts_and_stage_shapes(book_model, capsys):
    spec = architecture.BOOK
    size = spec.input_size
    X = tf.zeros((1, size, size, spec.in_channels))
    expected = dict(spec.spatial_sizes(size))
    for part in d2l.PARTS:
        stages = getattr(book_model, part).layers
        assert [s.name for s in stages] == [s.name for s in spec.part(part)]
        for stage in stages:
            X = stage(X)
            if stage.name != "head":
                assert tuple(X.shape[1:3]) == (expected[stage.name],) * 2
    assert tuple(X.shape) == (1, spec.num_classes)
    d2l.layer_summary(book_model, (1, size, size, spec.in_channels))
    table = capsys.readouterr().out
    assert "(1, 3, 3, 1024)" in table and "2,487,536" in table  # b5's parameters


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_logits_match_reference_book(book_model, seed):
    spec = architecture.BOOK
    weights = reference.random_weights(spec, seed=0)
    X = reference.random_input(spec, batch_size=2, seed=seed)
    got = d2l.logits(book_model, X)
    assert got.dtype == np.float32 and got.shape == (2, spec.num_classes)
    assert np.abs(got - reference.forward(spec, weights, X)).max() < TOLERANCE


def test_logits_match_reference_book_batch_of_8(book_model):
    spec = architecture.BOOK
    weights = reference.random_weights(spec, seed=0)
    X = reference.random_input(spec, batch_size=8, seed=10)
    diff = np.abs(d2l.logits(book_model, X) - reference.forward(spec, weights, X)).max()
    assert diff < TOLERANCE


def test_logits_match_reference_paper(paper_model):
    spec = architecture.PAPER
    weights = reference.random_weights(spec, seed=1)
    X = reference.random_input(spec, batch_size=1, seed=0)
    got = d2l.logits(paper_model, X)
    assert got.shape == (1, 1000)
    assert np.abs(got - reference.forward(spec, weights, X)).max() < TOLERANCE


def test_too_small_input_raises(paper_model):
    with pytest.raises(ValueError, match="too small"):
        paper_model(tf.zeros((1, 160, 160, 3)))
    with pytest.raises(ValueError, match="too small"):
        d2l.logits(paper_model, np.zeros((1, 3, 160, 160), np.float32))


def test_wrong_channel_count_raises(book_model):
    with pytest.raises(ValueError, match="3-channel|1-channel"):
        book_model(tf.zeros((1, 96, 96, 3)))


def test_nchw_input_is_explained(paper_model):
    with pytest.raises(ValueError, match="NCHW"):
        paper_model(tf.zeros((1, 3, 224, 224)))


def test_load_weights_rejects_other_specs_weights():
    model = d2l.GoogLeNet(architecture.BOOK)
    with pytest.raises(ValueError, match="does not fit"):
        d2l.load_weights(model, reference.random_weights(architecture.PAPER, seed=0))
