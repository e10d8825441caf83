"""GoogLeNet in JAX/Flax (linen), as the chapters write it, and the helpers.

Import it the d2l way, ``from d2l_lite import jax as d2l`` (inside this file
``import jax`` is the real JAX: Python 3 imports are absolute). The first
half is the textbook code the chapters show and save here (d2l's
``#@save``): :class:`ConvReLU`, :class:`Inception`, :class:`GoogLeNet`, the
FLOPs chapter's :class:`NaiveInception`, the variants chapter's
:class:`ConvBNReLU`, :class:`FactorizedInception`, :class:`AuxHead`,
:class:`GoogLeNetAux` and :class:`SmallStemGoogLeNet`, and the training
chapter's :func:`train_step`. The second half serves the checks:
:func:`googlenet` builds the textbook model a spec describes,
:func:`stage_rows` and :func:`load_weights` hold it against the spec and the
NumPy reference, and :func:`train`, :func:`count_flops` and
:func:`time_forward` run the chapters' experiments.

Flax linen modules are *descriptions*: the parameters live outside the model,
in a ``variables`` dict that :func:`init` or :func:`load_weights` returns and
``model.apply(variables, X)`` takes. So where the PyTorch module reads the
parameters from the model, the helpers here take that dict:
``count_parameters(variables)``, ``logits(model, X, variables)``,
``load_weights(model, weights) -> variables`` and ``train(...) ->
(history, variables)``. Flax is channels-last: batches are NHWC,
convolution kernels HWIO and dense kernels ``(in, out)``; :func:`load_weights`
converts the canonical PyTorch layout and :func:`logits` takes NCHW batches
like the reference. Input channels are inferred at ``init``.
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

from . import architecture, reference, runtime, tables, training
from .flop_rules import conv_taps, xla_flop_terms, xla_flops_by_op

__all__ = ["try_gpu", "set_seed", "ConvReLU", "max_pool", "Inception", "GoogLeNet",
           "NaiveInception", "ConvBNReLU", "FactorizedInception", "AuxHead",
           "GoogLeNetAux", "SmallStemGoogLeNet", "TrainState", "train_step",
           "googlenet", "init", "count_parameters", "branch_parameters", "stage_rows",
           "layer_summary", "load_weights", "logits", "device_data", "prepare_batch",
           "optimizer", "TrainResult", "train", "CPU_TRAIN_COMPILER_OPTIONS",
           "count_flops", "conv_taps", "xla_flop_terms", "expected_flops_by_op",
           "expected_flops", "time_forward"]

# {"params": ..., "batch_stats": BatchNorm's running statistics}, as Flax has it
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
    """Seed Python's and NumPy's generators and return ``jax.random.key(seed)``:
    JAX has no global random state, the caller passes the key on."""
    random.seed(seed)
    np.random.seed(seed)
    return jax.random.key(seed)


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
        x = nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))
        return self.conv(self.pool_proj, 1)(x, train)

    @nn.compact
    def __call__(self, x, train=False):  # x: N x H x W x C, channels last
        branches = [self.branch1, self.branch2, self.branch3, self.branch4]
        return jnp.concatenate([b(x, train) for b in branches], axis=-1)


# The GoogLeNet chapter --------------------------------------------------------------

def max_pool(x):
    """The 3x3 max pool with stride 2 that halves the map between stages
    (Flax pads it with -inf, so the padding never wins)."""
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


# The FLOPs chapter -------------------------------------------------------------------

class NaiveInception(Inception):
    """The block without its 1x1 reductions: the 3x3 and 5x5
    convolutions read every input channel."""

    def branch2(self, x, train):
        return self.conv(self.ch3x3, 3, padding=1)(x, train)

    def branch3(self, x, train):
        return self.conv(self.ch5x5, 5, padding=2)(x, train)


# The variants chapter ----------------------------------------------------------------

class ConvBNReLU(ConvReLU):
    """Conv-BN-ReLU: no conv bias, BatchNorm's shift takes its place."""

    @nn.compact
    def __call__(self, x, train=False):
        k, s, p = self.kernel_size, self.stride, self.padding
        x = nn.Conv(self.channels, (k, k), strides=s,
                    padding=((p, p), (p, p)), use_bias=False)(x)
        # train: the batch's statistics; else the running ones. Flax's
        # momentum is the old statistics' weight: PyTorch's 1 - 0.1
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9,
                         epsilon=1e-5)(x)
        return nn.relu(x)


