"""d2l_lite.torch's FLOP counter and timer on an Inception block and its naive
form (whole networks: ``tests/test_backends.py``), and their messages."""

from dataclasses import replace

import pytest

import torch  # noqa: E402  (in .venv; a broken install must fail, not skip)

from d2l_lite import architecture, counting  # noqa: E402
from d2l_lite import torch as d2l  # noqa: E402

BLOCK = architecture.INCEPTION_3A
WIDTHS = (BLOCK.ch1x1, BLOCK.ch3x3red, BLOCK.ch3x3, BLOCK.ch5x5red, BLOCK.ch5x5,
          BLOCK.pool_proj)

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def built_block(reduce=True):
    block = (d2l.Inception if reduce else d2l.NaiveInception)(*WIDTHS)
    block(torch.zeros(1, 192, 28, 28))
    return block


@pytest.mark.parametrize("reduce", [True, False], ids=["block", "naive"])
def test_flop_counter_on_the_block_is_twice_the_analytic_macs(reduce):
    spec, block = replace(BLOCK, reduce=reduce), built_block(reduce)
    expected = d2l.expected_flops(spec, (192, 28, 28))
    assert expected == 2 * counting.total_macs(counting.count_inception(spec, (192, 28, 28)))
    assert d2l.count_flops(block, (1, 192, 28, 28)) == expected
    assert d2l.count_flops(block, (4, 192, 28, 28)) == 4 * expected


def test_time_forward_is_positive_and_restores_the_mode():
    block = built_block()
    block.train()
    seconds = d2l.time_forward(block, (1, 192, 28, 28), repeats=2, warmup=1)
    assert isinstance(seconds, float) and seconds > 0
    assert block.training


def test_bad_arguments():
    with pytest.raises(ValueError, match="N x C x H x W"):
        d2l.count_flops(built_block(), (192, 28, 28))
    with pytest.raises(ValueError, match="repeats"):
        d2l.time_forward(built_block(), (1, 192, 28, 28), repeats=0)
