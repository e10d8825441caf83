"""One framework-neutral description of GoogLeNet.

Every model in this book (PyTorch, TensorFlow/Keras, JAX/Flax, MXNet) is built
by walking the layer list that :func:`googlenet_spec` returns, and the analytic
counter in :mod:`d2l_lite.counting` reads the same list. Nothing about the
network's shape is written down twice, so the four models and the FLOP tables
cannot drift apart.

Variants are options of the same description, not copies: Conv-BN-ReLU
instead of Conv-ReLU (``batch_norm``), the paper's two auxiliary classifiers
(``aux_heads``), the Inception-v3 factorisation of the 5x5 branch into two
3x3 convolutions (``factorize``), and a stem for 28x28 inputs (``stem``).

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
    "AuxHead",
    "NetworkSpec",
    "GoogLeNetSpec",
    "BN_EPS",
    "BN_MOMENTUM",
    "AUX_LOSS_WEIGHT",
    "INCEPTION_3A",
    "INCEPTION_TABLE",
    "googlenet_spec",
    "BOOK",
    "PAPER",
    "VARIANTS",
    "PAPER_BN_AUX",
    "conv_output_size",
    "Step",
    "walk",
    "layer_output_shape",
]


#: BatchNorm settings shared by the four frameworks: epsilon, and the weight of
#: the newest batch in the running statistics (PyTorch's ``momentum``; Keras,
#: Flax and Gluon call ``1 - BN_MOMENTUM`` their momentum).
BN_EPS = 1e-5
BN_MOMENTUM = 0.1
#: The paper's weight of each auxiliary classifier's loss during training.
AUX_LOSS_WEIGHT = 0.3


@dataclass(frozen=True)
class Conv:
    """A convolution followed by ReLU (``kernel`` x ``kernel``, square).

    With ``batch_norm`` it is Conv-BN-ReLU: the convolution has no bias (the
    BatchNorm's shift would make it redundant) and BatchNorm (:data:`BN_EPS`,
    :data:`BN_MOMENTUM`) sits between it and the ReLU.
    """

    name: str
    out_channels: int
    kernel: int
    stride: int = 1
    padding: int = 0
    batch_norm: bool = False


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
    """A fully connected layer after flattening.

    ``relu``: followed by ReLU (hidden layers; the classifier has none).
    ``flatten``: reads a map of any size (``C x H x W`` inputs, as in AlexNet);
    otherwise the map before it must be 1x1.
    """

    name: str
    out_features: int
    relu: bool = False
    flatten: bool = False


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

    ``batch_norm``: every convolution is Conv-BN-ReLU (see :class:`Conv`).
    ``factorize``: the Inception-v3 factorisation of branch 3: the 5x5
    convolution becomes two 3x3 convolutions (``5x5a``, ``5x5b``, padding 1
    each), which see the same 5x5 window. The first keeps the reduced width
    ``ch5x5red``, the second widens to ``ch5x5``.
    """

    name: str
    ch1x1: int
    ch3x3red: int
    ch3x3: int
    ch5x5red: int
    ch5x5: int
    pool_proj: int
    reduce: bool = True
    batch_norm: bool = False
    factorize: bool = False

    @property
    def out_channels(self) -> int:
        return self.ch1x1 + self.ch3x3 + self.ch5x5 + self.pool_proj

    def branches(self) -> Tuple[Tuple[str, Tuple[Union[Conv, MaxPool], ...]], ...]:
        """The four branches as layer sequences, named as in the paper."""
        bn = self.batch_norm
        reduce3 = (Conv("3x3_reduce", self.ch3x3red, 1, batch_norm=bn),) if self.reduce else ()
        reduce5 = (Conv("5x5_reduce", self.ch5x5red, 1, batch_norm=bn),) if self.reduce else ()
        if self.factorize:
            middle = self.ch5x5red if self.reduce else self.ch5x5
            five = (Conv("5x5a", middle, 3, padding=1, batch_norm=bn),
                    Conv("5x5b", self.ch5x5, 3, padding=1, batch_norm=bn))
        else:
            five = (Conv("5x5", self.ch5x5, 5, padding=2, batch_norm=bn),)
        return (
            ("branch1", (Conv("1x1", self.ch1x1, 1, batch_norm=bn),)),
            ("branch2", reduce3 + (Conv("3x3", self.ch3x3, 3, padding=1, batch_norm=bn),)),
            ("branch3", reduce5 + five),
            ("branch4", (MaxPool("pool", 3, stride=1, padding=1),
                         Conv("pool_proj", self.pool_proj, 1, batch_norm=bn))),
        )


Layer = Union[Conv, MaxPool, AvgPool, GlobalAvgPool, Dense, Inception]


@dataclass(frozen=True)
class Stage:
    """A named group of layers (d2l's ``b1`` ... ``b5`` plus the head)."""

    name: str
    part: str  # "stem", "body" or "head"
    layers: Tuple[Layer, ...]


