"""Training in JAX/Flax: data on the device, batches, optimisers, :func:`train`."""

from __future__ import annotations

import functools
from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .. import architecture, reference, runtime, training
from ..data import pixel_scale
from .book import TrainState, train_step
from .model import port


def try_gpu() -> jax.Device:
    """JAX's first device, a GPU if there is one; prints where JAX runs."""
    device = jax.devices()[0]
    print(runtime.device_notice("JAX", device.platform == "gpu", device.device_kind))
    return device


def set_seed(seed: int) -> jax.Array:
    """JAX has no global random state: the key to pass on, made from ``seed``."""
    return jax.random.key(seed)


def input_shape(spec: architecture.GoogLeNetSpec, batch_size: int = 1) -> Tuple[int, ...]:
    """The NHWC shape of a batch of ``spec``'s images."""
    return (batch_size, spec.input_size, spec.input_size, spec.in_channels)


def variables_of(state: TrainState) -> dict:
    """A train state's ``variables`` (``batch_stats`` only where there are some)."""
    stats = {"batch_stats": state.batch_stats} if state.batch_stats else {}
    return {"params": state.params, **stats}


def device_data(data, device=None) -> Tuple[jax.Array, ...]:
    """Train images and labels, test images and labels on ``device``, once."""
    return tuple(jax.device_put(np.asarray(a, t), device) for a, t in (
        (data.train_images, np.uint8), (data.train_labels, np.int32),
        (data.test_images, np.uint8), (data.test_labels, np.int32)))


def prepare_batch(images: jax.Array, image_size: int = 96) -> jax.Array:
    """``B x 28 x 28`` -> float32 ``B x S x S x 1`` in [0, 1] (uint8 divided by
    255, float as it is: ``pixel_scale``), as PyTorch's bilinear."""
    X = jax.image.resize(images.astype(jnp.float32) / pixel_scale(images.dtype),
                         (len(images), image_size, image_size), "bilinear", antialias=False)
    return X[..., None]  # channels last


def make_optimizer(recipe: training.Recipe) -> optax.GradientTransformation:
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
        print("JAX on the CPU: float32 instead of bfloat16 (a GPU option here).")
    dtype = jnp.bfloat16 if recipe.mixed_precision and gpu else jnp.float32
    size, tx = image_size or spec.input_size, make_optimizer(recipe)
    start = port(model, reference.xavier_weights(spec, seed=recipe.seed), spec,
                 input_shape(spec))
    state = jax.device_put(TrainState.create(
        apply_fn=model.apply, params=start["params"], tx=tx,
        batch_stats=start.get("batch_stats", {}), key=set_seed(recipe.seed)), device)
    train_X, train_y, test_X, _ = device_data(data, device)

    if compiler_options is None:
        options = GPU_TRAIN_COMPILER_OPTIONS if gpu else CPU_TRAIN_COMPILER_OPTIONS
        eval_options = GPU_TRAIN_COMPILER_OPTIONS if gpu else {}
    else:
        options = eval_options = compiler_options

    # The data, the rate and the smoothing are arguments, not constants: runs
    # that differ only in them share one program (and JAX's compilation cache).
    @functools.partial(jax.jit, donate_argnums=0, compiler_options=options)
    def step(state, images, labels, index, lr, smoothing):
        state.opt_state.hyperparams["learning_rate"] = lr  # optax's way
        return train_step(state, prepare_batch(images[index], size),
                          labels[index], smoothing, dtype)

    @functools.partial(jax.jit, compiler_options=eval_options)
    def evaluate(state, images, index):  # in the step's dtype: XLA reuses its autotuning
        params = jax.tree.map(lambda p: p.astype(dtype), state.params)
        y_hat = model.apply({"params": params, "batch_stats": state.batch_stats},
                            prepare_batch(images[index], size).astype(dtype))
        return y_hat.argmax(axis=-1)

    smoothing = jnp.float32(recipe.label_smoothing)

    def fit_step(index, lr):
        nonlocal state
        state, loss, correct = step(state, train_X, train_y, index, lr, smoothing)
        return loss, correct

    history = training.fit(
        "JAX", recipe, device.device_kind if gpu else "cpu", len(train_y), data.test_labels,
        fit_step, lambda index: evaluate(state, test_X, index), compiled=True,
        to_device=lambda a: jax.device_put(a, device), sync=lambda: jax.block_until_ready(state),
        plot=plot, progress=progress)
    return history, variables_of(state)  # Flax models hold none


#: Plain SGD with its learning rate in its state (so a new rate compiles nothing).
_SGD = optax.inject_hyperparams(optax.sgd)(learning_rate=0.0)


@jax.jit
def _sgd_step(state, X, y, lr):
    state.opt_state.hyperparams["learning_rate"] = lr
    return train_step(state, X, y)


def sgd_step(model, variables: dict, X: np.ndarray, y: np.ndarray, lr: float
             ) -> Tuple[dict, float]:
    """:func:`train_step` with plain SGD on an NCHW NumPy batch:
    ``(new variables, the loss before the update)``."""
    state = TrainState.create(apply_fn=model.apply, params=variables["params"], tx=_SGD,
                              batch_stats=variables.get("batch_stats", {}),
                              key=jax.random.key(0))
    state, loss, _ = _sgd_step(state, jnp.asarray(np.asarray(X).transpose(0, 2, 3, 1)),
                               jnp.asarray(y, jnp.int32), lr)
    return variables_of(state), float(loss)
