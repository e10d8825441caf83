"""GoogLeNet in TensorFlow/Keras, built from :mod:`d2l_lite.architecture`.

Import it the d2l way::

    from d2l_lite import tensorflow as d2l

What it holds (the same names as the PyTorch, JAX and MXNet modules):

* :func:`try_gpu`, :func:`set_seed`: device and random state;
* :class:`Inception`, :class:`GoogLeNet`: Keras layers, created in
  ``__init__`` (never in ``call``), channels-last (NHWC);
* :func:`count_parameters`, :func:`branch_parameters`, :func:`layer_summary`:
  counts and shapes;
* :func:`load_weights`, :func:`logits`: canonical weights in (PyTorch layout,
  OIHW), NumPy logits out, for the parity checks against
  :func:`d2l_lite.reference.forward`.

Padding follows the spec exactly: symmetric, explicit, PyTorch's floor rule.
Keras's ``padding="same"`` is symmetric only for stride 1 (odd kernels); for
stride 2 it pads one pixel at the end and none at the start, which gives other
numbers. So a layer with stride 2 and non-zero padding gets a
``ZeroPadding2D`` in front of it and ``padding="valid"``.
"""

from __future__ import annotations

import os

# Keep C++ log lines (oneDNN, CUDA probing) out of the way, and make sure
# Keras 3 runs on TensorFlow. Both only set a default the user can override.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from typing import Dict, List, Sequence, Tuple  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from . import architecture, runtime, tables  # noqa: E402

if keras.backend.backend() != "tensorflow":  # pragma: no cover - depends on the environment
    raise ImportError(
        f"d2l_lite.tensorflow needs Keras on the TensorFlow backend, but Keras was "
        f"loaded with the {keras.backend.backend()!r} backend. Set "
        f"KERAS_BACKEND=tensorflow before anything imports keras (or restart the kernel)."
    )

__all__ = ["try_gpu", "set_seed", "Inception", "GoogLeNet", "count_parameters",
           "branch_parameters", "layer_summary", "load_weights", "logits"]

PARTS = ("stem", "body", "head")


def try_gpu() -> str:
    """The first GPU as a device string (``"/GPU:0"``) if there is one, else ``"/CPU:0"``.

    Use it as ``with tf.device(d2l.try_gpu()): ...``. Prints where TensorFlow runs.
    """
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        device = "/GPU:0"
        details = tf.config.experimental.get_device_details(gpus[0])
        name = details.get("device_name", "")
        print(runtime.device_notice("TensorFlow", True, f"{device}, {name}" if name else device))
    else:
        device = "/CPU:0"
        print(runtime.device_notice("TensorFlow", False, device))
    return device


def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and TensorFlow's random state (Keras's one call)."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    keras.utils.set_random_seed(seed)


def _padding(layer) -> Tuple[List[keras.layers.Layer], str]:
    """Keras's ``padding`` argument for a Conv or MaxPool of the spec.

    Returns ``(layers to put in front, padding mode)``:

    * padding 0: ``"valid"``;
    * stride 1 and padding ``(kernel - 1) / 2``: ``"same"``, which for stride 1
      pads exactly that much on each side (and max pooling ignores it);
    * anything else (stride 2 here): an explicit ``ZeroPadding2D`` and ``"valid"``.
    """
    if layer.padding == 0:
        return [], "valid"
    if layer.stride == 1 and 2 * layer.padding == layer.kernel - 1:
        return [], "same"
    return [keras.layers.ZeroPadding2D(layer.padding, name=f"{layer.name}_pad")], "valid"


def _conv(conv: architecture.Conv) -> List[keras.layers.Layer]:
    """A convolution with bias, followed by ReLU (plus its padding layer, if any)."""
    pad, mode = _padding(conv)
    return pad + [keras.layers.Conv2D(conv.out_channels, conv.kernel, strides=conv.stride,
                                      padding=mode, activation="relu", name=conv.name)]


def _max_pool(pool: architecture.MaxPool) -> List[keras.layers.Layer]:
    """Max pooling. Its explicit padding may be zeros instead of -inf: every max
    pool of GoogLeNet follows a ReLU, so its inputs are >= 0 and a zero never
    beats the largest real value in a window."""
    pad, mode = _padding(pool)
    return pad + [keras.layers.MaxPooling2D(pool.kernel, strides=pool.stride,
                                            padding=mode, name=pool.name)]


