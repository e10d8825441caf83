"""GoogLeNet in JAX/Flax (linen): the code the chapters save here (d2l's ``#@save``),
then the helpers for the checks and experiments. A linen module holds no parameters:
the helpers take its ``variables`` dict where PyTorch's read the model. NHWC."""

from __future__ import annotations

import functools
import os
import socket
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util
from flax.training import train_state

from . import architecture, reference, runtime, tables, training
from .flop_rules import conv_taps, xla_flop_terms
from .flop_rules import xla_flops as expected_flops
from .flop_rules import xla_flops_by_op as expected_flops_by_op


def try_gpu() -> jax.Device:
    """JAX's first device, a GPU if there is one; prints where JAX runs."""
    device = jax.devices()[0]
    print(runtime.device_notice("JAX", device.platform == "gpu", device.device_kind))
    return device


def set_seed(seed: int) -> jax.Array:
    """JAX has no global random state: the key to pass on, made from ``seed``."""
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
        x = nn.max_pool(x, (3, 3), padding=((1, 1), (1, 1)))  # stride 1
        return self.conv(self.pool_proj, 1)(x, train)

    @nn.compact
    def __call__(self, x, train=False):  # x: N x H x W x C, channels last
        branches = [self.branch1, self.branch2, self.branch3, self.branch4]
        return jnp.concatenate([b(x, train) for b in branches], axis=-1)


# The GoogLeNet chapter --------------------------------------------------------------


def max_pool(x):
    """The 3x3, stride-2 max pool between stages (pads with -inf)."""
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
        # Flax's momentum weighs the old statistics: PyTorch's 1 - 0.1
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9,
                         epsilon=1e-5)(x)
        return nn.relu(x)


class FactorizedInception(Inception):
    """Branch 3's 5x5 convolution as two 3x3 ones (Inception-v3)."""
    def branch3(self, x, train):
        x = self.conv(self.ch5x5red, 1)(x, train)
        x = self.conv(self.ch5x5red, 3, padding=1)(x, train)
        return self.conv(self.ch5x5, 3, padding=1)(x, train)


class ResidualInception(Inception):
    """The block plus a shortcut, as in ResNet: ReLU(branches(x) + a
    1x1 convolution of x to the block's width), no ReLU on the shortcut."""
    @nn.compact
    def __call__(self, x, train=False):
        branches = [self.branch1, self.branch2, self.branch3, self.branch4]
        y = jnp.concatenate([b(x, train) for b in branches], axis=-1)
        return nn.relu(y + nn.Conv(y.shape[-1], (1, 1))(x))  # linear


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


class TrainState(train_state.TrainState):
    """Flax's train state (params, opt_state, apply_fn, tx), plus:"""
    batch_stats: dict  # BatchNorm's running statistics ({} without)
    key: jax.Array     # for dropout (auxiliary heads)


def train_step(state, X, y, label_smoothing=0.0, dtype=jnp.float32):
    """One step: forward, loss, gradients, update. A pure function."""
    key, dropout_key = jax.random.split(state.key)

    def loss_fn(params):
        params = jax.tree.map(lambda p: p.astype(dtype), params)
        output, new = state.apply_fn(
            {"params": params, "batch_stats": state.batch_stats},
            X.astype(dtype), train=True, mutable=["batch_stats"],
            rngs={"dropout": dropout_key})
        output = jax.tree.map(lambda a: a.astype(jnp.float32), output)
        y_hat, aux = training.split_aux(output)
        targets = optax.smooth_labels(
            jax.nn.one_hot(y, y_hat.shape[-1]), label_smoothing)
        loss = optax.softmax_cross_entropy(y_hat, targets).mean()
        # auxiliary heads (variants chapter) add their losses x 0.3
        aux_loss = sum(optax.softmax_cross_entropy(a, targets).mean()
                       for a in aux)
        return loss + 0.3 * aux_loss, (loss, y_hat, new)

    grads, (loss, y_hat, new) = jax.grad(loss_fn, has_aux=True)(
        state.params)
    state = state.apply_gradients(  # the optimiser's update
        grads=grads, key=key,
        batch_stats=new.get("batch_stats", state.batch_stats))
    return state, loss, (y_hat.argmax(axis=-1) == y).sum()


# The spec meets the model ------------------------------------------------------------


def googlenet(spec: architecture.GoogLeNetSpec = architecture.BOOK) -> GoogLeNet:
    """The textbook model ``spec`` describes ("avg7": the global pool of a 7x7 map)."""
    block, net = (globals()[name]  # the same class names in every framework
                  for name in architecture.textbook_classes(spec))
    return net(spec.num_classes, ConvBNReLU if spec.batch_norm else ConvReLU, block)


