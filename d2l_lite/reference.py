"""A NumPy reference GoogLeNet: canonical weights and a float64 forward pass that all
four frameworks' logits are compared with. Weights use PyTorch's layout, named by the
spec's paths: ``"<layer>/weight"`` (conv OIHW, dense out x in), ``"<layer>/bias"``, and for
Conv-BN-ReLU ``"<layer>_bn/weight"``, ``bias``, ``running_mean``, ``running_var``. Each
framework's ``load_weights`` converts from it, so every conversion is seen once."""

from __future__ import annotations

import functools
from typing import Dict, List, Tuple

import numpy as np

from .architecture import (BN_EPS, AvgPool, Conv, Dense, GlobalAvgPool, GoogLeNetSpec,
                           Inception, MaxPool, walk)


def parameter_shapes(spec: GoogLeNetSpec) -> Dict[str, Tuple[int, ...]]:
    """Canonical name -> shape of every trainable parameter, in walk order."""
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


Named = List[Tuple[str, np.ndarray]]


def ordered(weights: Dict[str, np.ndarray]) -> Tuple[Named, Named]:
    """``(params, state)`` in the order a textbook model creates its tensors:
    the main network, then the auxiliary heads; BatchNorm statistics as state."""
    items = sorted(weights.items(), key=lambda item: item[0].startswith("aux"))
    is_state = [k.endswith(("running_mean", "running_var")) for k, _ in items]
    return ([item for item, s in zip(items, is_state) if not s],
            [item for item, s in zip(items, is_state) if s])


def check_weights(weights: Dict[str, np.ndarray], shapes: Dict[str, Tuple[int, ...]],
                  framework: str) -> None:
    """Before a backend loads ``weights`` into a model whose tensors have ``shapes``
    (neutral name -> shape in PyTorch's layout): a ``ValueError`` naming what the
    weights lack, what they hold beyond the model, or a tensor of another shape."""
    missing = [name for name in shapes if name not in weights]
    extra = [name for name in weights if name not in shapes]
    if missing or extra:
        raise ValueError(f"the weights lack {len(missing)} tensor(s) of the {framework} "
                         f"model {missing[:3]} and have {len(extra)} it lacks {extra[:3]}: "
                         f"were they made for the spec the model was built for?")
    for name, shape in shapes.items():
        if tuple(np.shape(weights[name])) != tuple(shape):
            raise ValueError(f"{name}: the weights have shape {tuple(np.shape(weights[name]))},"
                             f" the {framework} model {tuple(shape)} (in PyTorch's layout)")


def state_shapes(spec: GoogLeNetSpec) -> Dict[str, Tuple[int, ...]]:
    """Canonical name -> shape of BatchNorm's running mean and variance."""
    return {f"{name[:-len('/weight')]}/{stat}": shape
            for name, shape in parameter_shapes(spec).items() if name.endswith("_bn/weight")
            for stat in ("running_mean", "running_var")}


def random_weights(spec: GoogLeNetSpec, seed: int = 0) -> Dict[str, np.ndarray]:
    """He-scaled random float32 weights: activations keep unit size through 22
    layers, so a logit comparison is meaningful."""
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
    """d2l's initialisation, so all four frameworks start training from the same point:
    ``init_cnn`` draws the weights Xavier-uniform and leaves PyTorch's default biases,
    uniform in +-1/sqrt(fan_in) (BatchNorm: the identity)."""
    rng = np.random.default_rng(seed)
    shapes, weights = parameter_shapes(spec), {}
    for name, shape in shapes.items():
        if name.endswith("_bn/weight"):  # BatchNorm starts as the identity
            weights[name] = np.ones(shape, np.float32)
        elif name.endswith("_bn/bias"):
            weights[name] = np.zeros(shape, np.float32)
        elif name.endswith("/bias"):  # fan_in of the layer's weight
            bound = 1 / np.sqrt(np.prod(shapes[name[:-4] + "weight"][1:]))
            weights[name] = rng.uniform(-bound, bound, size=shape).astype(np.float32)
        else:
            receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
            fan_in, fan_out = shape[1] * receptive, shape[0] * receptive
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            weights[name] = rng.uniform(-limit, limit, size=shape).astype(np.float32)
    for name, shape in state_shapes(spec).items():
        weights[name] = (np.zeros if name.endswith("running_mean") else np.ones)(shape, np.float32)
    return weights