class FactorizedInception(Inception):
    """Branch 3's 5x5 convolution as two 3x3 ones (Inception-v3)."""

    def branch3(self, x, train):
        x = self.conv(self.ch5x5red, 1)(x, train)
        x = self.conv(self.ch5x5red, 3, padding=1)(x, train)
        return self.conv(self.ch5x5, 3, padding=1)(x, train)


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


class SmallStemGoogLeNet(GoogLeNet):
    """For 28x28 images: b1 is one 3x3 convolution, no max pool."""

    def b1(self, x, train):  # N x 28 x 28 x 1 -> N x 28 x 28 x 64
        return self.conv(64, 3, padding=1)(x, train)


# The training chapter ----------------------------------------------------------------

class TrainState(NamedTuple):
    """What changes from step to step (a pytree: jit takes it whole)."""
    params: Any
    opt_state: Any
    batch_stats: Any  # BatchNorm's running statistics ({} without)
    key: jax.Array    # for dropout (auxiliary heads)


def train_step(model, tx, state, X, y, label_smoothing=0.0,
               dtype=jnp.float32):
    """One step: forward, loss, gradients, update. A pure function."""
    key, dropout_key = jax.random.split(state.key)
    targets = optax.smooth_labels(
        jax.nn.one_hot(y, model.num_classes), label_smoothing)

    def loss_fn(params):
        params = jax.tree.map(lambda p: p.astype(dtype), params)
        output, new = model.apply(
            {"params": params, "batch_stats": state.batch_stats},
            X.astype(dtype), train=True, mutable=["batch_stats"],
            rngs={"dropout": dropout_key})
        y_hat, aux = training.split_aux(output)
        loss = optax.softmax_cross_entropy(y_hat, targets).mean()
        # auxiliary heads (variants chapter) add their losses x 0.3
        aux_loss = sum(optax.softmax_cross_entropy(a, targets).mean()
                       for a in aux)
        return loss + 0.3 * aux_loss, (loss, y_hat, new)

    grads, (loss, y_hat, new) = jax.grad(loss_fn, has_aux=True)(
        state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    batch_stats = new.get("batch_stats", state.batch_stats)
    correct = (y_hat.argmax(axis=-1) == y).sum()
    return TrainState(params, opt_state, batch_stats, key), loss, correct


# The spec meets the model ------------------------------------------------------------

def googlenet(spec: architecture.GoogLeNetSpec = architecture.BOOK) -> GoogLeNet:
    """The textbook model that ``spec`` describes (its variables: :func:`init`).

    The paper's 7x7 average pool (``spec.head_pool == "avg7"``) needs no
    class of its own: on every input that spec admits (193 to 224 pixels)
    the map before it is 7x7, so it is the global average pool.
    """
    first = next(layer for stage in spec.part("body") for layer in stage.layers)
    small = not any(isinstance(layer, architecture.MaxPool)
                    for layer in spec.stages[0].layers)
    if not first.reduce and first.factorize or small and spec.aux_heads:
        raise ValueError("no textbook model combines these variants")
    block = (NaiveInception if not first.reduce else
             FactorizedInception if first.factorize else Inception)
    cls = GoogLeNetAux if spec.aux_heads else SmallStemGoogLeNet if small else GoogLeNet
    return cls(spec.num_classes, ConvBNReLU if spec.batch_norm else ConvReLU, block)


def init(model: nn.Module, input_shape: Sequence[int], seed: int = 0) -> Variables:
    """Initialise ``model`` for an NHWC ``input_shape``; returns its ``variables``
    (Flax's initialisers; the input channels are inferred here)."""
    x = jnp.zeros(tuple(input_shape), jnp.float32)
    # Compiling GoogLeNet's ~60 random initialisers takes XLA tens of seconds
    # on a CPU; without the backend's optimisations it is a few times faster.
    fast_compile = {"xla_backend_optimization_level": 0}
    return jax.jit(model.init, compiler_options=fast_compile)(jax.random.key(seed), x)


def _size(tree) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(tree))


def count_parameters(variables: Variables) -> int:
    """Trainable parameters in ``variables`` (what :func:`init` returns, or its
    shapes from ``jax.eval_shape``); BatchNorm's statistics are not counted."""
    return _size(variables["params"])


