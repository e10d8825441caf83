"""GoogLeNet in MXNet Gluon (1.9): the book's helpers for the MXNet pages.

What this module holds, with the same names as ``d2l_lite.torch``,
``d2l_lite.tensorflow`` and ``d2l_lite.jax``:

* :func:`try_gpu`, :func:`set_seed`: where to run, and reproducible runs;
* :class:`Inception`: the block, built from the branches of
  :class:`d2l_lite.architecture.Inception`;
* :class:`AuxHead`: an auxiliary classifier of the paper (the variants);
* :class:`GoogLeNet`: the whole network, built by walking ``spec.stages``,
  with ``stem``, ``body`` and ``head`` as ``nn.HybridSequential`` attributes
  (and ``aux``, the auxiliary heads of ``spec.aux_heads``, if any);
* :func:`count_parameters`, :func:`branch_parameters`, :func:`layer_summary`:
  what the book counts and prints;
* :func:`load_weights`, :func:`logits`: the parity check against
  :mod:`d2l_lite.reference`;
* :func:`device_data`, :func:`prepare_batch`, :func:`train`: training on
  Fashion-MNIST with a :class:`d2l_lite.training.Recipe`;
* :func:`count_flops`, :func:`expected_flops`, :func:`time_forward`: the FLOPs
  chapter (MXNet has no FLOP counter of its own: see :func:`count_flops`).

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

import math
import re
import statistics
import subprocess
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd
from mxnet.gluon import nn

from . import architecture, counting, reference, runtime, tables, training
from .data import minibatch_indices

__all__ = ["try_gpu", "set_seed", "Inception", "AuxHead", "GoogLeNet", "count_parameters",
           "branch_parameters", "layer_summary", "load_weights", "logits",
           "device_data", "prepare_batch", "AdamW", "train", "count_flops", "expected_flops",
           "time_forward"]


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


def _conv(name: str, channels: int, kernel: int, stride: int = 1, padding: int = 0,
          batch_norm: bool = False) -> List[nn.HybridBlock]:
    """Conv-ReLU (one ``Conv2D`` with its ReLU fused), or Conv-BN-ReLU.

    Conv-BN-ReLU is three blocks named as in ``d2l_lite.torch``: the
    convolution ``name`` without bias (BatchNorm's shift replaces it),
    ``name_bn`` and ``name_relu``. Gluon's ``momentum`` is the weight of the
    old running statistics, ``1 - architecture.BN_MOMENTUM``; its
    ``running_mean`` and ``running_var`` are parameters with ``grad_req="null"``
    (state, never trained).
    """
    # No in_channels: Gluon infers it from the first batch (deferred init).
    if not batch_norm:
        return [nn.Conv2D(channels, kernel_size=kernel, strides=stride, padding=padding,
                          activation="relu", prefix=f"{name}_")]
    return [nn.Conv2D(channels, kernel_size=kernel, strides=stride, padding=padding,
                      use_bias=False, prefix=f"{name}_"),
            nn.BatchNorm(momentum=1 - architecture.BN_MOMENTUM,
                         epsilon=architecture.BN_EPS, prefix=f"{name}_bn_"),
            nn.Activation("relu", prefix=f"{name}_relu_")]


def _layers(layer) -> List[nn.HybridBlock]:
    """The Gluon blocks for one layer of the spec, named after it.

    The Gluon prefix is the spec's name (``conv1_``, ``3x3_reduce_`` ...), so a
    parameter's name reads like its canonical path: ``googlenet_conv1_weight``,
    ``googlenet_inception3a_branch2_3x3_weight``; BatchNorm's scale and shift
    are ``gamma`` and ``beta`` (``googlenet_conv1_bn_gamma``).
    """
    prefix = f"{layer.name}_"
    if isinstance(layer, architecture.Conv):
        return _conv(layer.name, layer.out_channels, layer.kernel, layer.stride,
                     layer.padding, layer.batch_norm)
    if isinstance(layer, architecture.MaxPool):
        # MXNet pads max pooling with -inf and rounds the output size down
        # (pooling_convention="valid"), exactly the spec's rule.
        return [nn.MaxPool2D(pool_size=layer.kernel, strides=layer.stride,
                             padding=layer.padding, prefix=prefix)]
    if isinstance(layer, architecture.AvgPool):
        return [nn.AvgPool2D(pool_size=layer.kernel, strides=layer.stride, prefix=prefix)]
    if isinstance(layer, architecture.GlobalAvgPool):
        return [nn.GlobalAvgPool2D(prefix=prefix)]
    if isinstance(layer, architecture.Dense):
        # flatten=True (the default) turns N x C x H x W into N x (C * H * W)
        # first, in PyTorch's order: the canonical (out, in) weight fits as it is.
        return [nn.Dense(layer.out_features, activation="relu" if layer.relu else None,
                         prefix=prefix)]
    if isinstance(layer, architecture.Inception):
        return [Inception(layer.ch1x1, layer.ch3x3red, layer.ch3x3, layer.ch5x5red,
                          layer.ch5x5, layer.pool_proj, reduce=layer.reduce,
                          batch_norm=layer.batch_norm, factorize=layer.factorize,
                          prefix=prefix)]
    raise TypeError(f"unknown layer type {type(layer).__name__}")


class Inception(nn.HybridBlock):
    """The Inception block: four parallel branches, concatenated on channels.

    The arguments are the columns of the paper's Table 1. The branches
    ``branch1`` ... ``branch4`` are ``nn.HybridSequential`` built from
    :meth:`d2l_lite.architecture.Inception.branches`, so they hold exactly
    the layers the spec describes (every convolution followed by ReLU).
    Input channels are inferred on the first forward pass.

    ``reduce=False`` gives the naive block of the FLOPs chapter: the 3x3 and
    5x5 convolutions read every input channel, without the 1x1 reductions
    (``ch3x3red`` and ``ch5x5red`` are then unused). ``batch_norm=True`` makes
    every convolution Conv-BN-ReLU; ``factorize=True`` replaces the 5x5
    convolution by two 3x3 ones, ``5x5a`` and ``5x5b`` (the variants chapter).
    """

    def __init__(self, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int,
                 ch5x5: int, pool_proj: int, *, reduce: bool = True,
                 batch_norm: bool = False, factorize: bool = False, **kwargs):
        super().__init__(**kwargs)
        widths = (ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj)
        if not all(isinstance(w, (int, np.integer)) and w > 0 for w in widths):
            raise ValueError(f"Inception widths must be positive ints (the paper's "
                             f"ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj), "
                             f"got {widths}")
        for name, flag in (("reduce", reduce), ("batch_norm", batch_norm),
                           ("factorize", factorize)):
            if not isinstance(flag, bool):
                raise ValueError(f"{name} must be True or False, got {flag!r}")
        self.reduce = reduce
        spec = architecture.Inception("inception", *widths, reduce=reduce,
                                      batch_norm=batch_norm, factorize=factorize)
        with self.name_scope():
            for name, layers in spec.branches():
                branch = nn.HybridSequential(prefix=f"{name}_")
                with branch.name_scope():
                    for layer in layers:
                        branch.add(*_layers(layer))
                setattr(self, name, branch)  # self.branch1 ... self.branch4

    def hybrid_forward(self, F, x):
        # Shapes for inception3a: x is N x 192 x 28 x 28.
        b1 = self.branch1(x)  # N x 64 x 28 x 28
        b2 = self.branch2(x)  # N x 128 x 28 x 28
        b3 = self.branch3(x)  # N x 32 x 28 x 28
        b4 = self.branch4(x)  # N x 32 x 28 x 28
        return F.concat(b1, b2, b3, b4, dim=1)  # N x 256 x 28 x 28


class AuxHead(nn.HybridSequential):
    """An auxiliary classifier (:class:`d2l_lite.architecture.AuxHead`): 5x5/3
    average pool, 1x1 conv to 128 (Conv-BN-ReLU with ``batch_norm``), dense
    1024 with ReLU, dropout, dense to the classes.

    The layers are those of :meth:`d2l_lite.architecture.AuxHead.layers`,
    named ``pool``, ``conv`` (``conv_bn``), ``fc1``, ``dropout``, ``fc2``;
    :class:`GoogLeNet` gives each head the prefix ``aux1_``, ``aux2_``, so
    its parameters read ``googlenet_aux1_fc1_weight``.
    """

    def __init__(self, num_classes: int, *, batch_norm: bool = False,
                 dropout: float = 0.7, **kwargs):
        super().__init__(**kwargs)
        spec = architecture.AuxHead("aux", "", num_classes, batch_norm=batch_norm,
                                    dropout=dropout)
        with self.name_scope():
            for layer in spec.layers():
                self.add(*_layers(layer))
                if isinstance(layer, architecture.Dense) and layer.relu:  # after fc1
                    self.add(nn.Dropout(dropout, prefix="dropout_"))


class GoogLeNet(nn.HybridBlock):
    """GoogLeNet built by walking ``spec.stages`` (default: the book's model).

    ``stem``, ``body`` and ``head`` are ``nn.HybridSequential`` holding one
    ``nn.HybridSequential`` per stage of that part (``b1``, ``b2`` | ``b3``,
    ``b4``, ``b5`` | ``head``); layers carry the spec's names.

    With auxiliary heads (``spec.aux_heads``) they are the :class:`AuxHead`
    blocks of ``aux`` (empty otherwise). In training mode
    (``autograd.is_training()``, e.g. inside ``autograd.record()``) the model
    then returns ``(logits, [aux1_logits, aux2_logits])``; in prediction mode
    the logits alone, and the heads do not run.

    The output structure of a hybridized block is fixed when Gluon traces its
    graph, so the heads are not part of that graph: the model's one cached
    graph is the inference network (stem, body, head). In training mode with
    heads, :meth:`forward` instead calls the stages' layers and the heads one
    by one; ``hybridize`` acts on every child too, so each of them still runs
    as its own cached graph.

    The model initialises its parameters (Xavier, on ``ctx``, default the
    CPU) and runs one dummy batch of ``spec``'s input size (in training mode
    when there are heads, so that they are built too), so every parameter
    has its real shape as soon as the model exists; BatchNorm's running
    statistics are then reset to 0 and 1. Re-initialise with
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
        aux_index = {head.after: i for i, head in enumerate(spec.aux_heads)}
        self._aux_after: Dict[str, int] = {}  # name of the block a head reads -> head
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
                                blocks = _layers(layer)
                                block.add(*blocks)
                                if layer.name in aux_index:
                                    self._aux_after[blocks[-1].name] = aux_index[layer.name]
                        sequence.add(block)
            self.aux = nn.HybridSequential(prefix="")
            with self.aux.name_scope():
                for head in spec.aux_heads:
                    self.aux.add(AuxHead(head.num_classes, batch_norm=head.batch_norm,
                                         dropout=head.dropout, prefix=f"{head.name}_"))
        ctx = mx.cpu() if ctx is None else ctx
        self.initialize(mx.init.Xavier(), ctx=ctx)
        size = spec.input_size
        with autograd.train_mode() if spec.aux_heads else autograd.predict_mode():
            self(nd.zeros((2, spec.in_channels, size, size), ctx=ctx))  # materialise shapes
        for name, param in self.collect_params().items():  # forget the zero batch
            if name.endswith(("_running_mean", "_running_var")):
                param.set_data(param.data().ones_like() if name.endswith("var")
                               else param.data().zeros_like())

    def forward(self, x, *args):
        # Runs before hybrid_forward and before the cached graph of a
        # hybridized model; a Symbol (export) has no concrete shape to check.
        if isinstance(x, nd.NDArray):
            if x.ndim != 4:
                raise ValueError(f"GoogLeNet takes an N x C x H x W batch, got shape "
                                 f"{x.shape}. Add a batch axis with x.expand_dims(0).")
            self.spec.check_input(*x.shape[1:])
            if len(self.aux) and autograd.is_training():
                return self._forward_with_aux(x)
        return super().forward(x, *args)

    def _forward_with_aux(self, x):
        """Training with auxiliary heads: ``(logits, [aux logits...])``, the
        heads reading the body after the blocks they follow."""
        aux_logits = []
        for part in (self.stem, self.body, self.head):
            for stage in part:
                for layer in stage:
                    x = layer(x)
                    if layer.name in self._aux_after:
                        aux_logits.append(self.aux[self._aux_after[layer.name]](x))
        return x, aux_logits

    def hybrid_forward(self, F, x):
        # Inference (and training without auxiliary heads).
        # Shapes for architecture.BOOK (x: N x 1 x 96 x 96).
        x = self.stem(x)  # N x 192 x 12 x 12
        x = self.body(x)  # N x 1024 x 3 x 3
        return self.head(x)  # N x 10

    def _build_cache(self, *args):
        # The cached graph is the inference network: the auxiliary heads'
        # parameters are not in it, by design (see the class docstring).
        # Gluon warns about unused parameters; say nothing about those.
        with warnings.catch_warnings():
            aux_names = rf"({re.escape(self.prefix)}aux\d+_\w+(, )?)+"
            warnings.filterwarnings("ignore", message=rf"Parameter {aux_names} is not used")
            return super()._build_cache(*args)


def _context(model: gluon.Block) -> mx.Context:
    """The device that holds ``model``'s parameters."""
    params = list(model.collect_params().values())
    return params[0].list_ctx()[0] if params else mx.cpu()


def count_parameters(model: gluon.Block) -> int:
    """Total number of trainable parameters of a built model or block.

    BatchNorm's running mean and variance are Gluon parameters too, with
    ``grad_req="null"``: state, not counted (as in :mod:`d2l_lite.counting`).
    """
    total = 0
    for name, param in model.collect_params().items():
        if param.grad_req == "null":
            continue
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


_BN_NAMES = {"weight": "gamma", "bias": "beta",
             "running_mean": "running_mean", "running_var": "running_var"}


def _gluon_name(model: GoogLeNet, key: str) -> str:
    """The Gluon parameter name of a canonical one: ``conv1/weight`` is
    ``googlenet_conv1_weight``, ``aux1/conv_bn/weight`` is
    ``googlenet_aux1_conv_bn_gamma``."""
    path, _, kind = key.rpartition("/")
    if path.endswith("_bn"):
        kind = _BN_NAMES.get(kind, kind)
    return model.prefix + f"{path}/{kind}".replace("/", "_")


def load_weights(model: GoogLeNet, weights: Dict[str, np.ndarray]) -> None:
    """Copy canonical weights (:func:`d2l_lite.reference.random_weights`) into ``model``.

    Canonical names map to Gluon names by prefix: ``inception3a/branch2/3x3/weight``
    is ``googlenet_inception3a_branch2_3x3_weight``, ``aux1/fc1/weight`` is
    ``googlenet_aux1_fc1_weight``; a BatchNorm's ``weight`` and ``bias`` are
    Gluon's ``gamma`` and ``beta``, its ``running_mean`` and ``running_var``
    keep their names. The layouts already agree (convolutions OIHW, dense
    ``(out, in)``, the aux heads' first dense layer reading C x H x W in
    PyTorch's order), so values are copied as they are.
    """
    params = model.collect_params()
    names = {_gluon_name(model, key): key for key in weights}
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
    """Run an NCHW float32 NumPy batch through ``model`` at inference
    (prediction mode: BatchNorm's running statistics, no auxiliary heads);
    return NumPy logits."""
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 4:
        raise ValueError(f"X must be an N x C x H x W batch, got shape {X.shape}")
    with autograd.predict_mode():
        out = model(nd.array(X, ctx=_context(model)))
    return out.asnumpy().astype(np.float32)


# Training ------------------------------------------------------------------------

def device_data(data, ctx: mx.Context) -> Tuple[nd.NDArray, ...]:
    """``(train_images, train_labels, test_images, test_labels)`` of a
    :class:`~d2l_lite.data.FashionMNIST` as NDArrays on ``ctx``, copied once.

    Images stay uint8 ``(N, 28, 28)`` (47 MB for all 60,000): each batch is
    converted and resized on the device by :func:`prepare_batch`. Labels are
    float32, the type Gluon's losses and ``argmax`` work with (0 to 9 are exact).
    """
    return (nd.array(data.train_images, ctx=ctx, dtype="uint8"),
            nd.array(data.train_labels, ctx=ctx, dtype="float32"),
            nd.array(data.test_images, ctx=ctx, dtype="uint8"),
            nd.array(data.test_labels, ctx=ctx, dtype="float32"))


def prepare_batch(images: nd.NDArray, index: nd.NDArray, image_size: int = 96) -> nd.NDArray:
    """Gather ``images[index]`` (uint8, N x 28 x 28) and make a float32
    ``B x 1 x image_size x image_size`` batch in [0, 1], on the images' device.

    ``BilinearResize2D`` with ``align_corners=False`` samples at pixel
    centres, as PyTorch's ``F.interpolate(..., align_corners=False)`` does
    (MXNet's default, ``align_corners=True``, gives a different image).
    """
    X = nd.take(images, index).astype("float32").expand_dims(1) / 255  # B x 1 x 28 x 28
    return nd.contrib.BilinearResize2D(X, height=image_size, width=image_size,
                                       align_corners=False)


def _device_name(ctx: mx.Context) -> str:
    """"cpu", or the GPU's name as ``nvidia-smi`` reports it (MXNet has no call for it)."""
    if ctx.device_type != "gpu":
        return "cpu"
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader",
                              "-i", str(ctx.device_id)], capture_output=True, text=True,
                             timeout=10)
        name = out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        name = ""
    return name or str(ctx)


