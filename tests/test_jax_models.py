"""Unit tests for d2l_lite.jax: shapes, parameter counts and logits vs the reference.

Parameter counts and shapes come from ``jax.eval_shape`` (nothing is computed);
logits use weights loaded with ``load_weights``, so the slow random
initialisation runs only once, for the small Inception block.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from d2l_lite import architecture, counting, reference
from d2l_lite import jax as d2l

BOOK, PAPER, BLOCK = architecture.BOOK, architecture.PAPER, architecture.INCEPTION_3A


def nhwc(spec, size=None, batch_size=1):
    size = spec.input_size if size is None else size
    return (batch_size, size, size, spec.in_channels)


def param_shapes(model, input_shape):
    """The variables ``model.init`` would return, as shapes only."""
    x = jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32)
    return jax.eval_shape(model.init, jax.random.key(0), x)


@pytest.fixture(scope="module")
def block_and_variables():
    block = d2l.Inception(BLOCK.ch1x1, BLOCK.ch3x3red, BLOCK.ch3x3, BLOCK.ch5x5red,
                          BLOCK.ch5x5, BLOCK.pool_proj)
    return block, d2l.init(block, (1, 28, 28, 192), seed=0)


@pytest.fixture(scope="module")
def book_model_and_weights():
    model = d2l.GoogLeNet(BOOK)
    weights = reference.random_weights(BOOK, seed=0)
    return model, weights, d2l.load_weights(model, weights)


def test_inception_output_shape(block_and_variables):
    block, variables = block_and_variables
    y = block.apply(variables, jnp.ones((2, 28, 28, 192)))
    assert y.shape == (2, 28, 28, 256)


def test_inception_branch_parameters_match_counting(block_and_variables):
    _, variables = block_and_variables
    analytic = {}
    for row in counting.count_inception(BLOCK, (192, 28, 28)):
        branch = row.name.split("/")[1]
        analytic[branch] = analytic.get(branch, 0) + row.params
    assert d2l.branch_parameters(variables) == analytic
    assert d2l.count_parameters(variables) == 163_696  # 192 channels in


def test_inception_kernels_are_hwio(block_and_variables):
    _, variables = block_and_variables
    assert variables["params"]["branch3"]["5x5"]["kernel"].shape == (5, 5, 16, 32)


@pytest.mark.parametrize("spec, expected", [(BOOK, 5_977_530), (PAPER, 6_998_552)])
def test_parameter_count(spec, expected):
    variables = param_shapes(d2l.GoogLeNet(spec), nhwc(spec))
    assert d2l.count_parameters(variables) == expected
    assert expected == counting.total_params(counting.count_network(spec))


def test_stem_body_head_hold_the_spec_stages():
    variables = param_shapes(d2l.GoogLeNet(BOOK), nhwc(BOOK))
    params = variables["params"]
    assert set(params) == {"stem", "body", "head"}
    for part in ("stem", "body", "head"):
        assert set(params[part]) == {s.name for s in BOOK.part(part)}
    assert params["body"]["b3"]["inception3a"]["branch2"]["3x3"]["kernel"].shape == \
        (3, 3, 96, 128)
    assert params["head"]["head"]["fc"]["kernel"].shape == (1024, 10)


@pytest.mark.parametrize("spec, size", [(BOOK, 96), (BOOK, 64), (PAPER, 224)])
def test_stage_shapes_follow_spec(spec, size, capsys):
    d2l.layer_summary(d2l.GoogLeNet(spec), nhwc(spec, size))
    lines = capsys.readouterr().out.splitlines()[2:]
    assert [line.split()[0] for line in lines] == [s.name for s in spec.stages]
    channels = {}
    for stage in spec.stages:
        for layer in stage.layers:
            if hasattr(layer, "out_channels"):
                channels[stage.name] = layer.out_channels
    for line, (stage, side) in zip(lines, spec.spatial_sizes(size)):
        shape = re.search(r"\(.*\)", line).group(0)
        if stage == "head":
            assert shape == f"(1, {spec.num_classes})"
        else:
            assert shape == f"(1, {side}, {side}, {channels[stage]})"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_logits_match_reference(book_model_and_weights, seed):
    # Batches of 8, so the jit-compiled forward pass is compiled once.
    model, weights, variables = book_model_and_weights
    X = reference.random_input(BOOK, batch_size=8, seed=seed)
    y = d2l.logits(model, X, variables)
    assert y.dtype == np.float32 and y.shape == (8, 10)
    np.testing.assert_allclose(y, reference.forward(BOOK, weights, X), rtol=0, atol=1e-4)


def test_logits_match_reference_paper():
    model = d2l.GoogLeNet(PAPER)
    weights = reference.random_weights(PAPER, seed=1)
    X = reference.random_input(PAPER, batch_size=1, seed=1)
    y = d2l.logits(model, X, d2l.load_weights(model, weights))
    assert y.shape == (1, 1000)
    np.testing.assert_allclose(y, reference.forward(PAPER, weights, X), rtol=0, atol=1e-4)


def test_too_small_input_raises_before_any_layer():
    model = d2l.GoogLeNet(PAPER)
    x = jax.ShapeDtypeStruct((1, 160, 160, 3), jnp.float32)
    with pytest.raises(ValueError, match="too small"):
        jax.eval_shape(model.init, jax.random.key(0), x)


def test_wrong_channel_count_raises():
    model = d2l.GoogLeNet(BOOK)
    x = jax.ShapeDtypeStruct((1, 96, 96, 3), jnp.float32)
    with pytest.raises(ValueError, match="1-channel"):
        jax.eval_shape(model.init, jax.random.key(0), x)


def test_channels_first_batch_gets_a_hint():
    model = d2l.GoogLeNet(BOOK)
    x = jax.ShapeDtypeStruct((1, 1, 96, 96), jnp.float32)
    with pytest.raises(ValueError, match="channels-first"):
        jax.eval_shape(model.init, jax.random.key(0), x)


def test_logits_rejects_nhwc_batch(book_model_and_weights):
    model, _, variables = book_model_and_weights
    with pytest.raises(ValueError, match="NCHW"):
        d2l.logits(model, np.zeros((1, 96, 96, 1), np.float32), variables)


def test_load_weights_rejects_incomplete_or_foreign_weights():
    model = d2l.GoogLeNet(BOOK)
    weights = reference.random_weights(BOOK, seed=0)
    del weights["fc/bias"]
    with pytest.raises(ValueError, match="lack 1"):
        d2l.load_weights(model, weights)
    with pytest.raises(ValueError, match="another spec"):
        d2l.load_weights(model, reference.random_weights(PAPER, seed=0))


def test_set_seed_returns_a_key():
    assert jnp.array_equal(jax.random.key_data(d2l.set_seed(3)),
                           jax.random.key_data(jax.random.key(3)))
    with pytest.raises(ValueError):
        d2l.set_seed(-1)


def test_try_gpu_prints_a_notice(capsys):
    device = d2l.try_gpu()
    assert device in jax.devices()
    assert capsys.readouterr().out.startswith("JAX: ")
