"""GoogLeNet in JAX/Flax (linen), built from :mod:`d2l_lite.architecture`.

Import it the d2l way::

    from d2l_lite import jax as d2l

(Inside this file ``import jax`` is the real JAX: Python 3 imports are absolute.)

What it holds: the :class:`Inception` block, the :class:`GoogLeNet` model (its
``stem``, ``body`` and ``head`` are submodules, each a run of the spec's
stages), and the helpers every framework module of ``d2l_lite`` defines.

Flax linen modules are *descriptions*: the parameters live outside the model,
in a ``variables`` dict that :func:`init` or :func:`load_weights` returns and
``model.apply(variables, X)`` takes. So the shared names take that dict where
the PyTorch module would read the parameters from the model itself:

========================================  =========================================
PyTorch module                            this module
========================================  =========================================
``count_parameters(model)``               ``count_parameters(variables)``
``branch_parameters(block)``              ``branch_parameters(variables)`` (a block's)
``load_weights(model, weights)``          ``load_weights(model, weights) -> variables``
``logits(model, X)``                      ``logits(model, X, variables)``
``layer_summary(model, input_shape)``     the same (shapes only, nothing is computed)
(the model holds its parameters)          ``init(model, input_shape, seed) -> variables``
``set_seed(seed)``                        ``set_seed(seed) -> key`` (JAX has no global
                                          random state; the key is what you pass on)
``train(model, data, recipe) -> history`` ``train(model, data, recipe) -> (history,
                                          variables)``, a :class:`TrainResult`
``count_flops(model, input_shape)``       the same, counted by XLA's cost analysis
========================================  =========================================

Layouts: Flax is channels-last. Batches are NHWC, convolution kernels HWIO
(height, width, in, out) and dense kernels ``(in, out)``; :func:`load_weights`
converts the canonical PyTorch layout (OIHW, dense ``(out, in)``) and
:func:`logits` takes NCHW NumPy batches like the reference, transposing them.
Input channels are inferred when the model is initialised (lazily, as in
Keras), so layers are declared with their output widths only.

Training (:func:`train`) is the Flax way: a pure ``train_step(state, images,
labels) -> (state, metrics)`` with optax, jitted with the state donated and
compiled ahead of time. The variants of the spec (Conv-BN-ReLU, auxiliary
heads) follow Flax's conventions: ``model.apply(variables, X, train=True,
mutable=["batch_stats"], rngs={"dropout": key})`` normalises with the batch's
statistics and returns the updated running ones, which the train step
carries in its state; ``train=False`` (the default) uses them and skips the
auxiliary heads. FLOPs (:func:`count_flops`) are XLA's own count of
the compiled forward pass, which :func:`expected_flops` derives from the spec
term by term (:func:`xla_flop_terms`).
"""

from __future__ import annotations

import functools
import random
import statistics
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import architecture, counting, reference, runtime, tables, training
from .data import minibatch_indices

__all__ = ["try_gpu", "set_seed", "Layers", "Inception", "Part", "AuxHead", "AuxHeads",
           "GoogLeNet", "init",
           "count_parameters", "branch_parameters", "layer_summary", "load_weights",
           "logits", "device_data", "prepare_batch", "TrainState", "TrainResult",
           "optimizer", "make_train_step", "make_eval_step", "train", "count_flops",
           "CPU_TRAIN_COMPILER_OPTIONS", "conv_taps", "xla_flop_terms",
           "expected_flops_by_op", "expected_flops", "time_forward"]

# {"params": nested dict of arrays, "batch_stats": BatchNorm's running statistics
# (only for Conv-BN-ReLU specs)}, as Flax returns it
Variables = Dict[str, Any]


def try_gpu() -> jax.Device:
    """The first GPU JAX can see, else the CPU; prints where JAX runs."""
    try:
        gpus = jax.devices("gpu")
    except RuntimeError:  # this jaxlib has no GPU backend
        gpus = []
    device = gpus[0] if gpus else jax.devices("cpu")[0]
    print(runtime.device_notice("JAX", bool(gpus), device.device_kind))
    return device


def set_seed(seed: int) -> jax.Array:
    """Seed Python's and NumPy's generators and return ``jax.random.key(seed)``.

    JAX has no global random state: randomness comes from the key, which the
    caller passes on (to :func:`init`, to dropout, ...) and splits as needed.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)
    return jax.random.key(seed)


def _apply_layer(layer: architecture.Layer, x: jax.Array, train: bool = False) -> jax.Array:
    """Run one layer of the spec on an NHWC batch (called inside ``@nn.compact``).

    Modules created here belong to the calling module and are named as in the
    spec (``conv1``, ``inception3a``, ``fc``), which :func:`load_weights` relies
    on; a Conv-BN-ReLU convolution's BatchNorm is ``<name>_bn``, as in PyTorch.
    Pooling has no parameters and is a plain function. ``train``: BatchNorm
    normalises with the batch's statistics (and updates its running ones, the
    ``batch_stats`` collection), otherwise with the running statistics.
    """
    if isinstance(layer, architecture.Conv):
        p = layer.padding
        # Explicit, symmetric padding: "SAME" would pad (2, 3) for the stride-2
        # 7x7 conv1 on an even input, a different function from the paper's.
        # Conv-BN-ReLU: no bias, BatchNorm's shift replaces it.
        x = nn.Conv(layer.out_channels, (layer.kernel, layer.kernel),
                    strides=(layer.stride, layer.stride),
                    padding=((p, p), (p, p)), use_bias=not layer.batch_norm,
                    name=layer.name)(x)
        if layer.batch_norm:
            # Flax's momentum is the weight of the *old* running statistics.
            x = nn.BatchNorm(use_running_average=not train,
                             momentum=1.0 - architecture.BN_MOMENTUM,
                             epsilon=architecture.BN_EPS, name=f"{layer.name}_bn")(x)
        return nn.relu(x)
    if isinstance(layer, architecture.MaxPool):
        p = layer.padding
        # nn.max_pool pads with -inf, so the padding is never the maximum.
        return nn.max_pool(x, (layer.kernel, layer.kernel),
                           strides=(layer.stride, layer.stride),
                           padding=((p, p), (p, p)))
    if isinstance(layer, architecture.Inception):
        return Inception(layer.ch1x1, layer.ch3x3red, layer.ch3x3, layer.ch5x5red,
                         layer.ch5x5, layer.pool_proj, reduce=layer.reduce,
                         batch_norm=layer.batch_norm, factorize=layer.factorize,
                         name=layer.name)(x, **_flags(train))
    if isinstance(layer, architecture.GlobalAvgPool):
        return jnp.mean(x, axis=(1, 2), keepdims=True)
    if isinstance(layer, architecture.AvgPool):
        return nn.avg_pool(x, (layer.kernel, layer.kernel),
                           strides=(layer.stride, layer.stride))  # no padding
    if isinstance(layer, architecture.Dense):
        # N x H x W x C -> N x (H * W * C): channels-last order (1x1 maps but for
        # the auxiliary heads; load_weights reorders PyTorch's C x H x W inputs).
        x = x.reshape(x.shape[0], -1)
        x = nn.Dense(layer.out_features, name=layer.name)(x)
        return nn.relu(x) if layer.relu else x
    raise TypeError(f"unknown layer type {type(layer).__name__}")


def _flags(train: bool, taps: Tuple[str, ...] = ()) -> Dict[str, Any]:
    """Keyword arguments for a submodule call: only those that differ from the
    defaults, so ``tabulate`` lists a plain inference call's input alone."""
    return {**({"train": True} if train else {}), **({"taps": taps} if taps else {})}


