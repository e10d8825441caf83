"""d2l_lite.torch's FLOP counter against the analytic counter, and the naive
Inception block (no 1x1 reductions) against the spec and the NumPy reference."""

from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from d2l_lite import architecture, counting, reference  # noqa: E402
from d2l_lite import torch as d2l  # noqa: E402

BLOCK = architecture.INCEPTION_3A
NAIVE = replace(BLOCK, reduce=False)
WIDTHS = (BLOCK.ch1x1, BLOCK.ch3x3red, BLOCK.ch3x3, BLOCK.ch5x5red, BLOCK.ch5x5,
          BLOCK.pool_proj)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def built_block(reduce):
    block = (d2l.Inception if reduce else d2l.NaiveInception)(*WIDTHS)
    block(torch.zeros(1, 192, 28, 28))
    return block


@pytest.mark.parametrize("spec", [architecture.BOOK, architecture.PAPER,
                                  architecture.googlenet_spec(reduce=False)],
                         ids=["book", "paper", "book-naive"])
def test_flop_counter_is_twice_the_analytic_macs(spec):
    model = d2l.googlenet(spec)
    shape = (1, spec.in_channels, spec.input_size, spec.input_size)
    analytic = 2 * counting.total_macs(counting.count_network(spec))
    assert d2l.count_flops(model, shape) == d2l.expected_flops(spec) == analytic


def test_flop_counter_on_the_block_and_its_naive_form():
    for block_spec, expected in ((BLOCK, 256_098_304), (NAIVE, 616_562_688)):
        block = built_block(block_spec.reduce)
        analytic = 2 * counting.total_macs(counting.count_inception(block_spec, (192, 28, 28)))
        assert d2l.count_flops(block, (1, 192, 28, 28)) == analytic == expected
        assert d2l.expected_flops(block_spec, (192, 28, 28)) == expected
        assert d2l.count_flops(block, (4, 192, 28, 28)) == 4 * expected


def test_book_and_paper_totals():
    assert d2l.expected_flops(architecture.BOOK) == 552_132_608
    assert d2l.expected_flops(architecture.PAPER) == 3_165_343_744


def test_naive_block_shapes_and_parameters_match_counting():
    block = built_block(reduce=False)
    assert [type(m).__name__ for m in block.branch2] == ["Conv2d", "ReLU"]
    assert [type(m).__name__ for m in block.branch3] == ["Conv2d", "ReLU"]
    assert tuple(block(torch.zeros(2, 192, 28, 28)).shape) == (2, 256, 28, 28)
    analytic = {}
    for row in counting.count_inception(NAIVE, (192, 28, 28)):
        branch = row.name.split("/")[1]
        analytic[branch] = analytic.get(branch, 0) + row.params
    assert d2l.branch_parameters(block) == analytic
    assert d2l.count_parameters(block) == sum(analytic.values()) == 393_472


def test_naive_block_matches_reference():
    spec = architecture.googlenet_spec(reduce=False)
    weights = reference.random_weights(spec, seed=1)
    block = built_block(reduce=False)
    arrays = [value for name, value in weights.items() if name.startswith("inception3a/")]
    with torch.no_grad():
        for tensor, value in zip(block.parameters(), arrays):
            tensor.copy_(torch.from_numpy(value))
    X = np.random.default_rng(1).random((2, 192, 28, 28)).astype(np.float32)
    with torch.no_grad():
        Y = block(torch.from_numpy(X)).numpy()
    expected = reference.inception_forward(NAIVE, X, weights)
    assert np.abs(Y - expected).max() < reference.float32_tolerance(expected)


def test_time_forward_is_positive_and_restores_the_mode():
    block = built_block(reduce=True)
    block.train()
    seconds = d2l.time_forward(block, (1, 192, 28, 28), repeats=2, warmup=1)
    assert isinstance(seconds, float) and seconds > 0
    assert block.training


def test_bad_arguments():
    with pytest.raises(ValueError, match="input_size=\\(channels, height, width\\)"):
        d2l.expected_flops(BLOCK, 28)
    with pytest.raises(ValueError, match="GoogLeNetSpec"):
        d2l.expected_flops("BOOK")
    with pytest.raises(ValueError, match="N x C x H x W"):
        d2l.count_flops(built_block(True), (192, 28, 28))
    with pytest.raises(ValueError, match="repeats"):
        d2l.time_forward(built_block(True), (1, 192, 28, 28), repeats=0)
