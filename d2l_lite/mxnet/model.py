"""Where the description (:mod:`d2l_lite.architecture`) meets the Gluon model: building,
counting, shapes, weights under the description's names, logits. MXNet's layouts
(NCHW, OIHW, dense ``(out, in)`` reading a flattened NCHW map) are the neutral ones."""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd
from mxnet.gluon import nn

from .. import architecture, reference, tables, textbook
from . import book
from .book import GoogLeNet, Inception, conv_bn_relu, conv_relu


def googlenet(spec: architecture.GoogLeNetSpec = architecture.BOOK,
              ctx: mx.Context | None = None) -> GoogLeNet:
    """The textbook model of ``spec`` (kept as ``model.spec``) on ``ctx`` (CPU),
    Xavier-initialised and shaped by one zero batch, with fresh BatchNorm statistics."""
    block, net = textbook.classes(spec, book)
    model = net(spec.num_classes, conv_bn_relu if spec.batch_norm else conv_relu, block)
    if spec.head_pool == "avg7":  # the paper's head: a 7x7 map pooled
        model.head = nn.HybridSequential()
        model.head.add(nn.AvgPool2D(7, strides=1), nn.Dense(spec.num_classes))
    ctx = ctx or mx.cpu()
    model.initialize(mx.init.Xavier(), ctx=ctx)
    with autograd.train_mode():  # training mode builds the aux heads too
        model(nd.zeros((1, spec.in_channels, spec.input_size, spec.input_size), ctx=ctx))
    # The zero batch moved BatchNorm's running statistics: back to 0 and 1.
    model.collect_params(".*running_mean|.*running_var").initialize(ctx=ctx, force_reinit=True)
    model.spec = spec  # the input size too, which the layers cannot tell
    return model


def _context(model: gluon.Block) -> mx.Context:
    """The device that holds ``model``'s parameters."""
    return next(iter(model.collect_params().values())).list_ctx()[0]


def count_parameters(model: gluon.Block) -> int:
    """Trainable parameters (BatchNorm's running statistics have ``grad_req="null"``)."""
    params = [p for p in model.collect_params().values() if p.grad_req != "null"]
    for p in params:
        if p.shape is None or 0 in p.shape:
            raise ValueError(f"parameter {p.name} has no shape yet ({p.shape}): Gluon "
                             f"infers it on the first forward pass; run one batch first.")
    return sum(int(np.prod(p.shape)) for p in params)


def branch_parameters(block: Inception) -> Dict[str, int]:
    """Parameters per branch of a built :class:`Inception` block."""
    return {name: count_parameters(getattr(block, name))
            for name in ("branch1", "branch2", "branch3", "branch4")}


def stage_rows(model: GoogLeNet, input_shape: Sequence[int]) -> List[Tuple]:
    """:func:`d2l_lite.counting.stage_rows` measured: (stage, C x H x W, parameters);
    an aux head's row has its parameters and the head's ``(classes,)`` (its
    output is not measured: it runs inside stage b4, in training only)."""
    x, rows = nd.zeros(tuple(input_shape), ctx=_context(model)), []
    with autograd.predict_mode():
        for name, stage in zip(("b1", "b2", "b3", "b4", "b5", "head"),
                               [*model.stem, *model.body, model.head]):
            x = stage(x)
            rows.append((name, tuple(x.shape[1:]), count_parameters(stage)))
    rows += [(name, tuple(x.shape[1:]), count_parameters(getattr(model, name)))
             for name in ("aux1", "aux2") if hasattr(model, name)]  # aux heads
    return rows


def layer_summary(model: GoogLeNet, input_shape: Sequence[int]) -> None:
    """Print :func:`stage_rows`: stage, output shape (N x C x H x W), parameters."""
    rows = [(name, (input_shape[0], *shape), params)
            for name, shape, params in stage_rows(model, input_shape)]
    tables.print_table(("stage", "output shape", "parameters"), rows)


