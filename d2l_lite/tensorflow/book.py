"""The Keras code the chapters save (d2l's ``#@save``), verbatim, in the order
the pages introduce it: Inception, GoogLeNet, FLOPs, training, variants and
data parallelism. NHWC maps and HWIO kernels, as Keras has them."""

import keras
import tensorflow as tf

from .. import processes, training
from .checks import FiniteCheck


# The Inception chapter ----------------------------------------------------------------


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


# The GoogLeNet chapter ----------------------------------------------------------------


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


# The FLOPs chapter --------------------------------------------------------------------


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


# The training chapter -----------------------------------------------------------------


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


# The variants chapter -----------------------------------------------------------------


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


class SmallStemGoogLeNet(GoogLeNet):
    """For 28x28 images: b1 is one 3x3 convolution, no max pool."""
    def b1(self):  # N x 28 x 28 x 1 -> N x 28 x 28 x 64
        return keras.Sequential([self.conv(64, 3, padding=1)], name="b1")


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


# The data-parallel chapter ------------------------------------------------------------


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
    processes.check_split(len(y), n, what="devices")  # else ValueError

    def slice_for(context):  # called once for each device
        i, k = context.replica_id_in_sync_group, len(y) // n
        return X[i * k:(i + 1) * k], y[i * k:(i + 1) * k]
    return strategy.experimental_distribute_values_from_function(
        slice_for)


def parallel_step(strategy, model, optimizer, global_batch_size,
                  graph=False, checked=True):
    """A data-parallel training step: call it on ``split_batch(...)``.
    graph=True traces the devices' work into one tf.function graph;
    checked=False leaves out the NaN check (only to time it)."""
    check = FiniteCheck(strategy, global_batch_size, enabled=checked)

    def device_step(X, y):  # on each device, on its slice
        with tf.GradientTape() as tape:
            per_example = keras.losses.sparse_categorical_crossentropy(
                y, model(X, training=True), from_logits=True)
            # this slice's sum / the global batch: the devices' losses
            # (and gradients) add up to the mean over the whole batch
            loss = tf.nn.compute_average_loss(
                per_example, global_batch_size=global_batch_size)
        grads = tape.gradient(loss, model.trainable_variables)
        # a NaN or inf in any device's loss or gradients: no device
        # updates; else optimizer.apply() on each device, which sums
        # the gradients over the devices, then updates that copy
        flags = check.apply(optimizer, grads, model.trainable_variables,
                            loss)
        return loss, flags

    def run(batch):
        return strategy.run(device_step, args=batch)
    if graph:  # no Python if or loop on tensors: nothing for AutoGraph
        run = tf.function(run, autograph=False)

    def step(batch):
        check.check_batch(batch)  # does it hold global_batch_size images?
        losses, flags = run(batch)
        check.raise_if_flagged(flags)  # names the devices and the step
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