def _keras_layers(layer: architecture.Layer) -> List[keras.layers.Layer]:
    """The Keras layers for one layer of the spec."""
    if isinstance(layer, architecture.Conv):
        return _conv(layer)
    if isinstance(layer, architecture.MaxPool):
        return _max_pool(layer)
    if isinstance(layer, architecture.Inception):
        return [Inception(layer.ch1x1, layer.ch3x3red, layer.ch3x3, layer.ch5x5red,
                          layer.ch5x5, layer.pool_proj, name=layer.name)]
    if isinstance(layer, architecture.GlobalAvgPool):
        return [keras.layers.GlobalAveragePooling2D(keepdims=True, name=layer.name)]
    if isinstance(layer, architecture.AvgPool):
        return [keras.layers.AveragePooling2D(layer.kernel, strides=layer.stride,
                                              padding="valid", name=layer.name)]
    if isinstance(layer, architecture.Dense):
        return [keras.layers.Flatten(name="flatten"),
                keras.layers.Dense(layer.out_features, name=layer.name)]
    raise TypeError(f"unknown layer type {type(layer).__name__}")  # pragma: no cover


class Inception(keras.layers.Layer):
    """The Inception block: four branches, concatenated on the channel axis (last).

    The arguments are the columns of the paper's Table 1. The branches are
    ``branch1`` ... ``branch4`` (``keras.Sequential``), built by walking
    :meth:`d2l_lite.architecture.Inception.branches`; the number of input
    channels is inferred on the first call.
    """

    def __init__(self, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int,
                 ch5x5: int, pool_proj: int, **kwargs):
        super().__init__(**kwargs)
        widths = dict(ch1x1=ch1x1, ch3x3red=ch3x3red, ch3x3=ch3x3, ch5x5red=ch5x5red,
                      ch5x5=ch5x5, pool_proj=pool_proj)
        for arg, value in widths.items():
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"Inception: {arg} must be a positive int (a channel "
                                 f"count from the paper's Table 1), got {value!r}")
        self.spec = architecture.Inception(self.name, **{k: int(v) for k, v in widths.items()})
        self.branches = [
            keras.Sequential([k for layer in layers for k in _keras_layers(layer)], name=branch)
            for branch, layers in self.spec.branches()
        ]

    def call(self, X):
        # X: N x H x W x C_in; branch i gives N x H x W x (its last width)
        outputs = [branch(X) for branch in self.branches]
        return keras.ops.concatenate(outputs, axis=-1)  # N x H x W x out_channels

    def get_config(self):
        config = super().get_config()
        config.update(ch1x1=self.spec.ch1x1, ch3x3red=self.spec.ch3x3red,
                      ch3x3=self.spec.ch3x3, ch5x5red=self.spec.ch5x5red,
                      ch5x5=self.spec.ch5x5, pool_proj=self.spec.pool_proj)
        return config


def _stage(stage: architecture.Stage) -> keras.Sequential:
    """One stage of the spec (``b1`` ... ``b5``, ``head``) as a ``keras.Sequential``."""
    return keras.Sequential([k for layer in stage.layers for k in _keras_layers(layer)],
                            name=stage.name)


def _check_input(spec: architecture.GoogLeNetSpec, shape) -> None:
    """``spec.check_input`` for an NHWC shape.

    A height or width that is unknown while Keras traces symbolically is taken
    to be the spec's input size; the real batch is checked when it arrives.
    """
    if len(shape) != 4:
        raise ValueError(f"GoogLeNet takes a 4-D batch N x H x W x C (channels last), "
                         f"got shape {tuple(shape)}")
    _, height, width, channels = shape
    if channels != spec.in_channels and shape[1] == spec.in_channels:
        raise ValueError(f"GoogLeNet got shape {tuple(shape)}, which looks like NCHW; Keras "
                         f"layers here are channels-last. Transpose the batch to NHWC "
                         f"first, e.g. np.transpose(X, (0, 2, 3, 1)), or use d2l.logits.")
    spec.check_input(channels,
                     spec.input_size if height is None else height,
                     spec.input_size if width is None else width)


class GoogLeNet(keras.Model):
    """GoogLeNet built by walking ``spec.stages`` (default: the book's model).

    ``stem``, ``body`` and ``head`` are ``keras.Sequential`` models holding one
    ``keras.Sequential`` per stage, named as in the spec (``b1`` ... ``b5``,
    ``head``); layers are named as in the spec (``conv1``, ``inception3a``,
    ``fc``). Inputs are NHWC; ``spec.check_input`` runs on every call, before
    the first layer.
    """

    def __init__(self, spec: architecture.GoogLeNetSpec = architecture.BOOK, **kwargs):
        if not isinstance(spec, architecture.GoogLeNetSpec):
            raise ValueError(f"spec must be a GoogLeNetSpec (e.g. architecture.BOOK or "
                             f"architecture.googlenet_spec(...)), got {type(spec).__name__}")
        kwargs.setdefault("name", "googlenet")
        super().__init__(**kwargs)
        self.spec = spec
        self.stem = keras.Sequential([_stage(s) for s in spec.part("stem")], name="stem")
        self.body = keras.Sequential([_stage(s) for s in spec.part("body")], name="body")
        self.head = keras.Sequential([_stage(s) for s in spec.part("head")], name="head")

    def __call__(self, X, *args, **kwargs):
        # spec.check_input runs here, before Keras's own __call__ and so before
        # any layer: an error raised inside call() would reach the reader wrapped
        # in Keras's "Exception encountered when calling ..." text.
        _check_input(self.spec, X.shape if hasattr(X, "shape") else np.shape(X))
        return super().__call__(X, *args, **kwargs)

    def call(self, X):
        # The book's sizes (architecture.BOOK); the paper's in brackets.
        # X: N x 96 x 96 x 1       [N x 224 x 224 x 3]
        X = self.stem(X)     # N x 12 x 12 x 192   [N x 28 x 28 x 192]
        X = self.body(X)     # N x 3 x 3 x 1024    [N x 7 x 7 x 1024]
        return self.head(X)  # N x 10              [N x 1000]


