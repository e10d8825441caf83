"""The d2l JAX reference: Dive into Deep Learning's own JAX GoogLeNet run, timed.

The JAX counterpart of ``bench/d2l_reference.py``, with the same command line and
the same JSON record. It runs with the main ``.venv`` (jax, flax, optax,
TensorFlow) plus a target folder that holds the ``d2l`` package 1.0.3 and
``tensorflow_datasets`` (which ``d2l/jax.py`` imports at module level), with what
``import tensorflow_datasets`` needs besides and ``pandas`` (``d2l`` imports it; the
main ``.venv`` lacks it)::

    pip install --no-deps --target .venv-bench/jax-extra d2l==1.0.3 \\
        tensorflow_datasets toml promise tensorflow-metadata immutabledict dm-tree pandas
    PYTHONPATH=.venv-bench/jax-extra .venv/bin/python bench/d2l_reference_jax.py --out r.json

The model and the training call are the JAX code of D2L's section "Multi-Branch
Networks (GoogLeNet)" (``sec_googlenet``; A. Zhang, Z. C. Lipton, M. Li and
A. J. Smola, *Dive into Deep Learning*, release 1.0.3,
https://d2l.ai/chapter_convolutional-modern/googlenet.html; sample code under
the MIT-0 license), written out below because the ``d2l`` package itself does
not ship them. Everything else is d2l's own ``d2l.jax``: ``d2l.Classifier``
(its jitted ``loss`` and ``accuracy``, ``training_step``), ``d2l.Trainer.fit``
(initialisation with flax's defaults, a flax ``TrainState`` with
``optax.sgd(lr)``, float32), ``d2l.FashionMNIST.get_dataloader`` (``tf.data``:
scale to [0, 1], batch, ``tf.image.resize_with_pad`` per batch, shuffle the
batches, ``tfds.as_numpy``). What the benchmark changes, and why:

* **Data.** ``d2l.FashionMNIST.__init__`` downloads the data with
  ``tf.keras.datasets.fashion_mnist.load_data()``, which is impossible offline.
  :class:`SharedFashionMNIST` subclasses it and sets ``self.train`` /
  ``self.val`` to the same ``(images, labels)`` uint8 arrays, read from the IDX
  files by ``d2l_lite.data.load_fashion_mnist`` (the shared copy,
  ``D2L_FASHION_MNIST_DIR``); d2l's own ``get_dataloader`` is kept unchanged.
* **Timing and test accuracy.** d2l's JAX ``Trainer.fit_epoch`` is copied into
  :class:`TimedTrainer` with two timers: one around the training loop (the
  number reported, as our trainers report theirs; it waits for the last
  update with ``jax.block_until_ready``) and one around d2l's validation loop
  over the test set. ``validation_step`` is inlined there with the same two
  jitted calls (``loss``, then ``accuracy``), ``accuracy`` asked for its
  per-example comparison (``averaged=False``) so that the correct predictions
  are counted and the test accuracy per epoch is exact (d2l averages per-batch
  accuracies on its board); the board still gets the batch mean.
* **Board.** d2l's ``ProgressBoard`` redraws a matplotlib figure twice per
  epoch; here ``board.display = False``: the points are still collected
  (including d2l's per-step ``jax.device_put`` of the loss to the CPU), but
  nothing is drawn. ``--board`` keeps the drawing.
* **Seed.** d2l's ``Trainer.fit(model, data, key=None)`` takes its root PRNG
  key from ``d2l.get_key()`` (Python's unseeded ``random``) unless ``key`` is
  given; here ``key=jax.random.PRNGKey(seed)``, and ``tf.random.set_seed(seed)``
  fixes the order of d2l's ``tf.data`` shuffle. Neither changes speed.
* **Compatibility alias.** d2l 1.0.3 was written for jax ~0.4 / flax ~0.7; one
  name it uses has since been removed, and is aliased below (see
  :func:`_compat_aliases`) before ``d2l`` is imported. d2l's algorithm is
  unchanged.
"""

from __future__ import annotations

import os
import sys
import time

import jax
import numpy as np


def _compat_aliases():
    """The smallest aliases d2l 1.0.3's JAX code needs under today's jax/flax."""
    # d2l 1.0.3 calls jax.random.PRNGKeyArray (the annotation of the dropout_rng
    # field of the TrainState that Trainer.fit defines), deprecated in jax 0.4.16
    # and removed in jax 0.4.24; jax.Array is the replacement jax names.
    if not hasattr(jax.random, "PRNGKeyArray"):
        jax.random.PRNGKeyArray = jax.Array


_compat_aliases()

import flax  # noqa: E402
import optax  # noqa: E402
import tensorflow as tf  # noqa: E402
from flax import linen as nn  # noqa: E402
from jax import numpy as jnp  # noqa: E402

from d2l import jax as d2l  # noqa: E402

