"""The textbook Keras code: the Inception block and GoogLeNet as the chapters
write them. That the built model equals the spec (every variant, stage rows,
counts, logits) is ``tests/test_backends.py``; here: the block, the padding,
the helpers' messages, and what the pages rely on."""

import numpy as np
import pytest


import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from d2l_lite import architecture, counting, reference  # noqa: E402
from d2l_lite import tensorflow as d2l  # noqa: E402

BLOCK = architecture.INCEPTION_3A
WIDTHS = (64, 96, 128, 16, 32, 32)


def built_block(cls=d2l.Inception):
    block = cls(*WIDTHS)
    block(tf.zeros((1, 28, 28, 192)))
    return block


@pytest.fixture(scope="module")
def book_model():
    return d2l.load_weights(d2l.googlenet(architecture.BOOK),
                            reference.random_weights(architecture.BOOK, seed=0))


def test_block_output_and_branch_parameters():
    block = built_block()
    assert tuple(block(tf.zeros((2, 28, 28, 192))).shape) == (2, 28, 28, 256)
    assert d2l.branch_parameters(block) == counting.branch_params(BLOCK, (192, 28, 28))
    assert d2l.count_parameters(block) == 163_696


def test_unbuilt_block_says_to_call_it_first():
    with pytest.raises(ValueError, match="call it on a batch first"):
        d2l.count_parameters(d2l.Inception(*WIDTHS))


def test_padding_is_pytorchs_symmetric_padding():
    """"same" only where it pads as PyTorch does (stride 1); stride 2 gets
    explicit zeros in front of a "valid" layer."""
    assert d2l.keras_padding(3, 1, 1) == ([], "same")
    assert d2l.keras_padding(1, 1, 0) == ([], "same")
    pad, mode = d2l.keras_padding(7, 2, 3)
    assert mode == "valid" and [p.padding for p in pad] == [((3, 3), (3, 3))]
    X = np.random.default_rng(0).random((1, 3, 10, 10)).astype(np.float32)
    conv = d2l.conv_relu(4, 7, stride=2, padding=3)
    Y = conv(X.transpose(0, 2, 3, 1)).numpy().transpose(0, 3, 1, 2)
    kernel, bias = (w.numpy() for w in conv.weights)
    expected = reference._relu(reference._conv2d(
        X.astype(np.float64), kernel.transpose(3, 2, 0, 1), bias, 2, 3))
    assert Y.shape == (1, 4, 5, 5)
    assert np.abs(Y - expected).max() < reference.float32_tolerance(expected)
    pooled = d2l.max_pool()(tf.constant(X.transpose(0, 2, 3, 1)))
    assert np.array_equal(pooled.numpy().transpose(0, 3, 1, 2),
                          reference._max_pool(X, 3, 2, 1))


def test_layer_summary_prints_the_stage_rows(capsys):
    d2l.layer_summary(d2l.googlenet(architecture.BOOK), (1, 96, 96, 1))
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["stage", "output", "shape", "parameters"]
    assert out[2].split() == ["b1", "(1,", "24,", "24,", "64)", "3,200"]
    assert out[-2].split() == ["b5", "(1,", "3,", "3,", "1024)", "2,487,536"]
    assert out[-1].split() == ["head", "(1,", "10)", "10,250"]


def test_keras_runs_on_tensorflow():
    assert keras.backend.backend() == "tensorflow"
