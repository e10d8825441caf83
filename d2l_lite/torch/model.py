"""The description meets the model: the textbook classes that build a
``GoogLeNetSpec``, their counts, and their tensors under the description's
neutral names (PyTorch's layouts are the neutral ones: nothing is transposed)."""

from __future__ import annotations

from functools import partial
from typing import Dict, Iterator, List, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from .. import architecture, reference, tables, textbook
from . import book
from .book import GoogLeNet, Inception, conv_bn_relu, conv_relu

def googlenet(spec: architecture.GoogLeNetSpec = architecture.BOOK) -> GoogLeNet:
    """The textbook model of ``spec`` (kept as ``model.spec``), its lazy parameters
    made by :func:`_build`."""
    block, net = textbook.classes(spec, book, conv_bias=True)
    bias = spec.stages[0].layers[0].conv_bias  # conv1 as every convolution
    conv = partial(conv_bn_relu, bias=bias) if spec.batch_norm else conv_relu
    model = net(spec.num_classes, conv, block)
    if spec.head_pool == "avg7":  # the paper's 7x7 average pool
        model.head[0] = nn.AvgPool2d(7, stride=1)
    model.spec = spec  # the input size too, which the layers cannot tell
    return _build(model, spec)


def _build(model: nn.Module, spec: architecture.GoogLeNetSpec) -> nn.Module:
    """Make lazy parameters with one zero batch; forget its BatchNorm statistics."""
    if any(nn.parameter.is_lazy(p) for p in model.parameters()):
        with torch.no_grad():
            model(torch.zeros(2, spec.in_channels, spec.input_size, spec.input_size,
                              device=_device(model)))
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.reset_running_stats()
    return model


def _require_built(module: nn.Module) -> None:
    if any(nn.parameter.is_lazy(p) for p in module.parameters()):
        raise ValueError(
            f"this {type(module).__name__} has lazy layers that have not seen an input "
            f"yet, so their parameters do not exist. Run one batch through it first, "
            f"e.g. block(torch.zeros(1, 192, 28, 28)) for a block that gets 192 channels.")


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def count_parameters(model: nn.Module) -> int:
    """Total number of parameters of a built model (lazy layers must have seen an input)."""
    _require_built(model)
    return sum(p.numel() for p in model.parameters())


def branch_parameters(block: Inception) -> Dict[str, int]:
    """``{"branch1": n, ..., "branch4": n}`` for a built :class:`Inception`."""
    return {f"branch{i}": count_parameters(getattr(block, f"branch{i}")) for i in range(1, 5)}


def stage_rows(model: GoogLeNet, input_shape: Sequence[int]) -> List[Tuple]:
    """:func:`d2l_lite.counting.stage_rows` measured: (stage, C x H x W, parameters)."""
    X, rows = torch.zeros(tuple(input_shape), device=_device(model)), []
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for name, stage in [*model.stem.named_children(), *model.body.named_children(),
                            ("head", model.head)]:
            X = stage(X)
            rows.append((name, tuple(X.shape[1:]), count_parameters(stage)))
        if hasattr(model, "aux1"):  # GoogLeNetAux: training mode runs the heads
            statistics = [b.clone() for b in model.buffers()]  # BatchNorm's, kept
            model.train()
            _, aux = model(torch.zeros((2, *input_shape[1:]), device=_device(model)))
            rows += [(f"aux{i}", tuple(a.shape[1:]),
                      count_parameters(getattr(model, f"aux{i}"))) for i, a in enumerate(aux, 1)]
            for buffer, saved in zip(model.buffers(), statistics):
                buffer.copy_(saved)
    model.train(was_training)
    return rows


def layer_summary(model: GoogLeNet, input_shape: Sequence[int]) -> None:
    """Print :func:`stage_rows`: stage, output shape (N x C x H x W), parameters."""
    rows = [(name, (input_shape[0], *shape), params)
            for name, shape, params in stage_rows(model, input_shape)]
    tables.print_table(("stage", "output shape", "parameters"), rows)


# Neutral names ----------------------------------------------------------------------


def _is_leaf(module: nn.Module) -> bool:
    """A convolution or dense layer, or a ``conv_relu``/``conv_bn_relu`` unit."""
    return isinstance(module, (nn.Conv2d, nn.Linear)) or (
        isinstance(module, nn.Sequential) and isinstance(module[0], nn.Conv2d))


