"""GoogLeNet in MXNet Gluon (1.9): the book's helpers for the MXNet pages.

What this module holds, with the same names as ``d2l_lite.torch``,
``d2l_lite.tensorflow`` and ``d2l_lite.jax``:

* :func:`try_gpu`, :func:`set_seed`: where to run, and reproducible runs;
* :class:`Inception`: the block, built from the branches of
  :class:`d2l_lite.architecture.Inception`;
* :class:`GoogLeNet`: the whole network, built by walking ``spec.stages``,
  with ``stem``, ``body`` and ``head`` as ``nn.HybridSequential`` attributes;
* :func:`count_parameters`, :func:`branch_parameters`, :func:`layer_summary`:
  what the book counts and prints;
* :func:`load_weights`, :func:`logits`: the parity check against
  :mod:`d2l_lite.reference`.

MXNet works in NCHW like PyTorch, and its convolution weights are OIHW and its
dense weights ``(out, in)``, the canonical layout of :mod:`d2l_lite.reference`:
loading canonical weights maps names and converts nothing.

Gluon infers input channels when data first flows ("deferred
initialisation"): a ``Conv2D`` built without ``in_channels`` has a weight of
shape ``(out, 0, k, k)`` until its first forward pass. :class:`GoogLeNet`
therefore initialises itself and runs one dummy batch when it is built, so its
parameters always have their real shapes.

This module needs only MXNet and NumPy (it runs in the book's ``d2l-mxnet``
environment: MXNet 1.9.1 needs ``numpy<1.24``).
"""

from __future__ import annotations

from typing import Dict, Sequence

import mxnet as mx
import numpy as np
from mxnet import gluon, nd
from mxnet.gluon import nn

from . import architecture, runtime, tables

__all__ = ["try_gpu", "set_seed", "Inception", "GoogLeNet", "count_parameters",
           "branch_parameters", "layer_summary", "load_weights", "logits"]


def try_gpu() -> mx.Context:
    """Return the first GPU (``mx.gpu(0)``) if there is one, else ``mx.cpu()``; say which."""
    if mx.context.num_gpus() > 0:
        device, is_gpu = mx.gpu(0), True
    else:
        device, is_gpu = mx.cpu(), False
    print(runtime.device_notice("MXNet", is_gpu, str(device)))
    return device


def set_seed(seed: int) -> None:
    """Seed MXNet's random generators (initialisers, dropout) and NumPy's."""
    mx.random.seed(seed)
    np.random.seed(seed)


def _layer(layer) -> nn.HybridBlock:
    """One Gluon layer for one layer of the spec, named after it.

    The Gluon prefix is the spec's name (``conv1_``, ``3x3_reduce_`` ...), so a
    parameter's name reads like its canonical path: ``googlenet_conv1_weight``,
    ``googlenet_inception3a_branch2_3x3_weight``.
    """
    prefix = f"{layer.name}_"
    if isinstance(layer, architecture.Conv):
        # No in_channels: Gluon infers it from the first batch (deferred init).
        return nn.Conv2D(layer.out_channels, kernel_size=layer.kernel, strides=layer.stride,
                         padding=layer.padding, activation="relu", prefix=prefix)
    if isinstance(layer, architecture.MaxPool):
        # MXNet pads max pooling with -inf and rounds the output size down
        # (pooling_convention="valid"), exactly the spec's rule.
        return nn.MaxPool2D(pool_size=layer.kernel, strides=layer.stride,
                            padding=layer.padding, prefix=prefix)
    if isinstance(layer, architecture.AvgPool):
        return nn.AvgPool2D(pool_size=layer.kernel, strides=layer.stride, prefix=prefix)
    if isinstance(layer, architecture.GlobalAvgPool):
        return nn.GlobalAvgPool2D(prefix=prefix)
    if isinstance(layer, architecture.Dense):
        # flatten=True (the default) turns N x C x 1 x 1 into N x C first.
        return nn.Dense(layer.out_features, prefix=prefix)
    if isinstance(layer, architecture.Inception):
        return Inception(layer.ch1x1, layer.ch3x3red, layer.ch3x3, layer.ch5x5red,
                         layer.ch5x5, layer.pool_proj, prefix=prefix)
    raise TypeError(f"unknown layer type {type(layer).__name__}")


