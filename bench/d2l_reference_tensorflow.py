"""The d2l reference in TensorFlow: Dive into Deep Learning's own GoogLeNet run, timed.

The TensorFlow counterpart of ``bench/d2l_reference.py``: same command line,
same JSON record. It runs in ``.venv`` (TensorFlow) with the ``d2l`` package
1.0.3 and ``tf_keras`` from a separate folder on ``PYTHONPATH``::

    pip install --no-deps --target .venv-bench/tf-extra d2l==1.0.3 tf_keras==2.21.0 pandas
    PYTHONPATH=.venv-bench/tf-extra .venv/bin/python bench/d2l_reference_tensorflow.py ...

(``d2l.tensorflow`` imports pandas at the top, which ``.venv`` does not hold.)

The model and the training call are the TensorFlow code of D2L's section
"Multi-Branch Networks (GoogLeNet)" (``sec_googlenet``; A. Zhang, Z. C. Lipton,
M. Li and A. J. Smola, *Dive into Deep Learning*, release 1.0.3,
https://d2l.ai/chapter_convolutional-modern/googlenet.html; sample code under
the MIT-0 license), written out below because the ``d2l`` package itself does
not ship them. Everything else is d2l's own (``d2l.Classifier``'s loss and
accuracy, ``d2l.Module.configure_optimizers``, i.e. ``tf.keras.optimizers.SGD``,
Keras's default initialisation, as d2l's TensorFlow code has no ``init_cnn``;
float32; eager execution, no ``tf.function``, as d2l's ``Trainer`` runs).
Keras builds the model's variables on the first training batch, so epoch 1
includes that. What the benchmark changes, and why:

* **Keras 2.** ``d2l.tensorflow`` 1.0.3 was written for Keras 2; under Keras 3
  (TensorFlow 2.16 on) its classes break (Keras 3 sets ``Model.loss = None``,
  which hides ``d2l.Classifier.loss``). ``TF_USE_LEGACY_KERAS=1``, set below
  before TensorFlow is imported, makes ``tf.keras`` the ``tf_keras`` package
  (Keras 2), under which d2l's code runs unchanged.
* **Data.** ``d2l.FashionMNIST`` downloads the data with
  ``tf.keras.datasets.fashion_mnist.load_data()``, which is impossible offline.
  :class:`SharedFashionMNIST` subclasses it and sets ``self.train`` /
  ``self.val`` to the same ``(images, labels)`` uint8 arrays, read by
  ``d2l_lite.data.load_fashion_mnist`` from the IDX files (the shared copy,
  ``D2L_FASHION_MNIST_DIR``); d2l's own ``get_dataloader`` (``tf.data``: scale to
  [0, 1], batch 128, ``tf.image.resize_with_pad`` to 96 x 96, shuffle) is kept.
* **Timing and test accuracy.** d2l's ``Trainer.fit_epoch`` is copied into
  :class:`TimedTrainer` with two timers: one around the training loop (the
  number reported, as our trainers report theirs) and one around d2l's
  validation loop over the test set, which also counts correct predictions,
  so the test accuracy per epoch is exact (d2l averages per-batch accuracies
  on its board). ``validation_step`` is inlined for that (one forward pass
  per batch, as d2l does). On a GPU each timer stops after a device
  synchronisation.
* **Board.** d2l's ``ProgressBoard`` redraws a matplotlib figure twice per
  epoch; here ``board.display = False``: the points are still collected
  (including d2l's per-step ``.numpy()`` copy of the loss, a device
  synchronisation every step), but nothing is drawn. ``--board`` keeps the
  drawing.
* **Seed.** ``tf.random.set_seed(seed)`` and ``np.random.seed(seed)`` before
  building the model (d2l does not seed); it changes nothing about speed.
"""

from __future__ import annotations

import os

# Before any import of TensorFlow: tf.keras is then tf_keras (Keras 2), as d2l 1.0.3 expects.
os.environ["TF_USE_LEGACY_KERAS"] = "1"

import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from d2l import tensorflow as d2l  # noqa: E402

import d2l_cli  # noqa: E402  # bench/d2l_cli.py: the shared harness


# ---- D2L 1.0.3, sec_googlenet (TensorFlow), as the book writes it ------------------------

