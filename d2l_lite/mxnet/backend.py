"""MXNet behind :class:`d2l_lite.backend.Backend`: the page-level functions adapted to
the one contract (NCHW NumPy in, neutral weight names, one image's FLOPs)."""

from __future__ import annotations

import mxnet as mx
from mxnet import autograd, gluon, nd

from .. import processes
from ..data import pixel_scale
from . import flops, model as models, parallel
from .book import train_step
from .train import make_optimizer, prepare_batch
from .train import train  # the package's name "train" is this function


def _shape(spec):
    """One ``spec.input_size`` image, N x C x H x W."""
    return (1, spec.in_channels, spec.input_size, spec.input_size)


class MXNetBackend:
    """MXNet 1.9's Gluon. Several CPU contexts live in one process, so the data-parallel
    step runs here, in float64 (Gluon's plain layers and kvstore take it on a CPU)."""
    name, title, parallel_dtype = "mxnet", "MXNet", "float64"

    build = staticmethod(models.googlenet)  # (spec): Xavier weights, inference mode
    count_parameters = staticmethod(models.count_parameters)
    load_weights = staticmethod(models.load_weights)  # by name: MXNet's layouts are neutral
    get_weights = staticmethod(models.get_weights)
    logits = staticmethod(models.logits)  # NCHW NumPy in, float32 NumPy out

    def stage_rows(self, model, spec):
        return models.stage_rows(model, _shape(spec))

    def tensor_names(self, model):
        return {name: param.name for name, param in models.tensors(model).items()}

    def count_flops(self, model, spec):
        return flops.count_flops(model, _shape(spec))

    def prepare_batch(self, images, image_size):
        pixel_scale(images.dtype)  # the contract's error, also for what MXNet lacks (uint16)
        index = nd.arange(len(images), dtype="int32")
        return prepare_batch(nd.array(images, dtype=images.dtype), index, image_size).asnumpy()

    def optimizer_steps(self, recipe, weights, grads, rates):
        w = gluon.Parameter("w", shape=weights.shape)
        w.initialize()
        w.set_data(nd.array(weights))
        trainer = make_optimizer(recipe, [w])
        for grad, rate in zip(grads, rates):
            with autograd.record():  # a loss whose gradient is ``grad``
                loss = (w.data() * nd.array(grad)).sum()
            loss.backward()
            trainer.set_learning_rate(rate)  # as the trainer's step does
            trainer.step(1)  # the gradient as it is (a batch of one)
        return w.data().asnumpy()

    def train_step(self, model, X, y, lr):
        ctx = models._context(model)
        trainer = gluon.Trainer(model.collect_params(), "sgd", {"learning_rate": lr},
                                kvstore=None)  # plain SGD: no state across calls
        y = nd.array(y, ctx=ctx, dtype="float32")
        loss, _ = train_step(model, trainer, gluon.loss.SoftmaxCrossEntropyLoss(),
                             nd.array(X, ctx=ctx), y, y)
        return float(loss.asscalar())

    def train(self, model, data, recipe, **options):
        options.setdefault("spec", models.spec_of(model))
        return train(model, data, recipe, **options)

    def data_parallel_step(self, spec, weights, X, y, lr, num_devices):
        processes.check_count(num_devices, "devices")  # the other three's words
        processes.check_split(len(X), num_devices, "devices")
        if spec.batch_norm or spec.aux_heads:
            raise ValueError(
                "data_parallel_step takes specs without BatchNorm or aux heads: nn.BatchNorm "
                "normalises each device's slice (the parallel page's sync_bn_googlenet "
                "does not, in float32 only), and dropout differs per device")
        ctxs = [mx.cpu(i) for i in range(num_devices)]
        model = models.googlenet(spec)
        model.collect_params().reset_ctx(ctxs)  # a copy on every device
        models.load_weights(model, weights).cast(self.parallel_dtype)
        trainer = gluon.Trainer(model.collect_params(), "sgd", {"learning_rate": lr},
                                kvstore="device")  # sums the devices' gradients
        X, y = (nd.array(a, dtype=self.parallel_dtype) for a in (X, y))
        parallel.train_step_parallel(model, trainer, gluon.loss.SoftmaxCrossEntropyLoss(),
                                     X, y, ctxs)
        return models.get_weights(model)


BACKEND = MXNetBackend()
