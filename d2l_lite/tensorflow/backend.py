"""TensorFlow/Keras behind ``d2l_lite.backend.Backend``: the page-level functions
with NCHW NumPy batches and neutral weight names at the interface."""

import keras
import numpy as np
import tensorflow as tf

from .. import architecture
from . import flops, model, parallel
from .book import train_step
from .train import make_optimizer, prepare_batch
from .train import train as fit  # (the package's name train is this function)


class TensorFlowBackend:
    """The Keras textbook model; NHWC inside, NCHW at the interface."""
    name, title, parallel_dtype = "tensorflow", "TensorFlow", "float64"

    build = staticmethod(model.googlenet)
    count_parameters = staticmethod(model.count_parameters)
    tensor_names = staticmethod(model.tensor_names)
    load_weights = staticmethod(model.load_weights)
    get_weights = staticmethod(model.get_weights)
    logits = staticmethod(model.logits)
    data_parallel_step = staticmethod(parallel.data_parallel_step)

    @staticmethod
    def _nhwc_shape(spec: architecture.GoogLeNetSpec, batch_size: int = 1):
        return (batch_size, spec.input_size, spec.input_size, spec.in_channels)

    def stage_rows(self, net, spec):
        return model.stage_rows(net, self._nhwc_shape(spec))

    def count_flops(self, net, spec) -> int:
        # The profiler's Conv2D and MatMul ops are the multiply-adds, 2 x MACs: the
        # analytic count; its BiasAdd, pools and mean are outside that count.
        by_op = flops.flops_by_op(net, self._nhwc_shape(spec))
        return by_op.get("Conv2D", 0) + by_op.get("MatMul", 0)

    def prepare_batch(self, images, image_size):
        X = prepare_batch(tf.constant(images), tf.range(len(images)), image_size)
        return np.transpose(X.numpy(), (0, 3, 1, 2))  # NHWC -> NCHW

    def optimizer_steps(self, recipe, weights, grads, rates):
        w, optimizer = tf.Variable(weights), make_optimizer(recipe)
        optimizer.build([w])
        for grad, rate in zip(grads, rates):
            optimizer.learning_rate.assign(rate)  # as the trainer's step does
            optimizer.apply([tf.constant(grad)], [w])
        return w.numpy()

    def train_step(self, net, X, y, lr) -> float:
        X = np.transpose(np.asarray(X, np.float32), (0, 2, 3, 1))  # NCHW -> NHWC
        loss, _ = train_step(net, keras.optimizers.SGD(lr), X, np.asarray(y))
        return float(loss)

    def train(self, net, data, recipe, **options):
        if "spec" not in options:  # spec_of reads the kernels: a built model's
            if not (hasattr(net, "spec") or net.built):
                raise ValueError("train reads a hand-built model's description from its "
                                 "layers: call the model on one batch first, or pass spec=")
            options["spec"] = model.spec_of(net)
        return fit(net, data, recipe, **options)


BACKEND = TensorFlowBackend()
