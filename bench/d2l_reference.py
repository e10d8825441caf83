"""The d2l reference: Dive into Deep Learning's own GoogLeNet run, timed.

Runs in ``.venv-bench`` (``bench/setup_bench_env.sh``), which holds the ``d2l``
package 1.0.3 with torch and torchvision; ``bench/train_bench.py`` starts it
as a subprocess beside our trainers and reads the JSON record it writes.

The model and the training call are the PyTorch code of D2L's section
"Multi-Branch Networks (GoogLeNet)" (``sec_googlenet``; A. Zhang, Z. C. Lipton,
M. Li and A. J. Smola, *Dive into Deep Learning*, release 1.0.3,
https://d2l.ai/chapter_convolutional-modern/googlenet.html; sample code under
the MIT-0 license), written out below because the ``d2l`` package itself does
not ship them. What the benchmark changes, and why:

* **Data.** ``d2l.FashionMNIST`` downloads the data with torchvision, which is
  impossible offline. :class:`SharedFashionMNIST` subclasses it and serves the
  IDX files that ``d2l_lite.data.load_fashion_mnist`` reads (the shared copy,
  ``D2L_FASHION_MNIST_DIR``) through d2l's own transform
  (``transforms.Resize((96, 96))`` then ``ToTensor()`` on a PIL image, as
  torchvision's dataset hands it over) and d2l's own ``get_dataloader``
  (batch 128, shuffled training data, ``num_workers=4`` as ``d2l.DataModule``
  sets it).
* **Timing and test accuracy.** ``d2l.Trainer.fit_epoch`` is copied into
  :class:`TimedTrainer` with two timers: one around the training loop (the
  number reported, as our trainers report theirs) and one around d2l's
  validation loop over the test set, which also counts correct predictions,
  so the test accuracy per epoch is exact (d2l averages per-batch accuracies
  on its board). ``validation_step`` is inlined for that (one forward pass
  per batch, as d2l does).
* **Board.** d2l's ``ProgressBoard`` redraws a matplotlib figure twice per
  epoch; here ``board.display = False``: the points are still collected
  (including d2l's per-step ``loss.cpu()`` copy, a device synchronisation
  every step), but nothing is drawn. ``--board`` keeps the drawing.
* **Seed.** ``torch.manual_seed(seed)`` before building the model (d2l does
  not seed); it changes nothing about speed.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
import torchvision
from PIL import Image
from torch import nn
from torch.nn import functional as F
from torchvision import transforms

from d2l import torch as d2l

import d2l_cli  # bench/d2l_cli.py: the shared harness


# ---- D2L 1.0.3, sec_googlenet (PyTorch), as the book writes it ---------------------------

class Inception(nn.Module):
    # c1--c4 are the number of output channels for each branch
    def __init__(self, c1, c2, c3, c4, **kwargs):
        super(Inception, self).__init__(**kwargs)
        # Branch 1
        self.b1_1 = nn.LazyConv2d(c1, kernel_size=1)
        # Branch 2
        self.b2_1 = nn.LazyConv2d(c2[0], kernel_size=1)
        self.b2_2 = nn.LazyConv2d(c2[1], kernel_size=3, padding=1)
        # Branch 3
        self.b3_1 = nn.LazyConv2d(c3[0], kernel_size=1)
        self.b3_2 = nn.LazyConv2d(c3[1], kernel_size=5, padding=2)
        # Branch 4
        self.b4_1 = nn.MaxPool2d(kernel_size=3, stride=1, padding=1)
        self.b4_2 = nn.LazyConv2d(c4, kernel_size=1)

    def forward(self, x):
        b1 = F.relu(self.b1_1(x))
        b2 = F.relu(self.b2_2(F.relu(self.b2_1(x))))
        b3 = F.relu(self.b3_2(F.relu(self.b3_1(x))))
        b4 = F.relu(self.b4_2(self.b4_1(x)))
        return torch.cat((b1, b2, b3, b4), dim=1)


class GoogleNet(d2l.Classifier):
    def b1(self):
        return nn.Sequential(
            nn.LazyConv2d(64, kernel_size=7, stride=2, padding=3),
            nn.ReLU(), nn.MaxPool2d(kernel_size=3, stride=2, padding=1))


@d2l.add_to_class(GoogleNet)
def b2(self):
    return nn.Sequential(
        nn.LazyConv2d(64, kernel_size=1), nn.ReLU(),
        nn.LazyConv2d(192, kernel_size=3, padding=1), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2, padding=1))


@d2l.add_to_class(GoogleNet)
def b3(self):
    return nn.Sequential(Inception(64, (96, 128), (16, 32), 32),
                         Inception(128, (128, 192), (32, 96), 64),
                         nn.MaxPool2d(kernel_size=3, stride=2, padding=1))


@d2l.add_to_class(GoogleNet)
def b4(self):
    return nn.Sequential(Inception(192, (96, 208), (16, 48), 64),
                         Inception(160, (112, 224), (24, 64), 64),
                         Inception(128, (128, 256), (24, 64), 64),
                         Inception(112, (144, 288), (32, 64), 64),
                         Inception(256, (160, 320), (32, 128), 128),
                         nn.MaxPool2d(kernel_size=3, stride=2, padding=1))


@d2l.add_to_class(GoogleNet)
def b5(self):
    return nn.Sequential(Inception(256, (160, 320), (32, 128), 128),
                         Inception(384, (192, 384), (48, 128), 128),
                         nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten())


@d2l.add_to_class(GoogleNet)
def __init__(self, lr=0.1, num_classes=10):
    super(GoogleNet, self).__init__()
    self.save_hyperparameters()
    self.net = nn.Sequential(self.b1(), self.b2(), self.b3(), self.b4(),
                             self.b5(), nn.LazyLinear(num_classes))
    self.net.apply(d2l.init_cnn)

# The chapter's training cell:
#   model = GoogleNet(lr=0.01)
#   trainer = d2l.Trainer(max_epochs=10, num_gpus=1)
#   data = d2l.FashionMNIST(batch_size=128, resize=(96, 96))
#   model.apply_init([next(iter(data.get_dataloader(True)))[0]], d2l.init_cnn)
#   trainer.fit(model, data)
# run() below makes the same calls, with the two classes that follow.


# ---- the benchmark's data module and timed trainer ----------------------------------------

class ArrayImages(torch.utils.data.Dataset):
    """uint8 images and labels served like ``torchvision.datasets.FashionMNIST``:
    each image as a PIL grayscale image through ``transform``, the label as an int."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        img = Image.fromarray(self.images[index])  # uint8 H x W: mode "L", as torchvision's
        return self.transform(img), int(self.labels[index])


