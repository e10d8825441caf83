"""The d2l reference in MXNet: Dive into Deep Learning's own MXNet GoogLeNet run, timed.

Runs in ``.venv-mxnet`` (MXNet 1.9.1, numpy 1.23.5) with the ``d2l`` package 1.0.3
and what its ``d2l/mxnet.py`` imports at module level but ``.venv-mxnet`` lacks
(pandas, pytz) installed beside it, not into it, in ``.venv-bench/mxnet-extra``::

    .venv-mxnet/bin/python -m pip install --no-deps \\
        --target .venv-bench/mxnet-extra d2l==1.0.3 pandas==2.0.3 pytz
    PYTHONPATH=.venv-bench/mxnet-extra .venv-mxnet/bin/python \\
        bench/d2l_reference_mxnet.py --out record.json

It writes the same JSON record as ``bench/d2l_reference.py`` (the PyTorch
reference), which ``bench/train_bench.py`` reads.

The model and the training call are the MXNet code of D2L's section
"Multi-Branch Networks (GoogLeNet)" (``sec_googlenet``; A. Zhang, Z. C. Lipton,
M. Li and A. J. Smola, *Dive into Deep Learning*, release 1.0.3,
https://d2l.ai/chapter_convolutional-modern/googlenet.html; sample code under
the MIT-0 license), written out below because the ``d2l`` package itself does
not ship them; as in the book, MXNet runs with its NumPy interface
(``npx.set_np()``). What the benchmark changes, and why:

* **Data.** ``d2l.FashionMNIST`` reads the data through
  ``gluon.data.vision.FashionMNIST``, which downloads it: impossible offline.
  :class:`ArrayFashionMNIST` is that gluon dataset with its ``_get_data`` (the
  download and the file reading) replaced by the arrays of
  ``d2l_lite.data.load_fashion_mnist`` (the shared copy,
  ``D2L_FASHION_MNIST_DIR``), stored as gluon stores them (uint8 images
  ``(28, 28, 1)`` and int32 labels, as ``mxnet.np`` arrays). Everything after
  that is d2l's: :class:`SharedFashionMNIST` applies d2l's
  ``transform_first(Compose([Resize((96, 96)), ToTensor()]))`` and keeps d2l's
  ``get_dataloader`` (gluon's ``DataLoader``: batch 128, shuffled training data,
  ``num_workers=4`` as ``d2l.DataModule`` sets it).
* **Timing and test accuracy.** d2l's MXNet ``Trainer.fit_epoch`` is copied
  into :class:`TimedTrainer` with two timers (each read after
  ``npx.waitall()``, as MXNet runs asynchronously): one around the training
  loop (the number reported, as our trainers report theirs) and one around
  d2l's validation loop over the test set, which also counts correct
  predictions, so the test accuracy per epoch is exact (d2l averages per-batch
  accuracies on its board). ``validation_step`` is inlined for that (one
  forward pass per batch, as d2l does). As in the chapter's MXNet cell, the
  parameters are created at the first batch (gluon's deferred initialisation,
  ``init.Xavier()``), so the first epoch's time includes that; the PyTorch
  reference initialises before its timer.
* **Board.** d2l's ``ProgressBoard`` redraws a matplotlib figure twice per
  epoch; here ``board.display = False``: the points are still collected
  (including d2l's per-step ``asnumpy()`` copy of the loss, a synchronisation
  every step), but nothing is drawn. ``--board`` keeps the drawing; in
  ``.venv-mxnet`` that fails at the first figure (matplotlib 3.8.4 imports
  ``backend2gui`` from IPython, which IPython 9 no longer has).
* **GPU.** The chapter asks for ``d2l.Trainer(num_gpus=1)``; here 1 only where
  MXNet sees a GPU, else 0 (d2l's ``Trainer`` takes ``min(num_gpus, found)``
  anyway).
* **Seed.** ``mx.random.seed(seed)`` and NumPy's (gluon's shuffling) before
  building the model (d2l does not seed); it changes nothing about speed.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as onp
import mxnet as mx
from mxnet import autograd, gluon, init, np, npx
from mxnet.gluon import nn
from mxnet.gluon.data.vision import transforms
from mxnet.util import is_np_array

from d2l import mxnet as d2l

from d2l_lite import runtime

import d2l_cli  # bench/d2l_cli.py: the shared harness

npx.set_np()


# ---- D2L 1.0.3, sec_googlenet (MXNet), as the book writes it -----------------------------

class Inception(nn.Block):
    # c1--c4 are the number of output channels for each branch
    def __init__(self, c1, c2, c3, c4, **kwargs):
        super(Inception, self).__init__(**kwargs)
        # Branch 1
        self.b1_1 = nn.Conv2D(c1, kernel_size=1, activation='relu')
        # Branch 2
        self.b2_1 = nn.Conv2D(c2[0], kernel_size=1, activation='relu')
        self.b2_2 = nn.Conv2D(c2[1], kernel_size=3, padding=1,
                              activation='relu')
        # Branch 3
        self.b3_1 = nn.Conv2D(c3[0], kernel_size=1, activation='relu')
        self.b3_2 = nn.Conv2D(c3[1], kernel_size=5, padding=2,
                              activation='relu')
        # Branch 4
        self.b4_1 = nn.MaxPool2D(pool_size=3, strides=1, padding=1)
        self.b4_2 = nn.Conv2D(c4, kernel_size=1, activation='relu')

    def forward(self, x):
        b1 = self.b1_1(x)
        b2 = self.b2_2(self.b2_1(x))
        b3 = self.b3_2(self.b3_1(x))
        b4 = self.b4_2(self.b4_1(x))
        return np.concatenate((b1, b2, b3, b4), axis=1)


class GoogleNet(d2l.Classifier):
    def b1(self):
        net = nn.Sequential()
        net.add(nn.Conv2D(64, kernel_size=7, strides=2, padding=3,
                          activation='relu'),
                nn.MaxPool2D(pool_size=3, strides=2, padding=1))
        return net


@d2l.add_to_class(GoogleNet)
def b2(self):
    net = nn.Sequential()
    net.add(nn.Conv2D(64, kernel_size=1, activation='relu'),
            nn.Conv2D(192, kernel_size=3, padding=1, activation='relu'),
            nn.MaxPool2D(pool_size=3, strides=2, padding=1))
    return net


@d2l.add_to_class(GoogleNet)
def b3(self):
    net = nn.Sequential()
    net.add(Inception(64, (96, 128), (16, 32), 32),
            Inception(128, (128, 192), (32, 96), 64),
            nn.MaxPool2D(pool_size=3, strides=2, padding=1))
    return net


@d2l.add_to_class(GoogleNet)
def b4(self):
    net = nn.Sequential()
    net.add(Inception(192, (96, 208), (16, 48), 64),
            Inception(160, (112, 224), (24, 64), 64),
            Inception(128, (128, 256), (24, 64), 64),
            Inception(112, (144, 288), (32, 64), 64),
            Inception(256, (160, 320), (32, 128), 128),
            nn.MaxPool2D(pool_size=3, strides=2, padding=1))
    return net


@d2l.add_to_class(GoogleNet)
def b5(self):
    net = nn.Sequential()
    net.add(Inception(256, (160, 320), (32, 128), 128),
            Inception(384, (192, 384), (48, 128), 128),
            nn.GlobalAvgPool2D())
    return net


@d2l.add_to_class(GoogleNet)
def __init__(self, lr=0.1, num_classes=10):
    super(GoogleNet, self).__init__()
    self.save_hyperparameters()
    self.net = nn.Sequential()
    self.net.add(self.b1(), self.b2(), self.b3(), self.b4(), self.b5(),
                 nn.Dense(num_classes))
    self.net.initialize(init.Xavier())

# The chapter's training cell:
#   model = GoogleNet(lr=0.01)
#   trainer = d2l.Trainer(max_epochs=10, num_gpus=1)
#   data = d2l.FashionMNIST(batch_size=128, resize=(96, 96))
#   trainer.fit(model, data)
# run() below makes the same calls, with the classes that follow.


# ---- the benchmark's data module and timed trainer ----------------------------------------

class ArrayFashionMNIST(gluon.data.vision.FashionMNIST):
    """``gluon.data.vision.FashionMNIST`` over uint8 arrays instead of a download.

    Only ``_get_data`` differs: it stores the arrays as gluon's stores what it reads
    from the IDX files (images ``(N, 28, 28, 1)`` uint8, labels int32; ``mxnet.np``
    arrays under ``npx.set_np()``), so items, ``transform_first`` and batching are
    gluon's. ``root`` is only a name here (gluon creates it if it is missing)."""

    def __init__(self, images, labels, train=True, root=None):
        self._arrays = images, labels
        super().__init__(root=root or os.environ.get("D2L_FASHION_MNIST_DIR") or os.curdir,
                         train=train)

    def _get_data(self):
        images, labels = self._arrays
        # gluon's MNIST._get_data from here on, with the arrays instead of the files
        label = onp.asarray(labels, dtype=onp.uint8).astype(onp.int32)
        if is_np_array():
            label = np.array(label, dtype=label.dtype)
        data = onp.asarray(images, dtype=onp.uint8).reshape(len(label), 28, 28, 1)
        array_fn = np.array if is_np_array() else mx.nd.array
        self._data = array_fn(data, dtype=data.dtype)
        self._label = label
        self._arrays = None


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
        self.train = ArrayFashionMNIST(
            arrays.train_images, arrays.train_labels, train=True).transform_first(trans)
        self.val = ArrayFashionMNIST(
            arrays.test_images, arrays.test_labels, train=False).transform_first(trans)


