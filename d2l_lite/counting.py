"""Analytic parameter and multiply-accumulate (MAC) counts, framework-neutral.

Conventions, stated once:

* **MACs** count the multiply-accumulates of convolutions and dense layers
  only: a convolution producing ``C_out x H x W`` from ``C_in`` channels with a
  ``k x k`` kernel costs ``C_out * H * W * C_in * k * k`` MACs. Bias additions,
  ReLU and pooling are not MACs and are left out.
* **FLOPs** are ``2 x MACs`` (one multiply and one add each), the convention of
  ``torch.utils.flop_counter`` and of TensorFlow's profiler for convolutions.
* **Parameters** include biases (every convolution and dense layer has one, as
  in d2l's GoogLeNet).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, List, Sequence, Tuple

from .architecture import (AvgPool, Conv, Dense, GlobalAvgPool, GoogLeNetSpec,
                           Inception, MaxPool, conv_output_size)

__all__ = ["LayerCount", "count_conv", "count_inception", "count_network", "count_any",
           "analytic_flops", "branch_params",
           "total_params", "total_macs", "flops"]

Shape = Tuple[int, int, int]  # channels, height, width


@dataclass(frozen=True)
class LayerCount:
    """One row of a count table."""

    stage: str       # "b1" ... "b5", "head"; "" for a lone block
    part: str        # "stem", "body", "head"; "" for a lone block
    name: str        # e.g. "conv1", "inception3a/branch2/3x3"
    in_shape: Shape
    out_shape: Shape
    params: int
    macs: int


def flops(macs: int) -> int:
    """FLOPs under the ``2 x MACs`` convention."""
    return 2 * macs


def count_conv(conv: Conv, in_shape: Shape, prefix: str = "") -> LayerCount:
    """Parameters and MACs of one convolution (with bias)."""
    c_in, h, w = in_shape
    h_out = conv_output_size(h, conv.kernel, conv.stride, conv.padding)
    w_out = conv_output_size(w, conv.kernel, conv.stride, conv.padding)
    weights = conv.out_channels * c_in * conv.kernel * conv.kernel
    return LayerCount("", "", prefix + conv.name, in_shape,
                      (conv.out_channels, h_out, w_out),
                      weights + conv.out_channels,
                      weights * h_out * w_out)


def _pool(layer, in_shape: Shape, prefix: str = "") -> LayerCount:
    c, h, w = in_shape
    if isinstance(layer, MaxPool):
        size = (conv_output_size(h, layer.kernel, layer.stride, layer.padding),
                conv_output_size(w, layer.kernel, layer.stride, layer.padding))
    elif isinstance(layer, AvgPool):
        size = (conv_output_size(h, layer.kernel, layer.stride, 0),
                conv_output_size(w, layer.kernel, layer.stride, 0))
    else:
        size = (1, 1)
    return LayerCount("", "", prefix + layer.name, in_shape, (c, *size), 0, 0)


def count_inception(block: Inception, in_shape: Shape) -> List[LayerCount]:
    """One row per layer of each branch, named ``block/branch/layer``."""
    rows = []
    for branch, layers in block.branches():
        shape = in_shape
        for layer in layers:
            prefix = f"{block.name}/{branch}/"
            row = (count_conv(layer, shape, prefix) if isinstance(layer, Conv)
                   else _pool(layer, shape, prefix))
            rows.append(row)
            shape = row.out_shape
    return rows


def count_network(spec: GoogLeNetSpec, input_size: int | None = None,
                  detail: bool = False) -> List[LayerCount]:
    """Count every layer of ``spec`` for a square input.

    With ``detail=False`` an Inception block is one row (its branches summed);
    with ``detail=True`` each branch layer gets its own row.
    """
    size = spec.input_size if input_size is None else input_size
    spec.check_input(spec.in_channels, size, size)
    shape: Shape = (spec.in_channels, size, size)
    rows: List[LayerCount] = []
    for stage in spec.stages:
        for layer in stage.layers:
            new_rows = _count_layer(layer, shape, detail)
            for row in new_rows:
                rows.append(LayerCount(stage.name, stage.part, row.name, row.in_shape,
                                       row.out_shape, row.params, row.macs))
            shape = _output_shape(layer, shape, new_rows)
    return rows


def _count_layer(layer, shape: Shape, detail: bool) -> List[LayerCount]:
    if isinstance(layer, Conv):
        return [count_conv(layer, shape)]
    if isinstance(layer, (MaxPool, AvgPool, GlobalAvgPool)):
        return [_pool(layer, shape)]
    if isinstance(layer, Dense):
        c, h, w = shape
        fan_in = c * h * w
        return [LayerCount("", "", layer.name, shape, (layer.out_features, 1, 1),
                           fan_in * layer.out_features + layer.out_features,
                           fan_in * layer.out_features)]
    if isinstance(layer, Inception):
        branch_rows = count_inception(layer, shape)
        if detail:
            return branch_rows
        out = (layer.out_channels, shape[1], shape[2])
        return [LayerCount("", "", layer.name, shape, out,
                           total_params(branch_rows), total_macs(branch_rows))]
    raise TypeError(f"unknown layer type {type(layer).__name__}")


def _output_shape(layer, shape: Shape, rows: Sequence[LayerCount]) -> Shape:
    if isinstance(layer, Inception):
        return (layer.out_channels, shape[1], shape[2])
    return rows[-1].out_shape


def total_params(rows: Iterable[LayerCount]) -> int:
    return sum(r.params for r in rows)


def total_macs(rows: Iterable[LayerCount]) -> int:
    return sum(r.macs for r in rows)


def count_any(spec_or_block, input_size=None) -> List[LayerCount]:
    """Rows for a whole network or for one Inception block.

    ``spec_or_block`` is a :class:`~d2l_lite.architecture.GoogLeNetSpec`
    (``input_size``: the image side, default the spec's) or an
    :class:`~d2l_lite.architecture.Inception` (``input_size``: its input as
    ``(channels, height, width)``, required).
    """
    if isinstance(spec_or_block, GoogLeNetSpec):
        return count_network(spec_or_block, input_size)
    if isinstance(spec_or_block, Inception):
        if not isinstance(input_size, (tuple, list)) or len(input_size) != 3:
            raise ValueError(f"an Inception block needs input_size=(channels, height, "
                             f"width), e.g. (192, 28, 28), got {input_size!r}")
        return count_inception(spec_or_block, tuple(input_size))
    raise ValueError(f"expected a GoogLeNetSpec or an architecture.Inception, got "
                     f"{type(spec_or_block).__name__}")


def analytic_flops(spec_or_block, input_size=None) -> int:
    """``2 x MACs`` of convolutions and dense layers, for one image."""
    return flops(total_macs(count_any(spec_or_block, input_size)))


def branch_params(block: Inception, in_shape: Shape) -> dict:
    """Parameters per branch of an Inception block: ``{"branch1": n, ...}``."""
    out: dict = {}
    for row in count_inception(block, in_shape):
        branch = row.name.split("/")[1]
        out[branch] = out.get(branch, 0) + row.params
    return out