class _Call(NamedTuple):
    path: Tuple[str, ...]  # the module's path, () for the traced module
    module: type
    method: str
    shape: Tuple[int, ...]  # of the (first) output
    section: Optional[str]  # the traced module's method it ran in
    last_map: Optional[Tuple[int, ...]]  # the last N x H x W x C output before it


def _trace(module: nn.Module, input_shape: Sequence[int]):
    """Shapes-only ``init`` of ``module`` that records every module method call
    (Flax's public ``nn.intercept_methods``), in the order the calls return:
    returns the variables' shapes and the :class:`_Call` s."""
    calls: List[_Call] = []
    now = {"section": None, "last_map": None}

    def record(call, args, kwargs, context):
        path, method = context.module.path, context.method_name
        outer, last_map = now["section"], now["last_map"]
        if not path and method != "__call__":  # a stage, a branch
            now["section"] = method
        section = now["section"]
        out = call(*args, **kwargs)
        now["section"] = outer
        leaves = jax.tree_util.tree_leaves(out)
        shape = tuple(leaves[0].shape) if leaves else ()
        if len(shape) == 4:
            now["last_map"] = shape
        calls.append(_Call(path, type(context.module), method, shape, section, last_map))
        return out

    x = jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32)
    with nn.intercept_methods(record):
        variables = jax.eval_shape(module.init, jax.random.key(0), x)
    return variables, calls


def _sections(module: nn.Module, input_shape: Sequence[int]) -> List[Tuple]:
    """``(name, output shape, parameters)`` for each method the module runs
    on its input (GoogLeNet's stages, Inception's branches), then for each
    auxiliary head (``aux1``, ...: a submodule called outside those)."""
    variables, calls = _trace(module, input_shape)
    rows = {c.method: [c.shape[1:], 0] for c in calls
            if not c.path and c.method != "__call__"}
    children = [c for c in calls if len(c.path) == 1 and c.method == "__call__"]
    heads = [c for c in children if c.section is None]
    rows.update((f"aux{i}", [c.shape[1:], 0]) for i, c in enumerate(heads, 1))
    for c in children:
        name = c.section or f"aux{heads.index(c) + 1}"
        rows[name][1] += _size(variables["params"].get(c.path[0], {}))
    return [(name, shape, params) for name, (shape, params) in rows.items()]


def branch_parameters(block: Inception, input_shape: Sequence[int]) -> Dict[str, int]:
    """``{"branch1": n, ..., "branch4": n}`` for an Inception block that gets an
    NHWC ``input_shape`` batch (shapes only: nothing is computed)."""
    return {name: params for name, _, params in _sections(block, input_shape)}


def stage_rows(model: GoogLeNet, input_shape: Sequence[int]) -> List[Tuple]:
    """``(stage, output shape, parameters)`` per stage, then per auxiliary
    head, for an NHWC ``input_shape``: the rows
    :func:`d2l_lite.counting.stage_rows` computes from the spec (shapes as
    ``(C, H, W)``, so they compare across frameworks)."""
    return [(name, (shape[-1], *shape[:-1]), params)
            for name, shape, params in _sections(model, input_shape)]


def layer_summary(model: GoogLeNet, input_shape: Sequence[int]) -> None:
    """Print :func:`stage_rows` in Flax's layout: stage, output shape (NHWC),
    parameters. Nothing is computed (``jax.eval_shape``)."""
    rows = [(name, (input_shape[0], *shape), params)
            for name, shape, params in _sections(model, input_shape)]
    tables.print_table(("stage", "output shape", "parameters"), rows)


#: Each Flax layer's tensors in the order the canonical weights list them.
_TENSORS = {nn.Conv: ("kernel", "bias"), nn.Dense: ("kernel", "bias"),
            nn.BatchNorm: ("scale", "bias")}