def _layers(layers, module: nn.Module, path: str = "") -> Iterator[Tuple[str, nn.Module]]:
    """(neutral layer path, leaf module) for the description's ``layers`` that
    ``module`` holds: its children with parameters, in order, are the layers
    with parameters (pools, ``Flatten``, ``ReLU`` and ``Dropout`` have none);
    an Inception block's branches are its ``branch1`` ... ``branch4``."""
    weighted = [layer for layer in layers
                if isinstance(layer, (architecture.Conv, architecture.Dense,
                                      architecture.Inception))]
    if _is_leaf(module):
        children = [module]
    else:
        children = [child for child in module.children()
                    if next(child.parameters(), None) is not None]
    if len(children) != len(weighted):
        raise ValueError(f"{path or 'the model'}: the description has {len(weighted)} "
                         f"layers with parameters, the PyTorch module {len(children)}")
    for layer, child in zip(weighted, children):
        if isinstance(layer, architecture.Inception):
            for branch, branch_layers in layer.branches():
                yield from _layers(branch_layers, getattr(child, branch),
                                   f"{path}{layer.name}/{branch}/")
            if layer.residual:
                yield f"{path}{layer.name}/shortcut", child.shortcut
        else:
            yield path + layer.name, child


def spec_of(model: GoogLeNet) -> architecture.GoogLeNetSpec:
    """``model.spec`` when :func:`googlenet` built it; otherwise the description
    read from the model's classes and layers (the input size it cannot tell:
    :func:`textbook.spec`'s for its stem and head)."""
    if hasattr(model, "spec"):
        return model.spec
    conv1 = model.stem.b1[0][0]
    bn = isinstance(model.stem.b1[0][1], nn.BatchNorm2d)
    avg7 = isinstance(model.head[0], nn.AvgPool2d)
    return textbook.spec(type(model.body.b3[0]), type(model), batch_norm=bn,
                         conv_bias=bn and conv1.bias is not None,
                         in_channels=conv1.in_channels, num_classes=model.head[-1].out_features,
                         head_pool="avg7" if avg7 else "global")


def tensor_names(model: GoogLeNet) -> Dict[str, str]:
    """Neutral name (``reference.parameter_shapes`` and ``state_shapes``) -> the
    model's ``state_dict`` key, found from the model's structure: stage, layer
    position in the stage, branch, position in the branch."""
    spec, keys = spec_of(model), {id(m): name for name, m in model.named_modules()}
    stages = [(stage.layers, model.head if stage.part == "head" else
               getattr(getattr(model, stage.part), stage.name), "") for stage in spec.stages]
    stages += [(head.layers(), getattr(model, head.name), f"{head.name}/")
               for head in spec.aux_heads]
    names = {}
    for layers, stage, prefix in stages:
        for path, leaf in _layers(layers, stage, prefix):
            conv, bn = (leaf[0], leaf[1]) if isinstance(leaf, nn.Sequential) else (leaf, None)
            for name in ("weight", "bias"):
                if getattr(conv, name) is not None:
                    names[f"{path}/{name}"] = f"{keys[id(conv)]}.{name}"
            if isinstance(bn, nn.BatchNorm2d):
                for name in ("weight", "bias", "running_mean", "running_var"):
                    names[f"{path}_bn/{name}"] = f"{keys[id(bn)]}.{name}"
    return names


def load_weights(model: GoogLeNet, weights: Dict[str, np.ndarray]) -> GoogLeNet:
    """Copy neutral weights (``d2l_lite.reference``'s names, PyTorch's layouts)
    into ``model`` by name; a ``ValueError`` names a missing, extra or
    misshapen tensor. Returns the model."""
    _require_built(model)
    names, tensors = tensor_names(model), model.state_dict(keep_vars=True)
    reference.check_weights(weights, {n: tensors[k].shape for n, k in names.items()},
                            "PyTorch")
    with torch.no_grad():
        for name, key in names.items():
            tensors[key].copy_(torch.as_tensor(np.asarray(weights[name], np.float32)))
    return model


def get_weights(model: GoogLeNet) -> Dict[str, np.ndarray]:
    """The model's tensors under neutral names: the inverse of :func:`load_weights`."""
    tensors = model.state_dict()
    return {name: tensors[key].detach().cpu().numpy()
            for name, key in tensor_names(model).items()}


def logits(model: nn.Module, X: np.ndarray) -> np.ndarray:
    """Float32 NumPy logits of an NCHW batch in eval mode, with IEEE float32
    convolutions (cuDNN's default TF32 would move them by about 1e-3)."""
    was_training, conv = model.training, torch.backends.cudnn.conv
    precision, conv.fp32_precision = conv.fp32_precision, "ieee"
    model.eval()
    try:
        with torch.no_grad():
            Y = model(torch.as_tensor(np.asarray(X, np.float32), device=_device(model)))
    finally:
        model.train(was_training)
        conv.fp32_precision = precision
    return Y.float().cpu().numpy()
