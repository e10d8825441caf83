"""GoogLeNet in TensorFlow/Keras, built from :mod:`d2l_lite.architecture`.

Import it the d2l way::

    from d2l_lite import tensorflow as d2l

What it holds (the same names as the PyTorch, JAX and MXNet modules):

* :func:`try_gpu`, :func:`set_seed`: device and random state;
* :class:`Inception`, :class:`AuxHead`, :class:`GoogLeNet`: Keras layers,
  created in ``__init__`` (never in ``call``), channels-last (NHWC), with the
  spec's variants (Conv-BN-ReLU, auxiliary heads, factorised 5x5 branch);
* :func:`count_parameters`, :func:`branch_parameters`, :func:`layer_summary`:
  counts and shapes;
* :func:`load_weights`, :func:`logits`: canonical weights in (PyTorch layout,
  OIHW), NumPy logits out, for the parity checks against
  :func:`d2l_lite.reference.forward`;
* :func:`device_data`, :func:`prepare_batch`, :func:`train`: training with a
  custom ``GradientTape`` loop (the training chapter);
* :func:`count_flops`, :func:`flops_by_op`, :func:`expected_flops`,
  :func:`expected_flops_by_op`, :func:`time_forward`: TensorFlow's own FLOP
  count and what it should be, and forward timings (the FLOPs chapter).

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

import contextlib  # noqa: E402
import statistics  # noqa: E402
from typing import Dict, Iterator, List, Optional, Sequence, Tuple  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from . import architecture, counting, reference, runtime, tables, training  # noqa: E402
from .data import minibatch_indices  # noqa: E402

if keras.backend.backend() != "tensorflow":  # pragma: no cover - depends on the environment
    raise ImportError(
        f"d2l_lite.tensorflow needs Keras on the TensorFlow backend, but Keras was "
        f"loaded with the {keras.backend.backend()!r} backend. Set "
        f"KERAS_BACKEND=tensorflow before anything imports keras (or restart the kernel)."
    )

__all__ = ["try_gpu", "set_seed", "Inception", "AuxHead", "GoogLeNet", "count_parameters",
           "branch_parameters", "layer_summary", "load_weights", "logits",
           "device_data", "prepare_batch", "train", "count_flops", "flops_by_op",
           "expected_flops", "expected_flops_by_op", "time_forward"]

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
    """Conv-ReLU (a convolution with bias and ReLU), or for ``conv.batch_norm``
    Conv-BN-ReLU: a convolution without bias (BatchNorm's shift replaces it),
    ``BatchNormalization`` named ``<name>_bn`` and ``ReLU`` named ``<name>_relu``.
    Plus the padding layer in front, if any.

    Keras's BatchNormalization defaults (epsilon 1e-3, momentum 0.99) are not
    PyTorch's, so both are set from :data:`~d2l_lite.architecture.BN_EPS` and
    :data:`~d2l_lite.architecture.BN_MOMENTUM` (Keras's momentum is the weight
    of the old running value: ``1 - BN_MOMENTUM``).
    """
    pad, mode = _padding(conv)
    if not conv.batch_norm:
        return pad + [keras.layers.Conv2D(conv.out_channels, conv.kernel, strides=conv.stride,
                                          padding=mode, activation="relu", name=conv.name)]
    return pad + [
        keras.layers.Conv2D(conv.out_channels, conv.kernel, strides=conv.stride,
                            padding=mode, use_bias=False, name=conv.name),
        keras.layers.BatchNormalization(axis=-1, epsilon=architecture.BN_EPS,
                                        momentum=1.0 - architecture.BN_MOMENTUM,
                                        name=f"{conv.name}_bn"),
        keras.layers.ReLU(name=f"{conv.name}_relu"),
    ]


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
                          layer.ch5x5, layer.pool_proj, reduce=layer.reduce,
                          batch_norm=layer.batch_norm, factorize=layer.factorize,
                          name=layer.name)]
    if isinstance(layer, architecture.GlobalAvgPool):
        return [keras.layers.GlobalAveragePooling2D(keepdims=True, name=layer.name)]
    if isinstance(layer, architecture.AvgPool):
        return [keras.layers.AveragePooling2D(layer.kernel, strides=layer.stride,
                                              padding="valid", name=layer.name)]
    if isinstance(layer, architecture.Dense):
        return [keras.layers.Flatten(name="flatten"), _dense(layer)]
    raise TypeError(f"unknown layer type {type(layer).__name__}")  # pragma: no cover


def _dense(layer: architecture.Dense) -> keras.layers.Dense:
    """A dense layer, with ReLU for a hidden layer (``layer.relu``)."""
    return keras.layers.Dense(layer.out_features, activation="relu" if layer.relu else None,
                              name=layer.name)


class Inception(keras.layers.Layer):
    """The Inception block: four branches, concatenated on the channel axis (last).

    The arguments are the columns of the paper's Table 1. The branches are
    ``branch1`` ... ``branch4`` (``keras.Sequential``), built by walking
    :meth:`d2l_lite.architecture.Inception.branches`; the number of input
    channels is inferred on the first call. ``reduce=False`` gives the naive
    block: no 1x1 reductions, so the 3x3 and 5x5 convolutions read every input
    channel (``ch3x3red`` and ``ch5x5red`` are then unused).

    ``batch_norm=True`` makes every convolution Conv-BN-ReLU (no conv bias;
    the BatchNorm layer is named ``<conv>_bn``, e.g. ``5x5_bn``);
    ``factorize=True`` replaces branch 3's 5x5 convolution by two 3x3 ones,
    ``5x5a`` and ``5x5b`` (the variants chapter).
    """

    def __init__(self, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int,
                 ch5x5: int, pool_proj: int, reduce: bool = True, batch_norm: bool = False,
                 factorize: bool = False, **kwargs):
        super().__init__(**kwargs)
        widths = dict(ch1x1=ch1x1, ch3x3red=ch3x3red, ch3x3=ch3x3, ch5x5red=ch5x5red,
                      ch5x5=ch5x5, pool_proj=pool_proj)
        for arg, value in widths.items():
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"Inception: {arg} must be a positive int (a channel "
                                 f"count from the paper's Table 1), got {value!r}")
        for arg, flag in (("reduce", reduce), ("batch_norm", batch_norm),
                          ("factorize", factorize)):
            if not isinstance(flag, bool):
                raise ValueError(f"Inception: {arg} must be True or False, got {flag!r}")
        self.spec = architecture.Inception(self.name, **{k: int(v) for k, v in widths.items()},
                                           reduce=reduce, batch_norm=batch_norm,
                                           factorize=factorize)
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
                      ch5x5=self.spec.ch5x5, pool_proj=self.spec.pool_proj,
                      reduce=self.spec.reduce, batch_norm=self.spec.batch_norm,
                      factorize=self.spec.factorize)
        return config


class AuxHead(keras.layers.Layer):
    """An auxiliary classifier (:class:`d2l_lite.architecture.AuxHead`): 5x5
    average pool with stride 3, 1x1 convolution to 128 channels (Conv-BN-ReLU
    with ``batch_norm``), flatten, dense 1024 with ReLU, dropout, dense to the
    classes. Its layers are named as in the spec: ``pool``, ``conv`` (and
    ``conv_bn``), ``fc1``, ``dropout``, ``fc2``.
    """

    def __init__(self, num_classes: int, *, batch_norm: bool = False, dropout: float = 0.7,
                 **kwargs):
        super().__init__(**kwargs)
        self.spec = architecture.AuxHead(self.name, "", num_classes, batch_norm=batch_norm,
                                         dropout=dropout)
        pool, conv, fc1, fc2 = self.spec.layers()
        self.pool = keras.layers.AveragePooling2D(pool.kernel, strides=pool.stride,
                                                  padding="valid", name=pool.name)
        self.conv = _conv(conv)  # [Conv2D, ReLU] fused, or [Conv2D, BN, ReLU]
        self.flatten = keras.layers.Flatten(name="flatten")
        self.fc1 = _dense(fc1)
        self.dropout = keras.layers.Dropout(dropout, name="dropout")
        self.fc2 = _dense(fc2)

    def build(self, input_shape):
        # The layers' weights, from the input shape alone (N x H x W x C).
        n, h, w, _ = input_shape
        shape = (n, *(architecture.conv_output_size(side, self.spec.layers()[0].kernel,
                                                    self.spec.layers()[0].stride, 0)
                      for side in (h, w)), input_shape[-1])
        for layer in self.conv:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
        self.fc1.build((n, int(np.prod(shape[1:]))))
        self.fc2.build((n, self.fc1.units))

    def sublayers(self) -> List[keras.layers.Layer]:
        return [self.pool, *self.conv, self.flatten, self.fc1, self.dropout, self.fc2]

    def call(self, X):
        # X: N x 12 x 12 x 512 after inception4a at 96x96 (N x 14 x 14 x 512 at 224)
        for layer in self.sublayers():
            X = layer(X)  # dropout only in training: Keras passes `training` down
        return X          # N x num_classes

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.spec.num_classes, batch_norm=self.spec.batch_norm,
                      dropout=self.spec.dropout)
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

    With auxiliary heads (``spec.aux_heads``) they live in ``aux`` (a dict
    ``{"aux1": AuxHead, ...}``). Called with ``training=True`` the model then
    returns ``(logits, [aux1_logits, aux2_logits])``; otherwise the logits
    alone, and the heads are not run. Building the model (its first call)
    creates the heads' weights too.
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
        self.aux = {h.name: AuxHead(h.num_classes, batch_norm=h.batch_norm, dropout=h.dropout,
                                    name=h.name)
                    for h in spec.aux_heads}
        self._aux_after = {h.after: h.name for h in spec.aux_heads}

    def __call__(self, X, *args, **kwargs):
        # spec.check_input runs here, before Keras's own __call__ and so before
        # any layer: an error raised inside call() would reach the reader wrapped
        # in Keras's "Exception encountered when calling ..." text.
        _check_input(self.spec, X.shape if hasattr(X, "shape") else np.shape(X))
        return super().__call__(X, *args, **kwargs)

    def build(self, input_shape):
        # Trace the training path symbolically: that creates every weight, the
        # auxiliary heads' included, which an inference call would never reach.
        n, h, w, c = input_shape
        size = self.spec.input_size
        self.call(keras.KerasTensor((n, size if h is None else h, size if w is None else w, c)),
                  training=True)

    def call(self, X, training=None):
        # The book's sizes (architecture.BOOK); the paper's in brackets.
        # X: N x 96 x 96 x 1       [N x 224 x 224 x 3]
        X = self.stem(X)         # N x 12 x 12 x 192   [N x 28 x 28 x 192]
        if not (training and self.aux):
            X = self.body(X)     # N x 3 x 3 x 1024    [N x 7 x 7 x 1024]
            return self.head(X)  # N x 10              [N x 1000]
        aux_logits = []  # training with auxiliary heads: tap the body after 4a and 4d
        for stage in self.body.layers:
            for layer in stage.layers:
                X = layer(X)
                if layer.name in self._aux_after:
                    aux_logits.append(self.aux[self._aux_after[layer.name]](X))
        return self.head(X), aux_logits


def _require_built(model: keras.layers.Layer, what: str) -> None:
    if not model.built:
        raise ValueError(f"{what} is not built yet, so its parameters do not exist: "
                         f"Keras creates them on the first call. Call it on a batch "
                         f"first, e.g. model(tf.zeros((1, 96, 96, 1))) for the book's model.")


def count_parameters(model: keras.layers.Layer) -> int:
    """Number of trainable parameters (weights, biases, BatchNorm's scale and
    shift) of a built model or layer.

    BatchNorm's moving mean and variance are state, not parameters, so they
    are left out (Keras's own ``count_params()`` counts them), as PyTorch's
    ``parameters()`` leaves out its running statistics.
    """
    _require_built(model, type(model).__name__)
    stats = {id(v) for layer in _sublayers(model)
                   if isinstance(layer, keras.layers.BatchNormalization)
                   for v in (layer.moving_mean, layer.moving_variance)}
    return int(sum(np.prod(w.shape) for w in model.weights if id(w) not in stats))


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


_WEIGHTED = (keras.layers.Conv2D, keras.layers.Dense, keras.layers.BatchNormalization)


def _named_layers(model: GoogLeNet):
    """(canonical name, Keras layer) for each Conv2D, BatchNormalization and
    Dense, in spec order, then the auxiliary heads' (``aux1/conv``, ``aux1/conv_bn``,
    ``aux1/fc1`` ...)."""
    for part in PARTS:
        for stage in getattr(model, part).layers:
            for layer in stage.layers:
                if isinstance(layer, Inception):
                    for branch in layer.branches:
                        for sub in branch.layers:
                            if isinstance(sub, _WEIGHTED):
                                yield f"{layer.name}/{branch.name}/{sub.name}", sub
                elif isinstance(layer, _WEIGHTED):
                    yield layer.name, layer
    for name, head in model.aux.items():
        for sub in head.sublayers():
            if isinstance(sub, _WEIGHTED):
                yield f"{name}/{sub.name}", sub


def _weighted_layers(model: GoogLeNet):
    """(canonical name, Keras layer) for each Conv2D and Dense, in spec order."""
    for name, layer in _named_layers(model):
        if not isinstance(layer, keras.layers.BatchNormalization):
            yield name, layer


def _canonical_variables(model: GoogLeNet) -> Dict[str, keras.Variable]:
    """Canonical name (:mod:`d2l_lite.reference`) -> Keras variable: kernels
    and biases (``conv1/weight``, ``fc/bias``), BatchNorm's ``gamma``, ``beta``,
    ``moving_mean`` and ``moving_variance`` as ``conv1_bn/weight``, ``/bias``,
    ``/running_mean`` and ``/running_var`` (PyTorch's names)."""
    out = {}
    for name, layer in _named_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            out.update({f"{name}/weight": layer.gamma, f"{name}/bias": layer.beta,
                        f"{name}/running_mean": layer.moving_mean,
                        f"{name}/running_var": layer.moving_variance})
        else:
            out[f"{name}/weight"] = layer.kernel
            if layer.use_bias:
                out[f"{name}/bias"] = layer.bias
    return out


def load_weights(model: GoogLeNet, weights: Dict[str, np.ndarray]) -> None:
    """Copy canonical weights (PyTorch layout) into ``model``.

    Convolution kernels go from OIHW to Keras's HWIO, dense kernels from
    ``(out, in)`` to ``(in, out)``; biases and BatchNorm's scale, shift and
    running statistics are copied as they are. An unbuilt model is first built
    on a zero batch of the spec's input size.
    """
    spec = model.spec
    if not model.built:
        model(tf.zeros((1, spec.input_size, spec.input_size, spec.in_channels)))
    variables = _canonical_variables(model)
    if set(weights) != set(variables):
        missing = sorted(set(variables) - set(weights))
        extra = sorted(set(weights) - set(variables))
        raise ValueError(f"weights do not match this model: missing {missing[:5]}, "
                         f"unexpected {extra[:5]}. Make them with "
                         f"reference.random_weights(spec) for the model's spec.")
    values = {}
    for name, variable in variables.items():
        value = np.asarray(weights[name], dtype=np.float32)
        if value.ndim == 4:
            value = value.transpose(2, 3, 1, 0)  # O x I x H x W -> H x W x I x O
        elif value.ndim == 2:
            value = value.T                      # out x in -> in x out
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(f"{name}: weight of shape {tuple(value.shape)} (after "
                             f"layout conversion) does not fit the variable of shape "
                             f"{tuple(variable.shape)}")
        values[name] = value
    for name, variable in variables.items():  # all checked first: nothing half-loaded
        variable.assign(values[name])


def logits(model: GoogLeNet, X: np.ndarray) -> np.ndarray:
    """Logits of ``model`` for an NCHW float32 NumPy batch, as float32 NumPy."""
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 4:
        raise ValueError(f"logits takes an NCHW batch (4-D), got shape {X.shape}")
    X = np.transpose(X, (0, 2, 3, 1))  # N x C x H x W -> N x H x W x C
    return np.asarray(model(X, training=False), dtype=np.float32)


# Training ------------------------------------------------------------------------

#: How :func:`train` runs a step when the recipe does not ask for the compiler
#: (``recipe.compile`` False, or on the CPU): ``"graph"`` is ``tf.function``
#: without XLA, ``"eager"`` is op-by-op as in d2l. See the training chapter.
CLASSIC_MODE = "graph"

#: AdamW's betas and epsilon, PyTorch's defaults (Keras's epsilon is 1e-7).
ADAM_BETAS = (0.9, 0.999)
ADAM_EPSILON = 1e-8


def _device_name(device: str) -> str:
    """A plain name for a TensorFlow device string: ``"cpu"`` or the GPU's model."""
    if "GPU" not in device.upper():
        return "cpu"
    gpus = tf.config.list_physical_devices("GPU")
    index = int(device.rsplit(":", 1)[1]) if ":" in device else 0
    return tf.config.experimental.get_device_details(gpus[index]).get("device_name", device)


def device_data(data, device: str) -> Tuple[tf.Tensor, ...]:
    """``(train_images, train_labels, test_images, test_labels)`` of a
    :class:`~d2l_lite.data.FashionMNIST` as tensors on ``device``, copied once.

    Images stay uint8 ``(N, 28, 28)`` (47 MB for all 60,000): each batch is
    converted and resized on the device by :func:`prepare_batch`. Labels are
    int32, the type ``tf.argmax`` returns.
    """
    with tf.device(device):
        return tuple(tf.identity(tf.convert_to_tensor(np.asarray(array), dtype))
                     for array, dtype in ((data.train_images, tf.uint8),
                                          (data.train_labels, tf.int32),
                                          (data.test_images, tf.uint8),
                                          (data.test_labels, tf.int32)))


def prepare_batch(images: tf.Tensor, index: tf.Tensor, image_size: int = 96) -> tf.Tensor:
    """Gather ``images[index]`` (uint8, N x 28 x 28) and make a float32
    ``B x image_size x image_size x 1`` (NHWC) batch in [0, 1], on the images' device.

    ``tf.image.resize`` with ``"bilinear"`` samples at pixel centres, like
    PyTorch's ``align_corners=False``, and does not antialias.
    """
    X = tf.cast(tf.gather(images, index), tf.float32)[..., tf.newaxis] / 255.0
    return tf.image.resize(X, (image_size, image_size), method="bilinear", antialias=False)


def _sublayers(layer: keras.layers.Layer) -> Iterator[keras.layers.Layer]:
    """``layer`` and every layer inside it (stages, blocks, branches)."""
    yield layer
    if isinstance(layer, Inception):
        children = layer.branches
    elif isinstance(layer, AuxHead):
        children = layer.sublayers()
    else:
        children = getattr(layer, "layers", [])
    for child in children:
        yield from _sublayers(child)


@contextlib.contextmanager
def _bfloat16(model: GoogLeNet, enabled: bool) -> Iterator[None]:
    """Run every layer of ``model`` under Keras's ``"mixed_bfloat16"`` policy,
    except the final ``Dense``, which stays float32 (logits and loss in float32).

    The variables stay float32; only the computation is bfloat16. The
    policies are restored afterwards, so the trained model computes in
    float32 again.
    """
    if not enabled:
        yield
        return
    layers = list(_sublayers(model))
    saved = [layer.dtype_policy for layer in layers]
    try:
        for layer in layers:
            layer.dtype_policy = ("float32" if isinstance(layer, keras.layers.Dense)
                                  else "mixed_bfloat16")
        yield
    finally:
        for layer, policy in zip(layers, saved):
            layer.dtype_policy = policy


def _optimizer(recipe: training.Recipe) -> keras.optimizers.Optimizer:
    """The recipe's Keras optimiser. Its learning rate is a variable that
    :func:`train` sets before every step from :func:`training.learning_rate`."""
    if recipe.optimizer == "sgd":
        # Keras's own weight_decay would be decoupled; the recipe's is coupled L2
        # (torch.optim.SGD's), added to the gradient in the training step.
        return keras.optimizers.SGD(learning_rate=recipe.lr, momentum=recipe.momentum,
                                    nesterov=recipe.nesterov)
    # AdamW: weight decay decoupled from the gradient; PyTorch's betas. Its
    # epsilon becomes a variable that the step keeps at PyTorch's meaning
    # (see _torch_epsilon).
    optimizer = keras.optimizers.AdamW(learning_rate=recipe.lr,
                                       weight_decay=recipe.weight_decay,
                                       beta_1=ADAM_BETAS[0], beta_2=ADAM_BETAS[1],
                                       epsilon=ADAM_EPSILON)
    optimizer.epsilon = tf.Variable(ADAM_EPSILON, trainable=False, name="epsilon")
    return optimizer


def _torch_epsilon(optimizer: keras.optimizers.Optimizer) -> tf.Tensor:
    """Keras's epsilon for the coming step that gives PyTorch's AdamW update.

    Keras adds epsilon to ``sqrt(v)`` and folds both bias corrections into the
    step size (the "epsilon hat" of the Adam paper); PyTorch, and optax, add it
    to the bias-corrected ``sqrt(v / (1 - beta_2**t))``. The two updates are
    equal when Keras's epsilon is PyTorch's times ``sqrt(1 - beta_2**t)``, a
    factor that grows from 0.03 at step 1 towards 1. It matters here: in the
    first steps GoogLeNet's gradients are small enough (around 1e-7) that a
    30 times larger epsilon visibly slows them down.
    """
    t = tf.cast(optimizer.iterations + 1, tf.float32)
    return ADAM_EPSILON * tf.sqrt(1.0 - ADAM_BETAS[1] ** t)


def _compiled(fn, mode: str):
    """``fn`` run op by op (``"eager"``), as a graph (``"graph"``: ``tf.function``)
    or compiled by XLA (``"xla"``: ``tf.function(jit_compile=True)``)."""
    if mode == "eager":
        return fn
    if mode == "graph":
        return tf.function(fn)
    if mode == "xla":
        return tf.function(fn, jit_compile=True)
    raise ValueError(f"mode must be 'eager', 'graph' or 'xla', got {mode!r}")


def train(model: GoogLeNet, data, recipe: training.Recipe = training.CLASSIC, *,
          device: Optional[str] = None, image_size: Optional[int] = None, plot: bool = True,
          progress: bool = True) -> training.History:
    """Train ``model`` on ``data`` (a :class:`~d2l_lite.data.FashionMNIST`) with ``recipe``.

    A custom loop with ``tf.GradientTape``, step by step like the other three
    frameworks (not ``model.fit``). The model starts from
    :func:`d2l_lite.reference.xavier_weights` for its spec and ``recipe.seed``,
    so every framework starts from the same point. All images go to the device
    once, as uint8; each batch is gathered, scaled to [0, 1] and resized to
    ``image_size`` there (default: the spec's ``input_size``). Loss and
    accuracy are summed in variables on the device and read once per epoch.

    The step calls the model with ``training=True``: BatchNorm normalises with
    the batch's statistics and updates its moving ones, dropout is on, and
    with auxiliary heads their cross-entropy joins the loss with weight
    :data:`~d2l_lite.architecture.AUX_LOSS_WEIGHT` (the logged loss is the
    main head's alone, comparable across variants).

    The step runs as a ``tf.function`` graph (:data:`CLASSIC_MODE`). On a GPU,
    ``recipe.compile`` compiles it with XLA (``jit_compile=True``) and
    ``recipe.mixed_precision`` computes in bfloat16 (Keras's
    ``"mixed_bfloat16"`` policy; the final ``Dense`` and the loss stay
    float32). On the CPU both are skipped with a notice: XLA compiles
    GoogLeNet's training step for longer than it saves at the scale a CPU
    can train, and a CPU has no fast bfloat16 (see the training chapter).

    Returns a :class:`~d2l_lite.training.History`; ``EpochStats.seconds`` is
    the time of the epoch's training steps (device synchronised; tracing and
    compilation included in the first epoch), without the evaluation that
    follows.
    """
    if not isinstance(model, GoogLeNet):
        raise ValueError(f"train takes a GoogLeNet, got {type(model).__name__}")
    if not isinstance(recipe, training.Recipe):
        raise ValueError(f"recipe must be a training.Recipe such as training.CLASSIC, "
                         f"got {type(recipe).__name__}")
    training.steps_per_epoch(len(data.train_labels), recipe.batch_size)  # raises if none
    if device is None:
        device = "/GPU:0" if tf.config.list_physical_devices("GPU") else "/CPU:0"
    gpu = "GPU" in device.upper()
    skipped = [what for what, asked in (("bfloat16 (float32 instead)", recipe.mixed_precision),
                                        ("XLA (tf.function without jit_compile instead)",
                                         recipe.compile))
               if asked and not gpu]
    if skipped:
        print(f"TensorFlow on the CPU: {' and '.join(skipped)}; both are GPU options here.")
    mode = "xla" if recipe.compile and gpu else CLASSIC_MODE
    image_size = model.spec.input_size if image_size is None else image_size
    return _fit(model, data, recipe, device, image_size, plot, progress, mode=mode,
                bf16=recipe.mixed_precision and gpu)


def _fit(model: GoogLeNet, data, recipe: training.Recipe, device: str, image_size: int,
         plot: bool, progress: bool, *, mode: str, bf16: bool) -> training.History:
    """The training loop of :func:`train`, with its choices made explicit."""
    set_seed(recipe.seed)
    with tf.device(device):
        load_weights(model, reference.xavier_weights(model.spec, seed=recipe.seed))
        train_images, train_labels, test_images, test_labels = device_data(data, device)
        num_train, num_test = int(train_labels.shape[0]), int(test_labels.shape[0])
        batch_size = recipe.batch_size
        steps_per_epoch = num_train // batch_size  # >= 1, checked by train
        optimizer = _optimizer(recipe)
        variables = model.trainable_variables
        optimizer.build(variables)
        loss_fn = keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=recipe.label_smoothing)
        adamw = recipe.optimizer == "adamw"
        l2 = 0.0 if adamw else recipe.weight_decay
        num_classes = model.spec.num_classes
        # Running sums on the device, read once per epoch. float32 counts are
        # exact up to 2**24 (16.7 million) images.
        loss_sum = tf.Variable(0.0, trainable=False)
        correct_sum = tf.Variable(0.0, trainable=False)
        test_correct = tf.Variable(0.0, trainable=False)

        def train_step(images, labels, index, lr):
            X = prepare_batch(images, index, image_size)
            y = tf.gather(labels, index)
            Y = tf.one_hot(y, num_classes)
            with tf.GradientTape() as tape:
                y_hat, aux_logits = training.split_aux(model(X, training=True))
                y_hat = tf.cast(y_hat, tf.float32)
                loss = loss_fn(Y, y_hat)
                # auxiliary heads: their losses join with weight 0.3 (the logged
                # loss stays the main head's)
                total = loss
                for aux in aux_logits:
                    total += architecture.AUX_LOSS_WEIGHT * loss_fn(Y, tf.cast(aux, tf.float32))
            grads = tape.gradient(total, variables)
            if l2:  # coupled L2, as torch.optim.SGD's weight_decay
                grads = [g + l2 * v for g, v in zip(grads, variables)]
            optimizer.learning_rate.assign(lr)
            if adamw:
                optimizer.epsilon.assign(_torch_epsilon(optimizer))
            optimizer.apply(grads, variables)
            loss_sum.assign_add(loss * batch_size)
            correct_sum.assign_add(tf.reduce_sum(tf.cast(
                tf.argmax(y_hat, axis=1, output_type=tf.int32) == y, tf.float32)))

        def eval_step(images, labels, index, valid):
            y_hat = model(prepare_batch(images, index, image_size), training=False)
            hit = (tf.argmax(y_hat, axis=1, output_type=tf.int32) == tf.gather(labels, index))
            test_correct.assign_add(tf.reduce_sum(tf.cast(hit & valid, tf.float32)))

        train_step, eval_step = _compiled(train_step, mode), _compiled(eval_step, mode)
        # The test set in fixed-size batches: the last one is padded with image 0
        # and masked, so a compiled evaluation sees one shape.
        num_eval = -(-num_test // batch_size) * batch_size
        eval_order = np.arange(num_eval)
        eval_valid = tf.constant(eval_order < num_test)
        eval_order = tf.constant(np.where(eval_order < num_test, eval_order, 0), tf.int32)

        history = training.History("TensorFlow", recipe, _device_name(device), num_train,
                                   num_test)
        live = training.ProgressPlot(f"TensorFlow, {recipe.name} recipe", recipe.num_epochs,
                                     enabled=None if plot else False)
        timed = mode != "eager"  # a function is traced (and compiled) on its first call
        with _bfloat16(model, bf16):
            for epoch in range(recipe.num_epochs):
                order = tf.constant(np.stack(list(minibatch_indices(
                    num_train, batch_size, shuffle=True, seed=recipe.seed, epoch=epoch,
                    drop_last=True))), tf.int32)  # steps_per_epoch x batch_size
                rates = tf.constant([training.learning_rate(recipe, epoch * steps_per_epoch + i,
                                                            steps_per_epoch)
                                     for i in range(steps_per_epoch)], tf.float32)
                loss_sum.assign(0.0)
                correct_sum.assign(0.0)
                bar = training.batch_progress(steps_per_epoch, epoch + 1, recipe.num_epochs,
                                              enabled=progress)
                step_times = []
                timer = training.Timer()
                for i in range(steps_per_epoch):
                    start = training.Timer()
                    train_step(train_images, train_labels, order[i], rates[i])
                    if timed and epoch == 0 and i < 4:  # for compile_seconds
                        loss_sum.numpy()  # waits for the step
                        step_times.append(start.elapsed())
                    bar.update(1)
                train_loss, train_correct = loss_sum.numpy(), correct_sum.numpy()  # sync
                seconds = timer.elapsed()
                bar.close()
                test_correct.assign(0.0)
                eval_times = []
                for first in range(0, num_eval, batch_size):
                    start = training.Timer()
                    eval_step(test_images, test_labels, eval_order[first:first + batch_size],
                              eval_valid[first:first + batch_size])
                    if timed and epoch == 0 and first < 3 * batch_size:
                        test_correct.numpy()
                        eval_times.append(start.elapsed())
                if timed and epoch == 0:
                    history.compile_seconds = (training.compile_seconds(step_times)
                                               + training.compile_seconds(eval_times))
                seen = steps_per_epoch * batch_size
                history.epochs.append(training.EpochStats(
                    epoch=epoch + 1, train_loss=float(train_loss) / seen,
                    train_acc=float(train_correct) / seen,
                    test_acc=float(test_correct.numpy()) / num_test,
                    seconds=seconds, images_per_sec=seen / seconds))
                live.update(history)
    return history


# FLOPs and timing ----------------------------------------------------------------

def _forward_graph(model_or_block: keras.layers.Layer, input_shape: Sequence[int],
                   jit_compile: bool = False):
    """A ``tf.function`` of the forward pass and its concrete function for a
    float32 ``input_shape`` batch; builds the layer first if needed."""
    if len(input_shape) != 4:
        raise ValueError(f"input_shape must be N x H x W x C (channels last), e.g. "
                         f"(1, 28, 28, 192), got {tuple(input_shape)}")
    if not model_or_block.built:
        model_or_block(tf.zeros(input_shape))  # create the variables outside the trace
    forward = tf.function(lambda X: model_or_block(X, training=False),
                          jit_compile=jit_compile)
    return forward, forward.get_concrete_function(tf.TensorSpec(input_shape, tf.float32))


def _profile(model_or_block: keras.layers.Layer, input_shape: Sequence[int]):
    """TensorFlow's profiler's float-operation view of one forward pass, by op type."""
    _, concrete = _forward_graph(model_or_block, input_shape)
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"  # return the numbers, print nothing
    logger = tf.get_logger()  # the v1 profiler warns that it is deprecated, once per
    level = logger.level      # process, naming a path inside site-packages: not news
    logger.setLevel("ERROR")  # to a reader, and it would differ from machine to machine
    try:
        return tf.compat.v1.profiler.profile(graph=concrete.graph, cmd="op", options=options)
    finally:
        logger.setLevel(level)


def count_flops(model_or_block: keras.layers.Layer, input_shape: Sequence[int]) -> int:
    """FLOPs of one forward pass on an ``input_shape`` (NHWC) batch, as TensorFlow's
    profiler counts them.

    The forward pass is traced into a graph (the concrete function of a
    ``tf.function``), and ``tf.compat.v1.profiler.profile`` with
    ``ProfileOptionBuilder.float_operation()`` adds up the ``"flops"``
    statistic that TensorFlow registers for each op type, computed from the
    op's static shapes (:func:`expected_flops_by_op` lists the rules). The
    weights are variables read in the graph, not constants, so nothing is
    folded away.
    """
    return int(_profile(model_or_block, input_shape).total_float_ops)


def flops_by_op(model_or_block: keras.layers.Layer,
                input_shape: Sequence[int]) -> Dict[str, int]:
    """:func:`count_flops` split by op type (``"Conv2D"``, ``"BiasAdd"`` ...);
    op types counted zero are left out."""
    counts: Dict[str, int] = {}
    nodes = list(_profile(model_or_block, input_shape).children)
    while nodes:  # the op view nests each op type under the previous one
        node = nodes.pop()
        if node.float_ops:
            counts[node.name] = int(node.float_ops)
        nodes.extend(node.children)
    return counts


def expected_flops_by_op(spec_or_block, input_size=None) -> Dict[str, int]:
    """What :func:`flops_by_op` should report for one image (a batch of 1),
    derived from the spec with the rules TensorFlow registers for each op:

    * ``Conv2D``: 2 x kernel height x kernel width x input channels per output
      element: 2 x MACs, every tap counted (padding included);
    * ``BiasAdd``: one per element it adds to: every convolution's output and
      the dense layer's (Keras adds biases with ``tf.nn.bias_add``);
    * ``MatMul``: 2 x in x out for the dense layer;
    * ``MaxPool``, ``AvgPool``: kernel area per output element (the stem's
      pools and the 3x3 pool of every block's fourth branch; the paper's 7x7
      head pool);
    * ``Mean`` (``GlobalAveragePooling2D``): one per input element;
    * ``Relu``, ``Pad`` (``ZeroPadding2D``), ``ConcatV2``, reshapes: no
      statistic registered, so zero.

    ``spec_or_block`` is a :class:`~d2l_lite.architecture.GoogLeNetSpec`
    (``input_size``: the image side, default the spec's) or an
    :class:`~d2l_lite.architecture.Inception` (``input_size``: its input as
    ``(channels, height, width)``).
    """
    ops = {"Conv2D": 0, "BiasAdd": 0, "MatMul": 0, "MaxPool": 0, "AvgPool": 0, "Mean": 0}

    def conv(layer: architecture.Conv, shape):
        row = counting.count_conv(layer, shape)
        ops["Conv2D"] += 2 * row.macs
        ops["BiasAdd"] += int(np.prod(row.out_shape))
        return row.out_shape

    def max_pool(layer: architecture.MaxPool, shape):
        c, h, w = shape
        out = (c, *(architecture.conv_output_size(side, layer.kernel, layer.stride,
                                                  layer.padding) for side in (h, w)))
        ops["MaxPool"] += layer.kernel ** 2 * int(np.prod(out))
        return out

    def inception(block: architecture.Inception, shape):
        for _, layers in block.branches():
            branch_shape = shape
            for layer in layers:
                branch_shape = (conv if isinstance(layer, architecture.Conv)
                                else max_pool)(layer, branch_shape)
        return (block.out_channels, shape[1], shape[2])

    if isinstance(spec_or_block, architecture.Inception):
        if not isinstance(input_size, (tuple, list)) or len(input_size) != 3:
            raise ValueError(f"an Inception block needs input_size=(channels, height, "
                             f"width), e.g. (192, 28, 28), got {input_size!r}")
        inception(spec_or_block, tuple(input_size))
    elif isinstance(spec_or_block, architecture.GoogLeNetSpec):
        spec = spec_or_block
        size = spec.input_size if input_size is None else input_size
        spec.check_input(spec.in_channels, size, size)
        shape = (spec.in_channels, size, size)
        for stage in spec.stages:
            for layer in stage.layers:
                if isinstance(layer, architecture.Conv):
                    shape = conv(layer, shape)
                elif isinstance(layer, architecture.MaxPool):
                    shape = max_pool(layer, shape)
                elif isinstance(layer, architecture.Inception):
                    shape = inception(layer, shape)
                elif isinstance(layer, architecture.GlobalAvgPool):
                    ops["Mean"] += int(np.prod(shape))
                    shape = (shape[0], 1, 1)
                elif isinstance(layer, architecture.AvgPool):
                    c, h, w = shape
                    shape = (c, *(architecture.conv_output_size(side, layer.kernel,
                                                                layer.stride, 0)
                                  for side in (h, w)))
                    ops["AvgPool"] += layer.kernel ** 2 * int(np.prod(shape))
                elif isinstance(layer, architecture.Dense):
                    fan_in = int(np.prod(shape))
                    ops["MatMul"] += 2 * fan_in * layer.out_features
                    ops["BiasAdd"] += layer.out_features
                    shape = (layer.out_features, 1, 1)
    else:
        raise ValueError(f"expected_flops takes a GoogLeNetSpec or an "
                         f"architecture.Inception, got {type(spec_or_block).__name__}")
    return {op: n for op, n in ops.items() if n}


def expected_flops(spec_or_block, input_size=None) -> int:
    """What :func:`count_flops` should report for one image (a batch of 1):
    the sum of :func:`expected_flops_by_op`. That is ``2 x counting.total_macs``
    plus the bias additions and pooling that TensorFlow's profiler also counts."""
    return sum(expected_flops_by_op(spec_or_block, input_size).values())


def time_forward(model_or_block: keras.layers.Layer, input_shape: Sequence[int],
                 repeats: int = 10, warmup: int = 2, jit_compile: bool = False) -> float:
    """Median seconds of one forward pass on an ``input_shape`` (NHWC) batch.

    The forward pass runs as a ``tf.function`` graph, TensorFlow's everyday
    inference path (``jit_compile=True`` compiles it with XLA instead).
    ``warmup`` passes run first (they trace the function and pick kernels);
    every device is synchronised around each timed pass.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}")
    forward, _ = _forward_graph(model_or_block, input_shape, jit_compile)
    X = tf.random.uniform(input_shape)
    times = []
    for i in range(warmup + repeats):
        tf.test.experimental.sync_devices()
        timer = training.Timer()
        forward(X)
        tf.test.experimental.sync_devices()
        if i >= warmup:
            times.append(timer.elapsed())
    return statistics.median(times)