def load_weights(model: nn.Module, weights: Dict[str, np.ndarray],
                 input_shape: Optional[Sequence[int]] = None) -> Variables:
    """Variables for ``model`` from canonical weights (``reference.random_weights``).

    Flax models hold no parameters, so this *returns* the variables
    (``{"params": ...}``, plus ``"batch_stats"`` with BatchNorm), ready for
    ``model.apply`` or :func:`logits`. The model's tensors are paired with
    :func:`d2l_lite.reference.ordered` in the order the model creates them,
    traced once (shapes only) on an NHWC ``input_shape``: by default 96 x 96
    with the first kernel's input channels (it matters only for an auxiliary
    head's first dense layer). Layouts: kernels OIHW -> HWIO, dense
    ``(out, in)`` -> ``(in, out)``; a dense layer that flattens an H x W x C
    map (an auxiliary head's at 224 x 224) gets PyTorch's C x H x W order
    of inputs reordered.
    """
    params, state = reference.ordered(weights)
    if input_shape is None:
        input_shape = (1, 96, 96, params[0][1].shape[1])
    shapes, calls = _trace(model, input_shape)
    layers = {c.path: c for c in calls if c.module in _TENSORS}  # call order
    variables: Variables = {}
    names = {"params": _TENSORS, "batch_stats": {nn.BatchNorm: ("mean", "var")}}
    for canonical, collection in ((params, "params"), (state, "batch_stats")):
        tensors = [(layer, layer.path + (leaf,))
                   for layer in layers.values()
                   for leaf in names[collection].get(layer.module, ())
                   if leaf in _get(shapes.get(collection, {}), layer.path)]
        have = [_get(shapes[collection], path).shape for _, path in tensors]
        if len(canonical) != len(tensors):  # check_shapes says so
            reference.check_shapes([n for n, _ in canonical],
                                   [a.shape for _, a in canonical], have, "Flax")
        arrays = [_to_flax(a, layer) for (_, a), (layer, _) in zip(canonical, tensors)]
        reference.check_shapes([n for n, _ in canonical], [a.shape for a in arrays],
                               have, "Flax")
        for array, (_, path) in zip(arrays, tensors):
            node = variables.setdefault(collection, {})
            for key in path[:-1]:
                node = node.setdefault(key, {})
            node[path[-1]] = jnp.asarray(array)
    return variables


def _get(tree, path: Tuple[str, ...]):
    for key in path:
        tree = tree.get(key, {})
    return tree


def _to_flax(w: np.ndarray, layer: _Call) -> np.ndarray:
    """A canonical array in Flax's layout for ``layer``."""
    w = np.asarray(w, np.float32)
    if w.ndim == 4:
        return w.transpose(2, 3, 1, 0)  # OIHW -> HWIO
    if w.ndim == 2:
        _, h, wd, c = layer.last_map or (0, 0, 0, 0)
        if h * wd * c == w.shape[1]:  # reads an H x W x C map flattened
            w = w.reshape(-1, c, h, wd).transpose(0, 2, 3, 1).reshape(len(w), -1)
        return w.T
    return w


@functools.partial(jax.jit, static_argnums=0)
def _forward(model: nn.Module, variables: Variables, x: jax.Array) -> jax.Array:
    # Full float32 convolutions: on recent NVIDIA GPUs XLA's default may use
    # TF32, too coarse for a comparison with the float64 reference.
    with jax.default_matmul_precision("highest"):
        return model.apply(variables, x)


def logits(model: nn.Module, X: np.ndarray, variables: Variables) -> np.ndarray:
    """Float32 NumPy logits for an NCHW float32 NumPy batch ``X`` (like
    ``reference.random_input``; transposed to NHWC here), jit-compiled."""
    X = np.asarray(X, np.float32).transpose(0, 2, 3, 1)  # NCHW -> NHWC
    return np.asarray(_forward(model, variables, jnp.asarray(X)), np.float32)


# Training ------------------------------------------------------------------------

def device_data(data, device: Optional[jax.Device] = None) -> Tuple[jax.Array, ...]:
    """``(train_images, train_labels, test_images, test_labels)`` of a
    :class:`~d2l_lite.data.FashionMNIST` as arrays on ``device``, copied once.
    Images stay uint8 ``(N, 28, 28)``; :func:`prepare_batch` converts each batch."""
    device = device or jax.devices()[0]
    return tuple(jax.device_put(np.asarray(array, dtype), device) for array, dtype in (
        (data.train_images, np.uint8), (data.train_labels, np.int32),
        (data.test_images, np.uint8), (data.test_labels, np.int32)))


def prepare_batch(images: jax.Array, image_size: int = 96) -> jax.Array:
    """uint8 ``B x 28 x 28`` images -> float32 NHWC ``B x S x S x 1`` in [0, 1].

    ``jax.image.resize(..., "bilinear")`` samples at pixel centres, like
    PyTorch's ``F.interpolate(mode="bilinear", align_corners=False)`` and
    ``tf.image.resize``; ``antialias=False``, PyTorch's default.
    """
    X = images.astype(jnp.float32) / 255  # B x 28 x 28
    X = jax.image.resize(X, (X.shape[0], image_size, image_size), method="bilinear",
                         antialias=False)
    return X[..., None]  # B x S x S x 1: Flax is channels-last