def spec_of(model: GoogLeNet) -> architecture.GoogLeNetSpec:
    """``model.spec`` when :func:`googlenet` built it; otherwise the description read
    from the model's classes and layers (the input size it cannot tell:
    :func:`textbook.spec`'s for its head and stem). It names the tensors."""
    if hasattr(model, "spec"):
        return model.spec
    first = model.stem[0][0]  # conv1: a Conv2D, or Conv-BN-ReLU
    conv = first[0] if isinstance(first, nn.HybridSequential) else first
    avg7 = isinstance(model.head[0], nn.AvgPool2D)
    return textbook.spec(
        type(model.body[0][0]), type(model), in_channels=conv.weight.shape[1] or 1,
        num_classes=model.head[-1].weight.shape[0], head_pool="avg7" if avg7 else "global",
        batch_norm=conv is not first)


def _layers(model: GoogLeNet, spec: architecture.GoogLeNetSpec):
    """``(path, Gluon block)`` of every layer with tensors: stage -> position in the
    stage -> branch -> position in the branch; an aux head after the block it leaves."""
    aux = {head.after: head for head in spec.aux_heads}
    for stage, blocks in zip(spec.stages, [*model.stem, *model.body, model.head]):
        for layer, block in zip(stage.layers, blocks):
            if isinstance(layer, architecture.Inception):
                for branch, leaves in layer.branches():
                    for leaf, part in zip(leaves, getattr(block, branch)):
                        yield f"{layer.name}/{branch}/{leaf.name}", part
                if layer.residual:
                    yield f"{layer.name}/shortcut", block.shortcut
            else:
                yield layer.name, block
            if layer.name in aux:  # pool, conv, fc1, fc2 (Dropout has no tensors)
                head = [b for b in getattr(model, aux[layer.name].name)
                        if not isinstance(b, nn.Dropout)]
                for leaf, part in zip(aux[layer.name].layers(), head):
                    yield f"{aux[layer.name].name}/{leaf.name}", part


def tensors(model: GoogLeNet) -> Dict[str, gluon.Parameter]:
    """Neutral name -> Gluon parameter, from the model's structure (:func:`spec_of`)."""
    found = {}
    for path, block in _layers(model, spec_of(model)):
        if isinstance(block, nn.HybridSequential):  # Conv-BN-ReLU
            bn = block[1]
            found.update({f"{path}_bn/weight": bn.gamma, f"{path}_bn/bias": bn.beta,
                          f"{path}_bn/running_mean": bn.running_mean,
                          f"{path}_bn/running_var": bn.running_var})
            block = block[0]
        if isinstance(block, (nn.Conv2D, nn.Dense)):
            found[f"{path}/weight"] = block.weight
            if block.bias is not None:
                found[f"{path}/bias"] = block.bias
    return found


def load_weights(model: gluon.Block, weights: Dict[str, np.ndarray]) -> gluon.Block:
    """Copy neutral weights (:mod:`d2l_lite.reference`'s names and layout, MXNet's own)
    into ``model`` by name, on every device it lives on; return it. A ``ValueError``
    names a missing, extra or misshapen tensor."""
    mine = tensors(model)
    reference.check_weights(weights, {name: p.shape for name, p in mine.items()}, "MXNet")
    for name, param in mine.items():
        param.set_data(nd.array(weights[name], dtype="float32"))
    return model


def get_weights(model: gluon.Block) -> Dict[str, np.ndarray]:
    """The inverse of :func:`load_weights`: the model's tensors (first device) by name."""
    return {name: param.data(_context(model)).asnumpy()
            for name, param in tensors(model).items()}


def logits(model: gluon.Block, X: np.ndarray) -> np.ndarray:
    """NumPy logits of an NCHW float32 NumPy batch, at inference (no aux heads)."""
    with autograd.predict_mode():
        out = model(nd.array(np.asarray(X, np.float32), ctx=_context(model)))
    return out.asnumpy().astype(np.float32)
