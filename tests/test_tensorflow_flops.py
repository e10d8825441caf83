"""d2l_lite.tensorflow's FLOP count (TensorFlow's profiler) against the expected
count from the spec, term by term, and the naive Inception block (no 1x1
reductions) against the spec and the NumPy reference."""

from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("keras")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from d2l_lite import architecture, counting, reference  # noqa: E402
from d2l_lite import tensorflow as d2l  # noqa: E402

BLOCK = architecture.INCEPTION_3A
NAIVE = replace(BLOCK, reduce=False)
WIDTHS = (BLOCK.ch1x1, BLOCK.ch3x3red, BLOCK.ch3x3, BLOCK.ch5x5red, BLOCK.ch5x5,
          BLOCK.pool_proj)


def built_block(reduce):
    block = d2l.Inception(*WIDTHS, reduce=reduce, name="inception3a")
    block(tf.zeros((1, 28, 28, 192)))
    return block


@pytest.mark.parametrize("spec, total", [
    (architecture.BOOK, 555_077_562),
    (architecture.PAPER, 3_181_378_328),
    (architecture.googlenet_spec(reduce=False), 1_599_695_754),
], ids=["book", "paper", "book-naive"])
def test_profiler_count_equals_the_expected_count(spec, total):
    model = d2l.GoogLeNet(spec)
    shape = (1, spec.input_size, spec.input_size, spec.in_channels)
    by_op = d2l.flops_by_op(model, shape)
    assert by_op == d2l.expected_flops_by_op(spec)
    assert d2l.count_flops(model, shape) == d2l.expected_flops(spec) == total
    # what multiplies is exactly the analytic 2 x MACs; the rest is bias and pooling
    assert by_op["Conv2D"] + by_op["MatMul"] == 2 * counting.total_macs(
        counting.count_network(spec))


def test_profiler_count_on_the_block_and_its_naive_form():
    for block_spec, total, two_macs in ((BLOCK, 257_741_568, 256_098_304),
                                        (NAIVE, 618_118_144, 616_562_688)):
        block = built_block(block_spec.reduce)
        by_op = d2l.flops_by_op(block, (1, 28, 28, 192))
        assert by_op == d2l.expected_flops_by_op(block_spec, (192, 28, 28))
        assert by_op["Conv2D"] == two_macs == 2 * counting.total_macs(
            counting.count_inception(block_spec, (192, 28, 28)))
        outputs = sum(int(np.prod(r.out_shape))
                      for r in counting.count_inception(block_spec, (192, 28, 28)) if r.params)
        assert by_op["BiasAdd"] == outputs
        assert by_op["MaxPool"] == 9 * 192 * 28 * 28
        assert d2l.count_flops(block, (1, 28, 28, 192)) == total
        assert d2l.expected_flops(block_spec, (192, 28, 28)) == total
        assert d2l.count_flops(block, (4, 28, 28, 192)) == 4 * total


def test_relu_padding_and_concatenation_count_nothing():
    conv = keras.layers.Conv2D(8, 3, strides=2, activation="relu")
    model = keras.Sequential([keras.layers.ZeroPadding2D(1), conv])
    by_op = d2l.flops_by_op(model, (1, 9, 9, 4))
    assert by_op == {"Conv2D": 2 * 8 * 5 * 5 * 4 * 9, "BiasAdd": 8 * 5 * 5}


def test_naive_block_shapes_and_parameters_match_counting():
    block = built_block(reduce=False)
    assert [layer.name for layer in block.branches[1].layers] == ["3x3"]
    assert [layer.name for layer in block.branches[2].layers] == ["5x5"]
    assert tuple(block(tf.zeros((2, 28, 28, 192))).shape) == (2, 28, 28, 256)
    analytic = {}
    for row in counting.count_inception(NAIVE, (192, 28, 28)):
        branch = row.name.split("/")[1]
        analytic[branch] = analytic.get(branch, 0) + row.params
    assert d2l.branch_parameters(block) == analytic
    assert d2l.count_parameters(block) == sum(analytic.values()) == 393_472
    assert block.get_config()["reduce"] is False


def test_naive_googlenet_matches_counting_and_reference():
    spec = architecture.googlenet_spec(reduce=False)
    model = d2l.GoogLeNet(spec)
    weights = reference.random_weights(spec, seed=0)
    d2l.load_weights(model, weights)
    assert d2l.count_parameters(model) == counting.total_params(counting.count_network(spec))
    X = reference.random_input(spec, batch_size=1, seed=0)
    assert np.abs(d2l.logits(model, X) - reference.forward(spec, weights, X)).max() < 1e-4


def test_time_forward_is_positive():
    seconds = d2l.time_forward(built_block(reduce=True), (1, 28, 28, 192), repeats=2,
                               warmup=1)
    assert isinstance(seconds, float) and seconds > 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="reduce must be True or False"):
        d2l.Inception(*WIDTHS, reduce="no")
    with pytest.raises(ValueError, match="input_size=\\(channels, height, width\\)"):
        d2l.expected_flops(BLOCK, 28)
    with pytest.raises(ValueError, match="GoogLeNetSpec"):
        d2l.expected_flops("BOOK")
    with pytest.raises(ValueError, match="N x H x W x C"):
        d2l.count_flops(built_block(True), (28, 28, 192))
    with pytest.raises(ValueError, match="repeats"):
        d2l.time_forward(built_block(True), (1, 28, 28, 192), repeats=0)
