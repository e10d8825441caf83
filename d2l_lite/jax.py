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
========================================  =========================================

Layouts: Flax is channels-last. Batches are NHWC, convolution kernels HWIO
(height, width, in, out) and dense kernels ``(in, out)``; :func:`load_weights`
converts the canonical PyTorch layout (OIHW, dense ``(out, in)``) and
:func:`logits` takes NCHW NumPy batches like the reference, transposing them.
Input channels are inferred when the model is initialised (lazily, as in
Keras), so layers are declared with their output widths only.
"""

from __future__ import annotations

import functools
import random
from typing import Any, Dict, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from . import architecture, runtime, tables

__all__ = ["try_gpu", "set_seed", "Layers", "Inception", "Part", "GoogLeNet", "init",
           "count_parameters", "branch_parameters", "layer_summary", "load_weights",
           "logits"]

Variables = Dict[str, Any]  # {"params": nested dict of arrays}, as Flax returns it


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


def _apply_layer(layer: architecture.Layer, x: jax.Array) -> jax.Array:
    """Run one layer of the spec on an NHWC batch (called inside ``@nn.compact``).

    Modules created here belong to the calling module and are named as in the
    spec (``conv1``, ``inception3a``, ``fc``), which :func:`load_weights` relies
    on. Pooling has no parameters and is a plain function.
    """
    if isinstance(layer, architecture.Conv):
        p = layer.padding
        # Explicit, symmetric padding: "SAME" would pad (2, 3) for the stride-2
        # 7x7 conv1 on an even input, a different function from the paper's.
        x = nn.Conv(layer.out_channels, (layer.kernel, layer.kernel),
                    strides=(layer.stride, layer.stride),
                    padding=((p, p), (p, p)), name=layer.name)(x)
        return nn.relu(x)
    if isinstance(layer, architecture.MaxPool):
        p = layer.padding
        # nn.max_pool pads with -inf, so the padding is never the maximum.
        return nn.max_pool(x, (layer.kernel, layer.kernel),
                           strides=(layer.stride, layer.stride),
                           padding=((p, p), (p, p)))
    if isinstance(layer, architecture.Inception):
        return Inception(layer.ch1x1, layer.ch3x3red, layer.ch3x3, layer.ch5x5red,
                         layer.ch5x5, layer.pool_proj, name=layer.name)(x)
    if isinstance(layer, architecture.GlobalAvgPool):
        return jnp.mean(x, axis=(1, 2), keepdims=True)
    if isinstance(layer, architecture.AvgPool):
        return nn.avg_pool(x, (layer.kernel, layer.kernel),
                           strides=(layer.stride, layer.stride))  # no padding
    if isinstance(layer, architecture.Dense):
        x = x.reshape(x.shape[0], -1)  # N x 1 x 1 x C -> N x C
        return nn.Dense(layer.out_features, name=layer.name)(x)
    raise TypeError(f"unknown layer type {type(layer).__name__}")


class Layers(nn.Module):
    """Layers of the spec applied in order: a stage, or one Inception branch.

    Flax's ``nn.Sequential`` would rename its layers ``layers_0``, ``layers_1``
    ...; this keeps the spec's names in the parameter tree.
    """

    layers: Tuple[architecture.Layer, ...]

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self.layers:
            x = _apply_layer(layer, x)
        return x


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
    """

    ch1x1: int
    ch3x3red: int
    ch3x3: int
    ch5x5red: int
    ch5x5: int
    pool_proj: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        # x: N x H x W x C_in
        block = architecture.Inception(self.name or "inception", self.ch1x1,
                                       self.ch3x3red, self.ch3x3, self.ch5x5red,
                                       self.ch5x5, self.pool_proj)
        outputs = [Layers(layers, name=branch)(x)  # N x H x W x (its width)
                   for branch, layers in block.branches()]
        return jnp.concatenate(outputs, axis=-1)  # N x H x W x block.out_channels


class Part(nn.Module):
    """Consecutive stages of the spec: GoogLeNet's stem, body or head.

    Each stage (``b1`` ... ``b5``, ``head``) is a :class:`Layers` submodule
    named as in the spec, so parameters sit at ``part/stage/layer``, e.g.
    ``body/b3/inception3a/branch2/3x3/kernel``.
    """

    stages: Tuple[architecture.Stage, ...]

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for stage in self.stages:
            x = Layers(stage.layers, name=stage.name)(x)
        return x