def init(model: nn.Module, input_shape: Sequence[int], seed: int = 0) -> dict:
    """``model``'s variables for an NHWC input (unoptimised: compiles faster)."""
    return jax.jit(model.init, compiler_options={"xla_backend_optimization_level": 0})(
        jax.random.key(seed), jnp.zeros(tuple(input_shape), jnp.float32))


def count_parameters(variables: dict) -> int:
    """Trainable parameters in ``variables`` (or their ``jax.eval_shape``)."""
    return sum(leaf.size for leaf in jax.tree.leaves(variables["params"]))


def _trace(module, input_shape):
    """``init`` traced for shapes: ``(variables, [(path, class, method, out shape)])``."""
    calls = []

    def record(call, args, kwargs, context):
        out = call(*args, **kwargs)
        leaves = jax.tree.leaves(out)
        calls.append((context.module.path, type(context.module),
                      context.method_name, leaves[0].shape if leaves else ()))
        return out
    with nn.intercept_methods(record):
        x = jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32)
        return jax.eval_shape(module.init, jax.random.key(0), x), calls


def _sections(module, input_shape):
    """``(name, output shape, parameters)`` per stage or branch method, then aux head."""
    variables, calls = _trace(module, input_shape)
    rows, pending = [], []
    for path, _, method, shape in calls:
        if len(path) == 1 and method == "__call__":  # a submodule
            pending.append((path[0], shape[1:]))
        elif not path and method != "__call__":  # a stage or a branch
            rows.append((method, shape[1:], [name for name, _ in pending]))
            pending = []
    rows += [(f"aux{i}", shape, [name]) for i, (name, shape) in enumerate(pending, 1)]
    return [(name, shape, sum(count_parameters({"params": variables["params"][c]})
                              for c in children)) for name, shape, children in rows]


def branch_parameters(block: Inception, input_shape) -> Dict[str, int]:
    """``{"branch1": n, ..., "branch4": n}`` for a block on an NHWC input."""
    return {name: params for name, _, params in _sections(block, input_shape)}


def stage_rows(model: GoogLeNet, input_shape: Sequence[int]) -> List[Tuple]:
    """:func:`counting.stage_rows` (``(stage, (C, H, W), parameters)``) measured."""
    return [(name, (shape[-1], *shape[:-1]), params)
            for name, shape, params in _sections(model, input_shape)]


def layer_summary(model: GoogLeNet, input_shape: Sequence[int]) -> None:
    """Print :func:`stage_rows` with NHWC shapes (nothing is computed)."""
    tables.print_table(("stage", "output shape", "parameters"),
                       [(name, (input_shape[0], *shape), params)
                        for name, shape, params in _sections(model, input_shape)])


#: Each Flax layer's tensors, in the order of the canonical weights.
_TENSORS = {"params": {nn.Conv: ("kernel", "bias"), nn.Dense: ("kernel", "bias"),
                       nn.BatchNorm: ("scale", "bias")},
            "batch_stats": {nn.BatchNorm: ("mean", "var")}}


def load_weights(model: nn.Module, weights: dict, input_shape=None) -> dict:
    """The ``variables`` holding :func:`reference.ordered` in creation order, traced on
    NHWC ``input_shape`` (default 96 x 96: an aux ``fc1`` depends on it), layouts converted."""
    params, state = reference.ordered(weights)
    shapes, calls = _trace(model, input_shape or (1, 96, 96, params[0][1].shape[1]))
    flat = traverse_util.flatten_dict(shapes)
    found, last_map = {}, None  # (collection, *path, name) -> (shape, map before)
    for path, module, _, shape in calls:
        found.update({key: (flat[key].shape, last_map) for c, names in _TENSORS.items()
                      for key in [(c, *path, n) for n in names.get(module, ())] if key in flat})
        last_map = shape if len(shape) == 4 else last_map
    variables = {}
    for canonical, collection in ((params, "params"), (state, "batch_stats")):
        keys = [key for key in found if key[0] == collection]
        names, have = [name for name, _ in canonical], [found[k][0] for k in keys]
        if len(canonical) != len(keys):  # check_shapes says so
            reference.check_shapes(names, [a.shape for _, a in canonical], have, "Flax")
        arrays = [_to_flax(a, found[k][1]) for (_, a), k in zip(canonical, keys)]
        reference.check_shapes(names, [a.shape for a in arrays], have, "Flax")
        variables.update(zip(keys, map(jnp.asarray, arrays)))
    return traverse_util.unflatten_dict(variables)