def optimizer(recipe: training.Recipe) -> optax.GradientTransformation:
    """The recipe's optimiser. ``optax.inject_hyperparams`` keeps the learning
    rate in the optimiser's state (``opt_state.hyperparams``), where
    :func:`train` sets each step's rate from the shared schedule.

    * ``"sgd"``: ``add_decayed_weights`` *before* ``sgd`` adds ``weight_decay
      * w`` to the gradient, the coupled L2 decay of ``torch.optim.SGD``;
    * ``"adamw"``: ``optax.adamw`` (betas 0.9, 0.999, eps 1e-8), decay
      decoupled as in ``torch.optim.AdamW``.
    """
    if recipe.optimizer == "sgd":
        def sgd(learning_rate):
            return optax.chain(
                optax.add_decayed_weights(recipe.weight_decay),
                optax.sgd(learning_rate, momentum=recipe.momentum or None,
                          nesterov=recipe.nesterov))
        return optax.inject_hyperparams(sgd)(learning_rate=recipe.lr)
    return optax.inject_hyperparams(optax.adamw)(
        learning_rate=recipe.lr, b1=0.9, b2=0.999, eps=1e-8,
        weight_decay=recipe.weight_decay)


class TrainResult(NamedTuple):
    """What :func:`train` returns: ``history, variables = d2l.train(...)``
    (Flax models hold no parameters, so the trained ones come back too)."""
    history: training.History
    variables: Variables


#: XLA's CPU compiler (jaxlib 0.10) hands convolutions to YNNPACK by default;
#: for a training step's weight gradients that is several times slower here
#: than XLA's own convolutions, so the CPU step is compiled without it.
CPU_TRAIN_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}


def _compiler_options(device: jax.Device) -> Dict[str, str]:
    """:data:`CPU_TRAIN_COMPILER_OPTIONS` on a CPU whose XLA knows them."""
    if device.platform != "cpu":
        return {}
    try:  # XLA publishes no list of its options: try them on a tiny program
        jax.jit(jnp.negative, compiler_options=CPU_TRAIN_COMPILER_OPTIONS).lower(
            1.0).compile()
    except RuntimeError:  # jax.errors.JaxRuntimeError: "No such compile option"
        return {}
    return CPU_TRAIN_COMPILER_OPTIONS


def _variables(state: TrainState) -> Variables:
    return ({"params": state.params, "batch_stats": state.batch_stats}
            if state.batch_stats else {"params": state.params})


def train(model: GoogLeNet, data, recipe: training.Recipe = training.CLASSIC, *,
          spec: architecture.GoogLeNetSpec = architecture.BOOK,
          device: Optional[jax.Device] = None, image_size: Optional[int] = None,
          plot: bool = True, progress: bool = True) -> TrainResult:
    """Train ``model`` (the textbook model of ``spec``) on ``data`` with ``recipe``;
    returns ``TrainResult(history, variables)``.

    The parameters start from :func:`d2l_lite.reference.xavier_weights` for
    ``spec`` and ``recipe.seed``, as in every framework. The images go to
    ``device`` once, as uint8; each batch is gathered, scaled and resized to
    ``image_size`` (default the spec's; 28: no resizing) inside the step,
    which is :func:`train_step` jitted with the old state's buffers donated
    to the new one. ``recipe.mixed_precision`` means bfloat16 compute on a
    GPU (float32 master weights); on the CPU the run stays float32 and says
    so. The loop is :func:`d2l_lite.training.fit`.
    """
    device = device or jax.devices()[0]
    gpu = device.platform == "gpu"
    if recipe.mixed_precision and not gpu:
        print("JAX on the CPU: bfloat16 skipped (float32 instead); it is a GPU option here.")
    dtype = jnp.bfloat16 if recipe.mixed_precision and gpu else jnp.float32
    size = image_size or spec.input_size
    shape = (1, spec.input_size, spec.input_size, spec.in_channels)
    start = load_weights(model, reference.xavier_weights(spec, seed=recipe.seed), shape)
    tx = optimizer(recipe)
    state = jax.device_put(TrainState(start["params"], tx.init(start["params"]),
                                      start.get("batch_stats", {}),
                                      set_seed(recipe.seed)), device)
    train_X, train_y, test_X, test_y = device_data(data, device)

    def step(state, index, lr):
        opt_state = state.opt_state._replace(  # the shared schedule's rate
            hyperparams={**state.opt_state.hyperparams, "learning_rate": lr})
        return train_step(model, tx, state._replace(opt_state=opt_state),
                          prepare_batch(train_X[index], size), train_y[index],
                          recipe.label_smoothing, dtype)

    def evaluate(variables, index, valid):
        params = jax.tree.map(lambda p: p.astype(dtype), variables["params"])
        y_hat = model.apply({**variables, "params": params},
                            prepare_batch(test_X[index], size).astype(dtype))
        return ((y_hat.argmax(axis=-1) == test_y[index]) & valid).sum()

    step = jax.jit(step, donate_argnums=0, compiler_options=_compiler_options(device))
    evaluate = jax.jit(evaluate)

    def fit_step(index, lr):
        nonlocal state
        state, loss, correct = step(state, index, lr)
        return loss, correct

    history = training.fit(
        "JAX", recipe, device.device_kind if gpu else "cpu", len(train_y), len(test_y),
        fit_step, lambda index, valid: evaluate(_variables(state), index, valid),
        to_device=lambda a: jax.device_put(a, device),
        sync=lambda: jax.block_until_ready(state), compiled=True, plot=plot,
        progress=progress)
    return TrainResult(history, _variables(state))