def random_input(spec: GoogLeNetSpec, batch_size: int = 1, seed: int = 0,
                 input_size: int | None = None) -> np.ndarray:
    """A float32 NCHW input batch, uniform in [0, 1) like scaled pixels."""
    size = spec.input_size if input_size is None else input_size
    rng = np.random.default_rng(seed)
    return rng.random((batch_size, spec.in_channels, size, size)).astype(np.float32)


def _taps(x: np.ndarray, kernel: int, stride: int, padding: int = 0, fill: float = 0.0):
    """``((i, j), view)`` for each kernel tap: what it sees of the padded input."""
    h_out, w_out = ((n + 2 * padding - kernel) // stride + 1 for n in x.shape[2:])
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)), constant_values=fill)
    return [((i, j), x[:, :, i:i + stride * h_out:stride, j:j + stride * w_out:stride])
            for i in range(kernel) for j in range(kernel)]


def _max_pool(x: np.ndarray, kernel: int, stride: int, padding: int) -> np.ndarray:
    return functools.reduce(np.maximum, [v for _, v in _taps(x, kernel, stride, padding, -np.inf)])


def _conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, padding: int) -> np.ndarray:
    taps = _taps(x, w.shape[2], stride, padding)
    cols = np.empty(x.shape[:2] + w.shape[2:] + taps[0][1].shape[2:], dtype=x.dtype)
    for (i, j), view in taps:
        cols[:, :, i, j] = view
    return np.einsum("nckluv,ockl->nouv", cols, w, optimize=True) + b[None, :, None, None]


def _avg_pool(x: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    return sum(v for _, v in _taps(x, kernel, stride)) / (kernel * kernel)


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)


def _conv_layer(conv: Conv, path: str, x: np.ndarray, weights) -> np.ndarray:
    w = weights[f"{path}/weight"].astype(np.float64)
    bias = weights[f"{path}/bias"].astype(np.float64) if conv.bias else np.zeros(len(w))
    y = _conv2d(x, w, bias, conv.stride, conv.padding)
    if not conv.batch_norm:
        return _relu(y) if conv.relu else y
    gamma, beta, mean, var = (weights[f"{path}_bn/{k}"].astype(np.float64)[None, :, None, None]
                              for k in ("weight", "bias", "running_mean", "running_var"))
    return _relu((y - mean) / np.sqrt(var + BN_EPS) * gamma + beta)


def inception_forward(block: Inception, x: np.ndarray, weights: Dict[str, np.ndarray]
                      ) -> np.ndarray:
    """One Inception block in float64: the four branches, concatenated on channels
    (a residual block adds its shortcut, then applies ReLU)."""
    outputs = []
    for branch, layers in block.branches():
        y = x
        for layer in layers:
            if isinstance(layer, Conv):
                y = _conv_layer(layer, f"{block.name}/{branch}/{layer.name}", y, weights)
            else:
                y = _max_pool(y, layer.kernel, layer.stride, layer.padding)
        outputs.append(y)
    y = np.concatenate(outputs, axis=1)
    if block.residual:
        y = _relu(y + _conv_layer(block.shortcut(), f"{block.name}/shortcut", x, weights))
    return y


def forward(spec: GoogLeNetSpec, weights: Dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Float64 inference logits for an NCHW batch (no auxiliary heads)."""
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
                w, b = (weights[f"{layer.name}/{k}"].astype(np.float64) for k in ("weight", "bias"))
                y = y.reshape(len(y), -1) @ w.T + b
                y = _relu(y) if layer.relu else y
    return y


#: How far, relative to the output's magnitude, a float32 forward pass may be
#: from the float64 reference: see :func:`float32_tolerance`.
FLOAT32_RTOL = 1e-5


def float32_tolerance(expected: np.ndarray) -> float:
    """How far a float32 forward pass may be from this float64 reference.

    Each output is built from sums of thousands of float32 products (a fan-in
    of up to 192 x 9 in GoogLeNet), rounded to 24 bits (eps32 = 1.2e-7) at each
    step, through the network's layers; the rounding depends on the order in
    which a processor adds. The book's networks end up to ~7 eps32 of the
    output's magnitude away from float64 (an AMD EPYC with AVX2 only: 1.2e-4
    on logits of ~150; with AVX-512: 2.4e-6 on an Inception block's outputs of
    ~3.6). :data:`FLOAT32_RTOL` (~80 eps32) leaves a wide margin for other
    processors, while a wrong weight, layer or padding moves the outputs by
    their own order of magnitude."""
    return FLOAT32_RTOL * float(np.abs(expected).max())
