"""The description meets the model: :func:`googlenet` builds the textbook
classes a spec names, the counters measure the model, and weights cross under
the neutral names (:func:`tensor_paths`: the Flax variable each one is)."""

from __future__ import annotations

import collections
import functools
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from .. import architecture, reference, tables, textbook
from . import book
from .book import ConvBNReLU, ConvReLU, GoogLeNet, Inception


def googlenet(spec: architecture.GoogLeNetSpec = architecture.BOOK) -> GoogLeNet:
    """The textbook model ``spec`` describes ("avg7": :func:`paper_head`)."""
    block, net = textbook.classes(spec, book)
    net = paper_head(net) if spec.head_pool == "avg7" else net
    return net(spec.num_classes, ConvBNReLU if spec.batch_norm else ConvReLU, block)


@functools.lru_cache(maxsize=None)  # one class per network class
def paper_head(net: type) -> type:
    """``net`` with the paper's head: the mean of a 7x7 map, which PyTorch, Keras and
    Gluon take with a 7x7 average pool, so that another map size fails here as there."""
    def head(self, x):
        if x.shape[1:3] != (7, 7):
            raise ValueError(f"the paper's head pools a 7x7 map with a 7x7 window; this "
                             f"input gives {x.shape[1]}x{x.shape[2]} (see the spec's "
                             f"min_input_size())")
        # net.head's two lines, not a call to it: stage_rows would count two heads
        x = jnp.mean(x, axis=(1, 2))  # the 7x7 pool's one output: N x 1024
        return nn.Dense(self.num_classes)(x)
    return type(net.__name__, (net,), {"head": head, "avg7": True, "__module__": __name__,
                                       "__doc__": f"{net.__name__} with the paper's head."})


def init(model: nn.Module, input_shape: Sequence[int], seed: int = 0) -> dict:
    """``model``'s variables for an NHWC input (unoptimised: compiles faster)."""
    return jax.jit(model.init, compiler_options={"xla_backend_optimization_level": 0})(
        jax.random.key(seed), jnp.zeros(tuple(input_shape), jnp.float32))


def count_parameters(variables: dict) -> int:
    """Trainable parameters in ``variables`` (or their ``jax.eval_shape``)."""
    return sum(leaf.size for leaf in jax.tree.leaves(variables["params"]))


def variable_shapes(module: nn.Module, input_shape: Sequence[int]) -> dict:
    """The variables ``init`` would make for an NHWC input, as shapes only."""
    x = jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32)
    return jax.eval_shape(module.init, jax.random.key(0), x)


def _sections(module, input_shape):
    """``(name, output shape, parameters)`` per stage or branch method, then aux head,
    from ``init`` traced for shapes, each method call intercepted."""
    calls = []

    def record(call, args, kwargs, context):
        out = call(*args, **kwargs)
        leaves = jax.tree.leaves(out)
        calls.append((context.module.path, context.method_name,
                      leaves[0].shape if leaves else ()))
        return out
    with nn.intercept_methods(record):
        params = variable_shapes(module, input_shape)["params"]
    rows, pending = [], []
    for path, method, shape in calls:
        if len(path) == 1 and method == "__call__":  # a submodule
            pending.append((path[0], shape[1:]))
        elif not path and method != "__call__":  # a stage or a branch
            rows.append((method, shape[1:], [name for name, _ in pending]))
            pending = []
    rows += [(f"aux{i}", shape, [name]) for i, (name, shape) in enumerate(pending, 1)]
    return [(name, shape, sum(count_parameters({"params": params[c]}) for c in children))
            for name, shape, children in rows]


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


# Weights by name ----------------------------------------------------------------


class Tensor(NamedTuple):
    """Where a neutral tensor lives in Flax: ``(collection, *modules, name)``, its
    neutral shape, and for a kernel its ``(out, in, H, W)`` (a dense layer's ``H, W``:
    of the map it flattens; NCHW order there, NHWC in Flax)."""
    path: Tuple[str, ...]
    shape: Tuple[int, ...]
    layout: Optional[Tuple[int, int, int, int]] = None


def tensor_paths(spec: architecture.GoogLeNetSpec) -> Dict[str, Tensor]:
    """Neutral name -> :class:`Tensor`, from the spec's structure: each layer of
    :func:`architecture.walk` is the next submodule of its class in its parent (the
    network, its block or its auxiliary head), which Flax names ``<Class>_<i>``."""
    conv = "ConvBNReLU" if spec.batch_norm else "ConvReLU"
    block = textbook.class_names(spec)[0] if spec.part("body") else ""
    made, parents, out = collections.Counter(), {}, {}

    def submodule(parent: tuple, cls: str) -> tuple:
        made[parent, cls] += 1
        return (*parent, f"{cls}_{made[parent, cls] - 1}")
    for step in architecture.walk(spec):
        layer, name, first = step.layer, step.name, step.name.split("/")[0]
        if first != name and first not in parents:  # a block's or aux head's layer
            parents[first] = submodule((), "AuxHead" if step.part == "aux" else block)
        parent = parents.get(first, ())
        (c, h, w), width = step.in_shape, step.out_shape[0]
        if isinstance(layer, architecture.Dense):
            path = submodule(parent, "Dense")
            out[f"{name}/weight"] = Tensor(("params", *path, "kernel"), (width, c * h * w),
                                           (width, c, h, w))
        elif isinstance(layer, architecture.Conv):  # a shortcut is a bare nn.Conv
            path = (submodule(parent, "Conv") if not layer.relu
                    else (*submodule(parent, conv), "Conv_0"))
            k = layer.kernel
            out[f"{name}/weight"] = Tensor(("params", *path, "kernel"), (width, c, k, k),
                                           (width, c, k, k))
        else:
            continue
        if not isinstance(layer, architecture.Conv) or layer.bias:
            out[f"{name}/bias"] = Tensor(("params", *path, "bias"), (width,))
        if isinstance(layer, architecture.Conv) and layer.batch_norm:
            bn = (*path[:-1], "BatchNorm_0")
            for neutral, flax in (("weight", ("params", "scale")), ("bias", ("params", "bias")),
                                  ("running_mean", ("batch_stats", "mean")),
                                  ("running_var", ("batch_stats", "var"))):
                out[f"{name}_bn/{neutral}"] = Tensor((flax[0], *bn, flax[1]), (width,))
    return out