class Inception(nn.HybridBlock):
    """The Inception block: four parallel branches, concatenated on channels.

    The arguments are the columns of the paper's Table 1. The branches
    ``branch1`` ... ``branch4`` are ``nn.HybridSequential`` built from
    :meth:`d2l_lite.architecture.Inception.branches`, so they hold exactly
    the layers the spec describes (every convolution followed by ReLU).
    Input channels are inferred on the first forward pass.
    """

    def __init__(self, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int,
                 ch5x5: int, pool_proj: int, **kwargs):
        super().__init__(**kwargs)
        widths = (ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj)
        if not all(isinstance(w, (int, np.integer)) and w > 0 for w in widths):
            raise ValueError(f"Inception widths must be positive ints (the paper's "
                             f"ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj), "
                             f"got {widths}")
        spec = architecture.Inception("inception", *widths)
        with self.name_scope():
            for name, layers in spec.branches():
                branch = nn.HybridSequential(prefix=f"{name}_")
                with branch.name_scope():
                    for layer in layers:
                        branch.add(_layer(layer))
                setattr(self, name, branch)  # self.branch1 ... self.branch4

    def hybrid_forward(self, F, x):
        # Shapes for inception3a: x is N x 192 x 28 x 28.
        b1 = self.branch1(x)  # N x 64 x 28 x 28
        b2 = self.branch2(x)  # N x 128 x 28 x 28
        b3 = self.branch3(x)  # N x 32 x 28 x 28
        b4 = self.branch4(x)  # N x 32 x 28 x 28
        return F.concat(b1, b2, b3, b4, dim=1)  # N x 256 x 28 x 28


class GoogLeNet(nn.HybridBlock):
    """GoogLeNet built by walking ``spec.stages`` (default: the book's model).

    ``stem``, ``body`` and ``head`` are ``nn.HybridSequential`` holding one
    ``nn.HybridSequential`` per stage of that part (``b1``, ``b2`` | ``b3``,
    ``b4``, ``b5`` | ``head``); layers carry the spec's names.

    The model initialises its parameters (Xavier, on ``ctx``, default the
    CPU) and runs one dummy batch of ``spec``'s input size, so every parameter
    has its real shape as soon as the model exists. Re-initialise with
    ``model.initialize(init, ctx=..., force_reinit=True)``.

    Every NDArray input is checked with ``spec.check_input`` before the first
    layer runs, also when the model is hybridized.
    """

    def __init__(self, spec: architecture.GoogLeNetSpec = architecture.BOOK,
                 ctx: mx.Context | None = None, **kwargs):
        if not isinstance(spec, architecture.GoogLeNetSpec):
            raise ValueError(f"spec must be an architecture.GoogLeNetSpec such as "
                             f"architecture.BOOK, got {type(spec).__name__}")
        kwargs.setdefault("prefix", "googlenet_")
        super().__init__(**kwargs)
        self.spec = spec
        with self.name_scope():
            # prefix="": stages add nothing to parameter names.
            self.stem = nn.HybridSequential(prefix="")
            self.body = nn.HybridSequential(prefix="")
            self.head = nn.HybridSequential(prefix="")
            for part in ("stem", "body", "head"):
                sequence = getattr(self, part)
                with sequence.name_scope():
                    for stage in spec.part(part):
                        block = nn.HybridSequential(prefix="")
                        with block.name_scope():
                            for layer in stage.layers:
                                block.add(_layer(layer))
                        sequence.add(block)
        ctx = mx.cpu() if ctx is None else ctx
        self.initialize(mx.init.Xavier(), ctx=ctx)
        size = spec.input_size
        self(nd.zeros((1, spec.in_channels, size, size), ctx=ctx))  # materialise shapes

    def forward(self, x, *args):
        # Runs before hybrid_forward and before the cached graph of a
        # hybridized model; a Symbol (export) has no concrete shape to check.
        if isinstance(x, nd.NDArray):
            if x.ndim != 4:
                raise ValueError(f"GoogLeNet takes an N x C x H x W batch, got shape "
                                 f"{x.shape}. Add a batch axis with x.expand_dims(0).")
            self.spec.check_input(*x.shape[1:])
        return super().forward(x, *args)

    def hybrid_forward(self, F, x):
        # Shapes for architecture.BOOK (x: N x 1 x 96 x 96).
        x = self.stem(x)  # N x 192 x 12 x 12
        x = self.body(x)  # N x 1024 x 3 x 3
        return self.head(x)  # N x 10