def _to_flax(w: np.ndarray, last_map) -> np.ndarray:
    w = np.asarray(w, np.float32)
    if w.ndim == 4:
        return w.transpose(2, 3, 1, 0)  # OIHW -> HWIO
    _, h, wd, c = last_map or (0, 0, 0, 0)
    if w.ndim == 2 and h * wd * c == w.shape[1]:  # reads a map, flattened
        w = w.reshape(-1, c, h, wd).transpose(0, 2, 3, 1).reshape(len(w), -1)
    return w.T if w.ndim == 2 else w


@functools.partial(jax.jit, static_argnums=0)
def _forward(model: nn.Module, variables: dict, x: jax.Array) -> jax.Array:
    with jax.default_matmul_precision("highest"):  # not TF32 on recent GPUs
        return model.apply(variables, x)


def logits(model: nn.Module, X: np.ndarray, variables: dict) -> np.ndarray:
    """Float32 NumPy logits for an NCHW NumPy batch, like the reference's."""
    X = jnp.asarray(np.asarray(X, np.float32).transpose(0, 2, 3, 1))  # NHWC
    return np.asarray(_forward(model, variables, X), np.float32)


# Training ------------------------------------------------------------------------


def device_data(data, device=None) -> Tuple[jax.Array, ...]:
    """Train images and labels, test images and labels on ``device``, once."""
    return tuple(jax.device_put(np.asarray(a, t), device) for a, t in (
        (data.train_images, np.uint8), (data.train_labels, np.int32),
        (data.test_images, np.uint8), (data.test_labels, np.int32)))


def prepare_batch(images: jax.Array, image_size: int = 96) -> jax.Array:
    """uint8 ``B x 28 x 28`` -> float32 ``B x S x S x 1`` in [0, 1], as PyTorch's bilinear."""
    X = jax.image.resize(images.astype(jnp.float32) / 255,
                         (len(images), image_size, image_size), "bilinear", antialias=False)
    return X[..., None]  # channels last


def optimizer(recipe: training.Recipe) -> optax.GradientTransformation:
    """The recipe's optimiser (lr in its state; decay as in torch's SGD, AdamW)."""
    if recipe.optimizer == "adamw":
        return optax.inject_hyperparams(optax.adamw)(
            learning_rate=recipe.lr, weight_decay=recipe.weight_decay)
    return optax.inject_hyperparams(lambda learning_rate: optax.chain(
        optax.add_decayed_weights(recipe.weight_decay),
        optax.sgd(learning_rate, recipe.momentum or None, recipe.nesterov)))(
            learning_rate=recipe.lr)


#: No YNNPACK (jaxlib 0.10's CPU convolutions): slower weight gradients here.
CPU_TRAIN_COMPILER_OPTIONS = ({"xla_cpu_experimental_ynn_fusion_type": ""}
                              if jax.__version_info__ >= (0, 10) else {})
#: On a GPU, XLA times each candidate kernel of every convolution and fusion while
#: it compiles (autotuning). Level 1 still times them all but skips initialising
#: their buffers and checking their results against a reference (level 4, the
#: default), which a reader's first, cold compile pays for.
GPU_TRAIN_COMPILER_OPTIONS = {"xla_gpu_autotune_level": 1}


def train(model, data, recipe=training.CLASSIC, *, spec=architecture.BOOK, device=None,
          image_size=None, compiler_options=None, plot=True,
          progress=True) -> Tuple[training.History, dict]:
    """``(history, variables)``: :func:`training.fit` with a jitted :func:`train_step`
    (state donated) from :func:`reference.xavier_weights`; bfloat16 only on a GPU.
    ``compiler_options``: XLA's, for the step and the evaluation (default:
    :data:`GPU_TRAIN_COMPILER_OPTIONS` on a GPU, :data:`CPU_TRAIN_COMPILER_OPTIONS`
    for the CPU step)."""
    training.check_recipe(recipe)
    device = device or jax.devices()[0]
    gpu = device.platform == "gpu"
    if recipe.mixed_precision and not gpu:
        print("JAX on the CPU: bfloat16 skipped (float32 instead); it is a GPU option here.")
    dtype = jnp.bfloat16 if recipe.mixed_precision and gpu else jnp.float32
    size, tx = image_size or spec.input_size, optimizer(recipe)
    start = load_weights(model, reference.xavier_weights(spec, seed=recipe.seed),
                         (1, spec.input_size, spec.input_size, spec.in_channels))
    state = jax.device_put(TrainState.create(
        apply_fn=model.apply, params=start["params"], tx=tx,
        batch_stats=start.get("batch_stats", {}), key=set_seed(recipe.seed)), device)
    train_X, train_y, test_X, _ = device_data(data, device)

    if compiler_options is None:
        options = GPU_TRAIN_COMPILER_OPTIONS if gpu else CPU_TRAIN_COMPILER_OPTIONS
        eval_options = GPU_TRAIN_COMPILER_OPTIONS if gpu else {}
    else:
        options = eval_options = compiler_options

    @functools.partial(jax.jit, donate_argnums=0, compiler_options=options)
    def step(state, images, labels, index, lr):  # the data as arguments, not constants
        state.opt_state.hyperparams["learning_rate"] = lr  # optax's way
        return train_step(state, prepare_batch(images[index], size),
                          labels[index], recipe.label_smoothing, dtype)

    @functools.partial(jax.jit, compiler_options=eval_options)
    def evaluate(state, images, index):  # in the step's dtype: XLA reuses its autotuning
        params = jax.tree.map(lambda p: p.astype(dtype), state.params)
        y_hat = model.apply({"params": params, "batch_stats": state.batch_stats},
                            prepare_batch(images[index], size).astype(dtype))
        return y_hat.argmax(axis=-1)

    def fit_step(index, lr):
        nonlocal state
        state, loss, correct = step(state, train_X, train_y, index, lr)
        return loss, correct

    history = training.fit(
        "JAX", recipe, device.device_kind if gpu else "cpu", len(train_y), data.test_labels,
        fit_step, lambda index: evaluate(state, test_X, index), compiled=True,
        to_device=lambda a: jax.device_put(a, device), sync=lambda: jax.block_until_ready(state),
        plot=plot, progress=progress)
    stats = {"batch_stats": state.batch_stats} if state.batch_stats else {}
    return history, {"params": state.params, **stats}  # Flax models hold none


