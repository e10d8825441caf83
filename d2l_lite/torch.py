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
  :mod:`d2l_lite.reference` and compare the logits with its NumPy forward pass;
* :func:`train` (with :func:`device_data` and :func:`prepare_batch`), the
  training loop of the training chapter;
* :func:`count_flops`, :func:`expected_flops` and :func:`time_forward`, for
  the FLOPs chapter.

PyTorch's layouts are the canonical ones (NCHW activations, OIHW convolution
weights, ``(out, in)`` dense weights), so nothing is transposed here.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from . import architecture, counting, reference, runtime, tables, training
from .data import minibatch_indices

__all__ = ["try_gpu", "set_seed", "Inception", "AuxHead", "GoogLeNet", "count_parameters",
           "branch_parameters", "layer_summary", "load_weights", "logits",
           "device_data", "prepare_batch", "train", "count_flops", "expected_flops",
           "time_forward"]

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
    ``reduce=False`` gives the naive block of the FLOPs chapter: the 3x3 and
    5x5 convolutions read every input channel, without the 1x1 reductions
    (``ch3x3red`` and ``ch5x5red`` are then unused). ``batch_norm=True`` makes
    every convolution Conv-BN-ReLU; ``factorize=True`` replaces the 5x5
    convolution by two 3x3 ones (the variants chapter).
    """

    def __init__(self, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int,
                 ch5x5: int, pool_proj: int, *, reduce: bool = True,
                 batch_norm: bool = False, factorize: bool = False):
        super().__init__()
        widths = dict(ch1x1=ch1x1, ch3x3red=ch3x3red, ch3x3=ch3x3, ch5x5red=ch5x5red,
                      ch5x5=ch5x5, pool_proj=pool_proj)
        for name, width in widths.items():
            if not isinstance(width, int) or isinstance(width, bool) or width < 1:
                raise ValueError(f"{name} must be a positive int (a number of output "
                                 f"channels), got {width!r}")
        for name, flag in (("reduce", reduce), ("batch_norm", batch_norm),
                           ("factorize", factorize)):
            if not isinstance(flag, bool):
                raise ValueError(f"{name} must be True or False, got {flag!r}")
        self.reduce = reduce
        bn = batch_norm
        # Branch 1: a 1x1 convolution
        self.branch1 = nn.Sequential(OrderedDict(_conv("1x1", ch1x1, 1, batch_norm=bn)))
        # Branch 2: a 1x1 convolution reduces the channels, then a 3x3 convolution
        self.branch2 = nn.Sequential(OrderedDict([
            *(_conv("3x3_reduce", ch3x3red, 1, batch_norm=bn) if reduce else []),
            *_conv("3x3", ch3x3, 3, padding=1, batch_norm=bn),
        ]))
        # Branch 3: a 1x1 convolution reduces the channels, then a 5x5 convolution
        # (factorised: two 3x3 convolutions, which see the same 5x5 window)
        if factorize:
            five = [*_conv("5x5a", ch5x5red if reduce else ch5x5, 3, padding=1, batch_norm=bn),
                    *_conv("5x5b", ch5x5, 3, padding=1, batch_norm=bn)]
        else:
            five = _conv("5x5", ch5x5, 5, padding=2, batch_norm=bn)
        self.branch3 = nn.Sequential(OrderedDict([
            *(_conv("5x5_reduce", ch5x5red, 1, batch_norm=bn) if reduce else []),
            *five,
        ]))
        # Branch 4: 3x3 max pooling, then a 1x1 convolution
        self.branch4 = nn.Sequential(OrderedDict([
            ("pool", nn.MaxPool2d(kernel_size=3, stride=1, padding=1)),
            *_conv("pool_proj", pool_proj, 1, batch_norm=bn),
        ]))

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        # N x 192 x 28 x 28 (inception3a, as in the paper)
        branch1 = self.branch1(X)  # N x 64 x 28 x 28
        branch2 = self.branch2(X)  # N x 128 x 28 x 28
        branch3 = self.branch3(X)  # N x 32 x 28 x 28
        branch4 = self.branch4(X)  # N x 32 x 28 x 28
        return torch.cat((branch1, branch2, branch3, branch4), dim=1)  # N x 256 x 28 x 28


def _conv(name: str, channels: int, kernel: int, stride: int = 1, padding: int = 0,
          batch_norm: bool = False) -> List[Tuple[str, nn.Module]]:
    """Conv-ReLU, or Conv-BN-ReLU (no conv bias: BatchNorm's shift replaces it)."""
    modules = [(name, nn.LazyConv2d(channels, kernel, stride=stride, padding=padding,
                                    bias=not batch_norm))]
    if batch_norm:
        modules.append((f"{name}_bn", nn.LazyBatchNorm2d(eps=architecture.BN_EPS,
                                                         momentum=architecture.BN_MOMENTUM)))
    return modules + [(f"{name}_relu", nn.ReLU())]


class AuxHead(nn.Module):
    """An auxiliary classifier (:class:`d2l_lite.architecture.AuxHead`): 5x5/3
    average pool, 1x1 conv to 128, dense 1024 with ReLU, dropout, dense to classes."""

    def __init__(self, num_classes: int, *, batch_norm: bool = False, dropout: float = 0.7):
        super().__init__()
        self.pool = nn.AvgPool2d(5, stride=3)
        self.conv = nn.Sequential(OrderedDict(_conv("conv", 128, 1, batch_norm=batch_norm)))
        self.fc1 = nn.LazyLinear(1024)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.LazyLinear(num_classes)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        X = self.conv(self.pool(X)).flatten(1)  # N x 128 x 1 x 1 at 96x96 (4 x 4 at 224)
        return self.fc2(self.dropout(torch.relu(self.fc1(X))))


def _modules(layer) -> List[Tuple[str, nn.Module]]:
    """The (name, module) pairs of one layer of the spec, named as in the spec."""
    if isinstance(layer, architecture.Conv):
        return _conv(layer.name, layer.out_channels, layer.kernel, layer.stride,
                     layer.padding, layer.batch_norm)
    if isinstance(layer, architecture.MaxPool):
        # PyTorch pads max pooling with -inf, so the padding is never selected.
        return [(layer.name, nn.MaxPool2d(layer.kernel, stride=layer.stride,
                                          padding=layer.padding))]
    if isinstance(layer, architecture.Inception):
        return [(layer.name, Inception(layer.ch1x1, layer.ch3x3red, layer.ch3x3,
                                       layer.ch5x5red, layer.ch5x5, layer.pool_proj,
                                       reduce=layer.reduce, batch_norm=layer.batch_norm,
                                       factorize=layer.factorize))]
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

    With auxiliary heads (``spec.aux_heads``) they live in ``aux``; in
    training mode ``forward`` returns ``(logits, [aux1_logits, aux2_logits])``,
    in eval mode the logits alone (the heads are not run).
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
        self.aux = nn.ModuleDict({h.name: AuxHead(h.num_classes, batch_norm=h.batch_norm,
                                                  dropout=h.dropout)
                                  for h in spec.aux_heads})
        self._aux_after = {h.after: h.name for h in spec.aux_heads}
        with torch.no_grad():  # materialise the lazy layers (aux heads: in training mode)
            self(torch.zeros(2, spec.in_channels, spec.input_size, spec.input_size))
        for module in self.modules():  # forget the zero batch's statistics
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.reset_running_stats()

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        if X.dim() != 4:
            raise ValueError(f"GoogLeNet expects an N x C x H x W batch, got shape "
                             f"{tuple(X.shape)}; add a batch axis with X[None] for one image")
        self.spec.check_input(X.shape[1], X.shape[2], X.shape[3])
        # N x 1 x 96 x 96 (the paper: N x 3 x 224 x 224)
        X = self.stem(X)
        # N x 192 x 12 x 12 (N x 192 x 28 x 28)
        if not (self.training and self.aux):
            X = self.body(X)
            # N x 1024 x 3 x 3 (N x 1024 x 7 x 7)
            return self.head(X)  # N x 10 (N x 1000)
        aux_logits = []  # training with auxiliary heads: tap the body after 4a and 4d
        for stage in self.body:
            for name, layer in stage.named_children():
                X = layer(X)
                if name in self._aux_after:
                    aux_logits.append(self.aux[self._aux_after[name]](X))
        return self.head(X), aux_logits


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
    """Canonical name -> parameter or BatchNorm statistic:
    ``body.b3.inception3a.branch1.1x1.weight`` becomes
    ``inception3a/branch1/1x1/weight`` (the part and stage are dropped),
    ``aux.aux1.conv.conv.weight`` becomes ``aux1/conv/weight``."""
    tensors = dict(model.named_parameters())
    tensors.update((name, buffer) for name, buffer in model.named_buffers()
                   if name.endswith(("running_mean", "running_var")))
    out = {}
    for name, tensor in tensors.items():
        parts = name.split(".")
        if parts[0] == "aux":  # aux.aux1.conv.conv.weight or aux.aux1.fc1.weight
            parts = [parts[1]] + parts[-2:]
        else:
            parts = parts[2:]
        out["/".join(parts)] = tensor
    return out


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


# Training ------------------------------------------------------------------------

#: torch.compile's mode for the FAST recipe on a GPU. "reduce-overhead" replays
#: each compiled graph as a CUDA graph: at 96x96 most of GoogLeNet's kernels
#: are small, so launch overhead matters. "max-autotune-no-cudagraphs" would
#: benchmark kernel choices instead, which costs minutes of compilation for a
#: run of about a minute.
COMPILE_MODE = "reduce-overhead"


def device_data(data, device: torch.device) -> Tuple[torch.Tensor, ...]:
    """``(train_images, train_labels, test_images, test_labels)`` of a
    :class:`~d2l_lite.data.FashionMNIST` as tensors on ``device``, copied once.

    Images stay uint8 ``(N, 28, 28)`` (47 MB for all 60,000): each batch is
    converted and resized on the device by :func:`prepare_batch`.
    """
    return tuple(torch.tensor(array, dtype=dtype, device=device) for array, dtype in (
        (data.train_images, torch.uint8), (data.train_labels, torch.int64),
        (data.test_images, torch.uint8), (data.test_labels, torch.int64)))


def prepare_batch(images: torch.Tensor, index: torch.Tensor, image_size: int = 96,
                  channels_last: bool = False) -> torch.Tensor:
    """Gather ``images[index]`` (uint8, N x 28 x 28) and make a float32
    ``B x 1 x image_size x image_size`` batch in [0, 1], on the images' device."""
    X = images[index].unsqueeze(1).float().div_(255)  # B x 1 x 28 x 28
    X = nn.functional.interpolate(X, size=(image_size, image_size), mode="bilinear",
                                  align_corners=False, antialias=False)
    return X.contiguous(memory_format=torch.channels_last) if channels_last else X


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def _optimizer(model: nn.Module, recipe, device: torch.device,
               compiled: bool) -> torch.optim.Optimizer:
    """The recipe's optimiser. A compiled step gets the learning rate as a
    tensor, so changing it does not recompile; on a GPU the eager step uses
    the fused CUDA kernels and the compiled one ``capturable`` state."""
    lr = torch.tensor(recipe.lr, device=device) if compiled else recipe.lr
    cuda = device.type == "cuda"
    if recipe.optimizer == "sgd":
        # weight_decay is coupled: added to the gradient as L2 regularisation
        options = dict(momentum=recipe.momentum, nesterov=recipe.nesterov,
                       weight_decay=recipe.weight_decay)
        if cuda and not compiled:
            options["fused"] = True
        return torch.optim.SGD(model.parameters(), lr=lr, **options)
    # AdamW: weight decay decoupled from the gradient (betas 0.9, 0.999; eps 1e-8)
    options = dict(weight_decay=recipe.weight_decay)
    if cuda:
        options["capturable" if compiled else "fused"] = True
    return torch.optim.AdamW(model.parameters(), lr=lr, **options)


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)  # in place: the compiled step reads the same tensor
        else:
            group["lr"] = lr


