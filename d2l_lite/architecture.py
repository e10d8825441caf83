"""One framework-neutral description of GoogLeNet.

Every model in this book (PyTorch, TensorFlow/Keras, JAX/Flax, MXNet) is built
by walking the layer list that :func:`googlenet_spec` returns, and the analytic
counter in :mod:`d2l_lite.counting` reads the same list. Nothing about the
network's shape is written down twice, so the four models and the FLOP tables
cannot drift apart.

The network is split the way the GoogLeNet paper made common:

* **stem**: plain convolutions and pooling that shrink the image quickly;
* **body**: the nine Inception blocks in three stages (3, 4, 5);
* **head**: global pooling and one dense layer that maps to the classes.

Spatial sizes follow PyTorch's rules (explicit, symmetric zero padding; floor
division). The framework modules reproduce exactly that padding, so the four
models compute the same function, not only the same shapes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from typing import Optional, Tuple, Union

__all__ = [
    "Conv",
    "MaxPool",
    "Inception",
    "GlobalAvgPool",
    "AvgPool",
    "Dense",
    "Stage",
    "GoogLeNetSpec",
    "INCEPTION_3A",
    "INCEPTION_TABLE",
    "googlenet_spec",
    "BOOK",
    "PAPER",
    "conv_output_size",
]


@dataclass(frozen=True)
class Conv:
    """A convolution followed by ReLU (``kernel`` x ``kernel``, square)."""

    name: str
    out_channels: int
    kernel: int
    stride: int = 1
    padding: int = 0


@dataclass(frozen=True)
class MaxPool:
    """Max pooling; padding counts as -inf (never selected)."""

    name: str
    kernel: int = 3
    stride: int = 2
    padding: int = 1


@dataclass(frozen=True)
class AvgPool:
    """Average pooling without padding (the paper's 7x7 head pool)."""

    name: str
    kernel: int = 7
    stride: int = 1


@dataclass(frozen=True)
class GlobalAvgPool:
    """Average over all spatial positions (d2l's ``AdaptiveAvgPool2d((1, 1))``)."""

    name: str = "avgpool"


@dataclass(frozen=True)
class Dense:
    """A fully connected layer after flattening (no activation)."""

    name: str
    out_features: int


@dataclass(frozen=True)
class Inception:
    """An Inception block, in the argument names of the paper's Table 1.

    Four parallel branches whose outputs are concatenated along channels:

    1. ``ch1x1``: a 1x1 convolution;
    2. ``ch3x3red`` 1x1 reduction, then ``ch3x3`` 3x3 convolution (padding 1);
    3. ``ch5x5red`` 1x1 reduction, then ``ch5x5`` 5x5 convolution (padding 2);
    4. 3x3 max pooling (stride 1, padding 1), then ``pool_proj`` 1x1 convolution.

    Every convolution is followed by ReLU. With ``reduce=False`` the block is
    the "naive" counterfactual: the 3x3 and 5x5 convolutions read all input
    channels directly (no 1x1 reductions), with the same output widths.
    """

    name: str
    ch1x1: int
    ch3x3red: int
    ch3x3: int
    ch5x5red: int
    ch5x5: int
    pool_proj: int
    reduce: bool = True

    @property
    def out_channels(self) -> int:
        return self.ch1x1 + self.ch3x3 + self.ch5x5 + self.pool_proj

    def branches(self) -> Tuple[Tuple[str, Tuple[Union[Conv, MaxPool], ...]], ...]:
        """The four branches as layer sequences, named as in the paper."""
        reduce3 = (Conv("3x3_reduce", self.ch3x3red, 1),) if self.reduce else ()
        reduce5 = (Conv("5x5_reduce", self.ch5x5red, 1),) if self.reduce else ()
        return (
            ("branch1", (Conv("1x1", self.ch1x1, 1),)),
            ("branch2", reduce3 + (Conv("3x3", self.ch3x3, 3, padding=1),)),
            ("branch3", reduce5 + (Conv("5x5", self.ch5x5, 5, padding=2),)),
            ("branch4", (MaxPool("pool", 3, stride=1, padding=1),
                         Conv("pool_proj", self.pool_proj, 1))),
        )


Layer = Union[Conv, MaxPool, AvgPool, GlobalAvgPool, Dense, Inception]


@dataclass(frozen=True)
class Stage:
    """A named group of layers (d2l's ``b1`` ... ``b5`` plus the head)."""

    name: str
    part: str  # "stem", "body" or "head"
    layers: Tuple[Layer, ...]


# The paper's Table 1, one row per Inception block:
# name, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
INCEPTION_TABLE = (
    ("inception3a", 64, 96, 128, 16, 32, 32),
    ("inception3b", 128, 128, 192, 32, 96, 64),
    ("inception4a", 192, 96, 208, 16, 48, 64),
    ("inception4b", 160, 112, 224, 24, 64, 64),
    ("inception4c", 128, 128, 256, 24, 64, 64),
    ("inception4d", 112, 144, 288, 32, 64, 64),
    ("inception4e", 256, 160, 320, 32, 128, 128),
    ("inception5a", 256, 160, 320, 32, 128, 128),
    ("inception5b", 384, 192, 384, 48, 128, 128),
)
_BLOCKS = {row[0]: Inception(*row) for row in INCEPTION_TABLE}

#: The block the Inception chapter studies: 192 channels in, 256 out.
INCEPTION_3A = _BLOCKS["inception3a"]


@dataclass(frozen=True)
class GoogLeNetSpec:
    """A whole GoogLeNet: input description plus its stages in order."""

    in_channels: int
    input_size: int
    num_classes: int
    head_pool: str
    stages: Tuple[Stage, ...]

    def part(self, part: str) -> Tuple[Stage, ...]:
        """The stages of one part: ``"stem"``, ``"body"`` or ``"head"``."""
        if part not in ("stem", "body", "head"):
            raise ValueError(f"part must be 'stem', 'body' or 'head', got {part!r}")
        return tuple(s for s in self.stages if s.part == part)

    def check_input(self, channels: int, height: int, width: int) -> None:
        """Raise a clear ``ValueError`` if an input cannot go through this network.

        Called by every framework's model before the first layer runs, so a
        reader sees this message instead of a stack trace from deep inside a
        convolution.
        """
        if channels != self.in_channels:
            raise ValueError(
                f"GoogLeNet was built for {self.in_channels}-channel images but got "
                f"{channels} channels. Check the channel axis first (PyTorch and MXNet "
                f"take NCHW batches, TensorFlow and JAX NHWC); then build it with "
                f"in_channels={channels}, or convert the images (e.g. to grayscale)."
            )
        smallest, largest = self.input_size_range
        for side in (height, width):
            if side < smallest:
                raise ValueError(
                    f"Input {height}x{width} is too small for this GoogLeNet: it needs at "
                    f"least {smallest}x{smallest}. {self._min_size_reason()} Resize the "
                    f"images to {self.input_size}x{self.input_size}, the size this model "
                    f"was configured for.")
            if largest is not None and side > largest:
                raise ValueError(
                    f"Input {height}x{width} is too large for this GoogLeNet: its 7x7 "
                    f"average pool must leave a 1x1 map for the dense layer, which holds "
                    f"for inputs from {smallest} to {largest} pixels (ceil(n / 32) == 7). "
                    f"Resize the images to {self.input_size}x{self.input_size}, or build "
                    f"the model with head_pool='global', which takes any size.")

    @cached_property
    def input_size_range(self) -> Tuple[int, Optional[int]]:
        """(smallest, largest) square input side; largest is None when unbounded.

        With global pooling every side from 1 up works; the paper's 7x7
        average pool needs the last map to be exactly 7x7. Computed once per
        spec (the models call :meth:`check_input` on every forward pass).
        """
        fits = [size for size in range(1, 1025) if self._fits(size)]
        largest = None if fits[-1] == 1024 else fits[-1]
        return fits[0], largest

    def min_input_size(self) -> int:
        """Smallest square input for which every layer has a usable output."""
        return self.input_size_range[0]

    def _fits(self, size: int) -> bool:
        try:
            self.spatial_sizes(size)
        except ValueError:
            return False
        return True

    def spatial_sizes(self, size: int) -> Tuple[Tuple[str, int], ...]:
        """The side length after each stage for a ``size`` x ``size`` input.

        Raises ``ValueError`` naming the first layer whose output would be
        empty.
        """
        out = []
        for stage in self.stages:
            for layer in stage.layers:
                size = _layer_output_size(layer, size)
            out.append((stage.name, size))
        return tuple(out)

    def _min_size_reason(self) -> str:
        if self.head_pool == "avg7":
            return (
                "The stem and the pools halve the side five times (rounding up), and "
                "the head's 7x7 average pool then needs at least a 7x7 map: "
                "ceil(n / 32) >= 7."
            )
        return "Every layer needs a non-empty output."


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output side of a convolution or pooling window (PyTorch's floor rule)."""
    return (size + 2 * padding - kernel) // stride + 1


def _layer_output_size(layer: Layer, size: int) -> int:
    if isinstance(layer, (Conv, MaxPool)):
        new = conv_output_size(size, layer.kernel, layer.stride, layer.padding)
    elif isinstance(layer, AvgPool):
        new = conv_output_size(size, layer.kernel, layer.stride, 0)
    elif isinstance(layer, GlobalAvgPool):
        new = 1
    elif isinstance(layer, Dense):
        if size != 1:
            raise ValueError(f"layer {layer.name!r} expects a 1x1 map, gets {size}x{size}")
        new = 1
    elif isinstance(layer, Inception):
        new = size  # every branch keeps the spatial size
    else:  # pragma: no cover - the spec only holds the types above
        raise TypeError(f"unknown layer type {type(layer).__name__}")
    if new < 1:
        raise ValueError(f"layer {layer.name!r} gets a {size}x{size} map and has no output")
    return new


def googlenet_spec(in_channels: int = 1, input_size: int = 96, num_classes: int = 10,
                   head_pool: str = "global", reduce: bool = True) -> GoogLeNetSpec:
    """Describe GoogLeNet for a given input and class count.

    ``head_pool="global"`` is d2l's adaptive average pool, which accepts any
    input size; ``"avg7"`` is the paper's 7x7 average pool, which needs the
    map before it to be at least 7x7 (224x224 input gives exactly 7x7).
    ``reduce=False`` builds the naive counterfactual without the 1x1
    reductions in the Inception blocks (see :class:`Inception`).
    """
    for arg, value in (("in_channels", in_channels), ("input_size", input_size),
                       ("num_classes", num_classes)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{arg} must be a positive int, got {value!r}")
    if head_pool == "global":
        pool: Layer = GlobalAvgPool("avgpool")
    elif head_pool == "avg7":
        pool = AvgPool("avgpool", kernel=7, stride=1)
    else:
        raise ValueError(f"head_pool must be 'global' or 'avg7', got {head_pool!r}")
    b = _BLOCKS if reduce else {name: replace(block, reduce=False)
                                for name, block in _BLOCKS.items()}
    stages = (
        Stage("b1", "stem", (Conv("conv1", 64, 7, stride=2, padding=3),
                             MaxPool("maxpool1"))),
        Stage("b2", "stem", (Conv("conv2", 64, 1),
                             Conv("conv3", 192, 3, padding=1),
                             MaxPool("maxpool2"))),
        Stage("b3", "body", (b["inception3a"], b["inception3b"], MaxPool("maxpool3"))),
        Stage("b4", "body", (b["inception4a"], b["inception4b"], b["inception4c"],
                             b["inception4d"], b["inception4e"], MaxPool("maxpool4"))),
        Stage("b5", "body", (b["inception5a"], b["inception5b"])),
        Stage("head", "head", (pool, Dense("fc", num_classes))),
    )
    spec = GoogLeNetSpec(in_channels, input_size, num_classes, head_pool, stages)
    spec.check_input(in_channels, input_size, input_size)
    return spec


#: The book's model: Fashion-MNIST resized to 96x96, one channel, 10 classes.
BOOK = googlenet_spec(in_channels=1, input_size=96, num_classes=10, head_pool="global")
#: The paper's ImageNet model (no auxiliary heads, no LRN, no dropout).
PAPER = googlenet_spec(in_channels=3, input_size=224, num_classes=1000, head_pool="avg7")
