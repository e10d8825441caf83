"""GoogLeNet in Keras: the textbook code the chapters save here (d2l's
``#@save``), then what serves the checks and experiments, with the names of
``d2l_lite.torch``. NHWC, HWIO kernels: ``load_weights`` and ``logits`` convert."""

import contextlib
import os
import subprocess
import sys
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

# A default TF reads once, on import: without an NVIDIA device, level 3 also
# hides the "failed call to cuInit" error TF logs while probing for CUDA.
_GPU_MACHINE = os.path.exists("/dev/nvidiactl")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2" if _GPU_MACHINE else "3")


@contextlib.contextmanager
def _quiet_import():
    """Without an NVIDIA device, send file descriptor 2 to /dev/null while TF loads:
    TF 2.19+ logs its CUDA probe ("Could not find cuda drivers") and a oneDNN notice
    before its logging reads TF_CPP_MIN_LOG_LEVEL (tensorflow/tensorflow#100442).
    Import errors still raise, and print after stderr is back."""
    if _GPU_MACHINE:
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


with _quiet_import():
    import keras  # noqa: E402
    import tensorflow as tf  # noqa: E402
import numpy as np  # noqa: E402

from . import architecture, reference, runtime, tables, training  # noqa: E402
from .flop_rules import tensorflow_flops_by_op as expected_flops_by_op  # noqa: E402

if keras.backend.backend() != "tensorflow":  # pragma: no cover - KERAS_BACKEND set elsewhere
    raise ImportError("d2l_lite.tensorflow needs Keras on TensorFlow: unset KERAS_BACKEND")


def try_gpu() -> str:
    """``"/GPU:0"`` if there is a GPU, else ``"/CPU:0"`` (for ``tf.device``); says which."""
    device = "/GPU:0" if tf.config.list_physical_devices("GPU") else "/CPU:0"
    print(runtime.device_notice("TensorFlow", "GPU" in device, _device_name(device)))
    return device


def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and TensorFlow's random state (Keras's one call)."""
    keras.utils.set_random_seed(seed)


# The Inception chapter ------------------------------------------------------------


def keras_padding(kernel_size, stride, padding):
    """PyTorch's symmetric `padding` in Keras: `(layers in front, mode)`.
    For stride 1, "same" pads (k - 1) / 2 on every side; for stride 2 it
    may pad less before than after, so there we add the zeros ourselves."""
    if stride == 1 and 2 * padding == kernel_size - 1:
        return [], "same"
    pad = [keras.layers.ZeroPadding2D(padding)] if padding else []
    return pad, "valid"


def conv_relu(channels, kernel_size, stride=1, padding=0):
    """A convolution and its ReLU, GoogLeNet's building brick."""
    pad, mode = keras_padding(kernel_size, stride, padding)
    return keras.Sequential(pad + [keras.layers.Conv2D(
        channels, kernel_size, stride, mode, activation="relu")])


class Inception(keras.layers.Layer):
    """Four branches on the same input, concatenated on channels; the
    widths are the columns of the paper's Table 1."""
    def __init__(self, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj,
                 conv=conv_relu):
        super().__init__()
        self.branch1 = conv(ch1x1, 1)
        self.branch2 = keras.Sequential([conv(ch3x3red, 1),
                                         conv(ch3x3, 3, padding=1)])
        self.branch3 = keras.Sequential([conv(ch5x5red, 1),
                                         conv(ch5x5, 5, padding=2)])
        self.branch4 = keras.Sequential([
            keras.layers.MaxPooling2D(3, 1, "same"), conv(pool_proj, 1)])

    def call(self, X):  # NHWC: the channels are the last axis
        return keras.ops.concatenate([self.branch1(X), self.branch2(X),
                                      self.branch3(X), self.branch4(X)],
                                     axis=-1)


# The GoogLeNet chapter --------------------------------------------------------------


def max_pool():
    """The 3x3 max pool with stride 2 that halves the map between stages.
    Zeros pad it, not -inf: it follows a ReLU, so no input is below 0."""
    return keras.Sequential([keras.layers.ZeroPadding2D(1),
                             keras.layers.MaxPooling2D(3, 2)])