def train(model: GoogLeNet, data, recipe=training.CLASSIC, *, device=None,
          image_size: Optional[int] = None, plot: bool = True,
          progress: bool = True) -> training.History:
    """Train ``model`` on ``data`` (a :class:`~d2l_lite.data.FashionMNIST`) with ``recipe``.

    The model starts from :func:`d2l_lite.reference.xavier_weights` for its
    spec and ``recipe.seed``, so every framework starts from the same point.
    All images go to the device once, as uint8; each batch is gathered,
    scaled to [0, 1] and resized to ``image_size`` (default: the spec's
    input size; 28 means no resizing) there. Loss and accuracy are
    summed on the device and read once per epoch.

    On a GPU, ``recipe.mixed_precision`` means bfloat16 autocast with
    channels-last tensors, and ``recipe.compile`` compiles the whole training
    step (forward, loss, backward, optimiser step) with ``torch.compile``. On
    the CPU both are skipped with a notice: float32, and eager execution,
    because compiling GoogLeNet takes longer there than it saves at the scale
    a CPU can train (see the training chapter).

    Returns a :class:`~d2l_lite.training.History`; ``EpochStats.seconds`` is
    the time of the epoch's training steps (device synchronised; compilation
    included in the first epoch), without the evaluation that follows.
    """
    if not isinstance(model, GoogLeNet):
        raise ValueError(f"train takes a GoogLeNet, got {type(model).__name__}")
    if not isinstance(recipe, training.Recipe):
        raise ValueError(f"recipe must be a training.Recipe such as training.CLASSIC, "
                         f"got {type(recipe).__name__}")
    device = torch.device(device) if device is not None else torch.device(
        "cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.type == "cuda"
    skipped = [what for what, asked in (("bfloat16 (float32 instead)", recipe.mixed_precision),
                                        ("torch.compile (eager instead)", recipe.compile))
               if asked and not cuda]
    if skipped:
        print(f"PyTorch on the CPU: {' and '.join(skipped)}; both are GPU options here.")
    image_size = model.spec.input_size if image_size is None else image_size
    return _fit(model, data, recipe, device, image_size, plot, progress,
                compiled=recipe.compile and cuda, bf16=recipe.mixed_precision and cuda,
                channels_last=recipe.mixed_precision and cuda)


def _fit(model: GoogLeNet, data, recipe, device: torch.device, image_size: int,
         plot: bool, progress: bool, *, compiled: bool, bf16: bool,
         channels_last: bool) -> training.History:
    """The training loop of :func:`train`, with its choices made explicit."""
    set_seed(recipe.seed)
    model.to(device)
    load_weights(model, reference.xavier_weights(model.spec, seed=recipe.seed))
    if channels_last:
        model.to(memory_format=torch.channels_last)
    train_images, train_labels, test_images, test_labels = device_data(data, device)
    num_train, num_test = len(train_labels), len(test_labels)
    batch_size = recipe.batch_size
    steps_per_epoch = training.steps_per_epoch(num_train, batch_size)
    optimizer = _optimizer(model, recipe, device, compiled)
    device_type = device.type

    def train_step(index):
        X = prepare_batch(train_images, index, image_size, channels_last)
        y = train_labels[index]
        # bfloat16 convolutions and matrix products if bf16; the loss in float32
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
            y_hat, aux_logits = training.split_aux(model(X))
            loss = nn.functional.cross_entropy(y_hat, y,
                                               label_smoothing=recipe.label_smoothing)
            # auxiliary heads: their losses join with weight 0.3 (the logged loss
            # stays the main head's, comparable with models without them)
            aux_loss = sum(nn.functional.cross_entropy(a, y, label_smoothing=recipe.label_smoothing)
                           for a in aux_logits)
        correct = (y_hat.argmax(dim=1) == y).sum()
        (loss + architecture.AUX_LOSS_WEIGHT * aux_loss).backward()
        optimizer.step()
        return loss.detach(), correct

    def eval_step(index, valid):
        X = prepare_batch(test_images, index, image_size, channels_last)
        with torch.no_grad(), torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
            y_hat = model(X)
        return ((y_hat.argmax(dim=1) == test_labels[index]) & valid).sum()

    if compiled:
        train_step = torch.compile(train_step, mode=COMPILE_MODE, dynamic=False)
        eval_step = torch.compile(eval_step, mode=COMPILE_MODE, dynamic=False)

    cuda_graphs = compiled and device.type == "cuda" and COMPILE_MODE == "reduce-overhead"

    def run(step, *args):
        if cuda_graphs:  # a new iteration: the last outputs have been added up
            torch.compiler.cudagraph_mark_step_begin()
        return step(*args)

    # The test set in fixed-size batches: the last one is padded with image 0
    # and masked, so a compiled evaluation sees one shape.
    num_eval = -(-num_test // batch_size) * batch_size
    eval_order = torch.arange(num_eval, device=device)
    eval_valid = eval_order < num_test
    eval_order = torch.where(eval_valid, eval_order, 0)

    history = training.History("PyTorch", recipe, _device_name(device), num_train,
                               num_test)
    live = training.ProgressPlot(f"PyTorch, {recipe.name} recipe", recipe.num_epochs,
                                 enabled=None if plot else False)
    benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True  # one input shape: pick the fastest kernels once
    try:
        for epoch in range(recipe.num_epochs):
            order = np.stack(list(minibatch_indices(
                num_train, batch_size, shuffle=True, seed=recipe.seed, epoch=epoch,
                drop_last=True)))  # steps_per_epoch x batch_size, one copy per epoch
            order = torch.from_numpy(order).to(device)
            loss_sum = torch.zeros((), device=device)
            correct_sum = torch.zeros((), dtype=torch.int64, device=device)
            model.train()
            bar = training.batch_progress(steps_per_epoch, epoch + 1, recipe.num_epochs,
                                          enabled=progress)
            step_times = []
            timer = training.Timer()
            for i in range(steps_per_epoch):
                _set_lr(optimizer, training.learning_rate(recipe, epoch * steps_per_epoch + i,
                                                          steps_per_epoch))
                start = training.Timer()
                loss, correct = run(train_step, order[i])
                optimizer.zero_grad(set_to_none=True)  # not traceable: outside the compiled step
                loss_sum += loss.float() * batch_size
                correct_sum += correct
                if compiled and epoch == 0 and i < 4:  # time the first steps for compile_seconds
                    _synchronize(device)
                    step_times.append(start.elapsed())
                bar.update(1)
            _synchronize(device)
            seconds = timer.elapsed()
            bar.close()
            model.eval()
            test_correct = torch.zeros((), dtype=torch.int64, device=device)
            eval_times = []
            for start_index in range(0, num_eval, batch_size):
                start = training.Timer()
                test_correct += run(eval_step, eval_order[start_index:start_index + batch_size],
                                    eval_valid[start_index:start_index + batch_size])
                if compiled and epoch == 0 and start_index < 4 * batch_size:
                    _synchronize(device)
                    eval_times.append(start.elapsed())
            if compiled and epoch == 0:
                history.compile_seconds = (training.compile_seconds(step_times)
                                           + training.compile_seconds(eval_times))
            seen = steps_per_epoch * batch_size
            history.epochs.append(training.EpochStats(
                epoch=epoch + 1, train_loss=loss_sum.item() / seen,
                train_acc=correct_sum.item() / seen, test_acc=test_correct.item() / num_test,
                seconds=seconds, images_per_sec=seen / seconds))
            live.update(history)
    finally:
        torch.backends.cudnn.benchmark = benchmark
        model.eval()
    return history


# FLOPs and timing ----------------------------------------------------------------

def count_flops(model_or_block: nn.Module, input_shape: Sequence[int]) -> int:
    """FLOPs of one forward pass on an ``input_shape`` batch, as PyTorch counts them.

    ``torch.utils.flop_counter.FlopCounterMode`` watches the operators that
    run and counts 2 FLOPs per multiply-accumulate of convolutions and matrix
    products (``aten.convolution``, ``aten.addmm`` ...) and nothing else: bias
    additions, ReLU, pooling and concatenation count zero.
    """
    from torch.utils.flop_counter import FlopCounterMode

    if len(input_shape) != 4:
        raise ValueError(f"input_shape must be N x C x H x W, e.g. (1, 192, 28, 28), "
                         f"got {tuple(input_shape)}")
    X = torch.zeros(tuple(input_shape), device=_device(model_or_block))
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model_or_block(X)
    return counter.get_total_flops()


def expected_flops(spec_or_block, input_size=None) -> int:
    """What :func:`count_flops` should report for one image (a batch of 1).

    PyTorch's counter counts exactly the multiply-accumulates of the analytic
    counter, twice: ``2 x counting.total_macs``. ``spec_or_block`` is a
    :class:`~d2l_lite.architecture.GoogLeNetSpec` (``input_size``: the image
    side, default the spec's) or an :class:`~d2l_lite.architecture.Inception`
    (``input_size``: its input as ``(channels, height, width)``).
    """
    return counting.analytic_flops(spec_or_block, input_size)


def time_forward(model_or_block: nn.Module, input_shape: Sequence[int],
                 repeats: int = 10, warmup: int = 2) -> float:
    """Median seconds of one forward pass on an ``input_shape`` batch.

    Eager PyTorch in eval mode without gradients, PyTorch's everyday inference
    path, on the module's device. ``warmup`` passes run first (they build lazy
    layers, pick cuDNN kernels and fill caches); the device is synchronised
    around every timed pass.
    """
    import statistics

    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}")
    device = _device(model_or_block)
    X = torch.rand(tuple(input_shape), device=device)
    was_training = model_or_block.training
    model_or_block.eval()
    times = []
    try:
        with torch.no_grad():
            for i in range(warmup + repeats):
                _synchronize(device)
                timer = training.Timer()
                model_or_block(X)
                _synchronize(device)
                if i >= warmup:
                    times.append(timer.elapsed())
    finally:
        model_or_block.train(was_training)
    return statistics.median(times)
