"""AlexNet, VGG-11 and NiN as :class:`~d2l_lite.architecture.NetworkSpec` s, so the same
counter compares them with GoogLeNet (as d2l writes them, 224x224)."""

from __future__ import annotations

from typing import List

from .architecture import Conv, Dense, GlobalAvgPool, Layer, MaxPool, NetworkSpec, Stage


def _spec(in_channels: int, input_size: int, num_classes: int, stages) -> NetworkSpec:
    spec = NetworkSpec(in_channels, input_size, num_classes, "none", tuple(stages))
    spec.spatial_sizes(input_size)  # raises if the input is too small
    return spec


def _classifier(num_classes: int) -> Stage:
    """AlexNet's and VGG's head: dense 4096, 4096, classes."""
    return Stage("classifier", "head", (Dense("fc6", 4096, relu=True, flatten=True),
                                        Dense("fc7", 4096, relu=True), Dense("fc8", num_classes)))


def alexnet_spec(in_channels: int = 3, input_size: int = 224,
                 num_classes: int = 1000) -> NetworkSpec:
    """AlexNet as d2l writes it (padding 1 on the first conv, so 224 works)."""
    return _spec(in_channels, input_size, num_classes, (
        Stage("features", "body", (
            Conv("conv1", 96, 11, stride=4, padding=1), MaxPool("pool1", 3, 2, 0),
            Conv("conv2", 256, 5, padding=2), MaxPool("pool2", 3, 2, 0),
            Conv("conv3", 384, 3, padding=1), Conv("conv4", 384, 3, padding=1),
            Conv("conv5", 256, 3, padding=1), MaxPool("pool3", 3, 2, 0))),
        _classifier(num_classes)))


def vgg11_spec(in_channels: int = 3, input_size: int = 224, num_classes: int = 1000) -> NetworkSpec:
    """VGG-11 (configuration A): five blocks of 3x3 convs, each ending in a 2x2 pool."""
    stages: List[Stage] = []
    for i, (convs, channels) in enumerate(((1, 64), (1, 128), (2, 256), (2, 512), (2, 512)), 1):
        layers: List[Layer] = [Conv(f"conv{i}_{j}", channels, 3, padding=1)
                               for j in range(1, convs + 1)]
        stages.append(Stage(f"block{i}", "body", (*layers, MaxPool(f"pool{i}", 2, 2, 0))))
    return _spec(in_channels, input_size, num_classes, stages + [_classifier(num_classes)])


def nin_spec(in_channels: int = 3, input_size: int = 224, num_classes: int = 1000) -> NetworkSpec:
    """NiN: conv + two 1x1 convs per block, global average pooling, no dense layer."""
    def block(i: int, channels: int, kernel: int, stride: int, padding: int):
        return (Conv(f"nin{i}_conv", channels, kernel, stride, padding),
                Conv(f"nin{i}_1x1a", channels, 1), Conv(f"nin{i}_1x1b", channels, 1))

    return _spec(in_channels, input_size, num_classes, (
        Stage("features", "body", (
            *block(1, 96, 11, 4, 0), MaxPool("pool1", 3, 2, 0),
            *block(2, 256, 5, 1, 2), MaxPool("pool2", 3, 2, 0),
            *block(3, 384, 3, 1, 1), MaxPool("pool3", 3, 2, 0),
            *block(4, num_classes, 3, 1, 1))),
        Stage("head", "head", (GlobalAvgPool("avgpool"),))))
