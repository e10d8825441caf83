"""Training in TensorFlow: the device, the data on it, the batches, PyTorch's
optimisers in Keras and the trainer, :func:`train`, on ``training.fit``."""

import contextlib
import random
from typing import Iterator, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf

from .. import architecture, reference, runtime, training
from ..data import pixel_scale
from .book import GoogLeNet, train_step
from .model import assign, sublayers


def try_gpu() -> str:
    """``"/GPU:0"`` if there is a GPU, else ``"/CPU:0"`` (for ``tf.device``); says which."""
    device = "/GPU:0" if tf.config.list_physical_devices("GPU") else "/CPU:0"
    print(runtime.device_notice("TensorFlow", "GPU" in device, _device_name(device)))
    return device


def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and TensorFlow's random state (Keras's one call)."""
    keras.utils.set_random_seed(seed)


def seed_random_layers(model: keras.Model, seed: int) -> None:
    """Restart every random layer of ``model`` (its ``Dropout``) from ``seed``. Keras
    seeds each one from Python's random state when the layer is made, before
    :func:`train` calls :func:`set_seed`, so its masks would change from process to
    process. A layer's random state is among ``model.variables`` (which Keras
    documents as including random seeds), not among its weights."""
    weights, rng = {id(w) for w in model.weights}, random.Random(seed)
    for variable in model.variables:
        if id(variable) not in weights:
            variable.assign([rng.randint(1, 10**9), 0])  # [seed, counter], as Keras starts


def _device_name(device: str) -> str:  # "cpu", or the GPU's model
    if "GPU" not in device.upper():
        return "cpu"
    gpu = tf.config.list_physical_devices("GPU")[int(device.split(":")[-1])]
    return tf.config.experimental.get_device_details(gpu).get("device_name", device)


def device_data(data, device: str) -> Tuple[tf.Tensor, ...]:
    """Images (uint8, N x 28 x 28) and int32 labels on ``device``, copied once."""
    arrays = (data.train_images, data.train_labels, data.test_images, data.test_labels)
    with tf.device(device):
        return tuple(tf.identity(tf.constant(np.asarray(a), t))
                     for a, t in zip(arrays, (tf.uint8, tf.int32) * 2))


def prepare_batch(images: tf.Tensor, index: tf.Tensor, image_size: int = 96) -> tf.Tensor:
    """``images[index]`` in [0, 1] (uint8 divided by 255, float as it is:
    ``pixel_scale``), NHWC, resized as PyTorch's bilinear (no antialias)."""
    X = tf.cast(tf.gather(images, index), tf.float32)[..., tf.newaxis]
    X = X / pixel_scale(images.dtype)
    return tf.image.resize(X, (image_size, image_size), method="bilinear", antialias=False)


class AdamW(keras.optimizers.Optimizer):
    """PyTorch's AdamW: epsilon after the bias correction (Keras's:
    before)."""
    def __init__(self, learning_rate, weight_decay, betas=(0.9, 0.999),
                 eps=1e-8):
        super().__init__(learning_rate, weight_decay=weight_decay,
                         name="adamw")
        self.betas, self.eps = betas, eps

    def build(self, variables):
        super().build(variables)
        self.m = [self.add_variable_from_reference(v, "m")
                  for v in variables]
        self.v = [self.add_variable_from_reference(v, "v")
                  for v in variables]

    def update_step(self, gradient, variable, learning_rate):
        # as Keras's own docs do: there is no public lookup
        i = self._get_variable_index(variable)
        b1, b2 = self.betas
        t = keras.ops.cast(self.iterations + 1, variable.dtype)
        m, v = self.m[i], self.v[i]
        self.assign(m, b1 * m + (1 - b1) * gradient)
        self.assign(v, b2 * v + (1 - b2) * gradient * gradient)
        m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        self.assign_sub(variable, learning_rate * m_hat
                        / (keras.ops.sqrt(v_hat) + self.eps))