# FLOPs and timing ----------------------------------------------------------------

def count_flops(model_or_block: nn.Module, input_shape: Sequence[int], *,
                device: Optional[jax.Device] = None) -> int:
    """FLOPs of one forward pass on an NHWC ``input_shape`` batch, as XLA counts
    them: ``compiled.cost_analysis()["flops"]`` of ``model.apply(variables, X)``.

    The variables and the input are *arguments* of the compiled program, as
    shapes only (nothing runs); closed over as constants, XLA could fold work
    away. ``device``: whose compiler counts, by default the CPU's, so the
    count is the same on every machine (XLA's GPU compiler fuses convolutions
    into cuDNN calls and counts those differently). The rules it follows are
    :func:`xla_flop_terms`.
    """
    sharding = jax.sharding.SingleDeviceSharding(device or jax.devices("cpu")[0])
    x = jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32, sharding=sharding)
    variables = jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
        jax.eval_shape(model_or_block.init, jax.random.key(0), x))
    cost = jax.jit(model_or_block.apply).lower(variables, x).compile().cost_analysis()
    if isinstance(cost, (list, tuple)):  # older jaxlibs: one dict per program
        cost = cost[0]
    return int(cost["flops"])


def expected_flops_by_op(spec_or_block, input_size=None, batch_size: int = 1
                         ) -> Dict[str, int]:
    """:func:`xla_flop_terms` added up by kind (exact integers)."""
    return xla_flops_by_op(spec_or_block, input_size, batch_size)


def expected_flops(spec_or_block, input_size=None, batch_size: int = 1) -> int:
    """What :func:`count_flops` reports, computed from the spec alone: the
    terms of :func:`xla_flop_terms` added up the way XLA adds them, in a
    32-bit float (``HloCostAnalysis`` keeps ``float`` totals), in XLA's order.
    """
    total = np.float32(0)
    for _, _, flops in xla_flop_terms(spec_or_block, input_size, batch_size):
        total = np.float32(total + np.float32(flops))
    return int(total)


def time_forward(model_or_block: nn.Module, input_shape: Sequence[int],
                 repeats: int = 10, warmup: int = 2,
                 variables: Optional[Variables] = None) -> float:
    """Median seconds of one jitted forward pass on an NHWC ``input_shape``
    batch on JAX's default device, after ``warmup`` passes (the first
    compiles); each pass waits for its result (``block_until_ready``)."""
    variables = variables or init(model_or_block, input_shape)
    forward = jax.jit(model_or_block.apply)
    X = jax.random.uniform(jax.random.key(0), tuple(input_shape))
    times = []
    for i in range(warmup + repeats):
        timer = training.Timer()
        forward(variables, X).block_until_ready()
        if i >= warmup:
            times.append(timer.elapsed())
    return statistics.median(times)