class Layers(nn.Module):
    """Layers of the spec applied in order: a stage, or one Inception branch.

    Flax's ``nn.Sequential`` would rename its layers ``layers_0``, ``layers_1``
    ...; this keeps the spec's names in the parameter tree.

    ``taps``: names of layers whose outputs are wanted as well (the auxiliary
    heads'); when one of them is here, the call returns ``(x, {name: output})``.
    """

    layers: Tuple[architecture.Layer, ...]

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, taps: Tuple[str, ...] = ()):
        mine = {layer.name for layer in self.layers} & set(taps)
        tapped = {}
        for layer in self.layers:
            x = _apply_layer(layer, x, train)
            if layer.name in mine:
                tapped[layer.name] = x
        return (x, tapped) if mine else x


class Inception(nn.Module):
    """The Inception block: four parallel branches, concatenated on channels.

    The widths are the paper's Table 1. Its branches are the ones
    :meth:`architecture.Inception.branches` describes (written down once):

    1. ``branch1``: 1x1 convolution (``ch1x1``);
    2. ``branch2``: 1x1 (``ch3x3red``), then 3x3 with padding 1 (``ch3x3``);
    3. ``branch3``: 1x1 (``ch5x5red``), then 5x5 with padding 2 (``ch5x5``);
    4. ``branch4``: 3x3 max pool (stride 1, padding 1), then 1x1 (``pool_proj``).

    Every convolution is followed by ReLU. Input channels are inferred at
    ``init``; input and output are NHWC with the same height and width.

    ``reduce=False`` builds the naive block of the FLOPs chapter: no 1x1
    reductions, so the 3x3 and 5x5 convolutions read all input channels
    (``ch3x3red`` and ``ch5x5red`` are then unused). ``batch_norm=True``
    makes every convolution Conv-BN-ReLU (call the block with ``train=True``
    to normalise with the batch's statistics, ``mutable=["batch_stats"]``);
    ``factorize=True`` replaces the 5x5 convolution by two 3x3 ones, ``5x5a``
    and ``5x5b`` (the variants chapter).
    """

    ch1x1: int
    ch3x3red: int
    ch3x3: int
    ch5x5red: int
    ch5x5: int
    pool_proj: int
    reduce: bool = True
    batch_norm: bool = False
    factorize: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        # x: N x H x W x C_in
        block = architecture.Inception(self.name or "inception", self.ch1x1,
                                       self.ch3x3red, self.ch3x3, self.ch5x5red,
                                       self.ch5x5, self.pool_proj, reduce=self.reduce,
                                       batch_norm=self.batch_norm, factorize=self.factorize)
        outputs = [Layers(layers, name=branch)(x, **_flags(train))  # N x H x W x (its width)
                   for branch, layers in block.branches()]
        return jnp.concatenate(outputs, axis=-1)  # N x H x W x block.out_channels


class Part(nn.Module):
    """Consecutive stages of the spec: GoogLeNet's stem, body or head.

    Each stage (``b1`` ... ``b5``, ``head``) is a :class:`Layers` submodule
    named as in the spec, so parameters sit at ``part/stage/layer``, e.g.
    ``body/b3/inception3a/branch2/3x3/kernel``. With ``taps`` (layer names)
    the call returns ``(x, {name: output})``, as :class:`Layers` does.
    """

    stages: Tuple[architecture.Stage, ...]

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, taps: Tuple[str, ...] = ()):
        tapped = {}
        for stage in self.stages:
            x = Layers(stage.layers, name=stage.name)(x, **_flags(train, taps))
            if isinstance(x, tuple):
                x, found = x
                tapped.update(found)
        return (x, tapped) if taps else x


class AuxHead(nn.Module):
    """An auxiliary classifier (:class:`d2l_lite.architecture.AuxHead`): 5x5/3
    average pool, 1x1 conv to 128 (Conv-BN-ReLU with ``batch_norm``), dense
    1024 with ReLU, dropout, dense to the classes. Dropout needs a ``"dropout"``
    random key when ``train`` is true."""

    num_classes: int
    batch_norm: bool = False
    dropout: float = 0.7

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        head = architecture.AuxHead(self.name or "aux", "", self.num_classes,
                                    batch_norm=self.batch_norm, dropout=self.dropout)
        *hidden, classifier = head.layers()  # pool, conv, fc1 | fc2
        for layer in hidden:
            x = _apply_layer(layer, x, train)
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return _apply_layer(classifier, x, train)  # N x num_classes


class AuxHeads(nn.Module):
    """The spec's auxiliary heads, each a submodule named as in the spec
    (``aux/aux1/fc1/kernel``); takes the tapped body outputs by block name."""

    heads: Tuple[architecture.AuxHead, ...]

    @nn.compact
    def __call__(self, tapped: Dict[str, jax.Array], train: bool = False) -> List[jax.Array]:
        return [AuxHead(h.num_classes, batch_norm=h.batch_norm, dropout=h.dropout,
                        name=h.name)(tapped[h.after], train) for h in self.heads]