class GoogLeNet(keras.Model):
    """The stem (b1, b2), the body (b3, b4, b5) and the head."""
    def __init__(self, num_classes=10, conv=conv_relu, block=Inception):
        super().__init__()
        self.conv, self.block = conv, block
        self.stem = keras.Sequential([self.b1(), self.b2()], name="stem")
        self.body = keras.Sequential([self.b3(), self.b4(), self.b5()],
                                     name="body")
        self.head = keras.Sequential([
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(num_classes)], name="head")

    def b1(self):  # N x 96 x 96 x 1 -> N x 24 x 24 x 64
        return keras.Sequential([self.conv(64, 7, stride=2, padding=3),
                                 max_pool()], name="b1")

    def b2(self):  # -> N x 12 x 12 x 192
        c = self.conv
        return keras.Sequential(
            [c(64, 1), c(192, 3, padding=1), max_pool()], name="b2")

    def b3(self):  # -> N x 6 x 6 x 480
        c, block = self.conv, self.block
        return keras.Sequential([block(64, 96, 128, 16, 32, 32, c),
                                 block(128, 128, 192, 32, 96, 64, c),
                                 max_pool()], name="b3")

    def b4(self):  # -> N x 3 x 3 x 832
        c, block = self.conv, self.block
        return keras.Sequential([block(192, 96, 208, 16, 48, 64, c),
                                 block(160, 112, 224, 24, 64, 64, c),
                                 block(128, 128, 256, 24, 64, 64, c),
                                 block(112, 144, 288, 32, 64, 64, c),
                                 block(256, 160, 320, 32, 128, 128, c),
                                 max_pool()], name="b4")

    def b5(self):  # -> N x 3 x 3 x 1024
        c, block = self.conv, self.block
        return keras.Sequential([block(256, 160, 320, 32, 128, 128, c),
                                 block(384, 192, 384, 48, 128, 128, c)],
                                name="b5")

    def call(self, X):  # head: N x 3 x 3 x 1024 -> N x 10
        return self.head(self.body(self.stem(X)))


# The FLOPs chapter -------------------------------------------------------------------


class NaiveInception(Inception):
    """The block without its 1x1 reductions: the 3x3 and 5x5
    convolutions read every input channel."""
    def __init__(self, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj,
                 conv=conv_relu):
        super().__init__(ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5,
                         pool_proj, conv)
        # Keras keeps every layer once assigned: edit branches in place
        for branch in (self.branch2, self.branch3):
            conv_kxk = branch.pop()    # the 3x3 (5x5) convolution
            branch.pop(rebuild=False)  # the 1x1 reduction: gone
            branch.add(conv_kxk)


# The variants chapter ----------------------------------------------------------------


def conv_bn_relu(channels, kernel_size, stride=1, padding=0):
    """Conv-BN-ReLU: no conv bias, BatchNorm's shift takes its place.
    PyTorch's BatchNorm settings (Keras's momentum weighs the old
    statistics, so 0.9 is PyTorch's 0.1)."""
    pad, mode = keras_padding(kernel_size, stride, padding)
    return keras.Sequential(pad + [
        keras.layers.Conv2D(channels, kernel_size, stride, mode,
                            use_bias=False),
        keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5),
        keras.layers.ReLU()])


class FactorizedInception(Inception):
    """Branch 3's 5x5 convolution as two 3x3 ones (Inception-v3)."""
    def __init__(self, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj,
                 conv=conv_relu):
        super().__init__(ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5,
                         pool_proj, conv)
        self.branch3.pop()  # the 5x5 convolution (edited in place)
        self.branch3.add(conv(ch5x5red, 3, padding=1))
        self.branch3.add(conv(ch5x5, 3, padding=1))


class ResidualInception(Inception):
    """The block plus a shortcut, as in ResNet: ReLU(branches(x) + a
    1x1 convolution of x to the block's width), no ReLU on the shortcut."""
    def __init__(self, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj,
                 conv=conv_relu):
        super().__init__(ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5,
                         pool_proj, conv)
        width = ch1x1 + ch3x3 + ch5x5 + pool_proj
        self.shortcut = keras.layers.Conv2D(width, 1)  # linear

    def call(self, X):
        return keras.ops.relu(super().call(X) + self.shortcut(X))


def aux_head(num_classes, conv=conv_relu):
    """An auxiliary classifier: pool, 1x1 conv, two dense layers."""
    return keras.Sequential([
        keras.layers.AveragePooling2D(5, 3), conv(128, 1),
        keras.layers.Flatten(), keras.layers.Dense(1024, "relu"),
        keras.layers.Dropout(0.7), keras.layers.Dense(num_classes)])