class AdamW(mx.optimizer.Optimizer):
    """``torch.optim.AdamW`` for MXNet 1.9, which has no AdamW optimiser.

    Weight decay is decoupled from the gradient: each step first shrinks the
    weight, ``w *= 1 - lr * wd`` (biases too, as in PyTorch), then takes
    Adam's step on the gradient alone, with MXNet's fused ``adam_update``
    kernel. That kernel computes ``w -= lr' * m / (sqrt(v) + eps')``; PyTorch's
    bias-corrected step, ``lr / c1 * m / (sqrt(v) / sqrt(c2) + eps)`` with
    ``c1 = 1 - beta1**t`` and ``c2 = 1 - beta2**t``, is that kernel with
    ``lr' = lr * sqrt(c2) / c1`` and ``eps' = eps * sqrt(c2)``. (MXNet's own
    ``adam`` scales only the learning rate, which makes epsilon up to 30 times
    larger in the first steps: that matters for the many tiny gradients of a
    deep network without normalisation layers.)
    """

    def __init__(self, learning_rate: float = 0.001, beta1: float = 0.9,
                 beta2: float = 0.999, epsilon: float = 1e-8, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon

    def create_state(self, index, weight):
        return (nd.zeros(weight.shape, weight.context, dtype=weight.dtype),  # mean
                nd.zeros(weight.shape, weight.context, dtype=weight.dtype))  # variance

    def update(self, index, weight, grad, state):
        self._update_count(index)
        lr, wd = self._get_lr(index), self._get_wd(index)
        t = self._index_update_count[index]
        c1, c2 = 1 - self.beta1 ** t, 1 - self.beta2 ** t
        if wd:
            weight *= 1 - lr * wd  # decoupled weight decay, in place
        mean, var = state
        options = {"clip_gradient": self.clip_gradient} if self.clip_gradient else {}
        nd.adam_update(weight, grad, mean, var, out=weight, lr=lr * math.sqrt(c2) / c1,
                       beta1=self.beta1, beta2=self.beta2,
                       epsilon=self.epsilon * math.sqrt(c2), wd=0.0,
                       rescale_grad=self.rescale_grad, **options)


def _trainer(model: gluon.Block, recipe: training.Recipe) -> gluon.Trainer:
    """A ``gluon.Trainer`` with the recipe's optimiser.

    * ``"sgd"``: MXNet's ``sgd`` (``nag`` when Nesterov), with ``wd`` coupled
      as L2 regularisation (added to the gradient), as in ``torch.optim.SGD``.
      MXNet keeps the learning rate inside its momentum buffer, so with
      momentum the two agree exactly only while the learning rate is constant
      (as in the classic recipe).
    * ``"adamw"``: :class:`AdamW`, betas (0.9, 0.999) and epsilon 1e-8 as in
      PyTorch and Optax.
    """
    if recipe.optimizer == "sgd":
        name = "nag" if recipe.nesterov else "sgd"
        options = {"learning_rate": recipe.lr, "momentum": recipe.momentum,
                   "wd": recipe.weight_decay}
        return gluon.Trainer(model.collect_params(), name, options, kvstore=None)
    optimizer = AdamW(learning_rate=recipe.lr, wd=recipe.weight_decay)
    return gluon.Trainer(model.collect_params(), optimizer, kvstore=None)


def train(model: GoogLeNet, data, recipe=training.CLASSIC, *, device=None,
          image_size: Optional[int] = None, plot: bool = True,
          progress: bool = True) -> training.History:
    """Train ``model`` on ``data`` (a :class:`~d2l_lite.data.FashionMNIST`) with ``recipe``.

    The model starts from :func:`d2l_lite.reference.xavier_weights` for its
    spec and ``recipe.seed``, so every framework starts from the same point.
    All images go to the device once, as uint8; each batch is gathered,
    scaled to [0, 1] and resized to ``image_size`` (default: the spec's input
    size) there. Loss and accuracy are summed on the device and read once per
    epoch.

    Each step runs inside ``autograd.record()``, i.e. in training mode:
    BatchNorm normalises with the batch's statistics and updates its running
    ones, which evaluation (prediction mode) then uses. With auxiliary heads
    the loss that is minimised is the main head's plus
    ``architecture.AUX_LOSS_WEIGHT`` times each head's; the logged loss is the
    main head's alone, comparable with models without heads.

    ``recipe.compile`` hybridizes the model with ``static_alloc=True,
    static_shape=True``: Gluon turns it into one cached graph with its memory
    planned once. ``recipe.mixed_precision`` changes nothing: MXNet 1.9 has no
    bfloat16 training on GPUs (its bfloat16 is a CPU inference feature), so
    MXNet trains in float32 everywhere, and says so once.

    ``device`` (an ``mx.Context``) defaults to where the model's parameters
    are. Returns a :class:`~d2l_lite.training.History`;
    ``EpochStats.seconds`` is the time of the epoch's training steps (device
    synchronised; graph building included in the first epoch), without the
    evaluation that follows.
    """
    if not isinstance(model, GoogLeNet):
        raise ValueError(f"train takes a GoogLeNet, got {type(model).__name__}")
    if not isinstance(recipe, training.Recipe):
        raise ValueError(f"recipe must be a training.Recipe such as training.CLASSIC, "
                         f"got {type(recipe).__name__}")
    ctx = _context(model) if device is None else device
    image_size = model.spec.input_size if image_size is None else image_size
    if recipe.mixed_precision:
        print("MXNet 1.9 has no bfloat16 training on GPUs: this run uses float32.")
    model.collect_params().reset_ctx(ctx)
    load_weights(model, reference.xavier_weights(model.spec, seed=recipe.seed))
    # hybridize(False) as well: a model hybridized earlier runs eagerly here.
    model.hybridize(active=recipe.compile, static_alloc=True, static_shape=True)
    train_images, train_labels, test_images, test_labels = device_data(data, ctx)
    num_train, num_test = len(data.train_labels), len(data.test_labels)
    batch_size = recipe.batch_size
    steps_per_epoch = training.steps_per_epoch(num_train, batch_size)
    trainer = _trainer(model, recipe)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss(sparse_label=False)
    num_classes, smoothing = model.spec.num_classes, recipe.label_smoothing

    def train_step(index, lr):
        X = prepare_batch(train_images, index, image_size)
        y = nd.take(train_labels, index)
        # Label smoothing: 1 - s + s/K on the true class, s/K on the others.
        target = nd.one_hot(y, num_classes) * (1 - smoothing) + smoothing / num_classes
        with autograd.record():
            y_hat, aux_logits = training.split_aux(model(X))
            loss = loss_fn(y_hat, target)  # one loss per example
            total = loss  # auxiliary heads: their losses join with weight 0.3
            for a in aux_logits:
                total = total + architecture.AUX_LOSS_WEIGHT * loss_fn(a, target)
        total.backward()  # gradients of the sum over the batch
        trainer.set_learning_rate(lr)
        trainer.step(batch_size)  # rescales the gradients by 1 / batch_size
        return loss.sum(), (y_hat.argmax(axis=1) == y).sum()

    # The test set in fixed-size batches: the last one is padded with image 0
    # and masked, so the hybridized graph sees a single shape.
    num_eval = -(-num_test // batch_size) * batch_size
    eval_order = np.arange(num_eval)
    eval_valid = nd.array(eval_order < num_test, ctx=ctx)
    eval_order = nd.array(np.where(eval_order < num_test, eval_order, 0), ctx=ctx,
                          dtype="int32")

    def eval_step(start):
        index = eval_order[start:start + batch_size]
        y_hat = model(prepare_batch(test_images, index, image_size))
        hits = y_hat.argmax(axis=1) == nd.take(test_labels, index)
        return (hits * eval_valid[start:start + batch_size]).sum()

    history = training.History("MXNet", recipe, _device_name(ctx), num_train, num_test)
    live = training.ProgressPlot(f"MXNet, {recipe.name} recipe", recipe.num_epochs,
                                 enabled=None if plot else False)
    for epoch in range(recipe.num_epochs):
        orders = np.stack(list(minibatch_indices(
            num_train, batch_size, shuffle=True, seed=recipe.seed, epoch=epoch,
            drop_last=True)))  # steps_per_epoch x batch_size, one copy per epoch
        orders = nd.array(orders, ctx=ctx, dtype="int32")
        loss_sum = nd.zeros((1,), ctx=ctx)
        correct_sum = nd.zeros((1,), ctx=ctx)
        bar = training.batch_progress(steps_per_epoch, epoch + 1, recipe.num_epochs,
                                      enabled=progress)
        step_times: List[float] = []
        previous = None
        nd.waitall()
        timer = training.Timer()
        for i in range(steps_per_epoch):
            lr = training.learning_rate(recipe, epoch * steps_per_epoch + i, steps_per_epoch)
            start = training.Timer()
            loss, correct = train_step(orders[i], lr)
            loss_sum += loss
            correct_sum += correct
            if recipe.compile and epoch == 0 and i < 4:  # for compile_seconds
                nd.waitall()
                step_times.append(start.elapsed())
            # MXNet runs operations asynchronously: wait for the previous
            # step's loss, so Python queues at most a step or two ahead of the
            # device and the progress bar tells the truth. Nothing is copied.
            if previous is not None:
                previous.wait_to_read()
            previous = loss
            bar.update(1)
        nd.waitall()
        seconds = timer.elapsed()
        bar.close()
        test_correct = nd.zeros((1,), ctx=ctx)
        eval_times: List[float] = []
        for start_index in range(0, num_eval, batch_size):
            start = training.Timer()
            test_correct += eval_step(start_index)
            if recipe.compile and epoch == 0 and start_index < 2 * batch_size:
                nd.waitall()
                eval_times.append(start.elapsed())
        if recipe.compile and epoch == 0:
            history.compile_seconds = (training.compile_seconds(step_times)
                                       + training.compile_seconds(eval_times))
        seen = steps_per_epoch * batch_size
        history.epochs.append(training.EpochStats(
            epoch=epoch + 1, train_loss=loss_sum.asscalar() / seen,
            train_acc=correct_sum.asscalar() / seen,
            test_acc=test_correct.asscalar() / num_test,
            seconds=seconds, images_per_sec=seen / seconds))
        live.update(history)
    return history


# FLOPs and timing ----------------------------------------------------------------

def count_flops(model_or_block: gluon.Block, input_shape: Sequence[int]) -> int:
    """FLOPs of one forward pass on an ``input_shape`` batch, counted from the layers.

    MXNet 1.9 has no FLOP counter (and this build no profiler). So this runs
    one forward pass with a forward hook on every ``Conv2D`` and ``Dense``
    (but those of auxiliary heads, which do not run at inference)
    and counts, from the shapes MXNet actually produced, 2 FLOPs per
    multiply-accumulate: a layer's output elements times the weights that feed
    one output (``weight.shape[1:]``: input channels x kernel area, or input
    features). Bias additions, ReLU, pooling and concatenation count zero,
    the convention of ``torch.utils.flop_counter``.

    This checks MXNet's shapes with the analytic formula; it is not an
    independent counter. The block must be built (initialised and run once)
    and not hybridized: a hybridized block runs one cached graph, and the
    hooks of its layers never fire.
    """
    if len(input_shape) != 4:
        raise ValueError(f"input_shape must be N x C x H x W, e.g. (1, 192, 28, 28), "
                         f"got {tuple(input_shape)}")
    macs: List[int] = []
    layers: List[gluon.Block] = []

    def hook(block, inputs, output):
        weight = block.weight.shape  # Conv2D: (O, I, kh, kw); Dense: (O, I)
        fan_in = int(np.prod(inputs[0].shape[1:])) if isinstance(block, nn.Dense) \
            else inputs[0].shape[1]
        if weight[1] != fan_in:  # the shape MXNet ran must be the one it stores
            raise AssertionError(f"{block.name}: input {inputs[0].shape} does not fit "
                                 f"weight {weight}")
        macs.append(output.size * int(np.prod(weight[1:])))

    heads: List[gluon.Block] = []  # auxiliary heads do not run at inference
    model_or_block.apply(lambda b: heads.append(b) if isinstance(b, AuxHead) else None)
    skip = {id(b) for head in heads for b in _blocks(head)}
    model_or_block.apply(lambda b: layers.append(b) if isinstance(b, (nn.Conv2D, nn.Dense))
                         and id(b) not in skip else None)
    handles = [layer.register_forward_hook(hook) for layer in layers]
    try:
        with autograd.predict_mode():
            model_or_block(nd.zeros(tuple(input_shape), ctx=_context(model_or_block)))
    finally:
        for handle in handles:
            handle.detach()
    if len(macs) != len(layers):
        raise ValueError(f"{len(macs)} of {len(layers)} Conv2D/Dense layers ran through "
                         f"their hooks: is the block hybridized? Call "
                         f"block.hybridize(False) before counting.")
    return 2 * sum(macs)


def _blocks(block: gluon.Block) -> List[gluon.Block]:
    """``block`` and all its descendants."""
    found: List[gluon.Block] = []
    block.apply(found.append)
    return found


def expected_flops(spec_or_block, input_size=None) -> int:
    """What :func:`count_flops` should report for one image (a batch of 1).

    The hooks count exactly the multiply-accumulates of the analytic counter,
    twice: ``2 x counting.total_macs``. ``spec_or_block`` is a
    :class:`~d2l_lite.architecture.GoogLeNetSpec` (``input_size``: the image
    side, default the spec's) or an :class:`~d2l_lite.architecture.Inception`
    (``input_size``: its input as ``(channels, height, width)``).
    """
    return counting.analytic_flops(spec_or_block, input_size)


def time_forward(model_or_block: gluon.HybridBlock, input_shape: Sequence[int],
                 repeats: int = 10, warmup: int = 2) -> float:
    """Median seconds of one forward pass on an ``input_shape`` batch.

    Gluon's fast inference path: the block is hybridized with
    ``static_alloc=True, static_shape=True`` (and left so) and runs without
    recording gradients, on its parameters' device. ``warmup`` passes run
    first (they build the cached graph and plan its memory); every timed pass
    ends with ``nd.waitall()``, since MXNet runs operations asynchronously.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}")
    X = nd.random.uniform(shape=tuple(input_shape), ctx=_context(model_or_block))
    model_or_block.hybridize(static_alloc=True, static_shape=True)
    times = []
    for i in range(warmup + repeats):
        nd.waitall()
        timer = training.Timer()
        model_or_block(X)
        nd.waitall()
        if i >= warmup:
            times.append(timer.elapsed())
    return statistics.median(times)