class GoogLeNet(nn.Module):
    """GoogLeNet built by walking ``spec.stages``; NHWC batches in, logits out.

    ``stem``, ``body`` and ``head`` are :class:`Part` submodules (reach them
    on a bound model: ``model.bind(variables).stem``). The input is checked
    with ``spec.check_input`` before any layer runs; under ``jax.jit`` that
    happens once, at trace time, since shapes are static.

    ``train``: BatchNorm (``spec.batch_norm``) uses the batch's statistics and
    updates the running ones, so apply with ``mutable=["batch_stats"]``; with
    auxiliary heads (``spec.aux_heads``, submodule ``aux``) the call returns
    ``(logits, [aux1_logits, aux2_logits])`` and their dropout needs a
    ``"dropout"`` key. At inference (``train=False``, the default) the heads do
    not run and the logits come alone; ``init`` runs them once to create
    their parameters.
    """

    spec: architecture.GoogLeNetSpec = architecture.BOOK

    def setup(self):
        self.stem = Part(self.spec.part("stem"))
        self.body = Part(self.spec.part("body"))
        self.head = Part(self.spec.part("head"))
        if self.spec.aux_heads:
            self.aux = AuxHeads(self.spec.aux_heads)

    def __call__(self, x: jax.Array, train: bool = False):
        _check_nhwc(x.shape, self.spec.in_channels)
        self.spec.check_input(x.shape[3], x.shape[1], x.shape[2])
        # Shapes for the book's 96 x 96 input (the paper's 224 x 224: 28, 7, 1000).
        x = self.stem(x, **_flags(train))  # N x 12 x 12 x 192
        if not self.spec.aux_heads or not (train or self.is_initializing()):
            x = self.body(x, **_flags(train))  # N x 3 x 3 x 1024
            return self.head(x, **_flags(train))  # N x num_classes
        # Auxiliary heads: tap the body after inception4a and inception4d.
        x, tapped = self.body(x, train, tuple(h.after for h in self.spec.aux_heads))
        aux_logits = self.aux(tapped, train)  # each N x num_classes
        y = self.head(x, **_flags(train))
        return (y, aux_logits) if train else y


def _check_nhwc(shape: Sequence[int], in_channels: int) -> None:
    """ValueError for a batch that is not 4-D or looks channels-first."""
    if len(shape) != 4:
        raise ValueError(f"GoogLeNet takes a 4-D NHWC batch (N, H, W, C); got shape "
                         f"{tuple(shape)}. Add a batch axis with x[None] for one image.")
    if shape[3] != in_channels and shape[1] == in_channels:
        raise ValueError(f"Got shape {tuple(shape)}, which looks channels-first (NCHW). "
                         f"Flax is channels-last: pass x.transpose(0, 2, 3, 1).")


def init(model: nn.Module, input_shape: Sequence[int], seed: int = 0) -> Variables:
    """Initialise ``model`` for an NHWC ``input_shape``; returns its ``variables``.

    Flax's default initialisers are used (LeCun-normal kernels, zero biases).
    Flax infers each layer's input channels here, by tracing one forward pass.
    """
    key = jax.random.key(seed)
    x = jnp.zeros(tuple(input_shape), jnp.float32)
    # init runs once, so its speed does not matter, but compiling GoogLeNet's
    # ~60 random initialisers takes XLA tens of seconds on a CPU; skipping the
    # backend's optimisations makes that a few times faster (same values).
    fast_compile = {"xla_backend_optimization_level": 0}
    return jax.jit(model.init, compiler_options=fast_compile)(key, x)


def _params(variables: Variables) -> Dict[str, Any]:
    """The ``params`` collection of a ``variables`` dict (or a params tree)."""
    if not isinstance(variables, dict) and not hasattr(variables, "keys"):
        raise ValueError("pass the variables dict that init(...) or load_weights(...) "
                         f"returned, not a {type(variables).__name__}")
    return variables["params"] if "params" in variables else variables


def _size(tree) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(tree))


def count_parameters(variables: Variables) -> int:
    """Total number of trainable parameters in ``variables`` (the ``params``
    collection; BatchNorm's running statistics, ``batch_stats``, are not
    counted, as in the analytic count). Flax models hold none themselves.

    ``variables`` is what :func:`init` or :func:`load_weights` returned, or just
    its shapes: ``jax.eval_shape(model.init, key, x)`` counts without computing.
    """
    return _size(_params(variables))


def branch_parameters(variables: Variables) -> Dict[str, int]:
    """``{"branch1": n, ..., "branch4": n}`` for an initialised :class:`Inception`."""
    params = _params(variables)
    missing = [b for b in ("branch1", "branch2", "branch3", "branch4") if b not in params]
    if missing:
        raise ValueError(f"these are not an Inception block's variables (no {missing}); "
                         "pass init(block, input_shape) for a d2l.Inception block")
    return {branch: _size(params[branch]) for branch in ("branch1", "branch2",
                                                         "branch3", "branch4")}


def layer_summary(model: GoogLeNet, input_shape: Sequence[int]) -> None:
    """Print one row per stage: stage, part, output shape (NHWC), parameters.

    Nothing is computed: ``jax.eval_shape`` traces the model for shapes only,
    and Flax's ``capture_intermediates`` records each stage's output.
    """
    if not isinstance(model, GoogLeNet):
        raise ValueError(f"layer_summary takes a d2l.GoogLeNet, got {type(model).__name__}")
    stage_names = {stage.name for stage in model.spec.stages}

    def is_stage(module, method_name):
        return isinstance(module, Layers) and module.name in stage_names

    x = jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32)
    variables = jax.eval_shape(functools.partial(model.init, capture_intermediates=is_stage),
                               jax.random.key(0), x)
    rows = []
    for stage in model.spec.stages:
        output = variables["intermediates"][stage.part][stage.name]["__call__"][0]
        if isinstance(output, tuple):  # a stage an auxiliary head taps: (x, tapped)
            output = output[0]
        params = variables["params"][stage.part].get(stage.name, {})
        rows.append((stage.name, stage.part, str(tuple(output.shape)), _size(params)))
    tables.print_table(("stage", "part", "output shape (NHWC)", "parameters"), rows)