class Inception(tf.keras.Model):
    # c1--c4 are the number of output channels for each branch
    def __init__(self, c1, c2, c3, c4):
        super().__init__()
        # Branch 1
        self.b1_1 = tf.keras.layers.Conv2D(c1, 1, activation='relu')
        # Branch 2
        self.b2_1 = tf.keras.layers.Conv2D(c2[0], 1, activation='relu')
        self.b2_2 = tf.keras.layers.Conv2D(c2[1], 3, padding='same',
                                           activation='relu')
        # Branch 3
        self.b3_1 = tf.keras.layers.Conv2D(c3[0], 1, activation='relu')
        self.b3_2 = tf.keras.layers.Conv2D(c3[1], 5, padding='same',
                                           activation='relu')
        # Branch 4
        self.b4_1 = tf.keras.layers.MaxPool2D(3, 1, padding='same')
        self.b4_2 = tf.keras.layers.Conv2D(c4, 1, activation='relu')

    def call(self, x):
        b1 = self.b1_1(x)
        b2 = self.b2_2(self.b2_1(x))
        b3 = self.b3_2(self.b3_1(x))
        b4 = self.b4_2(self.b4_1(x))
        # Concatenate the outputs on the channel dimension
        return tf.keras.layers.Concatenate()([b1, b2, b3, b4])


class GoogleNet(d2l.Classifier):
    def b1(self):
        return tf.keras.models.Sequential([
            tf.keras.layers.Conv2D(64, 7, strides=2, padding='same',
                                   activation='relu'),
            tf.keras.layers.MaxPool2D(pool_size=3, strides=2,
                                      padding='same')])


@d2l.add_to_class(GoogleNet)
def b2(self):
    return tf.keras.models.Sequential([
        tf.keras.layers.Conv2D(64, 1, activation='relu'),
        tf.keras.layers.Conv2D(192, 3, padding='same', activation='relu'),
        tf.keras.layers.MaxPool2D(pool_size=3, strides=2, padding='same')])


@d2l.add_to_class(GoogleNet)
def b3(self):
    return tf.keras.models.Sequential([
        Inception(64, (96, 128), (16, 32), 32),
        Inception(128, (128, 192), (32, 96), 64),
        tf.keras.layers.MaxPool2D(pool_size=3, strides=2, padding='same')])


@d2l.add_to_class(GoogleNet)
def b4(self):
    return tf.keras.models.Sequential([
        Inception(192, (96, 208), (16, 48), 64),
        Inception(160, (112, 224), (24, 64), 64),
        Inception(128, (128, 256), (24, 64), 64),
        Inception(112, (144, 288), (32, 64), 64),
        Inception(256, (160, 320), (32, 128), 128),
        tf.keras.layers.MaxPool2D(pool_size=3, strides=2, padding='same')])


@d2l.add_to_class(GoogleNet)
def b5(self):
    return tf.keras.models.Sequential([
        Inception(256, (160, 320), (32, 128), 128),
        Inception(384, (192, 384), (48, 128), 128),
        tf.keras.layers.GlobalAvgPool2D(),
        tf.keras.layers.Flatten()])


@d2l.add_to_class(GoogleNet)
def __init__(self, lr=0.1, num_classes=10):
    super(GoogleNet, self).__init__()
    self.save_hyperparameters()
    self.net = tf.keras.models.Sequential([
        self.b1(), self.b2(), self.b3(), self.b4(), self.b5(),
        tf.keras.layers.Dense(num_classes)])

# The chapter's training cell:
#   trainer = d2l.Trainer(max_epochs=10)
#   data = d2l.FashionMNIST(batch_size=128, resize=(96, 96))
#   with d2l.try_gpu():
#       model = GoogleNet(lr=0.01)
#       trainer.fit(model, data)
# run() below makes the same calls, with the two classes that follow.


# ---- the benchmark's data module and timed trainer ----------------------------------------

class SharedFashionMNIST(d2l.FashionMNIST):
    """``d2l.FashionMNIST`` over arrays from ``d2l_lite.data`` instead of a download.

    ``self.train`` / ``self.val`` are ``(images, labels)`` uint8 arrays, as
    ``tf.keras.datasets.fashion_mnist.load_data()`` returns them; d2l's own
    ``get_dataloader`` (inherited) makes the ``tf.data`` pipeline."""

    def __init__(self, arrays, batch_size=64, resize=(28, 28)):
        d2l.DataModule.__init__(self)
        self.save_hyperparameters(ignore=["arrays"])
        self.train = (arrays.train_images, arrays.train_labels)
        self.val = (arrays.test_images, arrays.test_labels)


