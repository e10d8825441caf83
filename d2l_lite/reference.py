"""A NumPy reference GoogLeNet: one set of weights, one forward pass, no framework.

The parity checks port the *same* weights into all four frameworks and compare
their logits with each other and with this float64 forward pass.

Weights are kept in one canonical layout, PyTorch's:

* convolution ``"<layer>/weight"``: ``(out_channels, in_channels, kh, kw)`` (OIHW);
* dense ``"fc/weight"``: ``(out_features, in_features)``;
* every layer has ``"<layer>/bias"``: ``(out_channels,)``, except a
  Conv-BN-ReLU convolution, whose BatchNorm has ``"<layer>_bn/weight"`` (scale),
  ``"<layer>_bn/bias"`` (shift) and the state ``"<layer>_bn/running_mean"``,
  ``"<layer>_bn/running_var"``;
* auxiliary heads: ``"aux1/conv/weight"``, ``"aux1/fc1/weight"`` ... .

Layer names come from the spec: ``conv1``, ``conv2``, ``conv3``,
``inception3a/branch2/3x3`` ... ``fc``. The framework modules' ``load_weights``
convert from this layout (OIHW -> HWIO for TensorFlow and Flax, transposed
dense kernels) so a reader can see each conversion once.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np

from .architecture import (BN_EPS, AvgPool, Conv, Dense, GlobalAvgPool, GoogLeNetSpec,
                           Inception, MaxPool, walk)

__all__ = ["parameter_shapes", "ordered", "check_shapes", "state_shapes", "random_weights", "xavier_weights", "forward",
           "inception_forward", "random_input"]


def parameter_shapes(spec: GoogLeNetSpec) -> Dict[str, Tuple[int, ...]]:
    """Canonical name -> shape for every trainable parameter of ``spec``, in layer
    order (auxiliary heads after the block they branch off), from
    :func:`~d2l_lite.architecture.walk`."""
    shapes: Dict[str, Tuple[int, ...]] = {}
    for step in walk(spec):
        (c_in, h, w), out = step.in_shape, step.out_shape[0]
        if isinstance(step.layer, Conv):
            k = step.layer.kernel
            shapes[f"{step.name}/weight"] = (out, c_in, k, k)
            if step.layer.bias:
                shapes[f"{step.name}/bias"] = (out,)
            if step.layer.batch_norm:
                shapes[f"{step.name}_bn/weight"] = (out,)
                shapes[f"{step.name}_bn/bias"] = (out,)
        elif isinstance(step.layer, Dense):
            shapes[f"{step.name}/weight"] = (out, c_in * h * w)
            shapes[f"{step.name}/bias"] = (out,)
    return shapes


def ordered(weights: Dict[str, np.ndarray]) -> Tuple[List[Tuple[str, np.ndarray]],
                                                    List[Tuple[str, np.ndarray]]]:
    """``(params, state)``: canonical weights in the order a textbook model
    creates its tensors, for the frameworks' ``load_weights``.

    ``params``: the main network layer by layer (a Conv-BN-ReLU layer as conv
    weight, BatchNorm scale, BatchNorm shift), then the auxiliary heads
    (``aux1``, then ``aux2``), which the models create after their head.
    ``state``: each BatchNorm's running mean and variance, in the same order.
    """
    items = sorted(weights.items(), key=lambda item: item[0].startswith("aux"))
    is_state = [k.endswith(("running_mean", "running_var")) for k, _ in items]
    return ([item for item, s in zip(items, is_state) if not s],
            [item for item, s in zip(items, is_state) if s])


def check_shapes(names: List[str], expected: List[Tuple[int, ...]],
                 found: List[Tuple[int, ...]], framework: str) -> None:
    """Raise a ``ValueError`` naming the first tensor whose shape differs
    between the canonical weights (converted to the framework's layout) and
    the model, or saying how many tensors each has."""
    if len(expected) != len(found):
        raise ValueError(f"the weights hold {len(expected)} tensors but the {framework} "
                         f"model has {len(found)}: was it built for the same spec?")
    for name, want, have in zip(names, expected, found):
        if tuple(want) != tuple(have):
            raise ValueError(f"{name}: the weights have shape {tuple(want)} in "
                             f"{framework}'s layout, the model {tuple(have)}")


def state_shapes(spec: GoogLeNetSpec) -> Dict[str, Tuple[int, ...]]:
    """Canonical name -> shape of the non-trainable state: BatchNorm's running
    mean and variance (empty without BatchNorm)."""
    state: Dict[str, Tuple[int, ...]] = {}
    for name, shape in parameter_shapes(spec).items():
        if name.endswith("_bn/weight"):
            base = name[:-len("/weight")]
            state[f"{base}/running_mean"] = shape
            state[f"{base}/running_var"] = shape
    return state


def random_weights(spec: GoogLeNetSpec, seed: int = 0) -> Dict[str, np.ndarray]:
    """He-style random float32 weights (small random biases) for ``spec``.

    Scaled so activations keep roughly unit size through all 22 layers, which
    makes a logit comparison meaningful (nothing vanishes or explodes).
    """
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape in parameter_shapes(spec).items():
        if name.endswith("_bn/weight"):
            weights[name] = rng.uniform(0.5, 1.5, size=shape).astype(np.float32)
        elif name.endswith("/bias"):
            weights[name] = rng.uniform(-0.1, 0.1, size=shape).astype(np.float32)
        else:
            fan_in = int(np.prod(shape[1:]))
            weights[name] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    for name, shape in state_shapes(spec).items():  # BatchNorm statistics near 0 and 1
        low, high = (-0.1, 0.1) if name.endswith("running_mean") else (0.5, 1.5)
        weights[name] = rng.uniform(low, high, size=shape).astype(np.float32)
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
        if name.endswith("_bn/weight"):  # BatchNorm starts as the identity
            weights[name] = np.ones(shape, np.float32)
        elif name.endswith("/bias"):
            weights[name] = np.zeros(shape, np.float32)
        else:
            receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
            fan_in, fan_out = shape[1] * receptive, shape[0] * receptive
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            weights[name] = rng.uniform(-limit, limit, size=shape).astype(np.float32)
    for name, shape in state_shapes(spec).items():
        weights[name] = (np.zeros if name.endswith("running_mean") else np.ones)(
            shape, np.float32)
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


def _conv_layer(conv: Conv, path: str, x: np.ndarray, weights) -> np.ndarray:
    """Conv-ReLU, or Conv-BN-ReLU with BatchNorm in inference mode (running statistics)."""
    w = weights[f"{path}/weight"].astype(np.float64)
    if not conv.batch_norm:
        return _relu(_conv2d(x, w, weights[f"{path}/bias"].astype(np.float64),
                             conv.stride, conv.padding))
    bias = weights[f"{path}/bias"].astype(np.float64) if conv.bias else np.zeros(len(w))
    y = _conv2d(x, w, bias, conv.stride, conv.padding)
    gamma, beta, mean, var = (weights[f"{path}_bn/{k}"].astype(np.float64)[None, :, None, None]
                              for k in ("weight", "bias", "running_mean", "running_var"))
    return _relu((y - mean) / np.sqrt(var + BN_EPS) * gamma + beta)


def inception_forward(block: Inception, x: np.ndarray, weights: Dict[str, np.ndarray]) -> np.ndarray:
    """One Inception block in float64: the four branches, concatenated on channels."""
    outputs = []
    for branch, layers in block.branches():
        y = x
        for layer in layers:
            if isinstance(layer, Conv):
                y = _conv_layer(layer, f"{block.name}/{branch}/{layer.name}", y, weights)
            else:
                y = _max_pool(y, layer.kernel, layer.stride, layer.padding)
        outputs.append(y)
    return np.concatenate(outputs, axis=1)


def forward(spec: GoogLeNetSpec, weights: Dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Logits of GoogLeNet for an NCHW batch ``x``, computed in float64, as at
    inference (auxiliary heads are not run; BatchNorm uses its running statistics)."""
    spec.check_input(x.shape[1], x.shape[2], x.shape[3])
    y = x.astype(np.float64)
    for stage in spec.stages:
        for layer in stage.layers:
            if isinstance(layer, Conv):
                y = _conv_layer(layer, layer.name, y, weights)
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
                y = _relu(y) if layer.relu else y
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