def _variable_shapes(model: GoogLeNet) -> Dict[Tuple[str, ...], Tuple[int, ...]]:
    """``(collection, *Flax path)`` -> shape for every variable (``params`` and
    ``batch_stats``), from a shape-only trace of ``init``."""
    size = model.spec.input_size
    x = jax.ShapeDtypeStruct((1, size, size, model.spec.in_channels), jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    flat, _ = jax.tree_util.tree_flatten_with_path(dict(variables))
    return {tuple(key.key for key in path): leaf.shape for path, leaf in flat}


#: Canonical BatchNorm names -> Flax's (collection, name).
_BN_NAMES = {"weight": ("params", "scale"), "bias": ("params", "bias"),
             "running_mean": ("batch_stats", "mean"), "running_var": ("batch_stats", "var")}


def load_weights(model: GoogLeNet, weights: Dict[str, np.ndarray]) -> Variables:
    """Variables for ``model`` from canonical weights (``reference.random_weights``).

    Canonical names map to Flax paths through the spec, e.g.
    ``inception3a/branch2/3x3/weight`` -> ``body/b3/inception3a/branch2/3x3/kernel``,
    ``aux1/fc1/weight`` -> ``aux/aux1/fc1/kernel``. BatchNorm's
    ``<layer>_bn/weight`` and ``bias`` become its ``scale`` and ``bias``
    parameters; ``running_mean`` and ``running_var`` its ``mean`` and ``var``
    in the ``batch_stats`` collection. Canonical weights use PyTorch's
    layout; Flax wants channels-last:

    * convolution kernel OIHW -> HWIO: ``w.transpose(2, 3, 1, 0)``;
    * dense kernel ``(out, in)`` -> ``(in, out)``: ``w.T``. A dense layer that
      flattens a map larger than 1x1 (an auxiliary head's ``fc1`` at 224x224)
      reads it in NHWC order, H x W x C, where PyTorch's reads C x H x W: its
      rows are reordered to match;
    * biases and BatchNorm vectors as they are.

    Every parameter (and running statistic) of the model must be given, with
    the right shape. Returns ``{"params": ...}``, plus ``"batch_stats"`` for a
    Conv-BN-ReLU spec.
    """
    if not isinstance(model, GoogLeNet):
        raise ValueError(f"load_weights takes a d2l.GoogLeNet, got {type(model).__name__}")
    spec = model.spec
    where: Dict[str, Tuple[str, ...]] = {}
    for stage in spec.stages:
        for layer in stage.layers:
            where[layer.name] = where[f"{layer.name}_bn"] = (stage.part, stage.name)
    for head in spec.aux_heads:
        where[head.name] = ("aux",)
    # What each dense layer flattens (C, H, W), from the analytic counter's rows.
    dense_inputs = {row.name: row.in_shape for row in counting.count_network(spec, detail=True)
                    if row.kind == "dense"}
    expected = _variable_shapes(model)
    variables: Dict[str, Any] = {}
    for name, w in weights.items():
        *layer_path, kind = name.split("/")
        batch_norm = bool(layer_path) and layer_path[-1].endswith("_bn")
        kinds = _BN_NAMES if batch_norm else {"weight": ("params", "kernel"),
                                              "bias": ("params", "bias")}
        if not layer_path or layer_path[0] not in where or kind not in kinds:
            raise ValueError(f"{name!r} is not a parameter of this GoogLeNet; use "
                             "reference.random_weights(spec) for the model's spec")
        collection, leaf = kinds[kind]
        path = (collection, *where[layer_path[0]], *layer_path, leaf)
        w = np.asarray(w, dtype=np.float32)
        if w.ndim == 4:
            w = w.transpose(2, 3, 1, 0)  # OIHW -> HWIO
        elif w.ndim == 2:
            c, h, wd = dense_inputs.get("/".join(layer_path), (w.shape[1], 1, 1))
            if c * h * wd == w.shape[1]:  # (out, C*H*W) -> (H*W*C, out)
                w = w.reshape(-1, c, h, wd).transpose(2, 3, 1, 0).reshape(-1, w.shape[0])
            else:
                w = w.T  # a wrong shape: the check below names it
        if path not in expected or expected[path] != w.shape:
            raise ValueError(f"{name!r} becomes shape {w.shape} in Flax's layout, but this "
                             f"model's {'/'.join(path)} has shape {expected.get(path)}; "
                             "are the weights for another spec?")
        del expected[path]
        node = variables
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = jnp.asarray(w)
    if expected:
        missing = sorted("/".join(path) for path in expected)
        raise ValueError(f"the weights lack {len(missing)} of the model's parameters, "
                         f"e.g. {missing[0]}; use reference.random_weights(spec) for "
                         "the model's spec")
    return variables


@functools.partial(jax.jit, static_argnums=0)
def _forward(model: nn.Module, variables: Variables, x: jax.Array) -> jax.Array:
    # Full float32 convolutions: on recent NVIDIA GPUs XLA's default may use
    # TF32, which is too coarse for a comparison with the float64 reference.
    with jax.default_matmul_precision("highest"):
        return model.apply(variables, x)


def logits(model: GoogLeNet, X: np.ndarray, variables: Variables) -> np.ndarray:
    """Float32 NumPy logits for an NCHW float32 NumPy batch ``X`` (jit-compiled).

    ``X`` is channels-first like ``reference.random_input``; it is transposed
    to NHWC here, so the same batch goes into all four frameworks.
    """
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 4:
        raise ValueError(f"logits takes an NCHW batch (N, C, H, W); got shape {X.shape}")
    in_channels = model.spec.in_channels if isinstance(model, GoogLeNet) else X.shape[1]
    if X.shape[1] != in_channels and X.shape[3] == in_channels:
        raise ValueError(f"Got shape {X.shape}, which looks channels-last (NHWC); "
                         "logits takes NCHW like the reference (it transposes itself).")
    y = _forward(model, variables, jnp.asarray(X.transpose(0, 2, 3, 1)))  # NCHW -> NHWC
    return np.asarray(y, dtype=np.float32)


# Training ------------------------------------------------------------------------

def device_data(data, device: Optional[jax.Device] = None) -> Tuple[jax.Array, ...]:
    """``(train_images, train_labels, test_images, test_labels)`` of a
    :class:`~d2l_lite.data.FashionMNIST` as arrays on ``device``, copied once.

    Images stay uint8 ``(N, 28, 28)`` (47 MB for all 60,000) and labels
    become int32: each batch is converted and resized on the device by
    :func:`prepare_batch`, inside the compiled step.
    """
    device = device or jax.devices()[0]
    return tuple(jax.device_put(np.asarray(array, dtype), device) for array, dtype in (
        (data.train_images, np.uint8), (data.train_labels, np.int32),
        (data.test_images, np.uint8), (data.test_labels, np.int32)))


def prepare_batch(images: jax.Array, image_size: int = 96) -> jax.Array:
    """uint8 ``B x 28 x 28`` images -> float32 NHWC ``B x image_size x image_size x 1``
    in [0, 1], on the images' device (traced into the jitted step).

    ``jax.image.resize(..., "bilinear")`` samples at pixel centres, like
    PyTorch's ``F.interpolate(mode="bilinear", align_corners=False)`` and
    ``tf.image.resize``. ``antialias=False``: antialiasing only matters when
    shrinking an image, and PyTorch's default leaves it off.
    """
    X = images.astype(jnp.float32) / 255  # B x 28 x 28
    X = jax.image.resize(X, (X.shape[0], image_size, image_size), method="bilinear",
                         antialias=False)
    return X[..., None]  # B x S x S x 1: Flax is channels-last


class TrainState(NamedTuple):
    """What changes from step to step: the parameters, the optimiser's state,
    BatchNorm's running statistics (the ``batch_stats`` collection; ``{}``
    without BatchNorm) and the random key for dropout (auxiliary heads), split
    at every step.

    A NamedTuple is a pytree, so ``jax.jit`` takes and returns it whole, and
    ``donate_argnums=0`` lets XLA write the new state into the old one's memory.
    """

    params: Any
    opt_state: optax.OptState
    batch_stats: Any = None
    key: Optional[jax.Array] = None


class TrainResult(NamedTuple):
    """What :func:`train` returns: ``history, variables = d2l.train(...)``.

    Flax models hold no parameters, so the trained ones come back beside the
    :class:`~d2l_lite.training.History`, as a ``variables`` dict ready for
    ``model.apply`` or :func:`logits` (with ``"batch_stats"``, the running
    statistics, for a Conv-BN-ReLU spec).
    """

    history: training.History
    variables: Variables


def optimizer(recipe: training.Recipe, steps_per_epoch: int) -> optax.GradientTransformation:
    """The recipe's optimiser as an optax transformation.

    The learning rate of step ``t`` is ``training.learning_rate(recipe, t,
    steps_per_epoch)``, the schedule all four frameworks share: computed once
    per step into a table, which the compiled step indexes with optax's own
    step counter. ``optax.inject_hyperparams`` keeps the current rate in the
    optimiser's state (``opt_state.hyperparams["learning_rate"]``), where it
    can be read.

    * ``"sgd"``: ``add_decayed_weights`` *before* ``sgd`` adds
      ``weight_decay * w`` to the gradient, the coupled L2 decay of
      ``torch.optim.SGD``, which momentum then carries along;
    * ``"adamw"``: ``optax.adamw`` (betas 0.9, 0.999, eps 1e-8), whose decay is
      decoupled: ``w -= lr * (adam_step + weight_decay * w)``, as
      ``torch.optim.AdamW``.
    """
    total = recipe.num_epochs * steps_per_epoch
    table = jnp.asarray([training.learning_rate(recipe, step, steps_per_epoch)
                         for step in range(total)], jnp.float32)

    def schedule(count):
        return table[jnp.minimum(count, total - 1)]

    if recipe.optimizer == "sgd":
        def sgd(learning_rate):
            return optax.chain(
                optax.add_decayed_weights(recipe.weight_decay),
                optax.sgd(learning_rate, momentum=recipe.momentum or None,
                          nesterov=recipe.nesterov))
        return optax.inject_hyperparams(sgd)(learning_rate=schedule)
    return optax.inject_hyperparams(optax.adamw)(
        learning_rate=schedule, b1=0.9, b2=0.999, eps=1e-8,
        weight_decay=recipe.weight_decay)


def _cast(tree, dtype):
    return jax.tree_util.tree_map(lambda a: a.astype(dtype), tree)


def _variables(params, batch_stats) -> Variables:
    """``{"params": ...}``, with ``"batch_stats"`` when there are any."""
    return {"params": params, "batch_stats": batch_stats} if batch_stats else {"params": params}


def make_train_step(model: nn.Module, tx: optax.GradientTransformation, *,
                    image_size: int = 96, label_smoothing: float = 0.0,
                    compute_dtype=jnp.float32) -> Callable:
    """``train_step(state, images, labels) -> (state, metrics)``, to be jitted.

    ``images`` is a uint8 ``B x 28 x 28`` batch: scaling and resizing happen
    inside the step, on the device. The model runs with ``train=True``:
    BatchNorm normalises with the batch's statistics and returns updated
    running ones (``mutable=["batch_stats"]``), which go into the new state;
    dropout draws from ``state.key``. With auxiliary heads their losses join
    with weight ``architecture.AUX_LOSS_WEIGHT`` (0.3); the logged loss stays
    the main head's, comparable with models without them.

    With ``compute_dtype=jnp.bfloat16`` the parameters and the batch are cast
    to bfloat16 for the forward and backward pass, while the master weights,
    BatchNorm's statistics, the optimiser and the loss stay float32 (the
    gradients come back float32 through the cast). ``metrics`` holds the
    batch's summed loss and its number of correct predictions, as device scalars.
    """
    num_classes = model.spec.num_classes

    def train_step(state: TrainState, images: jax.Array, labels: jax.Array):
        X = prepare_batch(images, image_size).astype(compute_dtype)
        targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), label_smoothing)
        key, rngs = state.key, {}
        if key is not None:
            key, dropout_key = jax.random.split(key)
            rngs = {"dropout": dropout_key}

        def loss_fn(params):
            output, updates = model.apply(
                _variables(_cast(params, compute_dtype), state.batch_stats), X, train=True,
                mutable=["batch_stats"], rngs=rngs)
            y_hat, aux_logits = training.split_aux(output)
            y_hat = y_hat.astype(jnp.float32)
            loss = optax.softmax_cross_entropy(y_hat, targets).mean()
            aux_loss = sum(optax.softmax_cross_entropy(a.astype(jnp.float32), targets).mean()
                           for a in aux_logits)
            total = loss + architecture.AUX_LOSS_WEIGHT * aux_loss
            return total, (loss, y_hat, updates.get("batch_stats", state.batch_stats))

        (_, (loss, y_hat, batch_stats)), grads = jax.value_and_grad(
            loss_fn, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss_sum": loss * labels.shape[0],
                   "correct": jnp.sum(jnp.argmax(y_hat, axis=-1) == labels)}
        return TrainState(params, opt_state, batch_stats, key), metrics

    return train_step


