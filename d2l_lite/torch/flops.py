"""FLOPs and timing in PyTorch (the FLOPs chapter): ``FlopCounterMode``'s
count of a forward pass, the analytic count it must equal, and the median
time of a forward pass."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .. import counting, runtime
from .model import _device
from .train import sync_of


def count_flops(model_or_block: nn.Module,
                input_shape: Sequence[int]) -> int:
    """``FlopCounterMode``'s FLOPs of one forward pass in eval mode: 2 per
    multiply-accumulate of convolutions and matrix products, nothing for
    the rest."""
    runtime.check_batch_shape(input_shape, channels_last=False)
    X = torch.zeros(tuple(input_shape), device=_device(model_or_block))
    was_training = model_or_block.training
    model_or_block.eval()  # no auxiliary heads; BatchNorm left as it is
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model_or_block(X)
    finally:
        model_or_block.train(was_training)
    return counter.get_total_flops()


#: What :func:`count_flops` reports for one image: 2 x the analytic MACs.
expected_flops = counting.analytic_flops


def time_forward(model_or_block: nn.Module, input_shape: Sequence[int],
                 repeats: int = 10, warmup: int = 2) -> float:
    """Median seconds of an eager forward pass (eval mode, no gradients) after
    ``warmup`` passes (lazy layers, cuDNN's kernel choice, caches)."""
    device = _device(model_or_block)
    X = torch.rand(tuple(input_shape), device=device)
    sync = sync_of(device)
    was_training = model_or_block.training
    model_or_block.eval()
    try:
        with torch.no_grad():
            return runtime.median_seconds(lambda: model_or_block(X), repeats, warmup, sync)
    finally:
        model_or_block.train(was_training)
