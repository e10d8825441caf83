"""Training in MXNet: the device, data on it, batches, optimisers and :func:`train`,
the book's trainer (:func:`d2l_lite.training.fit` with the page's ``train_step``)."""

from __future__ import annotations

import math
import subprocess
from typing import Tuple

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd

from .. import architecture, reference, runtime, training
from ..data import pixel_scale
from .book import GoogLeNet, train_step
from .model import load_weights


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


def device_data(data, ctx: mx.Context) -> Tuple[nd.NDArray, ...]:
    """Images (uint8) and labels (float32, as Gluon's losses use) on ``ctx``, once."""
    arrays = (data.train_images, data.train_labels, data.test_images, data.test_labels)
    return tuple(nd.array(a, ctx=ctx, dtype="uint8" if a.ndim == 3 else "float32") for a in arrays)


def prepare_batch(images: nd.NDArray, index: nd.NDArray, image_size: int = 96) -> nd.NDArray:
    """``images[index]`` as a float32 ``B x 1 x S x S`` batch in [0, 1] (uint8 divided
    by 255, float as it is: ``pixel_scale``), resized at pixel centres like PyTorch's
    ``F.interpolate`` (MXNet's default does not)."""
    X = nd.take(images, index).astype("float32").expand_dims(1)  # B x 1 x 28 x 28
    X = X / pixel_scale(images.dtype)
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


class Nesterov(mx.optimizer.Optimizer):
    """``torch.optim.SGD(nesterov=True)``: MXNet's ``nag`` adds the weight decay to the
    momentum but leaves it out of the step's own gradient term."""

    def __init__(self, momentum: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.momentum = momentum

    def create_state(self, index, weight):
        return nd.zeros_like(weight)

    def update(self, index, weight, grad, state):
        self._update_count(index)  # the underscored helpers: as in AdamW.update
        d = grad * self.rescale_grad + self._get_wd(index) * weight
        state[:] = self.momentum * state + d
        weight[:] -= self._get_lr(index) * (d + self.momentum * state)


def make_optimizer(recipe: training.Recipe, params) -> gluon.Trainer:
    """The recipe's optimiser over ``params``, in the ``gluon.Trainer`` that applies
    it: ``sgd`` with coupled ``wd`` (torch's SGD only at a constant rate: MXNet keeps
    the rate in its momentum buffer), :class:`Nesterov`, or :class:`AdamW`."""
    if recipe.optimizer == "sgd" and recipe.nesterov:
        optimizer = Nesterov(learning_rate=recipe.lr, momentum=recipe.momentum,
                             wd=recipe.weight_decay)
    elif recipe.optimizer == "sgd":
        optimizer = mx.optimizer.create("sgd", learning_rate=recipe.lr,
                                        momentum=recipe.momentum, wd=recipe.weight_decay)
    else:
        optimizer = AdamW(learning_rate=recipe.lr, wd=recipe.weight_decay)
    return gluon.Trainer(params, optimizer, kvstore=None)


def train(model: GoogLeNet, data, recipe=training.CLASSIC, *,
          spec: architecture.GoogLeNetSpec = architecture.BOOK, device=None,
          image_size=None, plot: bool = True, progress: bool = True) -> training.History:
    """Train ``model`` (of ``spec``) from :func:`d2l_lite.reference.xavier_weights` with
    :func:`train_step` on :func:`d2l_lite.training.fit`; ``recipe.compile`` hybridizes.
    ``device``: by default the first GPU if there is one, as in the other three."""
    training.check_recipe(recipe)
    ctx = device or (mx.gpu(0) if mx.context.num_gpus() > 0 else mx.cpu())
    size = image_size or spec.input_size
    if recipe.mixed_precision:
        print("MXNet: float32 instead of bfloat16 (MXNet 1.9 has no bfloat16 training).")
    model.collect_params().reset_ctx(ctx)
    set_seed(recipe.seed)
    load_weights(model, reference.xavier_weights(spec, seed=recipe.seed))
    # hybridize(False) as well: a model hybridized earlier runs eagerly here.
    model.hybridize(active=recipe.compile, static_alloc=True, static_shape=True)
    train_X, train_y, test_X, _ = device_data(data, ctx)
    trainer = make_optimizer(recipe, model.collect_params())
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