def make_eval_step(model: nn.Module, *, image_size: int = 96,
                   compute_dtype=jnp.float32) -> Callable:
    """``eval_step(variables, images, labels, valid) -> correct``, to be jitted;
    ``variables`` is ``{"params": ...}`` (plus ``"batch_stats"``: BatchNorm
    uses the running statistics here), ``valid`` masks the padding of the last
    test batch."""

    def eval_step(variables, images, labels, valid):
        X = prepare_batch(images, image_size).astype(compute_dtype)
        variables = dict(variables, params=_cast(variables["params"], compute_dtype))
        y_hat = model.apply(variables, X)
        return jnp.sum((jnp.argmax(y_hat, axis=-1) == labels) & valid)

    return eval_step


#: XLA's CPU compiler (jaxlib 0.10) hands convolutions to YNNPACK by default;
#: for the weight gradients of a training step that is several times slower
#: here than XLA's own convolutions, so the CPU training step is compiled
#: without it: half the time per step on this book's CPU. Ignored by jaxlibs
#: that do not know the option.
CPU_TRAIN_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}


def _compile(lowered, options: Dict[str, Any]):
    """``lowered.compile(compiler_options=options)``, or without the options
    when this jaxlib's XLA does not know them."""
    if options:
        try:
            return lowered.compile(compiler_options=options)
        except Exception as err:  # jax.errors.JaxRuntimeError (XlaRuntimeError before)
            if "No such compile option" not in str(err):
                raise
    return lowered.compile()


