"""One framework-neutral description of GoogLeNet, as data: the counter, the
FLOP rules, the canonical weights and the NumPy reference all read it through
:func:`walk`, and ``tests/test_backends.py`` holds every framework's model to
it. Variants are options of it. Spatial sizes follow PyTorch's rules
(symmetric zero padding, floor division), which every framework reproduces.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from typing import Optional, Tuple, Union

from . import tables

#: BatchNorm's epsilon and PyTorch's ``momentum`` (Keras, Flax and Gluon use 1 - it).
BN_EPS = 1e-5
BN_MOMENTUM = 0.1
#: The paper's weight of each auxiliary classifier's loss during training.
AUX_LOSS_WEIGHT = 0.3


@dataclass(frozen=True)
class Conv:
    """A square convolution and its ReLU; with ``batch_norm``, Conv-BN-ReLU,
    without a conv bias unless ``conv_bias`` keeps it (as some tutorials do);
    ``relu=False``: linear (a residual block's shortcut)."""
    name: str
    out_channels: int
    kernel: int
    stride: int = 1
    padding: int = 0
    batch_norm: bool = False
    conv_bias: bool = False
    relu: bool = True

    @property
    def bias(self) -> bool:
        return self.conv_bias or not self.batch_norm


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
    """Average over all positions (d2l's ``AdaptiveAvgPool2d((1, 1))``)."""
    name: str = "avgpool"


@dataclass(frozen=True)
class Dense:
    """A dense layer; ``flatten`` reads a map of any size, else it must be 1x1."""
    name: str
    out_features: int
    relu: bool = False
    flatten: bool = False


_WIDTHS = ("ch1x1", "ch3x3red", "ch3x3", "ch5x5red", "ch5x5", "pool_proj")


@dataclass(frozen=True)
class Inception:
    """An Inception block in the paper's Table 1 columns. ``reduce=False``: the naive
    block; ``factorize``: two 3x3 for the 5x5; ``residual``: ReLU(branches + shortcut(x)),
    the shortcut a linear 1x1 convolution with a bias (d2l's exercise 1.4)."""
    name: str
    ch1x1: int  # branch 1: a 1x1 convolution
    ch3x3red: int  # branch 2: a 1x1 reduction, then
    ch3x3: int  # a 3x3 convolution
    ch5x5red: int  # branch 3: a 1x1 reduction, then
    ch5x5: int  # a 5x5 convolution
    pool_proj: int  # branch 4: a 3x3 max pool, then a 1x1 projection
    reduce: bool = True
    batch_norm: bool = False
    factorize: bool = False
    conv_bias: bool = False
    residual: bool = False

    def _repr_pretty_(self, printer, cycle):  # IPython's display: wrapped to the page
        printer.text(tables.fit(repr(self)))

    def __post_init__(self):
        for width in _WIDTHS:
            value = getattr(self, width)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{width} must be a positive int (a number of output "
                                 f"channels), got {value!r}")

    @property
    def out_channels(self) -> int:
        return self.ch1x1 + self.ch3x3 + self.ch5x5 + self.pool_proj

    def branches(self) -> Tuple[Tuple[str, Tuple[Union[Conv, MaxPool], ...]], ...]:
        """The four branches as layer sequences, named as in the paper."""
        bn = dict(batch_norm=self.batch_norm, conv_bias=self.conv_bias)
        reduce3 = (Conv("3x3_reduce", self.ch3x3red, 1, **bn),) if self.reduce else ()
        reduce5 = (Conv("5x5_reduce", self.ch5x5red, 1, **bn),) if self.reduce else ()
        if self.factorize:
            middle = self.ch5x5red if self.reduce else self.ch5x5
            five = (Conv("5x5a", middle, 3, padding=1, **bn),
                    Conv("5x5b", self.ch5x5, 3, padding=1, **bn))
        else:
            five = (Conv("5x5", self.ch5x5, 5, padding=2, **bn),)
        return (
            ("branch1", (Conv("1x1", self.ch1x1, 1, **bn),)),
            ("branch2", reduce3 + (Conv("3x3", self.ch3x3, 3, padding=1, **bn),)),
            ("branch3", reduce5 + five),
            ("branch4", (MaxPool("pool", 3, stride=1, padding=1),
                         Conv("pool_proj", self.pool_proj, 1, **bn))),
        )

    def shortcut(self) -> Optional[Conv]:
        """The residual block's projection of its input to its width (None: none)."""
        return Conv("shortcut", self.out_channels, 1, relu=False) if self.residual else None


Layer = Union[Conv, MaxPool, AvgPool, GlobalAvgPool, Dense, Inception]


@dataclass(frozen=True)
class Stage:
    """A named group of layers (d2l's ``b1`` ... ``b5``, the head)."""
    name: str
    part: str  # "stem", "body" or "head"
    layers: Tuple[Layer, ...]


@dataclass(frozen=True)
class AuxHead:
    """An auxiliary classifier after block ``after``, run in training only."""
    name: str       # "aux1", "aux2"
    after: str      # "inception4a", "inception4d"
    num_classes: int
    batch_norm: bool = False
    dropout: float = 0.7
    conv_bias: bool = False

    def layers(self) -> Tuple[Union[AvgPool, Conv, Dense], ...]:
        return (AvgPool("pool", kernel=5, stride=3),
                Conv("conv", 128, 1, batch_norm=self.batch_norm, conv_bias=self.conv_bias),
                Dense("fc1", 1024, relu=True, flatten=True),
                Dense("fc2", self.num_classes))


# The paper's Table 1: name, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
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
    """A whole network: its input, stages and auxiliary heads."""
    in_channels: int
    input_size: int
    num_classes: int
    head_pool: str
    stages: Tuple[Stage, ...]
    aux_heads: Tuple[AuxHead, ...] = ()

    @property
    def batch_norm(self) -> bool:
        return any(isinstance(layer, Conv) and layer.batch_norm
                   for stage in self.stages for layer in stage.layers)

    def part(self, part: str) -> Tuple[Stage, ...]:
        """The stages of one part: ``"stem"``, ``"body"`` or ``"head"``."""
        if part not in ("stem", "body", "head"):
            raise ValueError(f"part must be 'stem', 'body' or 'head', got {part!r}")
        return tuple(s for s in self.stages if s.part == part)

    def check_input(self, channels: int, height: int, width: int) -> None:
        """Raise a ``ValueError`` that says what to do with an unfit input."""
        if channels != self.in_channels:
            raise ValueError(
                f"GoogLeNet was built for {self.in_channels}-channel images but got "
                f"{channels} channels. Check the channel axis first (PyTorch and MXNet "
                f"take NCHW batches, TensorFlow and JAX NHWC); then build it with "
                f"in_channels={channels}, or convert the images (e.g. to grayscale).")
        smallest, largest = self.input_size_range
        sizes = f"from {smallest} to {largest}" if largest else f"of at least {smallest}"
        fix = (f"Describe the model with an input_size {sizes}"  # its own size is unfit
               if height == width == self.input_size else f"Resize the images to "
               f"{self.input_size}x{self.input_size}, the size this model was configured for")
        for side in (height, width):
            if side < smallest:
                if self.head_pool == "avg7":  # side / (largest / 7), rounded up, >= 7
                    times = {8: "three", 32: "five"}[largest // 7]
                    reason = (f"The stem and the pools halve the side {times} times (rounding "
                              f"up), and the head's 7x7 average pool then needs at least a "
                              f"7x7 map: ceil(n / {largest // 7}) >= 7.")
                else:  # an auxiliary head's 5x5 pool
                    reason = f"At {side}x{side} the {self._failure(side)}."
                raise ValueError(
                    f"Input {height}x{width} is too small for this GoogLeNet: it needs at "
                    f"least {smallest}x{smallest}. {reason} {fix}.")
            if largest is not None and side > largest:
                raise ValueError(
                    f"Input {height}x{width} is too large for this GoogLeNet: its 7x7 "
                    f"average pool must leave a 1x1 map for the dense layer, which holds "
                    f"for inputs from {smallest} to {largest} pixels (ceil(n / {largest // 7})"
                    f" == 7). {fix}, or build the model with head_pool='global' (any size).")

    def _failure(self, size: int) -> str:
        """Why ``size`` does not fit: the first layer or head left without an output."""
        try:
            self.spatial_sizes(size)
        except ValueError as error:
            return str(error)
        return ""

    @cached_property
    def input_size_range(self) -> Tuple[int, Optional[int]]:
        """(smallest, largest) square input side; largest None: unbounded."""
        fits = [size for size in range(1, 1025) if not self._failure(size)]
        return fits[0], (None if fits[-1] == 1024 else fits[-1])

    def min_input_size(self) -> int:
        return self.input_size_range[0]

    def spatial_sizes(self, size: int) -> Tuple[Tuple[str, int], ...]:
        """The side after each stage; a ``ValueError`` names an empty layer."""
        out = []
        aux = {head.after: head for head in self.aux_heads}
        for stage in self.stages:
            for layer in stage.layers:
                size = _layer_output_size(layer, size)
                if layer.name in aux and conv_output_size(size, 5, 3, 0) < 1:
                    raise ValueError(
                        f"auxiliary head {aux[layer.name].name!r} after {layer.name} gets "
                        f"a {size}x{size} map; its 5x5 average pool needs at least 5x5")
            out.append((stage.name, size))
        return tuple(out)


@dataclass(frozen=True)
class GoogLeNetSpec(NetworkSpec):
    """A whole GoogLeNet."""


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output side of a convolution or pooling window (floor rule)."""
    return (size + 2 * padding - kernel) // stride + 1


def _layer_output_size(layer: Layer, size: int) -> int:
    if isinstance(layer, (Conv, MaxPool)):
        new = conv_output_size(size, layer.kernel, layer.stride, layer.padding)
    elif isinstance(layer, AvgPool):
        new = conv_output_size(size, layer.kernel, layer.stride, 0)
    elif isinstance(layer, Dense) and size != 1 and not layer.flatten:
        raise ValueError(f"layer {layer.name!r} expects a 1x1 map, gets {size}x{size}")
    else:  # global pool and dense: 1x1; Inception: every branch keeps the size
        new = size if isinstance(layer, Inception) else 1
    if new < 1:
        raise ValueError(f"layer {layer.name!r} gets a {size}x{size} map and has no output")
    return new


@dataclass(frozen=True)
class Step:
    """One leaf layer met by :func:`walk`, its path (``inception3a/branch2/3x3``)
    and shapes ``(C, H, W)``; part ``"aux"`` marks auxiliary heads."""
    stage: str
    part: str
    name: str
    layer: Union[Conv, MaxPool, AvgPool, GlobalAvgPool, Dense]
    in_shape: Tuple[int, int, int]
    out_shape: Tuple[int, int, int]


def layer_output_shape(layer, shape: Tuple[int, int, int]) -> Tuple[int, int, int]:
    size = _layer_output_size(layer, shape[1])
    channels = (layer.out_channels if isinstance(layer, Conv) else layer.out_features
                if isinstance(layer, Dense) else shape[0])
    return (channels, size, size)


def _walk_layers(layers, shape, stage: str, part: str, prefix: str = ""):
    for layer in layers:
        if isinstance(layer, Inception):
            for branch, branch_layers in layer.branches():
                yield from _walk_layers(branch_layers, shape, stage, part,
                                        f"{prefix}{layer.name}/{branch}/")
            if layer.residual:
                yield from _walk_layers((layer.shortcut(),), shape, stage, part,
                                        f"{prefix}{layer.name}/")
            shape = (layer.out_channels, shape[1], shape[2])
        else:
            out = layer_output_shape(layer, shape)
            yield Step(stage, part, prefix + layer.name, layer, shape, out)
            shape = out
    return shape


def walk(spec_or_block, input_size=None):
    """Every leaf :class:`Step` of a network (``input_size``: the side) or of one Inception
    block (``input_size``: ``(C, H, W)``); auxiliary heads follow the block they leave."""
    if isinstance(spec_or_block, Inception):
        if not isinstance(input_size, (tuple, list)) or len(input_size) != 3:
            raise ValueError(f"an Inception block needs input_size=(channels, height, "
                             f"width), e.g. (192, 28, 28), got {input_size!r}")
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
                yield from _walk_layers(head.layers(), shape, stage.name, "aux", f"{head.name}/")


def googlenet_spec(in_channels: int = 1, input_size: int = 96, num_classes: int = 10,
                   head_pool: str = "global", reduce: bool = True, *, batch_norm: bool = False,
                   aux_heads: bool = False, factorize: bool = False, stem: str = "standard",
                   conv_bias: bool = False, residual: bool = False) -> GoogLeNetSpec:
    """Describe GoogLeNet. ``head_pool``: ``"global"`` (d2l, any size) or ``"avg7"`` (the
    paper's; the last map must be 7x7). ``stem="small"`` (for 28x28): conv1 3x3 stride 1
    and no first pool, so the body sees 14x14. ``residual``: every block residual."""
    for arg, value in (("in_channels", in_channels), ("input_size", input_size),
                       ("num_classes", num_classes)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{arg} must be a positive int, got {value!r}")
    if stem not in ("standard", "small"):
        raise ValueError(f"stem must be 'standard' or 'small', got {stem!r}")
    if head_pool not in ("global", "avg7"):
        raise ValueError(f"head_pool must be 'global' or 'avg7', got {head_pool!r}")
    pool = GlobalAvgPool("avgpool") if head_pool == "global" else AvgPool("avgpool")
    bn = dict(batch_norm=batch_norm, conv_bias=conv_bias)
    b = {name: replace(block, reduce=reduce, factorize=factorize, residual=residual, **bn)
         for name, block in _BLOCKS.items()}
    b1: Tuple[Layer, ...] = (
        (Conv("conv1", 64, 7, stride=2, padding=3, **bn), MaxPool("maxpool1"))
        if stem == "standard" else (Conv("conv1", 64, 3, padding=1, **bn),))
    stages = (
        Stage("b1", "stem", b1),
        Stage("b2", "stem", (Conv("conv2", 64, 1, **bn),
                             Conv("conv3", 192, 3, padding=1, **bn),
                             MaxPool("maxpool2"))),
        Stage("b3", "body", (b["inception3a"], b["inception3b"], MaxPool("maxpool3"))),
        Stage("b4", "body", (*(b[f"inception4{x}"] for x in "abcde"), MaxPool("maxpool4"))),
        Stage("b5", "body", (b["inception5a"], b["inception5b"])),
        Stage("head", "head", (pool, Dense("fc", num_classes))),
    )
    heads = (AuxHead("aux1", "inception4a", num_classes, **bn),
             AuxHead("aux2", "inception4d", num_classes, **bn)) if aux_heads else ()
    spec = GoogLeNetSpec(in_channels, input_size, num_classes, head_pool, stages, heads)
    spec.check_input(in_channels, input_size, input_size)
    return spec


#: The book's model: Fashion-MNIST resized to 96x96, one channel, 10 classes.
BOOK = googlenet_spec(in_channels=1, input_size=96, num_classes=10, head_pool="global")
#: The paper's ImageNet model (no auxiliary heads, LRN or dropout).
PAPER = googlenet_spec(in_channels=3, input_size=224, num_classes=1000, head_pool="avg7")
VARIANTS = {
    "baseline": BOOK,
    "batch norm": googlenet_spec(batch_norm=True),
    "aux heads": googlenet_spec(aux_heads=True),
    "factorized 5x5": googlenet_spec(factorize=True),
    "28x28": googlenet_spec(input_size=28, stem="small"),
    "residual": googlenet_spec(residual=True),
}
#: Conv-BN-ReLU with auxiliary heads, as in tutorials reporting 13.39M parameters.
PAPER_BN_AUX = googlenet_spec(3, 224, 1000, "avg7", batch_norm=True, aux_heads=True)
#: The same with conv biases beside BatchNorm: the ``Inception_V1`` tutorial's (13,393,352).
TUTORIAL_V1 = googlenet_spec(3, 224, 1000, "avg7", batch_norm=True, aux_heads=True, conv_bias=True)
