"""GoogLeNet in PyTorch: the Inception block, the model and its helpers.

Imported the d2l way, ``from d2l_lite import torch as d2l``, this module holds
the names every framework module of :mod:`d2l_lite` defines:

* :func:`try_gpu` and :func:`set_seed`;
* :class:`Inception`, the block, built from its output widths alone
  (``nn.LazyConv2d`` infers the input channels from the first batch, as in d2l);
* :class:`GoogLeNet`, built by walking the stages of an
  :class:`~d2l_lite.architecture.GoogLeNetSpec`, with ``stem``, ``body`` and
  ``head`` attributes;
* :func:`count_parameters`, :func:`branch_parameters`, :func:`layer_summary`;
* :func:`load_weights` and :func:`logits`, which port the canonical weights of
  :mod:`d2l_lite.reference` and compare the logits with its NumPy forward pass.

PyTorch's layouts are the canonical ones (NCHW activations, OIHW convolution
weights, ``(out, in)`` dense weights), so nothing is transposed here.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from typing import Dict, Iterator, List, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from . import architecture, runtime, tables

__all__ = ["try_gpu", "set_seed", "Inception", "GoogLeNet", "count_parameters",
           "branch_parameters", "layer_summary", "load_weights", "logits"]

_BRANCHES = ("branch1", "branch2", "branch3", "branch4")


def try_gpu() -> torch.device:
    """Return the GPU if there is one, else the CPU, and say which."""
    if torch.cuda.is_available():
        device = torch.device("cuda")
        print(runtime.device_notice("PyTorch", True, torch.cuda.get_device_name(device)))
    else:
        device = torch.device("cpu")
        print(runtime.device_notice("PyTorch", False, "cpu"))
    return device


def set_seed(seed: int) -> None:
    """Seed PyTorch's random number generators (CPU and every GPU)."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    torch.manual_seed(seed)


class Inception(nn.Module):
    """The Inception block: four parallel branches concatenated on channels.

    The arguments are the columns of the paper's Table 1. Only output widths
    are given: each ``nn.LazyConv2d`` learns its input channels from the first
    batch, so a new block must see one input before its parameters exist.
    Layer names follow :meth:`d2l_lite.architecture.Inception.branches`.
    """

    def __init__(self, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int,
                 ch5x5: int, pool_proj: int):
        super().__init__()
        widths = dict(ch1x1=ch1x1, ch3x3red=ch3x3red, ch3x3=ch3x3, ch5x5red=ch5x5red,
                      ch5x5=ch5x5, pool_proj=pool_proj)
        for name, width in widths.items():
            if not isinstance(width, int) or isinstance(width, bool) or width < 1:
                raise ValueError(f"{name} must be a positive int (a number of output "
                                 f"channels), got {width!r}")
        # Branch 1: a 1x1 convolution
        self.branch1 = nn.Sequential(OrderedDict([
            ("1x1", nn.LazyConv2d(ch1x1, kernel_size=1)),
            ("1x1_relu", nn.ReLU()),
        ]))
        # Branch 2: a 1x1 convolution reduces the channels, then a 3x3 convolution
        self.branch2 = nn.Sequential(OrderedDict([
            ("3x3_reduce", nn.LazyConv2d(ch3x3red, kernel_size=1)),
            ("3x3_reduce_relu", nn.ReLU()),
            ("3x3", nn.LazyConv2d(ch3x3, kernel_size=3, padding=1)),
            ("3x3_relu", nn.ReLU()),
        ]))
        # Branch 3: a 1x1 convolution reduces the channels, then a 5x5 convolution
        self.branch3 = nn.Sequential(OrderedDict([
            ("5x5_reduce", nn.LazyConv2d(ch5x5red, kernel_size=1)),
            ("5x5_reduce_relu", nn.ReLU()),
            ("5x5", nn.LazyConv2d(ch5x5, kernel_size=5, padding=2)),
            ("5x5_relu", nn.ReLU()),
        ]))
        # Branch 4: 3x3 max pooling, then a 1x1 convolution
        self.branch4 = nn.Sequential(OrderedDict([
            ("pool", nn.MaxPool2d(kernel_size=3, stride=1, padding=1)),
            ("pool_proj", nn.LazyConv2d(pool_proj, kernel_size=1)),
            ("pool_proj_relu", nn.ReLU()),
        ]))

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        # N x 192 x 28 x 28 (inception3a, as in the paper)
        branch1 = self.branch1(X)  # N x 64 x 28 x 28
        branch2 = self.branch2(X)  # N x 128 x 28 x 28
        branch3 = self.branch3(X)  # N x 32 x 28 x 28
        branch4 = self.branch4(X)  # N x 32 x 28 x 28
        return torch.cat((branch1, branch2, branch3, branch4), dim=1)  # N x 256 x 28 x 28