class GoogLeNetAux(GoogLeNet):
    """GoogLeNet with the paper's two auxiliary classifiers, which
    only run in training, after inception4a and inception4d."""
    def __init__(self, num_classes=10, conv=conv_relu, block=Inception):
        super().__init__(num_classes, conv, block)
        self.aux1 = aux_head(num_classes, conv)
        self.aux2 = aux_head(num_classes, conv)

    def build(self, input_shape):  # trace both modes: the heads too
        X = keras.KerasTensor(input_shape)
        self.call(X), self.call(X, training=True)

    def call(self, X, training=False):
        if not training:
            return super().call(X)
        b3, b4, b5 = self.body.layers
        b4 = b4.layers
        X = b4[0](b3(self.stem(X)))                 # inception4a
        aux1 = self.aux1(X)
        X = b4[3](b4[2](b4[1](X)))                  # 4b, 4c, 4d
        aux2 = self.aux2(X)
        X = b5(b4[5](b4[4](X)))                     # 4e, pool, b5
        return self.head(X), (aux1, aux2)


class SmallStemGoogLeNet(GoogLeNet):
    """For 28x28 images: b1 is one 3x3 convolution, no max pool."""
    def b1(self):  # N x 28 x 28 x 1 -> N x 28 x 28 x 64
        return keras.Sequential([self.conv(64, 3, padding=1)], name="b1")


# The training chapter ----------------------------------------------------------------


def train_step(model, optimizer, X, y, label_smoothing=0.0):
    """One step: forward, loss, gradients, update."""
    def loss_fn(logits):  # mean cross-entropy against one-hot labels
        Y = tf.one_hot(y, logits.shape[-1])
        return tf.reduce_mean(keras.losses.categorical_crossentropy(
            Y, tf.cast(logits, tf.float32), from_logits=True,
            label_smoothing=label_smoothing))

    with tf.GradientTape() as tape:
        y_hat, aux = training.split_aux(model(X, training=True))
        loss = loss_fn(y_hat)
        # auxiliary heads (variants chapter) add their losses x 0.3
        total = loss + 0.3 * sum(loss_fn(a) for a in aux)
    grads = tape.gradient(total, model.trainable_variables)
    optimizer.apply(grads, model.trainable_variables)
    hits = tf.argmax(y_hat, axis=1, output_type=y.dtype) == y
    return loss, tf.reduce_sum(tf.cast(hits, tf.int32))


# The spec meets the model ------------------------------------------------------------


def googlenet(spec: architecture.GoogLeNetSpec = architecture.BOOK) -> GoogLeNet:
    """The textbook model of ``spec`` (kept as ``model.spec``), built symbolically."""
    block, net = (globals()[name]  # the same class names in every framework
                  for name in architecture.textbook_classes(spec))
    model = net(spec.num_classes, conv_bn_relu if spec.batch_norm else conv_relu, block)
    if spec.head_pool == "avg7":  # the paper's 7x7 average pool
        fc = model.head.pop()
        model.head.pop(rebuild=False)
        for layer in (keras.layers.AveragePooling2D(7, 1), keras.layers.Flatten(), fc):
            model.head.add(layer)
    model(keras.KerasTensor((None, spec.input_size, spec.input_size, spec.in_channels)))
    model.spec = spec
    return model


def count_parameters(model: keras.layers.Layer) -> int:
    """Trainable parameters (``count_params()`` adds BatchNorm's moving statistics)."""
    if not model.built:
        raise ValueError(f"{type(model).__name__} has no weights yet: call it on a batch first")
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def branch_parameters(block: Inception) -> Dict[str, int]:
    """``{"branch1": n, ..., "branch4": n}`` for a built :class:`Inception`."""
    return {f"branch{i}": count_parameters(getattr(block, f"branch{i}")) for i in range(1, 5)}


