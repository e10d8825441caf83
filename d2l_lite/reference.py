"""A NumPy reference GoogLeNet: one set of weights, one forward pass, no framework.

The parity checks port the *same* weights into all four frameworks and compare
their logits with each other and with this float64 forward pass.

Weights are kept in one canonical layout, PyTorch's:

* convolution ``"<layer>/weight"``: ``(out_channels, in_channels, kh, kw)`` (OIHW);
* dense ``"fc/weight"``: ``(out_features, in_features)``;
* every layer has ``"<layer>/bias"``: ``(out_channels,)``.

Layer names come from the spec: ``conv1``, ``conv2``, ``conv3``,
``inception3a/branch2/3x3`` ... ``fc``. The framework modules' ``load_weights``
convert from this layout (OIHW -> HWIO for TensorFlow and Flax, transposed
dense kernels) so a reader can see each conversion once.
"""

from __future__ import annotations

from typing import Dict, Iterator, Tuple

import numpy as np

from .architecture import (AvgPool, Conv, Dense, GlobalAvgPool, GoogLeNetSpec,
                           Inception, MaxPool)

__all__ = ["parameter_shapes", "random_weights", "xavier_weights", "forward",
           "inception_forward", "random_input"]


def parameter_shapes(spec: GoogLeNetSpec) -> Dict[str, Tuple[int, ...]]:
    """Canonical name -> shape for every parameter of ``spec``, in layer order."""
    shapes: Dict[str, Tuple[int, ...]] = {}
    channels = spec.in_channels
    for stage in spec.stages:
        for layer in stage.layers:
            if isinstance(layer, Conv):
                _conv_shapes(shapes, layer.name, layer, channels)
                channels = layer.out_channels
            elif isinstance(layer, Inception):
                for path, conv, c_in in _inception_convs(layer, channels):
                    _conv_shapes(shapes, path, conv, c_in)
                channels = layer.out_channels
            elif isinstance(layer, Dense):
                shapes[f"{layer.name}/weight"] = (layer.out_features, channels)
                shapes[f"{layer.name}/bias"] = (layer.out_features,)
                channels = layer.out_features
    return shapes


def _conv_shapes(shapes, path, conv: Conv, c_in: int) -> None:
    shapes[f"{path}/weight"] = (conv.out_channels, c_in, conv.kernel, conv.kernel)
    shapes[f"{path}/bias"] = (conv.out_channels,)


def _inception_convs(block: Inception, c_in: int) -> Iterator[Tuple[str, Conv, int]]:
    """(canonical path, conv, its input channels) for each conv of a block."""
    for branch, layers in block.branches():
        channels = c_in
        for layer in layers:
            if isinstance(layer, Conv):
                yield f"{block.name}/{branch}/{layer.name}", layer, channels
                channels = layer.out_channels


def random_weights(spec: GoogLeNetSpec, seed: int = 0) -> Dict[str, np.ndarray]:
    """He-style random float32 weights (small random biases) for ``spec``.

    Scaled so activations keep roughly unit size through all 22 layers, which
    makes a logit comparison meaningful (nothing vanishes or explodes).
    """
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape in parameter_shapes(spec).items():
        if name.endswith("/bias"):
            weights[name] = rng.uniform(-0.1, 0.1, size=shape).astype(np.float32)
        else:
            fan_in = int(np.prod(shape[1:]))
            weights[name] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    return weights


def xavier_weights(spec: GoogLeNetSpec, seed: int = 0) -> Dict[str, np.ndarray]:
    """Initial weights for training: Glorot/Xavier uniform, zero biases.

    This is d2l's initialisation for GoogLeNet. Loading these into each
    framework (``load_weights``) starts all four training runs from the very
    same point, so their curves differ only by numerics.
    """
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape in parameter_shapes(spec).items():
        if name.endswith("/bias"):
            weights[name] = np.zeros(shape, np.float32)
        else:
            receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
            fan_in, fan_out = shape[1] * receptive, shape[0] * receptive
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            weights[name] = rng.uniform(-limit, limit, size=shape).astype(np.float32)
    return weights


