"""FLOPs in d2l_lite.jax: XLA's cost analysis against the spec, for the book and
the block and its naive form (the naive model's shapes and parameters:
``tests/test_backends.py``).

``count_flops`` compiles each forward pass once (shapes only, nothing runs);
the per-operation rules are checked on single operations, which compile in
well under a second.
"""

from dataclasses import replace

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from d2l_lite import architecture, counting
from d2l_lite import jax as d2l

BOOK, PAPER, BLOCK = architecture.BOOK, architecture.PAPER, architecture.INCEPTION_3A
NAIVE = replace(BLOCK, reduce=False)


def xla_flops(f, *shapes):
    args = [jax.ShapeDtypeStruct(s, jnp.float32) for s in shapes]
    cost = jax.jit(f).lower(*args).compile().cost_analysis()
    return (cost[0] if isinstance(cost, (list, tuple)) else cost).get("flops", 0.0)


def block(spec):
    cls = d2l.Inception if spec.reduce else d2l.NaiveInception
    return cls(spec.ch1x1, spec.ch3x3red, spec.ch3x3, spec.ch5x5red, spec.ch5x5,
               spec.pool_proj)


@pytest.mark.parametrize("size, kernel, stride, padding", [
    (28, 3, 1, 1), (28, 5, 1, 2), (96, 7, 2, 3), (12, 1, 1, 0), (7, 5, 1, 2), (3, 5, 1, 2)])
def test_conv_counts_only_taps_on_real_input(size, kernel, stride, padding):
    def conv(x, w):
        return lax.conv_general_dilated(x, w, (stride, stride), ((padding, padding),) * 2,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    counted = xla_flops(conv, (2, size, size, 3), (kernel, kernel, 3, 4))
    assert counted == 2 * 2 * 3 * 4 * d2l.conv_taps(size, kernel, stride, padding) ** 2
    if padding == 0:  # no padding: exactly 2 x MACs
        out = architecture.conv_output_size(size, kernel, stride, 0)
        assert counted == 2 * 2 * 3 * 4 * (out * kernel) ** 2


def test_elementwise_and_pooling_rules():
    shape = (1, 28, 28, 16)
    n = np.prod(shape)
    assert xla_flops(lambda x, b: jnp.maximum(x + b, 0), shape, (16,)) == 2 * n
    pool = xla_flops(lambda x: nn.max_pool(x, (3, 3), strides=(1, 1),
                                          padding=((1, 1), (1, 1))), shape)
    assert pool == n * 8  # window - 1 comparisons per output, padding or not
    assert xla_flops(lambda x: jnp.mean(x, axis=(1, 2)), shape) == n  # (HW - 1) adds + 1 scale
    assert xla_flops(lambda a, b: jnp.concatenate([a, b], -1), shape, shape) == 0
    assert xla_flops(lambda x, w, b: x @ w + b, (1, 64), (64, 10), (10,)) == 2 * 64 * 10 + 10


@pytest.mark.parametrize("spec", [BLOCK, NAIVE], ids=["reduced", "naive"])
def test_inception_block_flops(spec):
    counted = d2l.count_flops(block(spec), (1, 28, 28, 192))
    assert counted == d2l.expected_flops(spec, (192, 28, 28))
    with pytest.raises(ValueError, match="N x H x W x C"):  # not 28 2-d images
        d2l.count_flops(block(spec), (28, 28, 192))


def test_a_mean_over_a_1x1_map_is_not_divided():
    """At 32x32 the last map is 1x1: XLA drops the mean's division by 1."""
    spec = architecture.googlenet_spec(input_size=32)
    assert d2l.count_flops(d2l.googlenet(spec), (1, 32, 32, 1)) == d2l.expected_flops(spec)


def test_expected_flops_by_op_for_the_book():
    ops = d2l.expected_flops_by_op(BOOK)
    assert set(ops) == {"conv", "bias+relu", "maxpool", "mean", "mean/scale", "dense",
                        "dense bias"}
    assert ops["dense"] == 2 * 1024 * 10 and ops["dense bias"] == 10
    assert ops["mean"] + ops["mean/scale"] == 1024 * 3 * 3
    assert ops["bias+relu"] == 2 * sum(np.prod(r.out_shape) for r in
                                       counting.count_network(BOOK, detail=True)
                                       if r.params and r.name != "fc")


def test_time_forward_is_positive():
    small = d2l.Inception(4, 4, 4, 2, 2, 2)
    assert d2l.time_forward(small, (1, 8, 8, 8), repeats=2, warmup=1) > 0


def test_xla_terms_skip_the_auxiliary_heads():
    spec = architecture.VARIANTS["aux heads"]
    assert d2l.xla_flop_terms(spec) == d2l.xla_flop_terms(BOOK)
