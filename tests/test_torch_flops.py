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
    block = d2l.Inception(*WIDTHS, reduce=reduce)
    block(torch.zeros(1, 192, 28, 28))
    return block


@pytest.mark.parametrize("spec", [architecture.BOOK, architecture.PAPER,
                                  architecture.googlenet_spec(reduce=False)],
                         ids=["book", "paper", "book-naive"])
def test_flop_counter_is_twice_the_analytic_macs(spec):
    model = d2l.GoogLeNet(spec)
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
    assert [name for name, _ in block.branch2.named_children()] == ["3x3", "3x3_relu"]
    assert [name for name, _ in block.branch3.named_children()] == ["5x5", "5x5_relu"]
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
    prefix = "inception3a/"
    block.load_state_dict({name[len(prefix):].replace("/", "."): torch.from_numpy(value)
                           for name, value in weights.items() if name.startswith(prefix)})
    X = np.random.default_rng(1).random((2, 192, 28, 28)).astype(np.float32)
    with torch.no_grad():
        Y = block(torch.from_numpy(X)).numpy()
    assert np.abs(Y - reference.inception_forward(NAIVE, X, weights)).max() < 1e-4


def test_naive_googlenet_matches_counting_and_reference():
    spec = architecture.googlenet_spec(reduce=False)
    model = d2l.GoogLeNet(spec)
    assert d2l.count_parameters(model) == counting.total_params(counting.count_network(spec))
    weights = reference.random_weights(spec, seed=0)
    d2l.load_weights(model, weights)
    X = reference.random_input(spec, batch_size=1, seed=0, input_size=48)
    assert np.abs(d2l.logits(model, X) - reference.forward(spec, weights, X)).max() < 1e-4


def test_time_forward_is_positive_and_restores_the_mode():
    block = built_block(reduce=True)
    block.train()
    seconds = d2l.time_forward(block, (1, 192, 28, 28), repeats=2, warmup=1)
    assert isinstance(seconds, float) and seconds > 0
    assert block.training


def test_bad_arguments():
    with pytest.raises(ValueError, match="reduce must be True or False"):
        d2l.Inception(*WIDTHS, reduce="no")
    with pytest.raises(ValueError, match="input_size=\\(channels, height, width\\)"):
        d2l.expected_flops(BLOCK, 28)
    with pytest.raises(ValueError, match="GoogLeNetSpec"):
        d2l.expected_flops("BOOK")
    with pytest.raises(ValueError, match="N x C x H x W"):
        d2l.count_flops(built_block(True), (192, 28, 28))
    with pytest.raises(ValueError, match="repeats"):
        d2l.time_forward(built_block(True), (1, 192, 28, 28), repeats=0)
