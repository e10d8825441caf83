"""FLOPs and timing in MXNet, which has no FLOP counter: forward hooks apply the
analytic formula to the shapes MXNet ran."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from mxnet import autograd, gluon, nd
from mxnet.gluon import nn

from .. import counting, runtime
from .model import _context


def count_flops(model_or_block: gluon.Block, input_shape: Sequence[int]) -> int:
    """FLOPs of one forward pass. MXNet 1.9 has no counter: hooks on every ``Conv2D`` and
    ``Dense`` (not the idle aux heads') apply the analytic formula to the shapes MXNet
    ran, 2 x outputs x ``weight.shape[1:]``. The block must not be hybridized."""
    runtime.check_batch_shape(input_shape, channels_last=False)
    macs, layers = [], []

    def hook(block, inputs, output):
        weight = block.weight.shape  # Conv2D: (O, I, kh, kw); Dense: (O, I)
        fan_in = inputs[0][0].size if isinstance(block, nn.Dense) else inputs[0].shape[1]
        assert weight[1] == fan_in, (block.name, inputs[0].shape, weight)
        macs.append(output.size * int(np.prod(weight[1:])))

    net = model_or_block
    for part in [net.stem, net.body, net.head] if hasattr(net, "head") else [net]:
        part.apply(lambda b: layers.append(b) if isinstance(b, (nn.Conv2D, nn.Dense))
                   else None)
    handles = [layer.register_forward_hook(hook) for layer in layers]
    try:
        with autograd.predict_mode():
            model_or_block(nd.zeros(tuple(input_shape), ctx=_context(model_or_block)))
    finally:
        for handle in handles:
            handle.detach()
    if len(macs) != len(layers):
        raise ValueError(f"{len(macs)} of {len(layers)} layers ran their hooks: is the "
                         f"block hybridized? Call block.hybridize(False) first.")
    return 2 * sum(macs)


#: What :func:`count_flops` reports for one image: 2 x the analytic MACs.
expected_flops = counting.analytic_flops


def time_forward(model_or_block: gluon.HybridBlock, input_shape: Sequence[int],
                 repeats: int = 10, warmup: int = 2) -> float:
    """Median seconds of a forward pass, hybridized (and left so), after ``warmup``
    passes that build the cached graph; ``nd.waitall()`` (MXNet runs asynchronously)."""
    X = nd.random.uniform(shape=tuple(input_shape), ctx=_context(model_or_block))
    model_or_block.hybridize(static_alloc=True, static_shape=True)
    return runtime.median_seconds(lambda: model_or_block(X), repeats, warmup, nd.waitall)
