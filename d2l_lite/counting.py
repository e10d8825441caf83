"""Analytic parameter and multiply-accumulate (MAC) counts, framework-neutral.

Conventions, stated once:

* **MACs** count the multiply-accumulates of convolutions and dense layers
  only: a convolution producing ``C_out x H x W`` from ``C_in`` channels with a
  ``k x k`` kernel costs ``C_out * H * W * C_in * k * k`` MACs. Bias additions,
  ReLU and pooling are not MACs and are left out.
* **FLOPs** are ``2 x MACs`` (one multiply and one add each), the convention of
  ``torch.utils.flop_counter`` and of TensorFlow's profiler for convolutions.
* **Parameters** include biases (every convolution and dense layer has one, as
  in d2l's GoogLeNet). A Conv-BN-ReLU convolution has no bias; its BatchNorm
  adds a scale and a shift per channel (2 x C parameters). The running mean
  and variance are state, not parameters, and are not counted. BatchNorm's
  arithmetic is not counted as MACs (at inference it folds into the
  convolution).
* **Auxiliary heads** get rows of their own, with ``part == "aux"``. They are
  trained but not run at inference, so :func:`inference_macs` leaves them out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, List, Sequence, Tuple

from .architecture import (AuxHead, AvgPool, Conv, Dense, GlobalAvgPool, Inception,
                           MaxPool, NetworkSpec, conv_output_size)

__all__ = ["LayerCount", "count_conv", "count_inception", "count_network", "count_any",
           "analytic_flops", "branch_params", "count_aux_head", "inference_macs",
           "torchinfo_mult_adds", "total_params", "total_macs", "flops"]

Shape = Tuple[int, int, int]  # channels, height, width


@dataclass(frozen=True)
class LayerCount:
    """One row of a count table."""

    stage: str       # "b1" ... "b5", "head"; "" for a lone block
    part: str        # "stem", "body", "head", "aux"; "" for a lone block
    name: str        # e.g. "conv1", "inception3a/branch2/3x3"
    in_shape: Shape
    out_shape: Shape
    params: int
    macs: int
    kind: str = ""   # "conv", "conv-bn", "dense", "pool"; "" for a summed row


def flops(macs: int) -> int:
    """FLOPs under the ``2 x MACs`` convention."""
    return 2 * macs


def count_conv(conv: Conv, in_shape: Shape, prefix: str = "") -> LayerCount:
    """Parameters and MACs of one convolution: weights plus a bias, or, for
    Conv-BN-ReLU, weights plus BatchNorm's scale and shift."""
    c_in, h, w = in_shape
    h_out = conv_output_size(h, conv.kernel, conv.stride, conv.padding)
    w_out = conv_output_size(w, conv.kernel, conv.stride, conv.padding)
    weights = conv.out_channels * c_in * conv.kernel * conv.kernel
    extra = 2 * conv.out_channels if conv.batch_norm else conv.out_channels
    return LayerCount("", "", prefix + conv.name, in_shape,
                      (conv.out_channels, h_out, w_out),
                      weights + extra,
                      weights * h_out * w_out,
                      "conv-bn" if conv.batch_norm else "conv")


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
    return LayerCount("", "", prefix + layer.name, in_shape, (c, *size), 0, 0, "pool")


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


def count_network(spec: NetworkSpec, input_size: int | None = None,
                  detail: bool = False) -> List[LayerCount]:
    """Count every layer of ``spec`` for a square input.

    With ``detail=False`` an Inception block is one row (its branches summed)
    and so is an auxiliary head; with ``detail=True`` each of their layers gets
    its own row. Auxiliary heads follow the block they branch off, with
    ``part == "aux"``.
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
                                       row.out_shape, row.params, row.macs, row.kind))
            shape = _output_shape(layer, shape, new_rows)
            for head in spec.aux_heads:
                if head.after == layer.name:
                    head_rows = count_aux_head(head, shape)
                    if not detail:
                        head_rows = [LayerCount("", "", head.name, shape,
                                                head_rows[-1].out_shape,
                                                total_params(head_rows),
                                                total_macs(head_rows))]
                    rows.extend(LayerCount(stage.name, "aux", r.name, r.in_shape,
                                           r.out_shape, r.params, r.macs, r.kind)
                                for r in head_rows)
    return rows


def count_aux_head(head: AuxHead, in_shape: Shape) -> List[LayerCount]:
    """One row per layer of an auxiliary head, named ``aux1/conv`` etc."""
    rows = []
    shape = in_shape
    for layer in head.layers():
        row = _count_layer(layer, shape, detail=True)[0]
        row = LayerCount("", "", f"{head.name}/{row.name}", row.in_shape, row.out_shape,
                         row.params, row.macs, row.kind)
        rows.append(row)
        shape = row.out_shape
    return rows


def inference_macs(rows: Iterable[LayerCount]) -> int:
    """MACs of the layers run at inference: all rows but auxiliary heads."""
    return sum(r.macs for r in rows if r.part != "aux")


def torchinfo_mult_adds(spec: NetworkSpec, batch_size: int = 1, aux: bool = False) -> int:
    """"Total mult-adds" as ``torchinfo.summary`` reports it for ``spec``.

    torchinfo's rule (``LayerInfo.calculate_macs``): a convolution's weight
    *and bias* count once per output position (so a bias adds ``C x H x W``),
    any other layer's parameters (dense weights and biases, BatchNorm's scale
    and shift) count once; everything times the batch size. In ``eval`` mode,
    torchinfo's default, auxiliary heads do not run and add nothing
    (``aux=False``); in ``train`` mode they do.
    """
    total = 0
    for row in count_network(spec, detail=True):
        if row.part == "aux" and not aux:
            continue
        positions = row.out_shape[1] * row.out_shape[2]
        if row.kind == "conv":       # weights and bias at every output position
            total += row.macs + row.out_shape[0] * positions
        elif row.kind == "conv-bn":  # weights at every position; BN's 2 x C once
            total += row.macs + 2 * row.out_shape[0]
        else:                        # dense weights and bias once; pools nothing
            total += row.params
    return total * batch_size


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
                           fan_in * layer.out_features, "dense")]
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
    if isinstance(spec_or_block, NetworkSpec):
        return count_network(spec_or_block, input_size)
    if isinstance(spec_or_block, Inception):
        if not isinstance(input_size, (tuple, list)) or len(input_size) != 3:
            raise ValueError(f"an Inception block needs input_size=(channels, height, "
                             f"width), e.g. (192, 28, 28), got {input_size!r}")
        return count_inception(spec_or_block, tuple(input_size))
    raise ValueError(f"expected a GoogLeNetSpec (or another NetworkSpec) or an "
                     f"architecture.Inception, got "
                     f"{type(spec_or_block).__name__}")


def analytic_flops(spec_or_block, input_size=None) -> int:
    """``2 x MACs`` of convolutions and dense layers, for one image at inference
    (auxiliary heads, which only run in training, left out)."""
    return flops(inference_macs(count_any(spec_or_block, input_size)))


def branch_params(block: Inception, in_shape: Shape) -> dict:
    """Parameters per branch of an Inception block: ``{"branch1": n, ...}``."""
    out: dict = {}
    for row in count_inception(block, in_shape):
        branch = row.name.split("/")[1]
        out[branch] = out.get(branch, 0) + row.params
    return out
