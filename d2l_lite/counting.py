"""Analytic parameter and multiply-accumulate (MAC) counts, framework-neutral. MACs count
convolutions and dense layers only (``C_out * H * W * C_in * k * k`` for a convolution);
FLOPs are ``2 x MACs``, as ``torch.utils.flop_counter`` counts. Parameters include biases;
a Conv-BN-ReLU convolution has none (unless ``conv_bias``), and its BatchNorm adds 2 x C (running statistics are
state, not counted). Auxiliary heads are rows with ``part == "aux"``, not inference MACs."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable, List, Tuple

from .architecture import Conv, Dense, Inception, NetworkSpec, Step, layer_output_shape, walk

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


def _count_step(step: Step) -> LayerCount:
    layer, (c_in, h, w), (c_out, h_out, w_out) = step.layer, step.in_shape, step.out_shape
    kind, params, macs = "pool", 0, 0
    if isinstance(layer, Conv):
        macs = c_out * c_in * layer.kernel * layer.kernel * h_out * w_out
        params = c_out * c_in * layer.kernel * layer.kernel
        params += (layer.bias + 2 * layer.batch_norm) * c_out
        kind = "conv-bn" if layer.batch_norm else "conv"
    elif isinstance(layer, Dense):
        macs = c_in * h * w * c_out
        params, kind = macs + c_out, "dense"
    return LayerCount(step.stage, step.part, step.name, step.in_shape, step.out_shape, params,
                      macs, kind)


def count_conv(conv: Conv, in_shape: Shape, prefix: str = "") -> LayerCount:
    """Parameters and MACs of one convolution."""
    return _count_step(Step("", "", prefix + conv.name, conv, tuple(in_shape),
                            layer_output_shape(conv, tuple(in_shape))))


def count_inception(block: Inception, in_shape: Shape) -> List[LayerCount]:
    """One row per layer of each branch, named ``block/branch/layer``."""
    return [_count_step(step) for step in walk(block, in_shape)]


def count_network(spec: NetworkSpec, input_size: int | None = None,
                  detail: bool = False) -> List[LayerCount]:
    """Count every layer of ``spec``; without ``detail`` a block or an aux head is one row."""
    rows = [_count_step(step) for step in walk(spec, input_size)]
    if detail:
        return rows
    blocks = {layer.name: layer for stage in spec.stages for layer in stage.layers
              if isinstance(layer, Inception)}
    grouped: List[LayerCount] = []
    for row in rows:
        group = row.name.split("/")[0]
        if group == row.name:  # a layer of its own
            grouped.append(row)
            continue
        if grouped and grouped[-1].name == group:  # a block or head continues
            first = grouped.pop()
            row = replace(first, out_shape=row.out_shape, params=first.params + row.params,
                          macs=first.macs + row.macs)
        else:
            row = replace(row, name=group, kind="")
        if group in blocks:  # concatenated branches: the block's width, same size
            row = replace(row, out_shape=(blocks[group].out_channels,) + row.in_shape[1:])
        grouped.append(row)
    return grouped


def stage_rows(spec: NetworkSpec, input_size: int | None = None
               ) -> List[Tuple[str, Tuple[int, ...], int]]:
    """``(stage, output shape, parameters)`` per stage, then per auxiliary head: what every
    framework's model must reproduce (a 1x1 output is ``(C,)``)."""
    out: dict = {}
    for row in count_network(spec, input_size):
        key = row.name if row.part == "aux" else row.stage
        shape = row.out_shape[:1] if row.out_shape[1:] == (1, 1) else row.out_shape
        out[key] = (shape, out.get(key, (None, 0))[1] + row.params)
    rows = [(name, shape, params) for name, (shape, params) in out.items()]
    return sorted(rows, key=lambda r: r[0].startswith("aux"))  # stable: heads last


def inference_macs(rows: Iterable[LayerCount]) -> int:
    """MACs of the layers run at inference: all rows but auxiliary heads."""
    return sum(r.macs for r in rows if r.part != "aux")


def torchinfo_mult_adds(spec: NetworkSpec, batch_size: int = 1, aux: bool = False) -> int:
    """"Total mult-adds" as ``torchinfo.summary`` reports it: a convolution's weight and bias
    count per output position, other parameters once, times the batch. Auxiliary heads
    count only in ``train`` mode (``aux=True``)."""
    total = 0
    for row in count_network(spec, detail=True):
        if row.part == "aux" and not aux:
            continue
        channels, positions = row.out_shape[0], row.out_shape[1] * row.out_shape[2]
        if row.kind.startswith("conv"):  # weights (and bias) at every position
            bias = row.params - row.macs // positions - 2 * channels * (row.kind == "conv-bn")
            total += row.macs + bias * positions + 2 * channels * (row.kind == "conv-bn")
        else:                            # dense weights and bias once; pools nothing
            total += row.params
    return total * batch_size


def total_params(rows: Iterable[LayerCount]) -> int:
    return sum(r.params for r in rows)


def total_macs(rows: Iterable[LayerCount]) -> int:
    return sum(r.macs for r in rows)


def count_any(spec_or_block, input_size=None) -> List[LayerCount]:
    """Rows for a network (``input_size``: the side) or an Inception block
    (``input_size``: ``(C, H, W)``, required)."""
    if isinstance(spec_or_block, NetworkSpec):
        return count_network(spec_or_block, input_size)
    if isinstance(spec_or_block, Inception):
        return count_inception(spec_or_block, input_size)
    raise ValueError(f"expected a GoogLeNetSpec (or another NetworkSpec) or an "
                     f"architecture.Inception, got {type(spec_or_block).__name__}")


def analytic_flops(spec_or_block, input_size=None) -> int:
    """``2 x MACs`` for one image at inference (no auxiliary heads)."""
    return flops(inference_macs(count_any(spec_or_block, input_size)))


def branch_params(block: Inception, in_shape: Shape) -> dict:
    """Parameters per branch of an Inception block: ``{"branch1": n, ...}``."""
    out: dict = {}
    for row in count_inception(block, in_shape):
        branch = row.name.split("/")[1]
        out[branch] = out.get(branch, 0) + row.params
    return out