def _context(model: gluon.Block) -> mx.Context:
    """The device that holds ``model``'s parameters."""
    params = list(model.collect_params().values())
    return params[0].list_ctx()[0] if params else mx.cpu()


def count_parameters(model: gluon.Block) -> int:
    """Total number of parameters of a built model or block."""
    total = 0
    for name, param in model.collect_params().items():
        if param.shape is None or any(d <= 0 for d in param.shape):
            raise ValueError(f"parameter {name} has no shape yet ({param.shape}): Gluon "
                             f"infers input channels on the first forward pass. Call "
                             f"initialize() and run one batch through the model first.")
        total += int(np.prod(param.shape))
    return total


def branch_parameters(block: Inception) -> Dict[str, int]:
    """Parameters per branch of a built :class:`Inception` block."""
    if not isinstance(block, Inception):
        raise ValueError(f"expected a d2l_lite.mxnet.Inception, got {type(block).__name__}")
    return {name: count_parameters(getattr(block, name))
            for name in ("branch1", "branch2", "branch3", "branch4")}


def layer_summary(model: GoogLeNet, input_shape: Sequence[int]) -> None:
    """Print stage, part, output shape and parameters for an NCHW input shape."""
    if len(input_shape) != 4:
        raise ValueError(f"input_shape must be (N, C, H, W), got {tuple(input_shape)}")
    model.spec.check_input(*input_shape[1:])
    x = nd.zeros(tuple(input_shape), ctx=_context(model))
    rows = []
    for part in ("stem", "body", "head"):
        for stage, block in zip(model.spec.part(part), getattr(model, part)):
            x = block(x)
            rows.append((stage.name, part, tuple(x.shape), count_parameters(block)))
    tables.print_table(("stage", "part", "output shape", "parameters"), rows)


def load_weights(model: GoogLeNet, weights: Dict[str, np.ndarray]) -> None:
    """Copy canonical weights (:func:`d2l_lite.reference.random_weights`) into ``model``.

    Canonical names map to Gluon names by prefix: ``inception3a/branch2/3x3/weight``
    is ``googlenet_inception3a_branch2_3x3_weight``. The layouts already agree
    (convolutions OIHW, dense ``(out, in)``), so values are copied as they are.
    """
    params = model.collect_params()
    names = {model.prefix + key.replace("/", "_"): key for key in weights}
    missing = sorted(set(params.keys()) - set(names))
    unknown = sorted(key for name, key in names.items() if name not in params)
    if missing or unknown:
        raise ValueError(f"weights do not match the model: missing {missing[:3]}, unknown "
                         f"{unknown[:3]}. Use reference.random_weights(spec) with the "
                         f"spec the model was built from.")
    for name, key in names.items():
        value = np.asarray(weights[key], dtype=np.float32)
        if value.shape != params[name].shape:
            raise ValueError(f"{key} has shape {value.shape}, the model expects "
                             f"{params[name].shape}: was the model built from another spec?")
        params[name].set_data(nd.array(value))


def logits(model: gluon.Block, X: np.ndarray) -> np.ndarray:
    """Run an NCHW float32 NumPy batch through ``model``; return NumPy logits."""
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 4:
        raise ValueError(f"X must be an N x C x H x W batch, got shape {X.shape}")
    return model(nd.array(X, ctx=_context(model))).asnumpy().astype(np.float32)