# FLOPs and timing ----------------------------------------------------------------


def count_flops(model_or_block, input_shape, *, device=None) -> int:
    """XLA's FLOPs (:func:`xla_flop_terms`) of a forward pass, compiled from shapes only."""
    with jax.default_device(device or jax.devices("cpu")[0]):
        x = jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32)
        variables = jax.eval_shape(model_or_block.init, jax.random.key(0), x)
        cost = jax.jit(model_or_block.apply).lower(variables, x).compile().cost_analysis()
    return int((cost[0] if isinstance(cost, (list, tuple)) else cost)["flops"])


def time_forward(model_or_block, input_shape, repeats=10, warmup=2, variables=None):
    """Median seconds of a jitted forward pass, awaited, after ``warmup`` (the first compiles)."""
    variables = variables or init(model_or_block, input_shape)
    forward = jax.jit(model_or_block.apply)
    X = jax.random.uniform(jax.random.key(0), tuple(input_shape))
    return training.median_seconds(lambda: forward(variables, X).block_until_ready(),
                                   repeats, warmup)


# Data parallelism ----------------------------------------------------------------


def init_processes(coordinator_address: Optional[str] = None,
                   num_processes: Optional[int] = None, process_id: Optional[int] = None,
                   timeout_s: int = 120) -> None:
    """:func:`jax.distributed.initialize` with every wait bounded by ``timeout_s``.

    Call it once per process (one per machine; under Slurm and Open MPI on GPUs, one
    per GPU), before any other JAX call.
    Arguments left ``None`` come from ``JAX_COORDINATOR_ADDRESS`` or from the
    cluster JAX detects (Slurm, Open MPI, Kubernetes, Cloud TPU). Process 0 serves
    the coordinator at that address; any other process first waits up to
    ``timeout_s`` for it and raises a :class:`RuntimeError` saying what to check if
    it never answers (JAX itself would abort with a bare ``DEADLINE_EXCEEDED``).
    Then JAX waits up to ``timeout_s`` for all processes to join, and later ends
    every process when one stops sending heartbeats for ``timeout_s``: a failed
    launch ends with an error, never a hang."""
    address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
    if address and process_id:  # process 0 opens the port itself
        host, port = address.rsplit(":", 1)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
                break
            except OSError as err:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"JAX process {process_id}: no coordinator answered at {address} "
                        f"within {timeout_s} s ({err}). Start process 0 on that machine "
                        f"with the same address, check the host name and port (reachable "
                        f"from here, not blocked by a firewall), then launch again."
                    ) from err
                time.sleep(0.5)
    who = "JAX" if process_id is None else f"JAX process {process_id}"
    print(f"{who}: joining {num_processes or 'all'} processes at "
          f"{address or 'the address the cluster gives'}, for at most {timeout_s} s. "
          f"An error with DEADLINE_EXCEEDED means that some process did not start or "
          f"used another address: launch all of them, each with its own process id "
          f"and the same coordinator address.", file=sys.stderr, flush=True)
    jax.distributed.initialize(address, num_processes, process_id,
                               initialization_timeout=timeout_s,
                               heartbeat_timeout_seconds=timeout_s)
