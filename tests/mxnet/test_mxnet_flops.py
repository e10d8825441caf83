"""FLOPs of the block and its naive form, and forward timing, in d2l_lite.mxnet (MXNet
environment only; the naive model's shapes and parameters: ``tests/test_backends.py``).

    .venv-mxnet/bin/python -m pytest tests/mxnet/test_mxnet_flops.py -q -p no:cacheprovider
"""

from dataclasses import replace

import pytest

mx = pytest.importorskip("mxnet")

from mxnet import nd  # noqa: E402

from d2l_lite import architecture  # noqa: E402
from d2l_lite import mxnet as d2l  # noqa: E402

A = architecture.INCEPTION_3A
NAIVE = replace(A, reduce=False)


def _block(reduce=True):
    cls = d2l.Inception if reduce else d2l.NaiveInception
    block = cls(A.ch1x1, A.ch3x3red, A.ch3x3, A.ch5x5red, A.ch5x5, A.pool_proj)
    block.initialize()
    block(nd.zeros((1, 192, 28, 28)))
    return block


@pytest.mark.parametrize("reduce", [True, False], ids=["reduced", "naive"])
def test_block_flops_and_batch_scaling(reduce):
    block = _block(reduce)
    expected = d2l.expected_flops(A if reduce else NAIVE, (192, 28, 28))
    assert d2l.count_flops(block, (1, 192, 28, 28)) == expected
    assert d2l.count_flops(block, (3, 192, 28, 28)) == 3 * expected


def test_hybridized_block_cannot_be_counted():
    block = _block()
    block.hybridize()
    block(nd.zeros((1, 192, 28, 28)))
    with pytest.raises(ValueError, match="hybridize"):
        d2l.count_flops(block, (1, 192, 28, 28))


def test_time_forward_is_positive():
    block = _block()
    seconds = d2l.time_forward(block, (2, 192, 28, 28), repeats=3, warmup=1)
    assert 0 < seconds < 60


def test_bad_arguments():
    with pytest.raises(ValueError, match="N x C x H x W"):
        d2l.count_flops(_block(), (192, 28, 28))
    with pytest.raises(ValueError, match="input_size"):
        d2l.expected_flops(A)
    with pytest.raises(ValueError, match="GoogLeNetSpec"):
        d2l.expected_flops("book")
