"""The code the chapters save here (d2l's ``#@save``), verbatim, in the order
they introduce it. A linen module holds no parameters: the helpers take its
``variables`` dict where PyTorch's read the model. NHWC."""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from .. import training


# The Inception chapter ------------------------------------------------------------


class ConvReLU(nn.Module):
    """A convolution and its ReLU, GoogLeNet's building brick."""
    channels: int
    kernel_size: int
    stride: int = 1
    padding: int = 0

    @nn.compact
    def __call__(self, x, train=False):  # train: used by ConvBNReLU
        k, s, p = self.kernel_size, self.stride, self.padding
        # explicit, symmetric padding ("SAME" pads stride 2 unevenly)
        x = nn.Conv(self.channels, (k, k), strides=s,
                    padding=((p, p), (p, p)))(x)
        return nn.relu(x)


class Inception(nn.Module):
    """Four branches on the same input, concatenated on channels; the
    widths are the columns of the paper's Table 1."""
    ch1x1: int
    ch3x3red: int
    ch3x3: int
    ch5x5red: int
    ch5x5: int
    pool_proj: int
    conv: Callable = ConvReLU

    def branch1(self, x, train):
        return self.conv(self.ch1x1, 1)(x, train)

    def branch2(self, x, train):
        x = self.conv(self.ch3x3red, 1)(x, train)
        return self.conv(self.ch3x3, 3, padding=1)(x, train)

    def branch3(self, x, train):
        x = self.conv(self.ch5x5red, 1)(x, train)
        return self.conv(self.ch5x5, 5, padding=2)(x, train)

    def branch4(self, x, train):
        x = nn.max_pool(x, (3, 3), padding=((1, 1), (1, 1)))  # stride 1
        return self.conv(self.pool_proj, 1)(x, train)

    @nn.compact
    def __call__(self, x, train=False):  # x: N x H x W x C, channels last
        branches = self.branch1, self.branch2, self.branch3, self.branch4
        return jnp.concatenate([b(x, train) for b in branches], axis=-1)


# The GoogLeNet chapter ------------------------------------------------------------


def max_pool(x):
    """The 3x3, stride-2 max pool between stages (pads with -inf)."""
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))


class GoogLeNet(nn.Module):
    """The stem (b1, b2), the body (b3, b4, b5) and the head."""
    num_classes: int = 10
    conv: Callable = ConvReLU
    block: Callable = Inception

    @nn.compact
    def __call__(self, x, train=False):
        x = self.b2(self.b1(x, train), train)                  # stem
        x = self.b5(self.b4(self.b3(x, train), train), train)  # body
        return self.head(x)

    def b1(self, x, train):  # N x 96 x 96 x 1 -> N x 24 x 24 x 64
        x = self.conv(64, 7, stride=2, padding=3)(x, train)
        return max_pool(x)

    def b2(self, x, train):  # -> N x 12 x 12 x 192
        x = self.conv(64, 1)(x, train)
        x = self.conv(192, 3, padding=1)(x, train)
        return max_pool(x)

    def b3(self, x, train):  # -> N x 6 x 6 x 480
        c, block = self.conv, self.block
        x = block(64, 96, 128, 16, 32, 32, c)(x, train)
        x = block(128, 128, 192, 32, 96, 64, c)(x, train)
        return max_pool(x)

    def b4(self, x, train):  # -> N x 3 x 3 x 832
        c, block = self.conv, self.block
        x = block(192, 96, 208, 16, 48, 64, c)(x, train)
        x = block(160, 112, 224, 24, 64, 64, c)(x, train)
        x = block(128, 128, 256, 24, 64, 64, c)(x, train)
        x = block(112, 144, 288, 32, 64, 64, c)(x, train)
        x = block(256, 160, 320, 32, 128, 128, c)(x, train)
        return max_pool(x)

    def b5(self, x, train):  # -> N x 3 x 3 x 1024
        c, block = self.conv, self.block
        x = block(256, 160, 320, 32, 128, 128, c)(x, train)
        return block(384, 192, 384, 48, 128, 128, c)(x, train)

    def head(self, x):  # -> N x num_classes
        x = jnp.mean(x, axis=(1, 2))  # global average pool: N x 1024
        return nn.Dense(self.num_classes)(x)


# The FLOPs chapter ----------------------------------------------------------------


class NaiveInception(Inception):
    """The block without its 1x1 reductions: the 3x3 and 5x5
    convolutions read every input channel."""
    def branch2(self, x, train):
        return self.conv(self.ch3x3, 3, padding=1)(x, train)

    def branch3(self, x, train):
        return self.conv(self.ch5x5, 5, padding=2)(x, train)


# The variants chapter -------------------------------------------------------------


class FactorizedInception(Inception):
    """Branch 3's 5x5 convolution as two 3x3 ones (Inception-v3)."""
    def branch3(self, x, train):
        x = self.conv(self.ch5x5red, 1)(x, train)
        x = self.conv(self.ch5x5red, 3, padding=1)(x, train)
        return self.conv(self.ch5x5, 3, padding=1)(x, train)



