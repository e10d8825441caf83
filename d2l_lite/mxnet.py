"""GoogLeNet in MXNet Gluon 1.9 (``from d2l_lite import mxnet as d2l``): the code the
chapters save here (d2l's ``#@save``), then the helpers every framework module names
alike. MXNet's layouts (NCHW, OIHW, dense ``(out, in)``) are canonical: no transposes."""

from __future__ import annotations

import atexit
import functools
import math
import os
import subprocess
import sys
import threading
from typing import Dict, List, Sequence, Tuple

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd
from mxnet.gluon import nn
from mxnet.gluon.contrib.nn import SyncBatchNorm

from . import architecture, counting, reference, runtime, tables, training


def try_gpu() -> mx.Context:
    """Return the first GPU if there is one, else the CPU; say which."""
    is_gpu = mx.context.num_gpus() > 0
    device = mx.gpu(0) if is_gpu else mx.cpu()
    print(runtime.device_notice("MXNet", is_gpu, str(device)))
    return device


def set_seed(seed: int) -> None:
    """Seed MXNet's random generators (initialisers, dropout) and NumPy's."""
    mx.random.seed(seed)
    np.random.seed(seed)


# The Inception chapter -----------------------------------------------------------
def conv_relu(channels, kernel_size, stride=1, padding=0):
    """A convolution and its ReLU, GoogLeNet's building brick."""
    return nn.Conv2D(channels, kernel_size, stride, padding,
                     activation="relu")


class Inception(nn.HybridBlock):
    """Four branches on the same input, concatenated on channels; the
    widths are the columns of the paper's Table 1."""
    def __init__(self, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj,
                 conv=conv_relu, **kwargs):
        super().__init__(**kwargs)
        self.branch1 = nn.HybridSequential()
        self.branch1.add(conv(ch1x1, 1))
        self.branch2 = nn.HybridSequential()
        self.branch2.add(conv(ch3x3red, 1), conv(ch3x3, 3, padding=1))
        self.branch3 = nn.HybridSequential()
        self.branch3.add(conv(ch5x5red, 1), conv(ch5x5, 5, padding=2))
        self.branch4 = nn.HybridSequential()
        self.branch4.add(nn.MaxPool2D(3, strides=1, padding=1),
                         conv(pool_proj, 1))

    def hybrid_forward(self, F, x):
        # N x C x H x W -> N x (ch1x1 + ch3x3 + ch5x5 + pool_proj) x H x W
        return F.concat(self.branch1(x), self.branch2(x),
                        self.branch3(x), self.branch4(x), dim=1)


# The GoogLeNet chapter -----------------------------------------------------------
def max_pool():
    """The 3x3, stride-2 max pool that halves the map between stages."""
    return nn.MaxPool2D(3, strides=2, padding=1)  # pads with -inf


class GoogLeNet(nn.HybridBlock):
    """GoogLeNet: stem (b1, b2), body of Inception blocks (b3, b4, b5) and
    head. ``conv`` makes every convolution, ``block`` every Inception."""
    def __init__(self, num_classes=10, conv=conv_relu, block=Inception,
                 **kwargs):
        super().__init__(**kwargs)
        self.conv, self.block = conv, block
        self.stem = nn.HybridSequential()
        self.stem.add(self.b1(), self.b2())
        self.body = nn.HybridSequential()
        self.body.add(self.b3(), self.b4(), self.b5())
        self.head = nn.HybridSequential()  # Dense flattens its input
        self.head.add(nn.GlobalAvgPool2D(), nn.Dense(num_classes))

    def b1(self):  # N x 1 x 96 x 96 -> N x 64 x 24 x 24
        net = nn.HybridSequential()
        net.add(self.conv(64, 7, stride=2, padding=3), max_pool())
        return net

    def b2(self):  # -> N x 192 x 12 x 12
        net = nn.HybridSequential()
        net.add(self.conv(64, 1), self.conv(192, 3, padding=1), max_pool())
        return net

    def b3(self):  # -> N x 480 x 6 x 6
        net, B, c = nn.HybridSequential(), self.block, self.conv
        net.add(B(64, 96, 128, 16, 32, 32, c),
                B(128, 128, 192, 32, 96, 64, c), max_pool())
        return net

    def b4(self):  # -> N x 832 x 3 x 3
        net, B, c = nn.HybridSequential(), self.block, self.conv
        net.add(B(192, 96, 208, 16, 48, 64, c),
                B(160, 112, 224, 24, 64, 64, c),
                B(128, 128, 256, 24, 64, 64, c),
                B(112, 144, 288, 32, 64, 64, c),
                B(256, 160, 320, 32, 128, 128, c), max_pool())
        return net

    def b5(self):  # -> N x 1024 x 3 x 3
        net, B, c = nn.HybridSequential(), self.block, self.conv
        net.add(B(256, 160, 320, 32, 128, 128, c),
                B(384, 192, 384, 48, 128, 128, c))
        return net

    def hybrid_forward(self, F, x):  # head: N x 1024 x 3 x 3 -> N x 10
        return self.head(self.body(self.stem(x)))


