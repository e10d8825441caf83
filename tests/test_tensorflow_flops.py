"""d2l_lite.tensorflow's FLOP count (TensorFlow's profiler) against the expected
count from the spec (``flop_rules.tensorflow_flops_by_op``), term by term, for
the block and its naive form (the naive model's shapes, parameters and logits:
``tests/test_backends.py``)."""

from dataclasses import replace

import numpy as np
import pytest


import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from d2l_lite import architecture, counting  # noqa: E402
from d2l_lite import tensorflow as d2l  # noqa: E402

BLOCK = architecture.INCEPTION_3A
NAIVE = replace(BLOCK, reduce=False)
WIDTHS = (BLOCK.ch1x1, BLOCK.ch3x3red, BLOCK.ch3x3, BLOCK.ch5x5red, BLOCK.ch5x5,
          BLOCK.pool_proj)


def built_block(reduce):
    block = (d2l.Inception if reduce else d2l.NaiveInception)(*WIDTHS)
    block(tf.zeros((1, 28, 28, 192)))
    return block


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


def test_time_forward_is_positive():
    seconds = d2l.time_forward(built_block(reduce=True), (1, 28, 28, 192), repeats=2,
                               warmup=1)
    assert isinstance(seconds, float) and seconds > 0
    with pytest.raises(ValueError, match="repeats"):
        d2l.time_forward(built_block(True), (1, 28, 28, 192), repeats=0)
    with pytest.raises(ValueError, match="N x H x W x C"):  # not 28 2-d images
        d2l.count_flops(built_block(True), (28, 28, 192))