class ResidualInception(Inception):
    """The block plus a shortcut, as in ResNet: ReLU(branches(x) + a
    1x1 convolution of x to the block's width), no ReLU on the shortcut."""
    @nn.compact
    def __call__(self, x, train=False):
        branches = self.branch1, self.branch2, self.branch3, self.branch4
        y = jnp.concatenate([b(x, train) for b in branches], axis=-1)
        return nn.relu(y + nn.Conv(y.shape[-1], (1, 1))(x))  # linear



class SmallStemGoogLeNet(GoogLeNet):
    """For 28x28 images: b1 is one 3x3 convolution, no max pool."""
    def b1(self, x, train):  # N x 28 x 28 x 1 -> N x 28 x 28 x 64
        return self.conv(64, 3, padding=1)(x, train)



class ConvBNReLU(ConvReLU):
    """Conv-BN-ReLU: no conv bias, BatchNorm's shift takes its place."""
    @nn.compact
    def __call__(self, x, train=False):
        k, s, p = self.kernel_size, self.stride, self.padding
        x = nn.Conv(self.channels, (k, k), strides=s,
                    padding=((p, p), (p, p)), use_bias=False)(x)
        # Flax's momentum weighs the old statistics: PyTorch's 1 - 0.1
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9,
                         epsilon=1e-5)(x)
        return nn.relu(x)



class AuxHead(nn.Module):
    """An auxiliary classifier: pool, 1x1 conv, two dense layers."""
    num_classes: int
    conv: Callable = ConvReLU

    @nn.compact
    def __call__(self, x, train=False):
        x = nn.avg_pool(x, (5, 5), strides=(3, 3))  # 4 x 4 at 224 x 224
        x = self.conv(128, 1)(x, train)
        x = x.reshape(x.shape[0], -1)  # flatten: N x (H * W * 128)
        x = nn.relu(nn.Dense(1024)(x))
        x = nn.Dropout(0.7, deterministic=not train)(x)
        return nn.Dense(self.num_classes)(x)


class GoogLeNetAux(GoogLeNet):
    """GoogLeNet with the paper's two auxiliary classifiers, which
    only run in training, after inception4a and inception4d."""
    @nn.compact
    def __call__(self, x, train=False):
        x = self.b3(self.b2(self.b1(x, train), train), train)
        x, taps = self.b4(x, train)
        y = self.head(self.b5(x, train))
        if not (train or self.is_initializing()):
            return y
        aux = tuple(AuxHead(self.num_classes, self.conv)(t, train)
                    for t in taps)
        return (y, aux) if train else y

    def b4(self, x, train):  # also returns 4a's and 4d's outputs
        c, block = self.conv, self.block
        x = a = block(192, 96, 208, 16, 48, 64, c)(x, train)
        x = block(160, 112, 224, 24, 64, 64, c)(x, train)
        x = block(128, 128, 256, 24, 64, 64, c)(x, train)
        x = d = block(112, 144, 288, 32, 64, 64, c)(x, train)
        x = block(256, 160, 320, 32, 128, 128, c)(x, train)
        return max_pool(x), (a, d)


# The training chapter -------------------------------------------------------------


class TrainState(train_state.TrainState):
    """Flax's train state (params, opt_state, apply_fn, tx), plus:"""
    batch_stats: dict  # BatchNorm's running statistics ({} without)
    key: jax.Array     # for dropout (auxiliary heads)


def train_step(state, X, y, label_smoothing=0.0, dtype=jnp.float32):
    """One step: forward, loss, gradients, update. A pure function."""
    key, dropout_key = jax.random.split(state.key)

    def loss_fn(params):
        params = jax.tree.map(lambda p: p.astype(dtype), params)
        output, new = state.apply_fn(
            {"params": params, "batch_stats": state.batch_stats},
            X.astype(dtype), train=True, mutable=["batch_stats"],
            rngs={"dropout": dropout_key})
        output = jax.tree.map(lambda a: a.astype(jnp.float32), output)
        y_hat, aux = training.split_aux(output)
        targets = optax.smooth_labels(
            jax.nn.one_hot(y, y_hat.shape[-1]), label_smoothing)
        loss = optax.softmax_cross_entropy(y_hat, targets).mean()
        # auxiliary heads (variants chapter) add their losses x 0.3
        aux_loss = sum(optax.softmax_cross_entropy(a, targets).mean()
                       for a in aux)
        return loss + 0.3 * aux_loss, (loss, y_hat, new)

    grads, (loss, y_hat, new) = jax.grad(loss_fn, has_aux=True)(
        state.params)
    state = state.apply_gradients(  # the optimiser's update
        grads=grads, key=key,
        batch_stats=new.get("batch_stats", state.batch_stats))
    return state, loss, (y_hat.argmax(axis=-1) == y).sum()
