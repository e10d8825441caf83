"""What TensorFlow's profiler and XLA's cost analysis report, computed from the spec alone.
(PyTorch's and MXNet's counters report exactly ``2 x`` the analytic MACs; these two also
count bias additions, pooling, ...)"""

from __future__ import annotations

from typing import Dict

import numpy as np

from . import architecture
from .architecture import walk


def tensorflow_flops_by_op(spec_or_block,
                           input_size=None) -> Dict[str, int]:
    """TensorFlow's profiler's FLOPs for one image, by op type, from the
    rule each op registers (``ops.RegisterStatistics``): ``Conv2D``
    2 x MACs with every tap counted; ``BiasAdd`` one per element;
    ``MatMul`` 2 x in x out; pools the kernel area per output; ``Mean``
    one per input; ``Relu``, ``Pad``, ``ConcatV2`` nothing."""
    ops = dict.fromkeys(("Conv2D", "BiasAdd", "MatMul", "MaxPool",
                         "AvgPool", "Mean"), 0)
    for step in main_path(spec_or_block, input_size):
        layer, (c, h, w), out = step.layer, step.in_shape, step.out_shape
        size = out[0] * out[1] * out[2]
        if isinstance(layer, architecture.Conv):
            ops["Conv2D"] += 2 * size * c * layer.kernel ** 2
            ops["BiasAdd"] += size if layer.bias else 0
        elif isinstance(layer, architecture.Dense):
            ops["MatMul"] += 2 * c * h * w * out[0]
            ops["BiasAdd"] += out[0]
        elif isinstance(layer, architecture.GlobalAvgPool):
            ops["Mean"] += c * h * w
        else:  # MaxPool or AvgPool
            ops[type(layer).__name__] += layer.kernel ** 2 * size
    return {op: n for op, n in ops.items() if n}


def main_path(spec_or_block, input_size):
    """The steps these rules count: every layer but the auxiliary heads (which do not run
    at inference). A residual block's addition is not modelled, so it is refused."""
    for step in walk(spec_or_block, input_size):
        if isinstance(step.layer, architecture.Conv) and not step.layer.relu:
            raise ValueError(f"{step.name}: the FLOP rules do not cover residual blocks")
        if step.part != "aux":
            yield step


def conv_taps(size: int, kernel: int, stride: int, padding: int) -> int:
    """Kernel taps along one axis, over all outputs, that land on the input, not the
    padding: XLA counts a convolution's multiply-adds over these only."""
    out = architecture.conv_output_size(size, kernel, stride, padding)
    return sum(1 for o in range(out) for k in range(kernel)
               if 0 <= o * stride - padding + k < size)


def xla_flop_terms(spec_or_block, input_size=None, batch_size: int = 1):
    """XLA's FLOPs of a forward pass as ``(layer, kind, flops)`` terms, one per operation
    left after fusion, in walk order (``HloCostAnalysis``'s rules: convolutions over
    :func:`conv_taps` only, bias+ReLU 2 per output, pools ``window - 1`` per output plus a
    scale, dense ``2 x in x out`` + bias)."""
    n, terms = batch_size, []
    for step in main_path(spec_or_block, input_size):
        layer, (c, h, w), out = step.layer, step.in_shape, step.out_shape
        size = n * out[0] * out[1] * out[2]
        if isinstance(layer, architecture.Conv):
            taps = (conv_taps(h, layer.kernel, layer.stride, layer.padding)
                    * conv_taps(w, layer.kernel, layer.stride, layer.padding))
            terms += [(step.name, "conv", 2 * n * c * out[0] * taps),
                      (step.name, "bias+relu", 2 * size)]
        elif isinstance(layer, architecture.MaxPool):
            terms.append((step.name, "maxpool", size * (layer.kernel ** 2 - 1)))
        elif isinstance(layer, architecture.GlobalAvgPool):
            # the mean of a 1x1 map needs no division: XLA folds it away
            terms += [(step.name, "mean", n * c * (h * w - 1)),
                      (step.name, "mean/scale", n * c if h * w > 1 else 0)]
        elif isinstance(layer, architecture.AvgPool):
            terms += [(step.name, "avgpool", size * (layer.kernel ** 2 - 1)),
                      (step.name, "avgpool/scale", size)]
        elif isinstance(layer, architecture.Dense):
            terms += [(step.name, "dense", 2 * n * c * h * w * out[0]),
                      (step.name, "dense bias", n * out[0])]
    return terms


def xla_flops_by_op(spec_or_block, input_size=None, batch_size: int = 1) -> Dict[str, int]:
    """:func:`xla_flop_terms` added up by kind (exact integers)."""
    totals: Dict[str, int] = {}
    for _, kind, flops in xla_flop_terms(spec_or_block, input_size, batch_size):
        totals[kind] = totals.get(kind, 0) + flops
    return totals


def xla_flops(spec_or_block, input_size=None, batch_size: int = 1) -> int:
    """XLA's ``cost_analysis()["flops"]``: the terms added in order in float32,
    as ``HloCostAnalysis`` does, so above 2^24 each addition rounds."""
    total = np.float32(0)
    for _, _, flops in xla_flop_terms(spec_or_block, input_size, batch_size):
        total = np.float32(total + np.float32(flops))
    return int(total)