class SGD(keras.optimizers.SGD):
    """SGD with ``torch.optim.SGD``'s weight decay: L2 (Keras's is decoupled)."""
    def __init__(self, learning_rate, momentum, nesterov, l2):
        super().__init__(learning_rate, momentum, nesterov, name="sgd")
        self.l2 = l2

    def apply(self, grads, trainable_variables=None):
        return super().apply([g + self.l2 * v for g, v in zip(grads, trainable_variables)]
                             if self.l2 else grads, trainable_variables)


def make_optimizer(recipe: training.Recipe) -> keras.optimizers.Optimizer:
    """The recipe's optimiser, with PyTorch's arithmetic (SGD with momentum: at a
    constant rate; Keras keeps the rate in the momentum buffer, PyTorch applies it
    after, so a changing rate weighs past gradients differently)."""
    if recipe.optimizer == "adamw":
        return AdamW(recipe.lr, recipe.weight_decay)
    return SGD(recipe.lr, recipe.momentum, recipe.nesterov, recipe.weight_decay)


@contextlib.contextmanager
def bfloat16(model: GoogLeNet, enabled: bool) -> Iterator[None]:
    """Keras's ``"mixed_bfloat16"`` policy but for dense layers (float32 logits), then restored."""
    layers = list(sublayers(model)) if enabled else []
    saved = [layer.dtype_policy for layer in layers]
    for layer in layers:
        dense = isinstance(layer, keras.layers.Dense)
        layer.dtype_policy = "float32" if dense else "mixed_bfloat16"
    try:
        yield
    finally:
        for layer, policy in zip(layers, saved):
            layer.dtype_policy = policy


def train(model: GoogLeNet, data, recipe: training.Recipe = training.CLASSIC, *,
          spec=architecture.BOOK, device: Optional[str] = None, image_size: Optional[int] = None,
          plot: bool = True, progress: bool = True) -> training.History:
    """:func:`train_step` in a ``tf.function`` (GPU only: XLA, bfloat16) on :func:`training.fit`."""
    training.check_recipe(recipe)
    device = device or ("/GPU:0" if tf.config.list_physical_devices("GPU") else "/CPU:0")
    gpu = "GPU" in device.upper()
    skipped = [name for name, on in (("bfloat16", recipe.mixed_precision),
                                     ("XLA", recipe.compile)) if on and not gpu]
    if skipped:
        print("TensorFlow on the CPU: the step is a tf.function graph in float32,\n"
              f"without {' and '.join(skipped)} (GPU only here).")
    xla, size = recipe.compile and gpu, image_size or spec.input_size
    set_seed(recipe.seed)
    if not model.built:  # Keras makes the weights on the first call
        model(keras.KerasTensor((None, spec.input_size, spec.input_size, spec.in_channels)))
    with tf.device(device), bfloat16(model, recipe.mixed_precision and gpu):
        assign(model, reference.xavier_weights(spec, seed=recipe.seed), spec)
        seed_random_layers(model, recipe.seed)
        train_X, train_y, test_X, _ = device_data(data, device)
        optimizer = make_optimizer(recipe)
        optimizer.build(model.trainable_variables)

        @tf.function(jit_compile=xla)
        def fit_step(index, lr):  # one graph: the batch's resize and the step
            optimizer.learning_rate.assign(lr)
            return train_step(model, optimizer, prepare_batch(train_X, index, size),
                              tf.gather(train_y, index), recipe.label_smoothing)

        @tf.function(jit_compile=xla)
        def eval_step(index):
            y_hat = model(prepare_batch(test_X, index, size), training=False)
            return tf.argmax(y_hat, axis=1, output_type=tf.int32)

        return training.fit(
            "TensorFlow", recipe, _device_name(device), len(train_y), data.test_labels,
            lambda index, lr: fit_step(index, tf.constant(lr, tf.float32)), eval_step,
            to_device=tf.constant, sync=tf.test.experimental.sync_devices, compiled=True,
            plot=plot, progress=progress)