def _modules(layer) -> List[Tuple[str, nn.Module]]:
    """The (name, module) pairs of one layer of the spec, named as in the spec."""
    if isinstance(layer, architecture.Conv):
        return [(layer.name, nn.LazyConv2d(layer.out_channels, layer.kernel,
                                           stride=layer.stride, padding=layer.padding)),
                (f"{layer.name}_relu", nn.ReLU())]
    if isinstance(layer, architecture.MaxPool):
        # PyTorch pads max pooling with -inf, so the padding is never selected.
        return [(layer.name, nn.MaxPool2d(layer.kernel, stride=layer.stride,
                                          padding=layer.padding))]
    if isinstance(layer, architecture.Inception):
        return [(layer.name, Inception(layer.ch1x1, layer.ch3x3red, layer.ch3x3,
                                       layer.ch5x5red, layer.ch5x5, layer.pool_proj))]
    if isinstance(layer, architecture.GlobalAvgPool):
        return [(layer.name, nn.AdaptiveAvgPool2d((1, 1)))]
    if isinstance(layer, architecture.AvgPool):
        return [(layer.name, nn.AvgPool2d(layer.kernel, stride=layer.stride))]
    if isinstance(layer, architecture.Dense):
        return [("flatten", nn.Flatten()), (layer.name, nn.LazyLinear(layer.out_features))]
    raise ValueError(f"unknown layer type {type(layer).__name__} in the spec")


def _part(spec: architecture.GoogLeNetSpec, part: str) -> nn.Sequential:
    """An ``nn.Sequential`` of the stages of ``part``, each an ``nn.Sequential``."""
    stages = OrderedDict()
    for stage in spec.part(part):
        layers = OrderedDict()
        for layer in stage.layers:
            layers.update(_modules(layer))
        stages[stage.name] = nn.Sequential(layers)
    return nn.Sequential(stages)


class GoogLeNet(nn.Module):
    """GoogLeNet built by walking ``spec.stages``: ``stem``, ``body``, ``head``.

    Each part is an ``nn.Sequential`` of its stages (``b1`` ... ``b5``,
    ``head``), each stage an ``nn.Sequential`` of layers named as in the spec
    (``conv1``, ``inception3a``, ``fc`` ...). The layers are lazy, so the
    constructor runs one zero batch of the spec's input size through the
    model: afterwards every parameter exists and can be counted or loaded.
    """

    def __init__(self, spec: architecture.GoogLeNetSpec = architecture.BOOK):
        super().__init__()
        if not isinstance(spec, architecture.GoogLeNetSpec):
            raise ValueError(f"spec must be a GoogLeNetSpec such as architecture.BOOK or "
                             f"architecture.googlenet_spec(...), got {type(spec).__name__}")
        self.spec = spec
        self.stem = _part(spec, "stem")
        self.body = _part(spec, "body")
        self.head = _part(spec, "head")
        with torch.no_grad():  # materialise the lazy layers
            self(torch.zeros(1, spec.in_channels, spec.input_size, spec.input_size))

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        if X.dim() != 4:
            raise ValueError(f"GoogLeNet expects an N x C x H x W batch, got shape "
                             f"{tuple(X.shape)}; add a batch axis with X[None] for one image")
        self.spec.check_input(X.shape[1], X.shape[2], X.shape[3])
        # N x 1 x 96 x 96 (the paper: N x 3 x 224 x 224)
        X = self.stem(X)
        # N x 192 x 12 x 12 (N x 192 x 28 x 28)
        X = self.body(X)
        # N x 1024 x 3 x 3 (N x 1024 x 7 x 7)
        X = self.head(X)
        # N x 10 (N x 1000)
        return X


