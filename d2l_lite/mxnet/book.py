"""The code the MXNet pages save (d2l's ``#@save``), verbatim, in the order the chapters
introduce it: the Inception block, GoogLeNet, the naive block, the variants and the
training step. The data-parallel page's cells are in :mod:`.parallel`."""

from mxnet import autograd
from mxnet.gluon import nn

from .. import architecture, training


# The Inception chapter --------------------------------------------------------
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


# The GoogLeNet chapter --------------------------------------------------------
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
        net.add(self.conv(64, 1), self.conv(192, 3, padding=1),
                max_pool())
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


# The FLOPs chapter ------------------------------------------------------------
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


# The variants chapter ---------------------------------------------------------
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


class SmallStemGoogLeNet(GoogLeNet):
    """GoogLeNet for 28x28 images: b1 is one 3x3 convolution with stride
    1 and no max pool, so the body sees a 14x14 map, not a 4x4 one."""
    def b1(self):  # N x 1 x 28 x 28 -> N x 64 x 28 x 28
        net = nn.HybridSequential()
        net.add(self.conv(64, 3, padding=1))
        return net


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


# The training chapter ---------------------------------------------------------
def train_step(model, trainer, loss_fn, X, y, target):
    """One Gluon training step; returns the batch's mean loss and hits."""
    with autograd.record():  # training mode: batch statistics, dropout
        y_hat, aux_logits = training.split_aux(model(X))
        loss = loss_fn(y_hat, target)  # one loss per example
        # auxiliary heads (variants chapter) add their losses x 0.3
        total = loss + 0.3 * sum(loss_fn(a, target) for a in aux_logits)
    total.backward()  # gradients of the sum over the batch
    trainer.step(X.shape[0])  # divides the gradients by the batch size
    return loss.mean(), (y_hat.argmax(axis=1) == y).sum()