@functools.partial(jax.jit, donate_argnums=0)
def _add(totals, metrics):
    return jax.tree_util.tree_map(jnp.add, totals, metrics)


def _device_name(device: jax.Device) -> str:
    return "cpu" if device.platform == "cpu" else device.device_kind


def train(model: GoogLeNet, data, recipe: training.Recipe = training.CLASSIC, *,
          device: Optional[jax.Device] = None, image_size: Optional[int] = None,
          plot: bool = True,
          progress: bool = True) -> TrainResult:
    """Train ``model`` on ``data`` (a :class:`~d2l_lite.data.FashionMNIST`) with ``recipe``.

    Returns ``TrainResult(history, variables)``: the
    :class:`~d2l_lite.training.History` and the trained variables (Flax keeps
    parameters outside the model). Unpack it: ``history, variables = d2l.train(...)``.

    The parameters start from :func:`d2l_lite.reference.xavier_weights` for the
    model's spec and ``recipe.seed`` (through :func:`load_weights`), so every
    framework starts from the same point (BatchNorm: scale 1, shift 0, running
    statistics 0 and 1). All images go to ``device`` (default: JAX's first
    device) once, as uint8; each batch is gathered there, and scaled and
    resized to ``image_size`` (default: the spec's input size; 28 means no
    resizing) inside the compiled step. Loss and correct counts are summed on
    the device and read once per epoch.

    BatchNorm trains in training mode (batch statistics; the running ones are
    carried in the :class:`TrainState` and used for the evaluation), and
    auxiliary heads add their weighted losses (:func:`make_train_step`).

    The step is always compiled: ``jax.jit`` with ``donate_argnums=0`` (the
    old state's buffers are reused for the new one), compiled ahead of time
    with ``.lower(...).compile()`` so that ``History.compile_seconds`` is the
    compile time itself. Eager JAX, op by op, is not a way anyone trains, so
    ``recipe.compile`` changes nothing here. ``recipe.mixed_precision`` means
    bfloat16 compute on a GPU; on the CPU the run stays float32 and says so.

    ``EpochStats.seconds`` is the time of the epoch's training steps (device
    synchronised; the first epoch includes compiling, as in the other
    frameworks), without the evaluation that follows.
    """
    if not isinstance(model, GoogLeNet):
        raise ValueError(f"train takes a d2l.GoogLeNet, got {type(model).__name__}")
    if not isinstance(recipe, training.Recipe):
        raise ValueError(f"recipe must be a training.Recipe such as training.CLASSIC, "
                         f"got {type(recipe).__name__}")
    device = device or jax.devices()[0]
    gpu = device.platform == "gpu"
    if recipe.mixed_precision and not gpu:
        print("JAX on the CPU: bfloat16 skipped (float32 instead); it is a GPU option here.")
    compute_dtype = jnp.bfloat16 if recipe.mixed_precision and gpu else jnp.float32

    image_size = model.spec.input_size if image_size is None else image_size
    key = set_seed(recipe.seed)  # for dropout (auxiliary heads)
    variables = load_weights(model, reference.xavier_weights(model.spec, seed=recipe.seed))
    params = jax.device_put(variables["params"], device)
    batch_stats = jax.device_put(variables.get("batch_stats", {}), device)
    train_images, train_labels, test_images, test_labels = device_data(data, device)
    num_train, num_test = len(data.train_labels), len(data.test_labels)
    batch_size = recipe.batch_size
    steps_per_epoch = training.steps_per_epoch(num_train, batch_size)
    tx = optimizer(recipe, steps_per_epoch)
    state = TrainState(params, jax.device_put(tx.init(params), device), batch_stats,
                       jax.device_put(key, device))
    train_step = make_train_step(model, tx, image_size=image_size,
                                 label_smoothing=recipe.label_smoothing,
                                 compute_dtype=compute_dtype)
    eval_step = make_eval_step(model, image_size=image_size, compute_dtype=compute_dtype)

    # The test set in fixed-size batches: the last one is padded with image 0
    # and masked, so the compiled evaluation sees one shape.
    num_eval = -(-num_test // batch_size) * batch_size
    eval_index = np.arange(num_eval)
    eval_valid = jax.device_put((eval_index < num_test).reshape(-1, batch_size), device)
    eval_index = jax.device_put(np.where(eval_index < num_test, eval_index, 0)
                                .reshape(-1, batch_size), device)
    eval_images = list(test_images[eval_index])  # one gather on the device, then B x 28 x 28 each
    eval_labels = list(test_labels[eval_index])
    eval_valid = list(eval_valid)

    history = training.History("JAX", recipe, _device_name(device), num_train, num_test)
    live = training.ProgressPlot(f"JAX, {recipe.name} recipe", recipe.num_epochs,
                                 enabled=None if plot else False)
    compiled_train = compiled_eval = None
    for epoch in range(recipe.num_epochs):
        order = np.stack(list(minibatch_indices(
            num_train, batch_size, shuffle=True, seed=recipe.seed, epoch=epoch,
            drop_last=True)))  # steps_per_epoch x batch_size
        order = jax.device_put(order, device)
        bar = training.batch_progress(steps_per_epoch, epoch + 1, recipe.num_epochs,
                                      enabled=progress)
        timer = training.Timer()
        # One gather for the epoch on the device, then one B x 28 x 28 batch per step.
        epoch_images, epoch_labels = train_images[order], train_labels[order]
        if compiled_train is None:  # compile ahead of time: in epoch 1's time, and on its own
            compile_timer = training.Timer()
            compiled_train = _compile(
                jax.jit(train_step, donate_argnums=0).lower(state, epoch_images[0],
                                                            epoch_labels[0]),
                CPU_TRAIN_COMPILER_OPTIONS if device.platform == "cpu" else {})
            compiled_eval = jax.jit(eval_step).lower(
                _variables(state.params, state.batch_stats), eval_images[0], eval_labels[0],
                eval_valid[0]).compile()
            history.compile_seconds = compile_timer.elapsed()
        totals = {"loss_sum": jnp.zeros((), jnp.float32), "correct": jnp.zeros((), jnp.int32)}
        totals = jax.device_put(totals, device)
        for images, labels in zip(epoch_images, epoch_labels):
            state, metrics = compiled_train(state, images, labels)
            totals = _add(totals, metrics)
            bar.update(1)
        totals = jax.device_get(totals)  # waits for the last step: the device is synchronised
        seconds = timer.elapsed()
        bar.close()
        test_correct = jax.device_put(jnp.zeros((), jnp.int32), device)
        trained = _variables(state.params, state.batch_stats)
        for images, labels, valid in zip(eval_images, eval_labels, eval_valid):
            test_correct = test_correct + compiled_eval(trained, images, labels, valid)
        seen = steps_per_epoch * batch_size
        history.epochs.append(training.EpochStats(
            epoch=epoch + 1, train_loss=float(totals["loss_sum"]) / seen,
            train_acc=int(totals["correct"]) / seen,
            test_acc=int(test_correct) / num_test,
            seconds=seconds, images_per_sec=seen / seconds))
        live.update(history)
    return TrainResult(history, _variables(state.params, state.batch_stats))


# FLOPs and timing ----------------------------------------------------------------

def _abstract(model_or_block: nn.Module, input_shape: Sequence[int], device: jax.Device):
    """Shapes-only ``variables`` and input for ``model_or_block`` on ``device``:
    ``jax.eval_shape`` traces ``init`` without computing anything."""
    if len(input_shape) != 4:
        raise ValueError(f"input_shape must be N x H x W x C (channels last), e.g. "
                         f"(1, 28, 28, 192), got {tuple(input_shape)}")
    sharding = jax.sharding.SingleDeviceSharding(device)
    x = jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32, sharding=sharding)
    shapes = jax.eval_shape(model_or_block.init, jax.random.key(0), x)
    variables = jax.tree_util.tree_map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), shapes)
    return variables, x