def _require_built(module: nn.Module) -> None:
    if any(nn.parameter.is_lazy(p) for p in module.parameters()):
        raise ValueError(
            f"this {type(module).__name__} has lazy layers that have not seen an input "
            f"yet, so their parameters do not exist. Run one batch through it first, "
            f"e.g. block(torch.zeros(1, 192, 28, 28)) for an Inception block that gets "
            f"192 channels.")


def count_parameters(model: nn.Module) -> int:
    """Total number of parameters of a built model (lazy layers must have seen an input)."""
    _require_built(model)
    return sum(p.numel() for p in model.parameters())


def branch_parameters(block: Inception) -> Dict[str, int]:
    """``{"branch1": n, ..., "branch4": n}`` for a built :class:`Inception`."""
    if not isinstance(block, Inception):
        raise ValueError(f"branch_parameters takes an Inception block, got "
                         f"{type(block).__name__}; for a whole model use count_parameters")
    _require_built(block)
    return {name: count_parameters(getattr(block, name)) for name in _BRANCHES}


def layer_summary(model: GoogLeNet, input_shape: Sequence[int]) -> None:
    """Print one row per stage: stage, part, output shape, parameters."""
    if len(input_shape) != 4:
        raise ValueError(f"input_shape must be N x C x H x W, e.g. (1, 1, 96, 96), "
                         f"got {tuple(input_shape)}")
    model.spec.check_input(*input_shape[1:])
    X = torch.zeros(tuple(input_shape), device=_device(model))
    rows = []
    with torch.no_grad():
        for part in ("stem", "body", "head"):
            for name, stage in getattr(model, part).named_children():
                X = stage(X)
                rows.append((name, part, tuple(X.shape), count_parameters(stage)))
    tables.print_table(("stage", "part", "output shape", "parameters"), rows)


def _canonical_parameters(model: GoogLeNet) -> Dict[str, nn.Parameter]:
    """Canonical name -> parameter: ``body.b3.inception3a.branch1.1x1.weight``
    becomes ``inception3a/branch1/1x1/weight`` (the part and stage are dropped)."""
    return {"/".join(name.split(".")[2:]): param
            for name, param in model.named_parameters()}


def load_weights(model: GoogLeNet, weights: Dict[str, np.ndarray]) -> GoogLeNet:
    """Copy canonical weights (:func:`d2l_lite.reference.random_weights`) into ``model``.

    PyTorch's layout is the canonical one (OIHW kernels, ``(out, in)`` dense
    weights), so each array is copied as it is. Returns the model.
    """
    if not isinstance(model, GoogLeNet):
        raise ValueError(f"load_weights takes a GoogLeNet, got {type(model).__name__}")
    params = _canonical_parameters(model)
    missing, unexpected = sorted(set(params) - set(weights)), sorted(set(weights) - set(params))
    if missing or unexpected:
        raise ValueError(f"the weights do not fit this model (missing: {missing[:3]}, "
                         f"unexpected: {unexpected[:3]}); make them with "
                         f"reference.random_weights(spec) for the model's own spec")
    with torch.no_grad():
        for name, param in params.items():
            value = torch.as_tensor(np.asarray(weights[name], dtype=np.float32))
            if value.shape != param.shape:
                raise ValueError(f"{name} has shape {tuple(value.shape)}, the model "
                                 f"expects {tuple(param.shape)} (PyTorch layout, OIHW)")
            param.copy_(value)
    return model


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@contextlib.contextmanager
def _full_float32() -> Iterator[None]:
    """Full float32 convolutions: on recent GPUs cuDNN defaults to TF32, which
    keeps 10 mantissa bits and moves logits by about 1e-3."""
    conv = torch.backends.cudnn.conv
    before = conv.fp32_precision
    conv.fp32_precision = "ieee"
    try:
        yield
    finally:
        conv.fp32_precision = before


def logits(model: nn.Module, X: np.ndarray) -> np.ndarray:
    """Logits for an NCHW float32 NumPy batch, as a float32 NumPy array.

    Runs in eval mode without gradients on the model's device, in full float32,
    and leaves the model in the mode it was in.
    """
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 4:
        raise ValueError(f"X must be an N x C x H x W batch, got shape {X.shape}")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), _full_float32():
            Y = model(torch.from_numpy(X).to(_device(model)))
    finally:
        model.train(was_training)
    return Y.float().cpu().numpy()