@dataclass(frozen=True)
class AuxHead:
    """An auxiliary classifier of the paper, branching off after block ``after``.

    5x5 average pool with stride 3, a 1x1 convolution to 128 channels (with
    ReLU, BatchNorm when ``batch_norm``), a dense layer of 1024 with ReLU,
    dropout 0.7, and a dense layer to the classes. During training its loss is
    added with weight :data:`AUX_LOSS_WEIGHT`; at inference it is not run.
    """

    name: str       # "aux1", "aux2"
    after: str      # "inception4a", "inception4d"
    num_classes: int
    batch_norm: bool = False
    dropout: float = 0.7

    def layers(self) -> Tuple[Union[AvgPool, Conv, Dense], ...]:
        return (AvgPool("pool", kernel=5, stride=3),
                Conv("conv", 128, 1, batch_norm=self.batch_norm),
                Dense("fc1", 1024, relu=True, flatten=True),
                Dense("fc2", self.num_classes))


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
class NetworkSpec:
    """A whole network: input description plus its stages in order.

    GoogLeNet is one (:class:`GoogLeNetSpec`); the exercises describe AlexNet,
    VGG-11 and NiN the same way (:mod:`d2l_lite.classic_nets`) so the same
    counter counts all of them.
    """

    in_channels: int
    input_size: int
    num_classes: int
    head_pool: str
    stages: Tuple[Stage, ...]
    aux_heads: Tuple[AuxHead, ...] = ()

    @property
    def batch_norm(self) -> bool:
        """True when the convolutions are Conv-BN-ReLU."""
        return any(isinstance(layer, Conv) and layer.batch_norm
                   for stage in self.stages for layer in stage.layers)

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
        aux = {head.after: head for head in self.aux_heads}
        for stage in self.stages:
            for layer in stage.layers:
                size = _layer_output_size(layer, size)
                if layer.name in aux:
                    pool = aux[layer.name].layers()[0]
                    if conv_output_size(size, pool.kernel, pool.stride, 0) < 1:
                        raise ValueError(
                            f"auxiliary head {aux[layer.name].name!r} after {layer.name} "
                            f"gets a {size}x{size} map; its 5x5 average pool needs at "
                            f"least 5x5")
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


@dataclass(frozen=True)
class GoogLeNetSpec(NetworkSpec):
    """A whole GoogLeNet (what :func:`googlenet_spec` returns)."""


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
        if size != 1 and not layer.flatten:
            raise ValueError(f"layer {layer.name!r} expects a 1x1 map, gets {size}x{size}")
        new = 1
    elif isinstance(layer, Inception):
        new = size  # every branch keeps the spatial size
    else:  # pragma: no cover - the spec only holds the types above
        raise TypeError(f"unknown layer type {type(layer).__name__}")
    if new < 1:
        raise ValueError(f"layer {layer.name!r} gets a {size}x{size} map and has no output")
    return new


@dataclass(frozen=True)
class Step:
    """One leaf layer met by :func:`walk`, with the shapes around it.

    ``name`` is the layer's path: ``conv1``, ``inception3a/branch2/3x3``,
    ``aux1/fc1``. ``part`` is ``"aux"`` for the auxiliary heads' layers.
    Shapes are ``(channels, height, width)``; a dense layer's output is
    ``(features, 1, 1)``.
    """

    stage: str
    part: str
    name: str
    layer: Union[Conv, MaxPool, AvgPool, GlobalAvgPool, Dense]
    in_shape: Tuple[int, int, int]
    out_shape: Tuple[int, int, int]


def layer_output_shape(layer, shape: Tuple[int, int, int]) -> Tuple[int, int, int]:
    channels, size = shape[0], _layer_output_size(layer, shape[1])
    if isinstance(layer, Conv):
        channels = layer.out_channels
    elif isinstance(layer, Dense):
        channels = layer.out_features
    return (channels, size, size)


def _walk_layers(layers, shape, stage: str, part: str, prefix: str = ""):
    """Yield the steps of ``layers`` in order; return the shape after them."""
    for layer in layers:
        if isinstance(layer, Inception):
            for branch, branch_layers in layer.branches():
                yield from _walk_layers(branch_layers, shape, stage, part,
                                        f"{prefix}{layer.name}/{branch}/")
            shape = (layer.out_channels, shape[1], shape[2])
        else:
            out = layer_output_shape(layer, shape)
            yield Step(stage, part, prefix + layer.name, layer, shape, out)
            shape = out
    return shape


def walk(spec_or_block, input_size=None):
    """Every leaf layer of a network (or of one Inception block) in order,
    as :class:`Step` s: the one walk that counting, the FLOP rules and the
    weight layout all read.

    For a :class:`NetworkSpec`, ``input_size`` is the square side (default
    the spec's); auxiliary heads follow the block they branch off. For an
    :class:`Inception` block, ``input_size`` is ``(channels, height, width)``.
    """
    if isinstance(spec_or_block, Inception):
        yield from _walk_layers((spec_or_block,), tuple(input_size), "", "")
        return
    spec = spec_or_block
    size = spec.input_size if input_size is None else input_size
    spec.check_input(spec.in_channels, size, size)
    shape = (spec.in_channels, size, size)
    aux = {head.after: head for head in spec.aux_heads}
    for stage in spec.stages:
        for layer in stage.layers:
            shape = yield from _walk_layers((layer,), shape, stage.name, stage.part)
            if layer.name in aux:
                head = aux[layer.name]
                yield from _walk_layers(head.layers(), shape, stage.name, "aux",
                                        f"{head.name}/")