def count_flops(model_or_block: nn.Module, input_shape: Sequence[int], *,
                device: Optional[jax.Device] = None) -> int:
    """FLOPs of one forward pass on an ``input_shape`` (NHWC) batch, as XLA counts them.

    The forward pass ``model.apply(variables, X)`` is jitted, lowered and
    compiled, and ``compiled.cost_analysis()["flops"]`` is XLA's own count
    over the optimised program. The variables and the input are *arguments*
    of that program, given as shapes only (nothing is computed); closed over
    as constants, XLA could fold work away. What XLA counts per operation, and
    why its total is not ``2 x MACs``, is :func:`xla_flop_terms`.

    ``device``: whose compiler counts, by default the CPU's, so the count is
    the same on every machine. (XLA's GPU compiler fuses convolutions with
    their bias and ReLU into cuDNN calls and counts those differently.)
    """
    device = device or jax.devices("cpu")[0]
    variables, x = _abstract(model_or_block, input_shape, device)
    compiled = jax.jit(model_or_block.apply).lower(variables, x).compile()
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):  # older jaxlibs: one dict per program
        cost = cost[0]
    return int(cost["flops"])


def conv_taps(size: int, kernel: int, stride: int, padding: int) -> int:
    """Kernel taps, summed over the output positions along one axis, that land
    on the input rather than on its zero padding: for output ``o``, the taps
    ``k`` with ``0 <= o * stride - padding + k < size``. XLA counts a
    convolution's multiply-adds over these taps only (2 FLOPs each, times
    the taps of the other axis, the channels in and out and the batch)."""
    out = architecture.conv_output_size(size, kernel, stride, padding)
    return sum(1 for o in range(out) for k in range(kernel)
               if 0 <= o * stride - padding + k < size)