class GoogLeNet(nn.Module):
    """GoogLeNet built by walking ``spec.stages``; NHWC batches in, logits out.

    ``stem``, ``body`` and ``head`` are :class:`Part` submodules (reach them
    on a bound model: ``model.bind(variables).stem``). The input is checked
    with ``spec.check_input`` before any layer runs; under ``jax.jit`` that
    happens once, at trace time, since shapes are static.
    """

    spec: architecture.GoogLeNetSpec = architecture.BOOK

    def setup(self):
        self.stem = Part(self.spec.part("stem"))
        self.body = Part(self.spec.part("body"))
        self.head = Part(self.spec.part("head"))

    def __call__(self, x: jax.Array) -> jax.Array:
        _check_nhwc(x.shape, self.spec.in_channels)
        self.spec.check_input(x.shape[3], x.shape[1], x.shape[2])
        # Shapes for the book's 96 x 96 input (the paper's 224 x 224: 28, 7, 1000).
        x = self.stem(x)  # N x 12 x 12 x 192
        x = self.body(x)  # N x 3 x 3 x 1024
        return self.head(x)  # N x num_classes


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
    """Total number of parameters in ``variables``; Flax models hold none themselves.

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
        params = variables["params"][stage.part].get(stage.name, {})
        rows.append((stage.name, stage.part, str(tuple(output.shape)), _size(params)))
    tables.print_table(("stage", "part", "output shape (NHWC)", "parameters"), rows)


def _param_shapes(model: GoogLeNet) -> Dict[Tuple[str, ...], Tuple[int, ...]]:
    """Flax parameter path -> shape, from a shape-only trace of ``init``."""
    size = model.spec.input_size
    x = jax.ShapeDtypeStruct((1, size, size, model.spec.in_channels), jnp.float32)
    params = jax.eval_shape(model.init, jax.random.key(0), x)["params"]
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    return {tuple(key.key for key in path): leaf.shape for path, leaf in flat}


def load_weights(model: GoogLeNet, weights: Dict[str, np.ndarray]) -> Variables:
    """Variables for ``model`` from canonical weights (``reference.random_weights``).

    Canonical names map to Flax paths through the spec, e.g.
    ``inception3a/branch2/3x3/weight`` -> ``body/b3/inception3a/branch2/3x3/kernel``.
    Canonical weights use PyTorch's layout; Flax wants channels-last:

    * convolution kernel OIHW -> HWIO: ``w.transpose(2, 3, 1, 0)``;
    * dense kernel ``(out, in)`` -> ``(in, out)``: ``w.T``;
    * biases as they are.

    Every parameter of the model must be given, with the right shape.
    """
    if not isinstance(model, GoogLeNet):
        raise ValueError(f"load_weights takes a d2l.GoogLeNet, got {type(model).__name__}")
    where = {layer.name: (stage.part, stage.name)
             for stage in model.spec.stages for layer in stage.layers}
    expected = _param_shapes(model)
    params: Dict[str, Any] = {}
    for name, w in weights.items():
        *layer_path, kind = name.split("/")
        if not layer_path or layer_path[0] not in where or kind not in ("weight", "bias"):
            raise ValueError(f"{name!r} is not a parameter of this GoogLeNet; use "
                             "reference.random_weights(spec) for the model's spec")
        path = (*where[layer_path[0]], *layer_path, "kernel" if kind == "weight" else "bias")
        w = np.asarray(w, dtype=np.float32)
        if w.ndim == 4:
            w = w.transpose(2, 3, 1, 0)  # OIHW -> HWIO
        elif w.ndim == 2:
            w = w.T  # (out, in) -> (in, out)
        if path not in expected or expected[path] != w.shape:
            raise ValueError(f"{name!r} becomes shape {w.shape} in Flax's layout, but this "
                             f"model's {'/'.join(path)} has shape {expected.get(path)}; "
                             "are the weights for another spec?")
        del expected[path]
        node = params
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = jnp.asarray(w)
    if expected:
        missing = sorted("/".join(path) for path in expected)
        raise ValueError(f"the weights lack {len(missing)} of the model's parameters, "
                         f"e.g. {missing[0]}; use reference.random_weights(spec) for "
                         "the model's spec")
    return {"params": params}


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