def stage_rows(model: GoogLeNet, input_shape: Sequence[int]) -> List[Tuple]:
    """:func:`d2l_lite.counting.stage_rows` (C x H x W) measured on an NHWC zero batch."""
    X, rows = tf.zeros(input_shape), []
    for stage in [*model.stem.layers, *model.body.layers, model.head]:
        X = stage(X, training=False)
        rows.append((stage.name, (X.shape[-1], *X.shape[1:-1]), count_parameters(stage)))  # CHW
    if hasattr(model, "aux1"):  # (any class's) aux heads run in training only
        _, aux = model(keras.KerasTensor(tuple(input_shape)), training=True)
        rows += [(f"aux{i}", tuple(a.shape[1:]), count_parameters(getattr(model, f"aux{i}")))
                 for i, a in enumerate(aux, 1)]
    return rows


def layer_summary(model: GoogLeNet, input_shape: Sequence[int]) -> None:
    """Print :func:`stage_rows`: stage, output shape (N x H x W x C), parameters."""
    rows = [(name, (input_shape[0], *shape[1:], shape[0]), params)
            for name, shape, params in stage_rows(model, input_shape)]
    tables.print_table(("stage", "output shape", "parameters"), rows)


def load_weights(model: GoogLeNet, weights: Dict[str, np.ndarray]) -> GoogLeNet:
    """Canonical weights into ``model`` in creation order, layouts converted; returns it."""
    spec = getattr(model, "spec", None)  # set by googlenet: what dense layers flatten
    maps = {f"{s.name}/weight": s.in_shape for s in architecture.walk(spec)
            if isinstance(s.layer, architecture.Dense)} if spec else {}

    def keras_layout(name, array):
        if array.ndim == 4:  # O x I x H x W -> H x W x I x O
            return array.transpose(2, 3, 1, 0)
        if array.ndim == 2:  # out x (C H W) -> (H W C) x out: Keras's flatten order
            c, h, w = maps.get(name, (array.shape[1], 1, 1))
            return array.reshape(-1, c, h, w).transpose(2, 3, 1, 0).reshape(-1, len(array))
        return array
    params, state = reference.ordered(weights)
    for arrays, variables in ((params, model.trainable_weights),
                              (state, model.non_trainable_weights)):
        values = [keras_layout(name, np.asarray(a, np.float32)) for name, a in arrays]
        reference.check_shapes([name for name, _ in arrays], [v.shape for v in values],
                               [v.shape for v in variables], "TensorFlow")
        for variable, value in zip(variables, values):
            variable.assign(value)
    return model


def logits(model: GoogLeNet, X: np.ndarray) -> np.ndarray:
    """Logits (inference mode) for an NCHW float32 NumPy batch, as float32 NumPy."""
    X = np.transpose(np.asarray(X, np.float32), (0, 2, 3, 1))  # NCHW -> NHWC
    return np.asarray(model(X, training=False), dtype=np.float32)


# Training ------------------------------------------------------------------------


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
    """``images[index]`` in [0, 1], NHWC, resized as PyTorch's bilinear (no antialias)."""
    X = tf.cast(tf.gather(images, index), tf.float32)[..., tf.newaxis] / 255.0
    return tf.image.resize(X, (image_size, image_size), method="bilinear", antialias=False)


class AdamW(keras.optimizers.Optimizer):
    """PyTorch's AdamW: epsilon after the bias correction (Keras's: before)."""
    def __init__(self, learning_rate, weight_decay, betas=(0.9, 0.999), eps=1e-8):
        super().__init__(learning_rate, weight_decay=weight_decay, name="adamw")
        self.betas, self.eps = betas, eps

    def build(self, variables):
        super().build(variables)
        self.m = [self.add_variable_from_reference(v, "m") for v in variables]
        self.v = [self.add_variable_from_reference(v, "v") for v in variables]

    def update_step(self, gradient, variable, learning_rate):
        i = self._get_variable_index(variable)  # as Keras's own docs do: no public lookup
        (b1, b2), t = self.betas, keras.ops.cast(self.iterations + 1, variable.dtype)
        self.assign(self.m[i], b1 * self.m[i] + (1 - b1) * gradient)
        self.assign(self.v[i], b2 * self.v[i] + (1 - b2) * gradient * gradient)
        m_hat, v_hat = self.m[i] / (1 - b1 ** t), self.v[i] / (1 - b2 ** t)
        self.assign_sub(variable, learning_rate * m_hat / (keras.ops.sqrt(v_hat) + self.eps))


