"""The GoogLeNet paper's Table 1 (params in K of 1024 weights, no biases; ops in M
multiply-adds) and torchvision's variant, checked against the architecture."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

from .architecture import GoogLeNetSpec, PAPER
from .counting import count_network

#: (our layer names, params in K, ops in M); the stem's conv2 and conv3 are one row.
TABLE1: Tuple[Tuple[Tuple[str, ...], float, float], ...] = (
    (("conv1",), 2.7, 34),
    (("conv2", "conv3"), 112, 360),
    (("inception3a",), 159, 128),
    (("inception3b",), 380, 304),
    (("inception4a",), 364, 73),
    (("inception4b",), 437, 88),
    (("inception4c",), 463, 100),
    (("inception4d",), 580, 119),
    (("inception4e",), 840, 170),
    (("inception5a",), 1072, 54),
    (("inception5b",), 1388, 71),
    (("fc",), 1000, 1),
)


@dataclass(frozen=True)
class Table1Row:
    """One row of the paper's table beside the computed values."""
    layer: str
    paper_params_k: float
    computed_params_k: float   # weights only, / 1024, as the paper counts
    paper_ops_m: float
    computed_ops_m: float      # MACs / 1e6
    params_agree: bool         # within the paper's rounding (1 K, or 0.1 K below 10 K)
    ops_agree: bool            # within 1 M


def compare_table1(spec: GoogLeNetSpec = PAPER) -> List[Table1Row]:
    """The paper's params and ops next to what its architecture gives."""
    detail = count_network(spec, detail=True)
    out = []
    for names, paper_k, paper_m in TABLE1:
        rows = [r for r in detail if r.name.split("/")[0] in names]
        # The paper counts weights only: drop one bias per output channel.
        weights = sum(r.params - r.out_shape[0] for r in rows if r.params)
        k, m = weights / 1024, sum(r.macs for r in rows) / 1e6
        tolerance = 0.1 if paper_k < 10 else 1
        out.append(Table1Row("+".join(names), paper_k, round(k, 1), paper_m, round(m, 1),
                             abs(k - paper_k) <= tolerance, abs(m - paper_m) <= 1))
    return out


def torchvision_params(spec: GoogLeNetSpec = PAPER) -> List[Tuple[str, int]]:
    """Steps from this book's paper count to torchvision's ``googlenet``: BatchNorm
    instead of conv biases (+1 per channel), and 3x3 kernels in its "5x5"
    branch (a known bug kept for compatibility with trained weights)."""
    rows = count_network(spec, detail=True)
    total = sum(r.params for r in rows)
    conv_channels = sum(r.out_shape[0] for r in rows if r.params and r.name != "fc")
    five = sum((25 - 9) * r.in_shape[0] * r.out_shape[0] for r in rows if r.name.endswith("/5x5"))
    return [
        ("this book, paper configuration (conv biases, 5x5 kernels)", total),
        ("conv biases removed, BatchNorm scale and shift added", conv_channels),
        ("5x5 kernels of branch 3 replaced by 3x3", -five),
        ("torchvision googlenet(aux_logits=False)", total + conv_channels - five),
    ]