# The FLOPs chapter ---------------------------------------------------------------
class NaiveInception(Inception):
    """Inception without the 1x1 reductions: the 3x3 and 5x5 convolutions
    read every input channel (``ch3x3red`` and ``ch5x5red`` go unused)."""
    def __init__(self, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj,
                 conv=conv_relu, **kwargs):
        super().__init__(ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5,
                         pool_proj, conv, **kwargs)
        self.branch2 = nn.HybridSequential()
        self.branch2.add(conv(ch3x3, 3, padding=1))
        self.branch3 = nn.HybridSequential()
        self.branch3.add(conv(ch5x5, 5, padding=2))


# The variants chapter ------------------------------------------------------------
def conv_bn_relu(channels, kernel_size, stride=1, padding=0):
    """Conv-BN-ReLU. The convolution has no bias (BatchNorm's shift does
    its job); Gluon's momentum is the weight of the old statistics."""
    net = nn.HybridSequential()
    net.add(nn.Conv2D(channels, kernel_size, stride, padding,
                      use_bias=False),
            nn.BatchNorm(momentum=1 - architecture.BN_MOMENTUM,
                         epsilon=architecture.BN_EPS),
            nn.Activation("relu"))
    return net


class FactorizedInception(Inception):
    """Inception-v3's factorisation: branch 3's 5x5 convolution becomes two
    3x3 convolutions, which see the same 5x5 window."""
    def __init__(self, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj,
                 conv=conv_relu, **kwargs):
        super().__init__(ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5,
                         pool_proj, conv, **kwargs)
        self.branch3 = nn.HybridSequential()
        self.branch3.add(conv(ch5x5red, 1), conv(ch5x5red, 3, padding=1),
                         conv(ch5x5, 3, padding=1))


class ResidualInception(Inception):
    """The block plus a shortcut, as in ResNet: ReLU(branches(x) + a
    1x1 convolution of x to the block's width), no ReLU on the shortcut."""
    def __init__(self, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj,
                 conv=conv_relu, **kwargs):
        super().__init__(ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5,
                         pool_proj, conv, **kwargs)
        width = ch1x1 + ch3x3 + ch5x5 + pool_proj
        self.shortcut = nn.Conv2D(width, 1)  # linear

    def hybrid_forward(self, F, x):
        y = super().hybrid_forward(F, x)
        return F.relu(y + self.shortcut(x))


def aux_head(num_classes, conv=conv_relu):
    """An auxiliary classifier of the paper (used in training only)."""
    net = nn.HybridSequential()
    net.add(nn.AvgPool2D(5, strides=3), conv(128, 1),  # 6x6 map -> 1x1
            nn.Dense(1024, activation="relu"),  # flattens first
            nn.Dropout(0.7), nn.Dense(num_classes))
    return net


class GoogLeNetAux(GoogLeNet):
    """GoogLeNet with two auxiliary classifiers, after inception4a and 4d.
    Training mode returns ``(logits, (aux1_logits, aux2_logits))``."""
    def __init__(self, num_classes=10, conv=conv_relu, block=Inception,
                 **kwargs):
        super().__init__(num_classes, conv, block, **kwargs)
        self.aux1 = aux_head(num_classes, conv)
        self.aux2 = aux_head(num_classes, conv)

    def hybrid_forward(self, F, x):
        if not autograd.is_training():  # inference: the heads rest
            return super().hybrid_forward(F, x)
        b3, b4, b5 = self.body
        x = b4[0](b3(self.stem(x)))  # inception4a
        aux1 = self.aux1(x)
        x = b4[3](b4[2](b4[1](x)))  # inception4b, 4c, 4d
        aux2 = self.aux2(x)
        x = b5(b4[5](b4[4](x)))  # inception4e, max pool, b5
        return self.head(x), (aux1, aux2)

    def hybridize(self, active=True, **kwargs):
        # A cached graph fixes its outputs once, but ours depend on the
        # mode: the parts run as cached graphs, this block eagerly.
        for part in self.stem, self.body, self.head, self.aux1, self.aux2:
            part.hybridize(active, **kwargs)