class SharedFashionMNIST(d2l.FashionMNIST):
    """``d2l.FashionMNIST`` over arrays from ``d2l_lite.data`` instead of a download.

    Same transform and ``get_dataloader`` as d2l (inherited): batches of
    ``batch_size``, shuffled training data, ``num_workers`` worker processes
    (4, d2l.DataModule's default)."""

    def __init__(self, arrays, batch_size=64, resize=(28, 28), num_workers=4):
        d2l.DataModule.__init__(self, num_workers=num_workers)
        self.save_hyperparameters(ignore=["arrays"])
        trans = transforms.Compose([transforms.Resize(resize),
                                    transforms.ToTensor()])
        self.train = ArrayImages(arrays.train_images, arrays.train_labels, trans)
        self.val = ArrayImages(arrays.test_images, arrays.test_labels, trans)


class TimedTrainer(d2l_cli.TimedTrainer, d2l.Trainer):
    """``d2l.Trainer`` whose ``fit_epoch`` (d2l's, copied) is timed and records an
    exact test accuracy per epoch in a :class:`d2l_lite.training.History`."""

    def _sync(self):
        if self.gpus:
            torch.cuda.synchronize(self.gpus[0])

    def fit_epoch(self):
        # -- d2l.Trainer.fit_epoch, training part (d2l 1.0.3, sec_linear_scratch) --
        self._sync()
        start = time.perf_counter()
        self.model.train()
        loss_sum, seen = 0.0, 0
        for batch in self.train_dataloader:
            loss = self.model.training_step(self.prepare_batch(batch))
            self.optim.zero_grad()
            with torch.no_grad():
                loss.backward()
                if self.gradient_clip_val > 0:  # To be discussed later
                    self.clip_gradients(self.gradient_clip_val, self.model)
                self.optim.step()
            self.train_batch_idx += 1
            # the benchmark's bookkeeping: d2l's training_step already copied the
            # loss to the CPU for its board, so .item() adds no synchronisation
            loss_sum += loss.item() * len(batch[-1])
            seen += len(batch[-1])
        self._sync()
        seconds = time.perf_counter() - start
        # -- d2l's validation part, over the test set (validation_step inlined) --
        start = time.perf_counter()
        self.model.eval()
        correct, total = 0, 0
        for batch in self.val_dataloader:
            with torch.no_grad():
                batch = self.prepare_batch(batch)
                Y_hat = self.model(*batch[:-1])
                self.model.plot('loss', self.model.loss(Y_hat, batch[-1]), train=False)
                self.model.plot('acc', self.model.accuracy(Y_hat, batch[-1]), train=False)
                correct += int((Y_hat.argmax(dim=1) == batch[-1]).sum())
                total += len(batch[-1])
            self.val_batch_idx += 1
        self._sync()
        self.validation_seconds.append(time.perf_counter() - start)
        d2l_cli.record_epoch(self, loss_sum, seen, correct, total, seconds)


def device_name() -> str:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def run(args) -> dict:
    cuda = torch.cuda.is_available()
    arrays, history = d2l_cli.start(args, "PyTorch", device_name())
    torch.manual_seed(args.seed)
    setup = time.perf_counter()
    # the chapter's training cell, with the benchmark's data module and trainer
    model = GoogleNet(lr=args.lr)
    trainer = TimedTrainer(max_epochs=args.epochs, num_gpus=1 if cuda else 0,
                           history=history)
    data = SharedFashionMNIST(arrays, batch_size=args.batch_size,
                              resize=(args.image_size, args.image_size),
                              num_workers=args.num_workers)
    model.apply_init([next(iter(data.get_dataloader(True)))[0]], d2l.init_cnn)
    model.board.display = args.board
    setup_seconds, fit_seconds = d2l_cli.timed_fit(trainer, model, data, setup)
    return d2l_cli.record(
        args, trainer, setup_seconds, fit_seconds,
        {"numpy": np.__version__, "torch": torch.__version__,
         "torchvision": torchvision.__version__},
        on_gpu=cuda, dtype="float32", num_workers=data.num_workers,
        parameters=sum(p.numel() for p in model.parameters()), device=device_name(),
        threads=torch.get_num_threads())


def main(argv=None) -> int:
    return d2l_cli.main(run, __doc__.split("\n")[0], argv,
                        workers_help="DataLoader workers (d2l.DataModule's default: 4)")


if __name__ == "__main__":
    sys.exit(main())
