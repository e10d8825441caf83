"""The textbook JAX/Flax code: the Inception block and GoogLeNet as the
chapters write them. That the built model equals the spec (every variant,
stage rows, counts, logits) is ``tests/test_contract.py``; here: the block,
the helpers, and what the pages rely on.

Shapes and counts come from ``jax.eval_shape`` (nothing is computed).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from d2l_lite import architecture, counting, reference
from d2l_lite import jax as d2l

BOOK, PAPER, BLOCK = architecture.BOOK, architecture.PAPER, architecture.INCEPTION_3A
WIDTHS = (64, 96, 128, 16, 32, 32)


def shapes(module, input_shape):
    """The variables ``init`` would return, as shapes only."""
    x = jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32)
    return jax.eval_shape(module.init, jax.random.key(0), x)


def test_block_widths_are_table_1s_row():
    assert WIDTHS == (BLOCK.ch1x1, BLOCK.ch3x3red, BLOCK.ch3x3, BLOCK.ch5x5red,
                      BLOCK.ch5x5, BLOCK.pool_proj)


def test_block_output_and_branch_parameters():
    block = d2l.Inception(*WIDTHS)
    variables = d2l.init(block, (1, 28, 28, 192))
    assert block.apply(variables, jnp.ones((2, 28, 28, 192))).shape == (2, 28, 28, 256)
    assert d2l.branch_parameters(block, (1, 28, 28, 192)) == \
        counting.branch_params(BLOCK, (192, 28, 28))
    assert d2l.count_parameters(variables) == 163_696
    # Flax infers the input channels; kernels are HWIO
    assert variables["params"]["ConvReLU_4"]["Conv_0"]["kernel"].shape == (5, 5, 16, 32)


def test_block_matches_the_reference():
    block = d2l.Inception(*WIDTHS)
    weights = reference.random_weights(BOOK, seed=2)
    arrays = [w for name, w in weights.items() if name.startswith("inception3a/")]
    params = {f"ConvReLU_{i}": {"Conv_0": {"kernel": k.transpose(2, 3, 1, 0), "bias": b}}
              for i, (k, b) in enumerate(zip(arrays[::2], arrays[1::2]))}
    X = np.random.default_rng(0).random((2, 192, 28, 28)).astype(np.float32)
    Y = d2l.logits(block, X, {"params": params})  # NCHW in, NHWC out
    expected = reference.inception_forward(BLOCK, X, weights).transpose(0, 2, 3, 1)
    assert np.abs(Y - expected).max() < reference.float32_tolerance(expected)


@pytest.mark.parametrize("spec, expected", [(BOOK, 5_977_530), (PAPER, 6_998_552)])
def test_parameter_count(spec, expected):
    model = d2l.googlenet(spec)
    size = spec.input_size
    assert d2l.count_parameters(shapes(model, (1, size, size, spec.in_channels))) == expected


def test_googlenet_is_stem_body_head_of_named_stages():
    rows = d2l.stage_rows(d2l.GoogLeNet(), (1, 96, 96, 1))
    assert [name for name, _, _ in rows] == ["b1", "b2", "b3", "b4", "b5", "head"]
    assert rows == counting.stage_rows(BOOK)


def test_layer_summary_prints_the_stage_rows(capsys):
    d2l.layer_summary(d2l.GoogLeNet(), (1, 96, 96, 1))
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["stage", "output", "shape", "parameters"]
    assert out[2].split() == ["b1", "(1,", "24,", "24,", "64)", "3,200"]
    assert out[-1].split() == ["head", "(1,", "10)", "10,250"]


@pytest.mark.parametrize("seed", [0, 1])
def test_logits_match_reference(seed):
    model = d2l.GoogLeNet()
    weights = reference.random_weights(BOOK, seed=seed)
    X = reference.random_input(BOOK, batch_size=8, seed=seed)
    y = d2l.logits(model, X, d2l.load_weights(model, weights))
    assert y.dtype == np.float32 and y.shape == (8, 10)
    expected = reference.forward(BOOK, weights, X)
    assert np.abs(y - expected).max() < reference.float32_tolerance(expected)


def test_load_weights_pairs_in_creation_order_and_converts_layouts():
    weights = reference.random_weights(BOOK, seed=0)
    variables = d2l.load_weights(d2l.GoogLeNet(), weights)
    params = variables["params"]
    assert set(variables) == {"params"}
    np.testing.assert_array_equal(params["ConvReLU_0"]["Conv_0"]["kernel"],
                                  weights["conv1/weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(params["Inception_8"]["ConvReLU_5"]["Conv_0"]["bias"],
                                  weights["inception5b/branch4/pool_proj/bias"])
    np.testing.assert_array_equal(params["Dense_0"]["kernel"], weights["fc/weight"].T)


def test_load_weights_names_the_tensor_that_does_not_fit():
    model = d2l.GoogLeNet()
    with pytest.raises(ValueError, match="conv1/weight"):
        d2l.load_weights(model, reference.random_weights(PAPER), (1, 96, 96, 1))
    with pytest.raises(ValueError, match="tensors but the Flax model"):
        d2l.load_weights(model, reference.random_weights(architecture.PAPER_BN_AUX))


def test_set_seed_returns_a_key():
    assert jnp.array_equal(jax.random.key_data(d2l.set_seed(3)),
                           jax.random.key_data(jax.random.key(3)))


def test_try_gpu_prints_a_notice(capsys):
    device = d2l.try_gpu()
    assert device in jax.devices()
    assert capsys.readouterr().out.startswith("JAX: ")