class TimedTrainer(d2l_cli.TimedTrainer, d2l.Trainer):
    """``d2l.Trainer`` whose ``fit_epoch`` (d2l's, copied) is timed and records an
    exact test accuracy per epoch in a :class:`d2l_lite.training.History`."""

    def fit_epoch(self):
        # -- d2l.Trainer.fit_epoch, training part (d2l 1.0.3, sec_linear_scratch) --
        npx.waitall()
        start = time.perf_counter()
        loss_sum, seen = 0.0, 0
        for batch in self.train_dataloader:
            with autograd.record():
                loss = self.model.training_step(self.prepare_batch(batch))
            loss.backward()
            if self.gradient_clip_val > 0:
                self.clip_gradients(self.gradient_clip_val, self.model)
            self.optim.step(1)
            self.train_batch_idx += 1
            # the benchmark's bookkeeping: d2l's training_step already copied the
            # loss to the host for its board, so float() adds no synchronisation
            loss_sum += float(loss) * len(batch[-1])
            seen += len(batch[-1])
        npx.waitall()
        seconds = time.perf_counter() - start
        # -- d2l's validation part, over the test set (validation_step inlined) --
        start = time.perf_counter()
        correct, total = 0, 0
        for batch in self.val_dataloader:
            batch = self.prepare_batch(batch)
            Y_hat = self.model(*batch[:-1])
            self.model.plot('loss', self.model.loss(Y_hat, batch[-1]), train=False)
            self.model.plot('acc', self.model.accuracy(Y_hat, batch[-1]), train=False)
            correct += int(self.model.accuracy(Y_hat, batch[-1], averaged=False).sum())
            total += len(batch[-1])
            self.val_batch_idx += 1
        npx.waitall()
        self.validation_seconds.append(time.perf_counter() - start)
        d2l_cli.record_epoch(self, loss_sum, seen, correct, total, seconds)


