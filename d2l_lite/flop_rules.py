"""Framework-neutral FLOP rules: what each framework's own counter reports,
computed from the spec alone.

PyTorch's ``FlopCounterMode`` and MXNet's hook counter report exactly
``2 x`` the analytic multiply-accumulates (:func:`d2l_lite.counting.analytic_flops`).
TensorFlow's profiler and XLA's cost analysis count more (bias additions,
pooling, ...); their rules, which need no framework code, live here and read
:func:`d2l_lite.architecture.walk`, the same walk as the counter.
"""

from __future__ import annotations

from typing import Dict

import numpy as np

from . import architecture
from .architecture import walk


# TensorFlow's profiler ------------------------------------------------------------

def tensorflow_flops_by_op(spec_or_block, input_size=None) -> Dict[str, int]:
    """What TensorFlow's profiler (``d2l_lite.tensorflow.flops_by_op``) reports
    for one image (a batch of 1), op type by op type, by the ``"flops"`` rule
    TensorFlow registers for each op type (``ops.RegisterStatistics``):

    * ``Conv2D``: 2 x kernel height x kernel width x input channels per output
      element: 2 x MACs, every tap counted (padding included);
    * ``BiasAdd``: one per element it adds to: every convolution's output and
      the dense layer's (Keras adds biases with ``tf.nn.bias_add``);
    * ``MatMul``: 2 x in x out for the dense layer;
    * ``MaxPool``, ``AvgPool``: kernel area per output element (the stem's
      pools and the 3x3 pool of every block's fourth branch; the paper's 7x7
      head pool);
    * ``Mean`` (``GlobalAveragePooling2D``): one per input element;
    * ``Relu``, ``Pad`` (``ZeroPadding2D``), ``ConcatV2``, reshapes: no
      statistic registered, so zero.

    Arguments as for :func:`d2l_lite.architecture.walk`; the auxiliary heads
    do not run at inference. (Specs without BatchNorm: a Conv-BN-ReLU
    convolution has no ``BiasAdd``, and BatchNorm's own ops are not counted.)
    """
    ops = dict.fromkeys(("Conv2D", "BiasAdd", "MatMul", "MaxPool", "AvgPool", "Mean"), 0)
    for step in walk(spec_or_block, input_size):
        layer, (c, h, w), out = step.layer, step.in_shape, step.out_shape
        size = out[0] * out[1] * out[2]
        if step.part == "aux":
            continue
        if isinstance(layer, architecture.Conv):
            ops["Conv2D"] += 2 * size * c * layer.kernel ** 2
            ops["BiasAdd"] += 0 if layer.batch_norm else size
        elif isinstance(layer, architecture.Dense):
            ops["MatMul"] += 2 * c * h * w * out[0]
            ops["BiasAdd"] += out[0]
        elif isinstance(layer, architecture.GlobalAvgPool):
            ops["Mean"] += c * h * w
        else:  # MaxPool or AvgPool
            ops[type(layer).__name__] += layer.kernel ** 2 * size
    return {op: n for op, n in ops.items() if n}


# XLA's cost analysis (JAX) ------------------------------------------------------

def conv_taps(size: int, kernel: int, stride: int, padding: int) -> int:
    """Kernel taps, summed over the output positions along one axis, that land
    on the input rather than on its zero padding: for output ``o``, the taps
    ``k`` with ``0 <= o * stride - padding + k < size``. XLA counts a
    convolution's multiply-adds over these taps only (2 FLOPs each, times
    the taps of the other axis, the channels in and out and the batch)."""
    out = architecture.conv_output_size(size, kernel, stride, padding)
    return sum(1 for o in range(out) for k in range(kernel)
               if 0 <= o * stride - padding + k < size)


def xla_flop_terms(spec_or_block, input_size=None, batch_size: int = 1):
    """XLA's FLOP count of a forward pass, term by term: one ``(layer, kind,
    flops)`` row per operation XLA's CPU compiler keeps after fusion, in the
    order its cost analysis visits them (the order of :func:`walk`; the
    auxiliary heads do not run at inference). XLA's rules
    (``HloCostAnalysis``), checked op by op in the FLOPs chapter:

    * ``"conv"``: 2 FLOPs per multiply-add, but only for kernel taps on real
      input (:func:`conv_taps` along each axis), times the channels in and out;
    * ``"bias+relu"``: one add and one max per output element of a convolution;
    * ``"maxpool"``: ``window - 1`` comparisons per output element, padding or not;
    * ``"mean"`` (global average pool): ``H x W - 1`` adds per channel, then
      ``"mean/scale"``, one multiply per channel; the paper's 7x7 average
      pool is the same pair (``"avgpool"``, ``"avgpool/scale"``);
    * ``"dense"``: ``2 x in x out``; ``"dense bias"``: ``out``;
    * concatenation, reshapes, padding: nothing.

    Arguments as for :func:`d2l_lite.architecture.walk`.
    """
    n, terms = batch_size, []
    for step in walk(spec_or_block, input_size):
        layer, (c, h, w), out = step.layer, step.in_shape, step.out_shape
        size = n * out[0] * out[1] * out[2]
        if step.part == "aux":
            continue
        if isinstance(layer, architecture.Conv):
            taps = (conv_taps(h, layer.kernel, layer.stride, layer.padding)
                    * conv_taps(w, layer.kernel, layer.stride, layer.padding))
            terms += [(step.name, "conv", 2 * n * c * out[0] * taps),
                      (step.name, "bias+relu", 2 * size)]
        elif isinstance(layer, architecture.MaxPool):
            terms.append((step.name, "maxpool", size * (layer.kernel ** 2 - 1)))
        elif isinstance(layer, architecture.GlobalAvgPool):
            terms += [(step.name, "mean", n * c * (h * w - 1)),
                      (step.name, "mean/scale", n * c)]
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
    """XLA's total, as ``cost_analysis()["flops"]`` reports it: the terms of
    :func:`xla_flop_terms` added up as XLA adds them, in its order, in a
    32-bit float (``HloCostAnalysis`` keeps ``float`` totals), so above 2^24
    each addition rounds; the exact sum is ``sum(xla_flops_by_op(...).values())``.
    """
    total = np.float32(0)
    for _, _, flops in xla_flop_terms(spec_or_block, input_size, batch_size):
        total = np.float32(total + np.float32(flops))
    return int(total)