class SmallStemGoogLeNet(GoogLeNet):
    """GoogLeNet for 28x28 images: b1 is one 3x3 convolution with stride
    1 and no max pool, so the body sees a 14x14 map, not a 4x4 one."""
    def b1(self):  # N x 1 x 28 x 28 -> N x 64 x 28 x 28
        net = nn.HybridSequential()
        net.add(self.conv(64, 3, padding=1))
        return net


# Where the spec meets the model ------------------------------------------------
def googlenet(spec: architecture.GoogLeNetSpec = architecture.BOOK,
              ctx: mx.Context | None = None) -> GoogLeNet:
    """The textbook model of ``spec`` on ``ctx`` (CPU), Xavier-initialised and shaped by
    one zero batch, with fresh BatchNorm statistics."""
    block, net = (globals()[name]  # the same class names in every framework
                  for name in architecture.textbook_classes(spec))
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
    """:func:`d2l_lite.counting.stage_rows` measured: (stage, C x H x W, parameters)."""
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


def load_weights(model: gluon.Block, weights: Dict[str, np.ndarray]) -> gluon.Block:
    """Copy canonical weights into ``model`` as they are; return it. ``collect_params``
    keeps the order of :func:`d2l_lite.reference.ordered` once state goes last."""
    params, state = reference.ordered(weights)
    mine = sorted(model.collect_params().values(),  # stable: state last
                  key=lambda p: p.grad_req == "null")
    names, values = zip(*(params + state))
    reference.check_shapes(list(names), [v.shape for v in values],
                           [p.shape for p in mine], "MXNet")
    for value, param in zip(values, mine):
        param.set_data(nd.array(value, dtype="float32"))
    return model


def logits(model: gluon.Block, X: np.ndarray) -> np.ndarray:
    """NumPy logits of an NCHW float32 NumPy batch, at inference (no aux heads)."""
    with autograd.predict_mode():
        out = model(nd.array(np.asarray(X, np.float32), ctx=_context(model)))
    return out.asnumpy().astype(np.float32)


# Training --------------------------------------------------------------------------
def device_data(data, ctx: mx.Context) -> Tuple[nd.NDArray, ...]:
    """Images (uint8) and labels (float32, as Gluon's losses use) on ``ctx``, once."""
    arrays = (data.train_images, data.train_labels, data.test_images, data.test_labels)
    return tuple(nd.array(a, ctx=ctx, dtype="uint8" if a.ndim == 3 else "float32") for a in arrays)


def prepare_batch(images: nd.NDArray, index: nd.NDArray, image_size: int = 96) -> nd.NDArray:
    """``images[index]`` as a float32 ``B x 1 x S x S`` batch in [0, 1], resized at pixel
    centres like PyTorch's ``F.interpolate`` (MXNet's default does not)."""
    X = nd.take(images, index).astype("float32").expand_dims(1) / 255  # B x 1 x 28 x 28
    return nd.contrib.BilinearResize2D(X, height=image_size, width=image_size,
                                       align_corners=False)


def _device_name(ctx: mx.Context) -> str:
    """"cpu", or the GPU's name from ``nvidia-smi`` (MXNet has no call for it)."""
    if ctx.device_type != "gpu":
        return "cpu"
    query = "nvidia-smi --query-gpu=name --format=csv,noheader -i".split() + [str(ctx.device_id)]
    return subprocess.run(query, capture_output=True, text=True).stdout.strip() or str(ctx)


