"""The GoogLeNet paper's Table 1 and torchvision's variant, as data to check against.

Szegedy et al., *Going deeper with convolutions* (CVPR 2015), Table 1 lists for
every layer its parameters in K (1 K = 1024 weights, biases not counted) and
its "ops" (multiply-adds, in decimal millions). :func:`compare_table1` puts
those figures next to what the architecture itself gives, so a reader sees
which rows follow from the listed filter counts and which do not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

from .architecture import GoogLeNetSpec, PAPER
from .counting import count_network

__all__ = ["TABLE1", "Table1Row", "compare_table1", "torchvision_params"]

#: (our layer names, the paper's params in K, the paper's ops in M).
#: The paper lists the 1x1 reduce and 3x3 convolutions of the stem as one row.
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
    """One row of the paper's table beside the values computed from the spec."""

    layer: str
    paper_params_k: float
    computed_params_k: float   # weights only, / 1024, as the paper counts
    paper_ops_m: float
    computed_ops_m: float      # MACs / 1e6
    params_agree: bool         # within the paper's rounding (1 K, or 0.1 K below 10 K)
    ops_agree: bool            # within 1 M


def compare_table1(spec: GoogLeNetSpec = PAPER) -> List[Table1Row]:
    """The paper's params and ops next to the values its own architecture gives."""
    detail = count_network(spec, detail=True)
    out = []
    for names, paper_k, paper_m in TABLE1:
        rows = [r for r in detail if r.name.split("/")[0] in names]
        # The paper counts weights only: every layer with parameters has one
        # bias per output channel.
        weights = sum(r.params - r.out_shape[0] for r in rows if r.params)
        k, m = weights / 1024, sum(r.macs for r in rows) / 1e6
        tolerance = 0.1 if paper_k < 10 else 1
        out.append(Table1Row("+".join(names), paper_k, round(k, 1), paper_m, round(m, 1),
                             abs(k - paper_k) <= tolerance, abs(m - paper_m) <= 1))
    return out


def torchvision_params(spec: GoogLeNetSpec = PAPER) -> List[Tuple[str, int]]:
    """From this book's paper-configuration count to torchvision's ``googlenet``.

    torchvision (``aux_logits=False``) differs in two ways, and these steps turn
    one count into the other exactly:

    1. every convolution is bias-free and followed by BatchNorm with a learned
       scale and shift: ``-1 + 2 = +1`` parameter per convolution channel;
    2. its "5x5" branch really uses 3x3 kernels (a known bug kept for
       compatibility with trained weights): ``-(25 - 9)`` weights per
       (reduce channel, output channel) pair of every block.
    """
    rows = count_network(spec, detail=True)
    total = sum(r.params for r in rows)
    conv_channels = sum(r.out_shape[0] for r in rows if r.params and r.name != "fc")
    five = sum((25 - 9) * r.in_shape[0] * r.out_shape[0] for r in rows
               if r.name.endswith("/5x5"))
    return [
        ("this book, paper configuration (conv biases, 5x5 kernels)", total),
        ("conv biases removed, BatchNorm scale and shift added", conv_channels),
        ("5x5 kernels of branch 3 replaced by 3x3", -five),
        ("torchvision googlenet(aux_logits=False)", total + conv_channels - five),
    ]