class _SGD(keras.optimizers.SGD):
    """SGD with ``torch.optim.SGD``'s weight decay: L2 (Keras's is decoupled)."""
    def __init__(self, learning_rate, momentum, nesterov, l2):
        super().__init__(learning_rate, momentum, nesterov, name="sgd")
        self.l2 = l2

    def apply(self, grads, trainable_variables=None):
        return super().apply([g + self.l2 * v for g, v in zip(grads, trainable_variables)]
                             if self.l2 else grads, trainable_variables)


def _sublayers(layer: keras.layers.Layer) -> Iterator[keras.layers.Layer]:
    yield layer  # and every layer inside: stages, blocks, branches
    for child in ([getattr(layer, f"branch{i}") for i in range(1, 5)]
                  if hasattr(layer, "branch4") else getattr(layer, "layers", [])):
        yield from _sublayers(child)


@contextlib.contextmanager
def _bfloat16(model: GoogLeNet, enabled: bool) -> Iterator[None]:
    """Keras's ``"mixed_bfloat16"`` policy but for dense layers (float32 logits), then restored."""
    layers = list(_sublayers(model)) if enabled else []
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
    if not gpu and (recipe.mixed_precision or recipe.compile):
        print("TensorFlow on the CPU: bfloat16 (float32 instead) and XLA (tf.function "
              "without jit_compile instead); both are GPU options here.")
    xla, size = recipe.compile and gpu, image_size or spec.input_size
    set_seed(recipe.seed)
    if not model.built:  # Keras makes the weights on the first call
        model(keras.KerasTensor((None, spec.input_size, spec.input_size, spec.in_channels)))
    with tf.device(device), _bfloat16(model, recipe.mixed_precision and gpu):
        load_weights(model, reference.xavier_weights(spec, seed=recipe.seed))
        train_X, train_y, test_X, _ = device_data(data, device)
        optimizer = AdamW(recipe.lr, recipe.weight_decay) if recipe.optimizer == "adamw" \
            else _SGD(recipe.lr, recipe.momentum, recipe.nesterov, recipe.weight_decay)
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


# FLOPs and timing ----------------------------------------------------------------


def _forward(layer: keras.layers.Layer, input_shape):  # built first, outside the trace
    if not layer.built:
        layer(tf.zeros(input_shape))
    return tf.function(lambda X: layer(X, training=False))


def _profile(model_or_block: keras.layers.Layer, input_shape: Sequence[int]):
    """TensorFlow's profiler's float-operation view of one forward pass, by op type."""
    concrete = _forward(model_or_block, input_shape).get_concrete_function(
        tf.TensorSpec(input_shape, tf.float32))
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"  # return the numbers, print nothing
    logger, level = tf.get_logger(), tf.get_logger().level  # the v1 profiler's deprecation
    logger.setLevel("ERROR")  # notice names a site-packages path: noise on a page
    try:
        return tf.compat.v1.profiler.profile(graph=concrete.graph, cmd="op", options=options)
    finally:
        logger.setLevel(level)


def count_flops(model_or_block: keras.layers.Layer, input_shape: Sequence[int]) -> int:
    """FLOPs of a forward pass on an NHWC batch: TF's registered per-op rules, added up."""
    return int(_profile(model_or_block, input_shape).total_float_ops)


def flops_by_op(model_or_block: keras.layers.Layer, input_shape: Sequence[int]) -> Dict[str, int]:
    """:func:`count_flops` by op type (``"Conv2D"``, ``"BiasAdd"`` ...), zeros left out."""
    counts, nodes = {}, list(_profile(model_or_block, input_shape).children)
    while nodes:  # the op view nests each op type under the previous one
        node = nodes.pop()
        if node.float_ops:
            counts[node.name] = int(node.float_ops)
        nodes.extend(node.children)
    return counts


def expected_flops(spec_or_block, input_size=None) -> int:  # count_flops for one image
    return sum(expected_flops_by_op(spec_or_block, input_size).values())


def time_forward(model_or_block: keras.layers.Layer, input_shape: Sequence[int],
                 repeats: int = 10, warmup: int = 2) -> float:
    """Median seconds of a ``tf.function`` forward pass on an NHWC batch, after ``warmup``."""
    forward, X = _forward(model_or_block, input_shape), tf.random.uniform(input_shape)
    return training.median_seconds(lambda: forward(X), repeats, warmup,
                                   tf.test.experimental.sync_devices)