def xla_flop_terms(spec_or_block, input_size=None, batch_size: int = 1
                   ) -> List[Tuple[str, str, int]]:
    """XLA's FLOP count of a forward pass, term by term, derived from the spec.

    One ``(layer, kind, flops)`` row per operation XLA's CPU compiler keeps
    after fusion, in the order its cost analysis visits them (the order of
    the spec: each block's branches one after the other). XLA's rules
    (``HloCostAnalysis``), checked op by op in the FLOPs chapter:

    * ``"conv"``: 2 FLOPs per multiply-add, but only for kernel taps that
      land on real input: along each axis ``conv_taps(size, k, stride, padding)``
      taps instead of ``output size x k``, so a padded convolution costs less
      than ``2 x MACs``; times input and output channels and the batch;
    * ``"bias+relu"``: one add and one max per output element of every
      convolution (fused into one loop);
    * ``"maxpool"``: ``window - 1`` comparisons per output element (9 - 1 = 8
      for 3x3), padding or not;
    * ``"mean"`` (d2l's global average pool): ``H x W - 1`` adds per channel,
      then ``"mean/scale"``, one multiply per channel; the paper's 7x7
      average pool is the same pair (``"avgpool"``, ``"avgpool/scale"``);
    * ``"dense"``: ``2 x in x out``; ``"dense bias"``: ``out``;
    * concatenation, reshapes, padding: nothing.

    ``spec_or_block``: a :class:`~d2l_lite.architecture.GoogLeNetSpec`
    (``input_size``: the image side, default the spec's) or an
    :class:`~d2l_lite.architecture.Inception` (``input_size``: its input as
    ``(channels, height, width)``).
    """
    n = batch_size
    terms: List[Tuple[str, str, int]] = []

    def conv(layer: architecture.Conv, shape, name: str):
        c, h, w = shape
        out = (layer.out_channels,
               architecture.conv_output_size(h, layer.kernel, layer.stride, layer.padding),
               architecture.conv_output_size(w, layer.kernel, layer.stride, layer.padding))
        taps = (conv_taps(h, layer.kernel, layer.stride, layer.padding)
                * conv_taps(w, layer.kernel, layer.stride, layer.padding))
        terms.append((name, "conv", 2 * n * c * layer.out_channels * taps))
        terms.append((name, "bias+relu", 2 * n * int(np.prod(out))))
        return out

    def max_pool(layer: architecture.MaxPool, shape, name: str):
        c, h, w = shape
        out = (c, *(architecture.conv_output_size(side, layer.kernel, layer.stride,
                                                  layer.padding) for side in (h, w)))
        terms.append((name, "maxpool", n * int(np.prod(out)) * (layer.kernel ** 2 - 1)))
        return out

    def inception(block: architecture.Inception, shape):
        for branch, layers in block.branches():
            branch_shape = shape
            for layer in layers:
                name = f"{block.name}/{branch}/{layer.name}"
                branch_shape = (conv if isinstance(layer, architecture.Conv)
                                else max_pool)(layer, branch_shape, name)
        return (block.out_channels, shape[1], shape[2])

    if isinstance(spec_or_block, architecture.Inception):
        if input_size is None or len(input_size) != 3:
            raise ValueError(f"an Inception block needs input_size=(channels, height, "
                             f"width), e.g. (192, 28, 28), got {input_size!r}")
        inception(spec_or_block, tuple(input_size))
        return terms
    if not isinstance(spec_or_block, architecture.GoogLeNetSpec):
        raise ValueError(f"xla_flop_terms takes a GoogLeNetSpec or an "
                         f"architecture.Inception, got {type(spec_or_block).__name__}")
    spec = spec_or_block
    size = spec.input_size if input_size is None else input_size
    spec.check_input(spec.in_channels, size, size)
    shape = (spec.in_channels, size, size)
    for stage in spec.stages:
        for layer in stage.layers:
            if isinstance(layer, architecture.Conv):
                shape = conv(layer, shape, layer.name)
            elif isinstance(layer, architecture.MaxPool):
                shape = max_pool(layer, shape, layer.name)
            elif isinstance(layer, architecture.Inception):
                shape = inception(layer, shape)
            elif isinstance(layer, architecture.GlobalAvgPool):
                c, h, w = shape
                terms.append((layer.name, "mean", n * c * (h * w - 1)))
                terms.append((layer.name, "mean/scale", n * c))
                shape = (c, 1, 1)
            elif isinstance(layer, architecture.AvgPool):
                c, h, w = shape
                out = (c, *(architecture.conv_output_size(side, layer.kernel, layer.stride, 0)
                            for side in (h, w)))
                terms.append((layer.name, "avgpool",
                              n * int(np.prod(out)) * (layer.kernel ** 2 - 1)))
                terms.append((layer.name, "avgpool/scale", n * int(np.prod(out))))
                shape = out
            elif isinstance(layer, architecture.Dense):
                fan_in = int(np.prod(shape))
                terms.append((layer.name, "dense", 2 * n * fan_in * layer.out_features))
                terms.append((layer.name, "dense bias", n * layer.out_features))
                shape = (layer.out_features, 1, 1)
    return terms


def expected_flops_by_op(spec_or_block, input_size=None, batch_size: int = 1
                         ) -> Dict[str, int]:
    """:func:`xla_flop_terms` added up by kind (exact integers)."""
    totals: Dict[str, int] = {}
    for _, kind, flops in xla_flop_terms(spec_or_block, input_size, batch_size):
        totals[kind] = totals.get(kind, 0) + flops
    return totals


def expected_flops(spec_or_block, input_size=None, batch_size: int = 1) -> int:
    """What :func:`count_flops` reports, computed from the spec alone.

    The terms of :func:`xla_flop_terms`, added up the way XLA adds them: its
    cost analysis keeps its running total in a 32-bit float
    (``HloCostAnalysis::Properties`` holds ``float``), so above 2^24 each
    addition rounds to the nearest representable value, in the order XLA
    visits the operations. The exact integer sum is
    ``sum(expected_flops_by_op(...).values())``; the two differ by a few
    hundred FLOPs in a few billion.
    """
    total = np.float32(0)
    for _, _, flops in xla_flop_terms(spec_or_block, input_size, batch_size):
        total = np.float32(total + np.float32(flops))
    return int(total)


def time_forward(model_or_block: nn.Module, input_shape: Sequence[int],
                 repeats: int = 10, warmup: int = 2,
                 variables: Optional[Variables] = None) -> float:
    """Median seconds of one forward pass on an ``input_shape`` (NHWC) batch.

    The forward pass is jitted (JAX's normal fast path) and runs on JAX's
    default device; ``warmup`` passes run first (the first one compiles), and
    each timed pass waits for its result (``block_until_ready``). Without
    ``variables``, a GoogLeNet gets :func:`reference.xavier_weights` and
    anything else :func:`init`'s.
    """
    if repeats < 1 or warmup < 1:
        raise ValueError(f"repeats and warmup must be >= 1, got {repeats}, {warmup}")
    if variables is None:
        variables = (load_weights(model_or_block, reference.xavier_weights(model_or_block.spec))
                     if isinstance(model_or_block, GoogLeNet)
                     else init(model_or_block, input_shape))
    forward = jax.jit(model_or_block.apply)
    X = jax.random.uniform(jax.random.key(0), tuple(input_shape))
    times = []
    for i in range(warmup + repeats):
        timer = training.Timer()
        forward(variables, X).block_until_ready()
        if i >= warmup:
            times.append(timer.elapsed())
    return statistics.median(times)