import d2l_cli  # noqa: E402  # bench/d2l_cli.py: the shared harness


# ---- D2L 1.0.3, sec_googlenet (JAX), as the book writes it ----------------------------------

class Inception(nn.Module):
    # `c1`--`c4` are the number of output channels for each branch
    c1: int
    c2: tuple
    c3: tuple
    c4: int

    def setup(self):
        # Branch 1
        self.b1_1 = nn.Conv(self.c1, kernel_size=(1, 1))
        # Branch 2
        self.b2_1 = nn.Conv(self.c2[0], kernel_size=(1, 1))
        self.b2_2 = nn.Conv(self.c2[1], kernel_size=(3, 3), padding='same')
        # Branch 3
        self.b3_1 = nn.Conv(self.c3[0], kernel_size=(1, 1))
        self.b3_2 = nn.Conv(self.c3[1], kernel_size=(5, 5), padding='same')
        # Branch 4
        self.b4_1 = lambda x: nn.max_pool(x, window_shape=(3, 3),
                                          strides=(1, 1), padding='same')
        self.b4_2 = nn.Conv(self.c4, kernel_size=(1, 1))

    def __call__(self, x):
        b1 = nn.relu(self.b1_1(x))
        b2 = nn.relu(self.b2_2(nn.relu(self.b2_1(x))))
        b3 = nn.relu(self.b3_2(nn.relu(self.b3_1(x))))
        b4 = nn.relu(self.b4_2(self.b4_1(x)))
        return jnp.concatenate((b1, b2, b3, b4), axis=-1)


class GoogleNet(d2l.Classifier):
    lr: float = 0.1
    num_classes: int = 10

    def setup(self):
        self.net = nn.Sequential([self.b1(), self.b2(), self.b3(), self.b4(),
                                  self.b5(), nn.Dense(self.num_classes)])

    def b1(self):
        return nn.Sequential([
                nn.Conv(64, kernel_size=(7, 7), strides=(2, 2), padding='same'),
                nn.relu,
                lambda x: nn.max_pool(x, window_shape=(3, 3), strides=(2, 2),
                                      padding='same')])


@d2l.add_to_class(GoogleNet)
def b2(self):
    return nn.Sequential([nn.Conv(64, kernel_size=(1, 1)),
                          nn.relu,
                          nn.Conv(192, kernel_size=(3, 3), padding='same'),
                          nn.relu,
                          lambda x: nn.max_pool(x, window_shape=(3, 3),
                                                strides=(2, 2), padding='same')])


@d2l.add_to_class(GoogleNet)
def b3(self):
    return nn.Sequential([Inception(64, (96, 128), (16, 32), 32),
                          Inception(128, (128, 192), (32, 96), 64),
                          lambda x: nn.max_pool(x, window_shape=(3, 3),
                                                strides=(2, 2), padding='same')])


@d2l.add_to_class(GoogleNet)
def b4(self):
    return nn.Sequential([Inception(192, (96, 208), (16, 48), 64),
                          Inception(160, (112, 224), (24, 64), 64),
                          Inception(128, (128, 256), (24, 64), 64),
                          Inception(112, (144, 288), (32, 64), 64),
                          Inception(256, (160, 320), (32, 128), 128),
                          lambda x: nn.max_pool(x, window_shape=(3, 3),
                                                strides=(2, 2), padding='same')])


@d2l.add_to_class(GoogleNet)
def b5(self):
    return nn.Sequential([Inception(256, (160, 320), (32, 128), 128),
                          Inception(384, (192, 384), (48, 128), 128),
                          # global average pooling over the whole spatial window
                          lambda x: nn.avg_pool(x, window_shape=x.shape[1:3],
                                                strides=x.shape[1:3], padding='valid'),
                          lambda x: x.reshape((x.shape[0], -1))])

# The chapter's training cell:
#   model = GoogleNet(lr=0.01)
#   trainer = d2l.Trainer(max_epochs=10, num_gpus=1)
#   data = d2l.FashionMNIST(batch_size=128, resize=(96, 96))
#   trainer.fit(model, data)
# run() below makes the same calls, with the two classes that follow.


# ---- the benchmark's data module and timed trainer ------------------------------------------

class SharedFashionMNIST(d2l.FashionMNIST):
    """``d2l.FashionMNIST`` over arrays from ``d2l_lite.data`` instead of a download.

    ``self.train`` / ``self.val`` are ``(images, labels)`` uint8 arrays, as
    ``tf.keras.datasets.fashion_mnist.load_data()`` returns them; d2l's own
    ``get_dataloader`` (inherited) turns them into batches."""

    def __init__(self, arrays, batch_size=64, resize=(28, 28)):
        d2l.DataModule.__init__(self)
        self.save_hyperparameters(ignore=["arrays"])
        self.train = (arrays.train_images, arrays.train_labels)
        self.val = (arrays.test_images, arrays.test_labels)