def _require_built(model: keras.layers.Layer, what: str) -> None:
    if not model.built:
        raise ValueError(f"{what} is not built yet, so its parameters do not exist: "
                         f"Keras creates them on the first call. Call it on a batch "
                         f"first, e.g. model(tf.zeros((1, 96, 96, 1))) for the book's model.")


def count_parameters(model: keras.layers.Layer) -> int:
    """Total number of parameters (weights and biases) of a built model or layer."""
    _require_built(model, type(model).__name__)
    return int(sum(np.prod(w.shape) for w in model.weights))


def branch_parameters(block: Inception) -> Dict[str, int]:
    """Parameters per branch of a built :class:`Inception` block."""
    if not isinstance(block, Inception):
        raise ValueError(f"branch_parameters takes an Inception block, got "
                         f"{type(block).__name__}")
    _require_built(block, "This Inception block")
    return {branch.name: count_parameters(branch) for branch in block.branches}


def layer_summary(model: GoogLeNet, input_shape: Sequence[int]) -> None:
    """Run a zero batch of ``input_shape`` (NHWC) stage by stage; print a table.

    One row per stage: stage, part, output shape (NHWC), parameters. The model
    is called once on the whole batch first, which checks the input shape and
    builds the model if it was not built yet.
    """
    X = tf.zeros(input_shape)
    model(X)
    rows = []
    for part in PARTS:
        for stage in getattr(model, part).layers:
            X = stage(X)
            rows.append((stage.name, part, str(tuple(X.shape)), count_parameters(stage)))
    tables.print_table(("stage", "part", "output shape (NHWC)", "parameters"), rows)


def _weighted_layers(model: GoogLeNet):
    """(canonical name, Keras layer) for each Conv2D and Dense, in spec order."""
    for part in PARTS:
        for stage in getattr(model, part).layers:
            for layer in stage.layers:
                if isinstance(layer, Inception):
                    for branch in layer.branches:
                        for conv in branch.layers:
                            if isinstance(conv, keras.layers.Conv2D):
                                yield f"{layer.name}/{branch.name}/{conv.name}", conv
                elif isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
                    yield layer.name, layer


def load_weights(model: GoogLeNet, weights: Dict[str, np.ndarray]) -> None:
    """Copy canonical weights (PyTorch layout) into ``model``.

    Convolution kernels go from OIHW to Keras's HWIO, dense kernels from
    ``(out, in)`` to ``(in, out)``; biases are copied as they are. An unbuilt
    model is first built on a zero batch of the spec's input size.
    """
    spec = model.spec
    if not model.built:
        model(tf.zeros((1, spec.input_size, spec.input_size, spec.in_channels)))
    layers = dict(_weighted_layers(model))
    expected = {f"{name}/{p}" for name in layers for p in ("weight", "bias")}
    if set(weights) != expected:
        missing, extra = sorted(expected - set(weights)), sorted(set(weights) - expected)
        raise ValueError(f"weights do not match this model: missing {missing[:5]}, "
                         f"unexpected {extra[:5]}. Make them with "
                         f"reference.random_weights(spec) for the model's spec.")
    for name, layer in layers.items():
        weight = np.asarray(weights[f"{name}/weight"])
        if isinstance(layer, keras.layers.Conv2D):
            kernel = weight.transpose(2, 3, 1, 0)  # O x I x H x W -> H x W x I x O
        else:
            kernel = weight.T                      # out x in -> in x out
        bias = np.asarray(weights[f"{name}/bias"])
        for value, variable in ((kernel, layer.kernel), (bias, layer.bias)):
            if tuple(value.shape) != tuple(variable.shape):
                raise ValueError(f"{name}: weight of shape {tuple(value.shape)} (after "
                                 f"layout conversion) does not fit the variable of shape "
                                 f"{tuple(variable.shape)}")
        layer.set_weights([kernel, bias])


def logits(model: GoogLeNet, X: np.ndarray) -> np.ndarray:
    """Logits of ``model`` for an NCHW float32 NumPy batch, as float32 NumPy."""
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 4:
        raise ValueError(f"logits takes an NCHW batch (4-D), got shape {X.shape}")
    X = np.transpose(X, (0, 2, 3, 1))  # N x C x H x W -> N x H x W x C
    return np.asarray(model(X, training=False), dtype=np.float32)