def spec_of(model: GoogLeNet, input_shape: Sequence[int]) -> architecture.GoogLeNetSpec:
    """The spec of textbook ``model`` on NHWC ``input_shape`` (a side of None: the
    size its stem and head imply, :func:`textbook.spec`'s)."""
    if not hasattr(model, "block"):
        raise ValueError(f"load_weights ports the textbook GoogLeNets, not "
                         f"{type(model).__name__}")
    _, size, _, channels = input_shape
    sizes = {"input_size": size} if size else {}
    return textbook.spec(
        model.block, type(model), in_channels=channels, **sizes,
        num_classes=model.num_classes, batch_norm=model.conv.__name__ == "ConvBNReLU",
        head_pool="avg7" if getattr(model, "avg7", False) else "global")


def _listed(names) -> str:
    return ", ".join(sorted(names))


def port(model: nn.Module, weights: dict, spec: architecture.GoogLeNetSpec,
         input_shape: Sequence[int]) -> dict:
    """``model``'s variables holding neutral ``weights`` (:func:`tensor_paths` of
    ``spec``); a ``ValueError`` names a missing, extra or misshapen tensor."""
    tensors = tensor_paths(spec)
    reference.check_weights(weights, {name: t.shape for name, t in tensors.items()}, "Flax")
    have = traverse_util.flatten_dict(variable_shapes(model, input_shape))
    unplaced = [name for name, t in tensors.items() if t.path not in have]
    if unplaced or len(have) != len(tensors):
        raise ValueError(f"the Flax model is not the spec's: {len(have)} tensors, the "
                         f"spec {len(tensors)}; no place for {_listed(unplaced) or '-'}")
    flat = {}
    for name, t in tensors.items():
        w = np.asarray(weights[name], np.float32)
        if t.layout:  # OIHW -> HWIO; a dense layer's input C x H x W -> H x W x C
            w = w.reshape(t.layout).transpose(2, 3, 1, 0)
            w = w.reshape(-1, t.shape[0]) if len(t.shape) == 2 else w
        if w.shape != have[t.path].shape:
            raise ValueError(f"{name}: Flax's {'/'.join(t.path)} has shape "
                             f"{have[t.path].shape}, not {w.shape}")
        flat[t.path] = jnp.asarray(w)
    return traverse_util.unflatten_dict(flat)


def load_weights(model: nn.Module, weights: dict, input_shape=None) -> dict:
    """The ``variables`` of textbook ``model`` holding neutral ``weights``, found by
    name for NHWC ``input_shape`` (an aux ``fc1`` depends on it; default: the size
    the model's stem and head imply, 96, 224 for the paper's, 28 for the small stem)."""
    channels = np.shape(weights.get("conv1/weight", np.zeros((1, 1))))[1]
    spec = spec_of(model, input_shape or (1, None, None, channels))
    size = spec.input_size
    return port(model, weights, spec, tuple(input_shape or (1, size, size, channels)))


def get_weights(variables: dict, spec: architecture.GoogLeNetSpec) -> dict:
    """The neutral weights in ``variables`` (the inverse of :func:`port`)."""
    flat = traverse_util.flatten_dict(variables)
    out = {}
    for name, t in tensor_paths(spec).items():
        w = np.asarray(flat[t.path])
        if t.layout:
            o, i, h, wd = t.layout
            w = w.reshape(h, wd, i, o).transpose(3, 2, 0, 1).reshape(t.shape)
        out[name] = w
    return out


@functools.partial(jax.jit, static_argnums=0)
def _forward(model: nn.Module, variables: dict, x: jax.Array) -> jax.Array:
    with jax.default_matmul_precision("highest"):  # not TF32 on recent GPUs
        return model.apply(variables, x)


def logits(model: nn.Module, X: np.ndarray, variables: dict) -> np.ndarray:
    """Float32 NumPy logits for an NCHW NumPy batch, like the reference's."""
    X = jnp.asarray(np.asarray(X, np.float32).transpose(0, 2, 3, 1))  # NHWC
    return np.asarray(_forward(model, variables, X), np.float32)
