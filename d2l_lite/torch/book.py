"""The PyTorch code the chapters save (d2l's ``#@save``), verbatim and in the
order the pages introduce it; the data-parallel page's cells are in
:mod:`.parallel`, next to the code they call."""

from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional as F

from .. import training


# The Inception chapter ------------------------------------------------------------


def conv_relu(channels, kernel_size, stride=1, padding=0):
    """A convolution and its ReLU, GoogLeNet's building brick."""
    return nn.Sequential(
        nn.LazyConv2d(channels, kernel_size, stride, padding), nn.ReLU())


class Inception(nn.Module):
    """Four branches on the same input, concatenated on channels; the
    widths are the columns of the paper's Table 1."""
    def __init__(self, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj,
                 conv=conv_relu):
        super().__init__()
        self.branch1 = conv(ch1x1, 1)
        self.branch2 = nn.Sequential(conv(ch3x3red, 1),
                                     conv(ch3x3, 3, padding=1))
        self.branch3 = nn.Sequential(conv(ch5x5red, 1),
                                     conv(ch5x5, 5, padding=2))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1),
                                     conv(pool_proj, 1))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x),
                          self.branch3(x), self.branch4(x)], dim=1)


# The GoogLeNet chapter ------------------------------------------------------------


def max_pool():
    """The 3x3 max pool, stride 2, that halves the map between stages."""
    return nn.MaxPool2d(3, stride=2, padding=1)


class GoogLeNet(nn.Module):
    """The stem (b1, b2), the body (b3, b4, b5) and the head."""
    def __init__(self, num_classes=10, conv=conv_relu, block=Inception):
        super().__init__()
        self.conv, self.block = conv, block
        self.stem = nn.Sequential(OrderedDict(b1=self.b1(), b2=self.b2()))
        self.body = nn.Sequential(OrderedDict(
            b3=self.b3(), b4=self.b4(), b5=self.b5()))
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(),
            nn.LazyLinear(num_classes))

    def b1(self):  # N x 1 x 96 x 96 -> N x 64 x 24 x 24
        return nn.Sequential(self.conv(64, 7, stride=2, padding=3),
                             max_pool())

    def b2(self):  # -> N x 192 x 12 x 12
        return nn.Sequential(self.conv(64, 1),
                             self.conv(192, 3, padding=1), max_pool())

    def b3(self):  # -> N x 480 x 6 x 6
        c, block = self.conv, self.block
        return nn.Sequential(block(64, 96, 128, 16, 32, 32, c),
                             block(128, 128, 192, 32, 96, 64, c),
                             max_pool())

    def b4(self):  # -> N x 832 x 3 x 3
        c, block = self.conv, self.block
        return nn.Sequential(block(192, 96, 208, 16, 48, 64, c),
                             block(160, 112, 224, 24, 64, 64, c),
                             block(128, 128, 256, 24, 64, 64, c),
                             block(112, 144, 288, 32, 64, 64, c),
                             block(256, 160, 320, 32, 128, 128, c),
                             max_pool())

    def b5(self):  # -> N x 1024 x 3 x 3
        c, block = self.conv, self.block
        return nn.Sequential(block(256, 160, 320, 32, 128, 128, c),
                             block(384, 192, 384, 48, 128, 128, c))

    def forward(self, x):  # head: N x 1024 x 3 x 3 -> N x 10
        return self.head(self.body(self.stem(x)))


# The FLOPs chapter ----------------------------------------------------------------


class NaiveInception(Inception):
    """The block without its 1x1 reductions: the 3x3 and 5x5
    convolutions read every input channel."""
    def __init__(self, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj,
                 conv=conv_relu):
        super().__init__(ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5,
                         pool_proj, conv)
        self.branch2 = conv(ch3x3, 3, padding=1)
        self.branch3 = conv(ch5x5, 5, padding=2)


# The variants chapter -------------------------------------------------------------


class FactorizedInception(Inception):
    """Branch 3's 5x5 convolution as two 3x3 ones (Inception-v3)."""
    def __init__(self, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj,
                 conv=conv_relu):
        super().__init__(ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5,
                         pool_proj, conv)
        self.branch3 = nn.Sequential(conv(ch5x5red, 1),
                                     conv(ch5x5red, 3, padding=1),
                                     conv(ch5x5, 3, padding=1))


class ResidualInception(Inception):
    """The block plus a shortcut, as in ResNet: ReLU(branches(x) + a
    1x1 convolution of x to the block's width), no ReLU on the shortcut."""
    def __init__(self, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj,
                 conv=conv_relu):
        super().__init__(ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5,
                         pool_proj, conv)
        width = ch1x1 + ch3x3 + ch5x5 + pool_proj
        self.shortcut = nn.LazyConv2d(width, 1)  # linear

    def forward(self, x):
        return F.relu(super().forward(x) + self.shortcut(x))


class SmallStemGoogLeNet(GoogLeNet):
    """For 28x28 images: b1 is one 3x3 convolution, no max pool."""
    def b1(self):  # N x 1 x 28 x 28 -> N x 64 x 28 x 28
        return nn.Sequential(self.conv(64, 3, padding=1))


def conv_bn_relu(channels, kernel_size, stride=1, padding=0, bias=False):
    """Conv-BN-ReLU: no conv bias, BatchNorm's shift takes its place."""
    return nn.Sequential(
        nn.LazyConv2d(channels, kernel_size, stride, padding, bias=bias),
        nn.LazyBatchNorm2d(), nn.ReLU())


def aux_head(num_classes, conv=conv_relu):
    """An auxiliary classifier: pool, 1x1 conv, two dense layers."""
    return nn.Sequential(nn.AvgPool2d(5, stride=3), conv(128, 1),
                         nn.Flatten(), nn.LazyLinear(1024), nn.ReLU(),
                         nn.Dropout(0.7), nn.LazyLinear(num_classes))


class GoogLeNetAux(GoogLeNet):
    """GoogLeNet with the paper's two auxiliary classifiers, which
    only run in training, after inception4a and inception4d."""
    def __init__(self, num_classes=10, conv=conv_relu, block=Inception):
        super().__init__(num_classes, conv, block)
        self.aux1 = aux_head(num_classes, conv)
        self.aux2 = aux_head(num_classes, conv)

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        b4 = self.body.b4
        x = b4[0](self.body.b3(self.stem(x)))       # inception4a
        aux1 = self.aux1(x)
        x = b4[3](b4[2](b4[1](x)))                  # 4b, 4c, 4d
        aux2 = self.aux2(x)
        x = self.body.b5(b4[5](b4[4](x)))           # 4e, pool, b5
        return self.head(x), (aux1, aux2)


# The training chapter -------------------------------------------------------------


def train_step(model, optimizer, X, y, label_smoothing=0.0, bf16=False):
    """One step: forward, loss, gradients, update."""
    # no cached bfloat16 weights: the step may be recorded as a CUDA graph
    with torch.autocast(X.device.type, torch.bfloat16, enabled=bf16,
                        cache_enabled=False):
        y_hat, aux = training.split_aux(model(X))
        loss = F.cross_entropy(y_hat, y, label_smoothing=label_smoothing)
        # auxiliary heads (variants chapter) add their losses x 0.3
        aux_loss = sum(
            F.cross_entropy(a, y, label_smoothing=label_smoothing)
            for a in aux)
    (loss + 0.3 * aux_loss).backward()  # gradients
    optimizer.step()                      # update
    return loss.detach(), (y_hat.argmax(dim=1) == y).sum()