def random_input(spec: GoogLeNetSpec, batch_size: int = 1, seed: int = 0,
                 input_size: int | None = None) -> np.ndarray:
    """A float32 NCHW input batch, uniform in [0, 1) like scaled pixels."""
    size = spec.input_size if input_size is None else input_size
    rng = np.random.default_rng(seed)
    return rng.random((batch_size, spec.in_channels, size, size)).astype(np.float32)


def _conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, padding: int) -> np.ndarray:
    n, c, h, wd = x.shape
    o, _, k, _ = w.shape
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    h_out = (h + 2 * padding - k) // stride + 1
    w_out = (wd + 2 * padding - k) // stride + 1
    cols = np.empty((n, c, k, k, h_out, w_out), dtype=x.dtype)
    for i in range(k):
        for j in range(k):
            cols[:, :, i, j] = x[:, :, i:i + stride * h_out:stride, j:j + stride * w_out:stride]
    out = np.einsum("nckluv,ockl->nouv", cols, w, optimize=True)
    return out + b[None, :, None, None]


def _max_pool(x: np.ndarray, kernel: int, stride: int, padding: int) -> np.ndarray:
    n, c, h, w = x.shape
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)),
               constant_values=-np.inf)
    h_out = (h + 2 * padding - kernel) // stride + 1
    w_out = (w + 2 * padding - kernel) // stride + 1
    out = np.full((n, c, h_out, w_out), -np.inf, dtype=x.dtype)
    for i in range(kernel):
        for j in range(kernel):
            out = np.maximum(out, x[:, :, i:i + stride * h_out:stride, j:j + stride * w_out:stride])
    return out


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)


def inception_forward(block: Inception, x: np.ndarray, weights: Dict[str, np.ndarray]) -> np.ndarray:
    """One Inception block in float64: the four branches, concatenated on channels."""
    outputs = []
    for branch, layers in block.branches():
        y = x
        for layer in layers:
            if isinstance(layer, Conv):
                path = f"{block.name}/{branch}/{layer.name}"
                y = _relu(_conv2d(y, weights[f"{path}/weight"].astype(np.float64),
                                  weights[f"{path}/bias"].astype(np.float64),
                                  layer.stride, layer.padding))
            else:
                y = _max_pool(y, layer.kernel, layer.stride, layer.padding)
        outputs.append(y)
    return np.concatenate(outputs, axis=1)


def forward(spec: GoogLeNetSpec, weights: Dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Logits of GoogLeNet for an NCHW batch ``x``, computed in float64."""
    spec.check_input(x.shape[1], x.shape[2], x.shape[3])
    y = x.astype(np.float64)
    for stage in spec.stages:
        for layer in stage.layers:
            if isinstance(layer, Conv):
                y = _relu(_conv2d(y, weights[f"{layer.name}/weight"].astype(np.float64),
                                  weights[f"{layer.name}/bias"].astype(np.float64),
                                  layer.stride, layer.padding))
            elif isinstance(layer, MaxPool):
                y = _max_pool(y, layer.kernel, layer.stride, layer.padding)
            elif isinstance(layer, Inception):
                y = inception_forward(layer, y, weights)
            elif isinstance(layer, GlobalAvgPool):
                y = y.mean(axis=(2, 3), keepdims=True)
            elif isinstance(layer, AvgPool):
                y = _avg_pool(y, layer.kernel, layer.stride)
            elif isinstance(layer, Dense):
                y = y.reshape(len(y), -1)
                y = y @ weights[f"{layer.name}/weight"].astype(np.float64).T \
                    + weights[f"{layer.name}/bias"].astype(np.float64)
    return y


def _avg_pool(x: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    n, c, h, w = x.shape
    h_out = (h - kernel) // stride + 1
    w_out = (w - kernel) // stride + 1
    out = np.zeros((n, c, h_out, w_out), dtype=x.dtype)
    for i in range(kernel):
        for j in range(kernel):
            out += x[:, :, i:i + stride * h_out:stride, j:j + stride * w_out:stride]
    return out / (kernel * kernel)
