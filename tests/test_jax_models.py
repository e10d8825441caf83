"""The textbook JAX/Flax code: the Inception block and GoogLeNet as the
chapters write them. That the built model equals the spec (every variant,
stage rows, counts, logits) is ``tests/test_backends.py``; here: the block,
the helpers, and what the pages rely on.

Shapes and counts come from ``jax.eval_shape`` (nothing is computed).
"""

import jax
import jax.numpy as jnp

from d2l_lite import architecture, counting, reference
from d2l_lite import jax as d2l

BOOK, PAPER, BLOCK = architecture.BOOK, architecture.PAPER, architecture.INCEPTION_3A
WIDTHS = (64, 96, 128, 16, 32, 32)


def shapes(module, input_shape):
    """The variables ``init`` would return, as shapes only."""
    x = jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32)
    return jax.eval_shape(module.init, jax.random.key(0), x)


def test_block_output_and_branch_parameters():
    block = d2l.Inception(*WIDTHS)
    variables = d2l.init(block, (1, 28, 28, 192))
    assert block.apply(variables, jnp.ones((2, 28, 28, 192))).shape == (2, 28, 28, 256)
    assert d2l.branch_parameters(block, (1, 28, 28, 192)) == \
        counting.branch_params(BLOCK, (192, 28, 28))
    assert d2l.count_parameters(variables) == 163_696
    # Flax infers the input channels; kernels are HWIO
    assert variables["params"]["ConvReLU_4"]["Conv_0"]["kernel"].shape == (5, 5, 16, 32)


def test_layer_summary_prints_the_stage_rows(capsys):
    d2l.layer_summary(d2l.GoogLeNet(), (1, 96, 96, 1))
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["stage", "output", "shape", "parameters"]
    assert out[2].split() == ["b1", "(1,", "24,", "24,", "64)", "3,200"]
    assert out[-1].split() == ["head", "(1,", "10)", "10,250"]


def test_weights_load_at_the_size_the_model_implies():
    """No input shape: the paper's head implies 224x224 (not the book's 96)."""
    variables = d2l.load_weights(d2l.googlenet(PAPER), reference.xavier_weights(PAPER))
    assert d2l.count_parameters(variables) == counting.total_params(
        counting.count_network(PAPER))


def test_set_seed_returns_a_key():
    assert jnp.array_equal(jax.random.key_data(d2l.set_seed(3)),
                           jax.random.key_data(jax.random.key(3)))


def test_try_gpu_prints_a_notice(capsys):
    device = d2l.try_gpu()
    assert device in jax.devices()
    assert capsys.readouterr().out.startswith("JAX: ")