class TimedTrainer(d2l_cli.TimedTrainer, d2l.Trainer):
    """``d2l.Trainer`` whose ``fit_epoch`` (d2l's JAX one, copied) is timed and records
    an exact test accuracy per epoch in a :class:`d2l_lite.training.History`."""

    def fit_epoch(self):
        # -- d2l.Trainer.fit_epoch, training part (d2l 1.0.3, sec_linear_scratch) --
        start = time.perf_counter()
        self.model.training = True
        losses = []  # the benchmark's bookkeeping: (loss, batch size), read after the timer
        if self.state.batch_stats:
            # Mutable states will be used later (e.g., for batch norm)
            for batch in self.train_dataloader:
                (l, mutated_vars), grads = self.model.training_step(self.state.params,
                                                                    self.prepare_batch(batch),
                                                                    self.state)
                self.state = self.state.apply_gradients(grads=grads)
                # Can be ignored for models without Dropout Layers
                self.state = self.state.replace(
                    dropout_rng=jax.random.split(self.state.dropout_rng)[0])
                self.state = self.state.replace(batch_stats=mutated_vars['batch_stats'])
                self.train_batch_idx += 1
                losses.append((l, len(batch[-1])))
        else:
            for batch in self.train_dataloader:
                (l, _), grads = self.model.training_step(self.state.params,
                                                         self.prepare_batch(batch),
                                                         self.state)
                self.state = self.state.apply_gradients(grads=grads)
                # Can be ignored for models without Dropout Layers
                self.state = self.state.replace(
                    dropout_rng=jax.random.split(self.state.dropout_rng)[0])
                self.train_batch_idx += 1
                losses.append((l, len(batch[-1])))
        jax.block_until_ready(self.state)
        seconds = time.perf_counter() - start
        seen = sum(n for _, n in losses)
        loss_sum = sum(float(l) * n for l, n in losses)
        # -- d2l's validation part, over the test set (validation_step inlined) --
        start = time.perf_counter()
        self.model.training = False
        correct, total = 0, 0
        for batch in self.val_dataloader:
            batch = self.prepare_batch(batch)
            params = self.state.params
            l, _ = self.model.loss(params, batch[:-1], batch[-1], self.state)
            self.model.plot('loss', l, train=False)
            # d2l: self.accuracy(params, batch[:-1], batch[-1], state), averaged;
            # averaged=False gives the per-example comparison, so the count is exact
            compare = self.model.accuracy(params, batch[:-1], batch[-1], self.state, False)
            self.model.plot('acc', d2l.reduce_mean(compare), train=False)
            correct += int(compare.sum())
            total += len(batch[-1])
            self.val_batch_idx += 1
        jax.block_until_ready(l)
        self.validation_seconds.append(time.perf_counter() - start)
        d2l_cli.record_epoch(self, loss_sum, seen, correct, total, seconds)


def device_name() -> str:
    device = jax.devices()[0]
    return device.device_kind if device.platform == "gpu" else "cpu"


def run(args) -> dict:
    on_gpu = d2l.num_gpus() > 0
    arrays, history = d2l_cli.start(args, "JAX", device_name())
    tf.random.set_seed(args.seed)  # the order of d2l's tf.data shuffle
    setup = time.perf_counter()
    # the chapter's training cell, with the benchmark's data module and trainer
    model = GoogleNet(lr=args.lr)
    trainer = TimedTrainer(max_epochs=args.epochs, num_gpus=1 if on_gpu else 0,
                           history=history)
    data = SharedFashionMNIST(arrays, batch_size=args.batch_size,
                              resize=(args.image_size, args.image_size))
    model.board.display = args.board
    # d2l's fit initialises the parameters itself (flax's default initialisers)
    setup_seconds, fit_seconds = d2l_cli.timed_fit(trainer, model, data, setup,
                                                   key=jax.random.PRNGKey(args.seed))
    leaves = jax.tree_util.tree_leaves(trainer.state.params)
    return d2l_cli.record(
        args, trainer, setup_seconds, fit_seconds,
        {"numpy": np.__version__, "jax": jax.__version__,
         "jaxlib": d2l_cli.package_version("jaxlib"), "flax": flax.__version__,
         "optax": optax.__version__, "tensorflow": tf.__version__,
         "tensorflow_datasets": d2l_cli.package_version("tensorflow_datasets")},
        on_gpu=on_gpu, dtype=str(leaves[0].dtype),
        parameters=int(sum(x.size for x in leaves)), device=device_name(),
        # XLA's CPU thread pool is not queryable; the CPU cores this process may use
        threads=len(os.sched_getaffinity(0)))


def main(argv=None) -> int:
    return d2l_cli.main(run, __doc__.split("\n")[0], argv)


if __name__ == "__main__":
    sys.exit(main())