def googlenet_spec(in_channels: int = 1, input_size: int = 96, num_classes: int = 10,
                   head_pool: str = "global", reduce: bool = True, *,
                   batch_norm: bool = False, aux_heads: bool = False,
                   factorize: bool = False, stem: str = "standard") -> GoogLeNetSpec:
    """Describe GoogLeNet for a given input and class count.

    ``head_pool="global"`` is d2l's adaptive average pool, which accepts any
    input size; ``"avg7"`` is the paper's 7x7 average pool, which needs the
    map before it to be at least 7x7 (224x224 input gives exactly 7x7).
    ``reduce=False`` builds the naive counterfactual without the 1x1
    reductions in the Inception blocks (see :class:`Inception`).

    The variants of the last chapter:

    * ``batch_norm``: every convolution (auxiliary heads included) is Conv-BN-ReLU;
    * ``aux_heads``: the paper's two auxiliary classifiers after inception4a
      and inception4d (:class:`AuxHead`);
    * ``factorize``: branch 3's 5x5 convolution as two 3x3 convolutions;
    * ``stem="small"``: for 28x28 images without resizing: conv1 becomes a 3x3
      convolution with stride 1 and the stem's first max pool goes, so the
      body sees a 14x14 map (the standard stem would shrink 28x28 to 4x4
      before the first Inception block).
    """
    for arg, value in (("in_channels", in_channels), ("input_size", input_size),
                       ("num_classes", num_classes)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{arg} must be a positive int, got {value!r}")
    if stem not in ("standard", "small"):
        raise ValueError(f"stem must be 'standard' or 'small', got {stem!r}")
    if head_pool == "global":
        pool: Layer = GlobalAvgPool("avgpool")
    elif head_pool == "avg7":
        pool = AvgPool("avgpool", kernel=7, stride=1)
    else:
        raise ValueError(f"head_pool must be 'global' or 'avg7', got {head_pool!r}")
    bn = batch_norm
    b = {name: replace(block, reduce=reduce, batch_norm=bn, factorize=factorize)
         for name, block in _BLOCKS.items()}
    if stem == "standard":
        b1: Tuple[Layer, ...] = (Conv("conv1", 64, 7, stride=2, padding=3, batch_norm=bn),
                                 MaxPool("maxpool1"))
    else:
        b1 = (Conv("conv1", 64, 3, stride=1, padding=1, batch_norm=bn),)
    stages = (
        Stage("b1", "stem", b1),
        Stage("b2", "stem", (Conv("conv2", 64, 1, batch_norm=bn),
                             Conv("conv3", 192, 3, padding=1, batch_norm=bn),
                             MaxPool("maxpool2"))),
        Stage("b3", "body", (b["inception3a"], b["inception3b"], MaxPool("maxpool3"))),
        Stage("b4", "body", (b["inception4a"], b["inception4b"], b["inception4c"],
                             b["inception4d"], b["inception4e"], MaxPool("maxpool4"))),
        Stage("b5", "body", (b["inception5a"], b["inception5b"])),
        Stage("head", "head", (pool, Dense("fc", num_classes))),
    )
    heads = (AuxHead("aux1", "inception4a", num_classes, batch_norm=bn),
             AuxHead("aux2", "inception4d", num_classes, batch_norm=bn)) if aux_heads else ()
    spec = GoogLeNetSpec(in_channels, input_size, num_classes, head_pool, stages, heads)
    spec.check_input(in_channels, input_size, input_size)
    return spec


#: The book's model: Fashion-MNIST resized to 96x96, one channel, 10 classes.
BOOK = googlenet_spec(in_channels=1, input_size=96, num_classes=10, head_pool="global")
#: The paper's ImageNet model (no auxiliary heads, no LRN, no dropout).
PAPER = googlenet_spec(in_channels=3, input_size=224, num_classes=1000, head_pool="avg7")

#: The variants compared in the last chapter, all for Fashion-MNIST.
VARIANTS = {
    "baseline": BOOK,
    "batch norm": googlenet_spec(batch_norm=True),
    "aux heads": googlenet_spec(aux_heads=True),
    "factorized 5x5": googlenet_spec(factorize=True),
    "28x28": googlenet_spec(input_size=28, stem="small"),
}
#: Conv-BN-ReLU with auxiliary heads at 224x224x3 and 1000 classes, as in the
#: PyTorch tutorials that report 13.39M parameters with torchinfo.
PAPER_BN_AUX = googlenet_spec(in_channels=3, input_size=224, num_classes=1000,
                              head_pool="avg7", batch_norm=True, aux_heads=True)