class AdamW(mx.optimizer.Optimizer):
    """``torch.optim.AdamW`` (MXNet 1.9.1 has none) from ``nd.contrib.adamw_update``,
    bias-corrected by ``lr * sqrt(c2) / c1`` and ``eps * sqrt(c2)`` (``ci = 1 - beta_i**t``);
    MXNet's ``adam`` corrects only the rate, making epsilon 30 times larger at first."""

    def __init__(self, learning_rate: float = 0.001, beta1: float = 0.9,
                 beta2: float = 0.999, epsilon: float = 1e-8, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon

    def create_state(self, index, weight):
        return nd.zeros_like(weight), nd.zeros_like(weight)  # mean, variance

    def update(self, index, weight, grad, state):
        # Optimizer's underscored helpers are MXNet 1.9's only way for a
        # custom optimiser to count steps and read lr and wd (built-ins use them).
        self._update_count(index)
        lr, wd = self._get_lr(index), self._get_wd(index)
        t = self._index_update_count[index]
        c1, c2 = 1 - self.beta1 ** t, 1 - self.beta2 ** t
        mean, var = state  # w -= eta * (lr * m / (sqrt(v) + eps) + wd * w)
        nd.contrib.adamw_update(
            weight, grad, mean, var, self.rescale_grad, out=weight, eta=1.0,
            lr=lr * math.sqrt(c2) / c1, wd=lr * wd, beta1=self.beta1,
            beta2=self.beta2, epsilon=self.epsilon * math.sqrt(c2),
            clip_gradient=self.clip_gradient or -1)


def _trainer(model: gluon.Block, recipe: training.Recipe) -> gluon.Trainer:
    """A ``gluon.Trainer``: ``sgd`` (``nag``) with coupled ``wd`` (torch's SGD only at a
    constant rate: MXNet keeps the rate in its momentum buffer), or :class:`AdamW`."""
    if recipe.optimizer == "sgd":
        optimizer = mx.optimizer.create("nag" if recipe.nesterov else "sgd",
                                        learning_rate=recipe.lr, momentum=recipe.momentum,
                                        wd=recipe.weight_decay)
    else:
        optimizer = AdamW(learning_rate=recipe.lr, wd=recipe.weight_decay)
    return gluon.Trainer(model.collect_params(), optimizer, kvstore=None)


def train_step(model, trainer, loss_fn, X, y, target):
    """One Gluon training step; returns the batch's mean loss and hits."""
    with autograd.record():  # training mode: batch statistics, dropout
        y_hat, aux_logits = training.split_aux(model(X))
        loss = loss_fn(y_hat, target)  # one loss per example
        aux_loss = sum(loss_fn(a, target) for a in aux_logits)  # variants
        total = loss + architecture.AUX_LOSS_WEIGHT * aux_loss
    total.backward()  # gradients of the sum over the batch
    trainer.step(X.shape[0])  # divides the gradients by the batch size
    return loss.mean(), (y_hat.argmax(axis=1) == y).sum()


def train(model: GoogLeNet, data, recipe=training.CLASSIC, *,
          spec: architecture.GoogLeNetSpec = architecture.BOOK, device=None,
          image_size=None, plot: bool = True, progress: bool = True) -> training.History:
    """Train ``model`` (of ``spec``) from :func:`d2l_lite.reference.xavier_weights` with
    :func:`train_step` on :func:`d2l_lite.training.fit`; ``recipe.compile`` hybridizes."""
    training.check_recipe(recipe)
    ctx = _context(model) if device is None else device
    size = image_size or spec.input_size
    if recipe.mixed_precision:
        print("MXNet 1.9 has no bfloat16 training on GPUs: this run uses float32.")
    model.collect_params().reset_ctx(ctx)
    set_seed(recipe.seed)
    load_weights(model, reference.xavier_weights(spec, seed=recipe.seed))
    # hybridize(False) as well: a model hybridized earlier runs eagerly here.
    model.hybridize(active=recipe.compile, static_alloc=True, static_shape=True)
    train_X, train_y, test_X, _ = device_data(data, ctx)
    trainer = _trainer(model, recipe)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss(sparse_label=False)
    classes, smoothing = spec.num_classes, recipe.label_smoothing
    previous = [nd.zeros((1,), ctx=ctx)]

    def step(index, lr):
        y = nd.take(train_y, index)
        # Label smoothing: 1 - s + s/K on the true class, s/K on the others.
        target = nd.one_hot(y, classes) * (1 - smoothing) + smoothing / classes
        trainer.set_learning_rate(lr)
        loss, hits = train_step(model, trainer, loss_fn,
                                prepare_batch(train_X, index, size), y, target)
        # MXNet runs asynchronously: wait for the previous step, so Python
        # queues at most a step ahead and the progress bar tells the truth.
        previous.pop().wait_to_read()
        previous.append(loss)
        return loss, hits

    def eval_step(index):
        with autograd.predict_mode():
            return model(prepare_batch(test_X, index, size)).argmax(axis=1)

    return training.fit(
        "MXNet", recipe, _device_name(ctx), len(data.train_labels),
        data.test_labels, step, eval_step,
        to_device=lambda a: nd.array(a, ctx=ctx, dtype="int32"), sync=nd.waitall,
        to_numpy=lambda x: x.asnumpy(), compiled=recipe.compile,
        plot=plot, progress=progress)


# FLOPs and timing ----------------------------------------------------------------
def count_flops(model_or_block: gluon.Block, input_shape: Sequence[int]) -> int:
    """FLOPs of one forward pass. MXNet 1.9 has no counter: hooks on every ``Conv2D`` and
    ``Dense`` (not the idle aux heads') apply the analytic formula to the shapes MXNet
    ran, 2 x outputs x ``weight.shape[1:]``. The block must not be hybridized."""
    if len(input_shape) != 4:
        raise ValueError(f"input_shape must be N x C x H x W, got {tuple(input_shape)}")
    macs, layers = [], []

    def hook(block, inputs, output):
        weight = block.weight.shape  # Conv2D: (O, I, kh, kw); Dense: (O, I)
        fan_in = inputs[0][0].size if isinstance(block, nn.Dense) else inputs[0].shape[1]
        assert weight[1] == fan_in, (block.name, inputs[0].shape, weight)
        macs.append(output.size * int(np.prod(weight[1:])))

    net = model_or_block
    for part in [net.stem, net.body, net.head] if hasattr(net, "head") else [net]:
        part.apply(lambda b: layers.append(b) if isinstance(b, (nn.Conv2D, nn.Dense))
                   else None)
    handles = [layer.register_forward_hook(hook) for layer in layers]
    try:
        with autograd.predict_mode():
            model_or_block(nd.zeros(tuple(input_shape), ctx=_context(model_or_block)))
    finally:
        for handle in handles:
            handle.detach()
    if len(macs) != len(layers):
        raise ValueError(f"{len(macs)} of {len(layers)} layers ran their hooks: is the "
                         f"block hybridized? Call block.hybridize(False) first.")
    return 2 * sum(macs)


#: What :func:`count_flops` reports for one image: 2 x the analytic MACs.
expected_flops = counting.analytic_flops


def time_forward(model_or_block: gluon.HybridBlock, input_shape: Sequence[int],
                 repeats: int = 10, warmup: int = 2) -> float:
    """Median seconds of a forward pass, hybridized (and left so), after ``warmup``
    passes that build the cached graph; ``nd.waitall()`` (MXNet runs asynchronously)."""
    X = nd.random.uniform(shape=tuple(input_shape), ctx=_context(model_or_block))
    model_or_block.hybridize(static_alloc=True, static_shape=True)
    return training.median_seconds(lambda: model_or_block(X), repeats, warmup, nd.waitall)


# Data parallelism ------------------------------------------------------------------

#: The variables a ``dist_*`` kvstore reads, set by MXNet's launcher or by hand.
DMLC_VARIABLES = ("DMLC_ROLE", "DMLC_PS_ROOT_URI", "DMLC_PS_ROOT_PORT",
                  "DMLC_NUM_SERVER", "DMLC_NUM_WORKER")


def train_step_parallel(model, trainer, loss_fn, X, y, ctxs,
                        num_workers=1, timeout_s=120):
    """One data-parallel step: the batch split over ``ctxs``, forward and
    backward on each device, then ``trainer.step``: its kvstore sums the
    gradients of all devices and every copy gets the same update."""
    X_parts = gluon.utils.split_and_load(X, ctxs)  # a slice per device
    y_parts = gluon.utils.split_and_load(y, ctxs)
    with autograd.record():
        losses = [loss_fn(model(X_i), y_i)
                  for X_i, y_i in zip(X_parts, y_parts)]
    for loss in losses:  # queued at once: the devices run in parallel
        loss.backward()
    # kvstore: sum over devices (and workers); divide by the global batch
    trainer.step(X.shape[0] * num_workers)
    wait_for_devices(timeout_s)  # a device stuck: an error, not a hang
    return sum(loss.sum().asscalar() for loss in losses) / X.shape[0]


def conv_sync_bn_relu(channels, kernel_size, stride=1, padding=0,
                      num_devices=2):
    """Conv-BN-ReLU whose BatchNorm normalises with the statistics of
    the batch on all ``num_devices`` devices together."""
    net = nn.HybridSequential()
    net.add(nn.Conv2D(channels, kernel_size, stride, padding,
                      use_bias=False),
            SyncBatchNorm(num_devices=num_devices,
                          momentum=1 - architecture.BN_MOMENTUM,
                          epsilon=architecture.BN_EPS),
            nn.Activation("relu"))
    return net


def sync_bn_googlenet(ctxs, num_classes=10):
    """The BatchNorm GoogLeNet with SyncBatchNorm, on ``ctxs``. One zero
    batch in inference mode gives the parameters their shapes (training
    mode would wait for the other devices' statistics)."""
    conv = functools.partial(conv_sync_bn_relu, num_devices=len(ctxs))
    model = GoogLeNet(num_classes, conv, Inception)
    model.initialize(mx.init.Xavier(), ctx=ctxs)
    with autograd.predict_mode():  # running statistics: no peers
        model(nd.zeros((1, 1, 96, 96), ctx=ctxs[0]))
    return model


def _exit_now() -> None:
    """Flush and end the process at once, skipping MXNet's shutdown."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


def _finish_within(work, timeout_s: float, what: str, causes: Sequence[str]):
    """``work()``'s result, or a ``TimeoutError`` naming ``causes`` past ``timeout_s``."""
    result, errors, done = [], [], threading.Event()

    def run():
        try:
            result.append(work())
        except BaseException as error:  # raised again in the caller's thread
            errors.append(error)
        finally:
            done.set()

    threading.Thread(target=run, daemon=True).start()
    if not done.wait(timeout_s):
        # MXNet has no call to cancel queued work, and its shutdown waits for
        # all of it; atexit runs the last handler registered first.
        atexit.register(_exit_now)
        raise TimeoutError(
            f"{what} did not finish within {timeout_s:g} s. Likely causes:\n"
            + "".join(f" * {cause}\n" for cause in causes)
            + "The stuck work cannot be cancelled: fix the cause, then restart "
              "the kernel (a script stops by itself, with exit status 1).")
    if errors:
        raise errors[0]
    return result[0]


def wait_for_devices(timeout_s: float = 120) -> None:
    """``nd.waitall()`` with a deadline. MXNet queues work and runs it
    asynchronously; a collective whose peer never comes would make
    ``nd.waitall`` wait for ever, so past ``timeout_s`` this raises."""
    _finish_within(nd.waitall, timeout_s, "MXNet's queued work", (
        "SyncBatchNorm(num_devices=N) waits for N devices in every forward "
        "and backward pass: give data to exactly N devices",
        "on CPU devices, operators of all devices share MXNET_CPU_TEMP_COPY "
        "scratch buffers (4 by default) and run in the order queued, which "
        "turns SyncBatchNorm's wait into a cycle: set the variable to 1024 "
        "before mxnet is imported",
        "with a dist kvstore, a worker, server or the scheduler stopped: "
        "see its log"))


def dist_kvstore(kind: str = "dist_sync", timeout_s: float = 120) -> mx.kv.KVStore:
    """``mx.kv.create(kind)`` for a worker of a multi-machine job, with a deadline:
    the worker waits for the scheduler at ``DMLC_PS_ROOT_URI:DMLC_PS_ROOT_PORT``
    and, if none answers, would wait for ever; past ``timeout_s`` this raises."""
    missing = [v for v in DMLC_VARIABLES if not os.environ.get(v)]
    if missing:
        raise RuntimeError(
            f"a {kind} kvstore needs the environment variables "
            f"{', '.join(DMLC_VARIABLES)}, which MXNet's launcher (or you) "
            f"sets for every process; unset here: {', '.join(missing)}")
    where = f"{os.environ['DMLC_PS_ROOT_URI']}:{os.environ['DMLC_PS_ROOT_PORT']}"
    return _finish_within(lambda: mx.kv.create(kind), timeout_s, (
        f"Joining the {kind} job (scheduler at {where}, "
        f"{os.environ['DMLC_NUM_SERVER']} servers, "
        f"{os.environ['DMLC_NUM_WORKER']} workers)"), (
        "the scheduler is not running, or not at that address and port, "
        "or a firewall blocks the port",
        "not every server and worker started, with the same DMLC_* values"))