class TimedTrainer(d2l_cli.TimedTrainer, d2l.Trainer):
    """``d2l.Trainer`` whose ``fit_epoch`` (d2l's, copied) is timed and records an
    exact test accuracy per epoch in a :class:`d2l_lite.training.History`."""

    @staticmethod
    def _sync():
        if d2l.num_gpus():
            tf.test.experimental.sync_devices()

    def fit_epoch(self):
        # -- d2l.Trainer.fit_epoch, training part (d2l 1.0.3, sec_linear_scratch) --
        self._sync()
        start = time.perf_counter()
        self.model.training = True
        loss_sum, seen = 0.0, 0
        for batch in self.train_dataloader:
            with tf.GradientTape() as tape:
                loss = self.model.training_step(self.prepare_batch(batch))
            grads = tape.gradient(loss, self.model.trainable_variables)
            if self.gradient_clip_val > 0:
                grads = self.clip_gradients(self.gradient_clip_val, grads)
            self.optim.apply_gradients(zip(grads, self.model.trainable_variables))
            self.train_batch_idx += 1
            # the benchmark's bookkeeping: d2l's training_step already copied the
            # loss to the host for its board, so this adds no synchronisation
            loss_sum += float(loss) * int(batch[-1].shape[0])
            seen += int(batch[-1].shape[0])
        self._sync()
        seconds = time.perf_counter() - start
        # -- d2l's validation part, over the test set (validation_step inlined) --
        start = time.perf_counter()
        self.model.training = False
        correct, total = 0, 0
        for batch in self.val_dataloader:
            batch = self.prepare_batch(batch)
            Y_hat = self.model(*batch[:-1])
            self.model.plot('loss', self.model.loss(Y_hat, batch[-1]), train=False)
            self.model.plot('acc', self.model.accuracy(Y_hat, batch[-1]), train=False)
            preds = tf.cast(tf.argmax(Y_hat, axis=1), batch[-1].dtype)
            correct += int(tf.reduce_sum(tf.cast(preds == batch[-1], tf.int32)))
            total += int(batch[-1].shape[0])
            self.val_batch_idx += 1
        self._sync()
        self.validation_seconds.append(time.perf_counter() - start)
        d2l_cli.record_epoch(self, loss_sum, seen, correct, total, seconds)


def device_name() -> str:
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "cpu"
    details = tf.config.experimental.get_device_details(gpus[0])
    return details.get("device_name", gpus[0].name)


def intra_op_threads() -> int:
    """The threads TensorFlow's ops use on the CPU: the configured number, else
    ``TF_NUM_INTRAOP_THREADS``, else (TensorFlow's default) the usable cores."""
    configured = tf.config.threading.get_intra_op_parallelism_threads()
    if configured:
        return configured
    if os.environ.get("TF_NUM_INTRAOP_THREADS", "").isdigit():
        return int(os.environ["TF_NUM_INTRAOP_THREADS"])
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def run(args) -> dict:
    gpu = d2l.num_gpus() > 0
    arrays, history = d2l_cli.start(args, "TensorFlow", device_name())
    tf.random.set_seed(args.seed)
    np.random.seed(args.seed)
    setup = time.perf_counter()
    # the chapter's training cell, with the benchmark's data module and trainer
    trainer = TimedTrainer(max_epochs=args.epochs, history=history)
    data = SharedFashionMNIST(arrays, batch_size=args.batch_size,
                              resize=(args.image_size, args.image_size))
    with d2l.try_gpu():
        model = GoogleNet(lr=args.lr)
        model.board.display = args.board
        setup_seconds, fit_seconds = d2l_cli.timed_fit(trainer, model, data, setup)
    return d2l_cli.record(
        args, trainer, setup_seconds, fit_seconds,
        {"numpy": np.__version__, "tensorflow": tf.__version__,
         "tf_keras": d2l_cli.package_version("tf_keras")},
        on_gpu=gpu, dtype="float32",
        parameters=int(sum(np.prod(v.shape) for v in model.trainable_variables)),
        device=device_name(), threads=intra_op_threads())


def main(argv=None) -> int:
    return d2l_cli.main(run, __doc__.split("\n")[0], argv)


if __name__ == "__main__":
    sys.exit(main())