def device_name() -> str:
    # MXNet names no GPU; nvidia-smi does (d2l_lite.runtime.hardware)
    return runtime.hardware() if npx.num_gpus() > 0 else "cpu"


def run(args) -> dict:
    gpu = npx.num_gpus() > 0
    arrays, history = d2l_cli.start(args, "MXNet", device_name())
    mx.random.seed(args.seed)
    onp.random.seed(args.seed)
    setup = time.perf_counter()
    # the chapter's training cell, with the benchmark's data module and trainer
    model = GoogleNet(lr=args.lr)
    trainer = TimedTrainer(max_epochs=args.epochs, num_gpus=1 if gpu else 0,
                           history=history)
    data = SharedFashionMNIST(arrays, batch_size=args.batch_size,
                              resize=(args.image_size, args.image_size),
                              num_workers=args.num_workers)
    model.board.display = args.board
    setup_seconds, fit_seconds = d2l_cli.timed_fit(trainer, model, data, setup)
    return d2l_cli.record(
        args, trainer, setup_seconds, fit_seconds,
        {"numpy": onp.__version__, "mxnet": mx.__version__,
         "pandas": d2l_cli.package_version("pandas")},
        on_gpu=bool(trainer.gpus), dtype="float32", num_workers=data.num_workers,
        # shapes are known once the first batch went through (deferred initialisation)
        parameters=sum(int(onp.prod(p.shape)) for p in model.collect_params().values()),
        device=device_name(),
        # MXNet's operators use OpenMP threads: OMP_NUM_THREADS if set, else all cores
        threads=int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count()))


def main(argv=None) -> int:
    return d2l_cli.main(run, __doc__.split("\n")[0], argv,
                        workers_help="DataLoader workers (d2l.DataModule's default: 4)")


if __name__ == "__main__":
    sys.exit(main())