# Data parallelism ----------------------------------------------------------------
# One process, two devices: tf.distribute.MirroredStrategy keeps a copy of every
# variable on each device, runs the step on each device's share of the batch and
# all-reduces the gradients. Across machines: MultiWorkerMirroredStrategy.


def two_devices():
    """The first two GPUs, or else the CPU split into two logical
    devices (possible only before TensorFlow first uses the CPU)."""
    if len(tf.config.list_physical_devices("GPU")) >= 2:
        return ["/GPU:0", "/GPU:1"]
    cpu = tf.config.list_physical_devices("CPU")[0]
    if tf.config.get_logical_device_configuration(cpu) is None:
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        except RuntimeError as error:  # TF has set up its devices
            raise RuntimeError(
                "TensorFlow has already set up the CPU as one device: "
                "restart the kernel and call two_devices() before any "
                "other TensorFlow code") from error
    return ["/CPU:0", "/CPU:1"]


def split_batch(strategy, X, y):
    """Device i gets the i-th of equal slices of the batch (X, y)."""
    n = strategy.num_replicas_in_sync
    if len(y) % n:
        raise ValueError(f"a batch of {len(y)} does not split in {n}")

    def slice_for(context):  # called once for each device
        i, k = context.replica_id_in_sync_group, len(y) // n
        return X[i * k:(i + 1) * k], y[i * k:(i + 1) * k]
    return strategy.experimental_distribute_values_from_function(
        slice_for)


def parallel_step(strategy, model, optimizer, global_batch_size):
    """A data-parallel training step: call it on ``split_batch(...)``."""
    def device_step(X, y):  # on each device, on its slice
        with tf.GradientTape() as tape:
            per_example = keras.losses.sparse_categorical_crossentropy(
                y, model(X, training=True), from_logits=True)
            # this slice's sum / the global batch: the devices' losses
            # (and gradients) add up to the mean over the whole batch
            loss = tf.nn.compute_average_loss(
                per_example, global_batch_size=global_batch_size)
        grads = tape.gradient(loss, model.trainable_variables)
        # in a replica context, apply() all-reduces (sums) the gradients
        # over the devices, then updates every device's copy the same
        optimizer.apply(grads, model.trainable_variables)
        return loss

    def step(batch):
        losses = strategy.run(device_step, args=batch)
        return strategy.reduce("SUM", losses, axis=None)
    return step


def conv_bn_relu_synced(channels, kernel_size, stride=1, padding=0):
    """conv_bn_relu, but BatchNorm normalises with the statistics of
    the whole batch, all-reduced over the devices, not of its slice."""
    pad, mode = keras_padding(kernel_size, stride, padding)
    return keras.Sequential(pad + [
        keras.layers.Conv2D(channels, kernel_size, stride, mode,
                            use_bias=False),
        keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5,
                                        synchronized=True),
        keras.layers.ReLU()])


_WATCHDOG = """
import os, signal, sys, time
parent, timeout_s = int(sys.argv[1]), float(sys.argv[2])
time.sleep(timeout_s)
if os.getppid() == parent:  # still waiting (else it has exited)
    sys.stderr.write(sys.argv[3] + "\\n")
    sys.stderr.flush()
    os.kill(parent, signal.SIGKILL)
"""


def multi_worker_strategy(timeout_s=120.0):
    """MultiWorkerMirroredStrategy for the cluster in TF_CONFIG, with
    every wait bounded by ``timeout_s``: if the workers have not all
    connected by then, this worker is stopped with a message that says
    what to check; a collective operation that takes longer fails."""
    message = (
        f"multi_worker_strategy: the workers in TF_CONFIG did not all "
        f"connect within {timeout_s:g} s, so this worker was stopped. "
        f"Start every worker (same cluster, its own task index), check "
        f"each host:port is right and reachable, then start all again.")
    # TF waits for its peers in its C++ runtime, with no public timeout,
    # holding Python's GIL (no Python thread runs) and deaf to SIGTERM
    # and Ctrl-C: only another process can stop a worker stuck there.
    watchdog = subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG, str(os.getpid()),
         str(timeout_s), message])
    try:
        options = tf.distribute.experimental.CommunicationOptions(
            timeout_seconds=timeout_s)
        return tf.distribute.MultiWorkerMirroredStrategy(
            communication_options=options)
    finally:
        watchdog.kill()
        watchdog.wait()
