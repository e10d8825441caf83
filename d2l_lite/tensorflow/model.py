"""The description meets the Keras model: building it from a spec, counting it,
and its tensors under the neutral names (``reference.parameter_shapes``), found
from the model's structure and converted from PyTorch's layouts."""

from typing import Dict, Iterator, List, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf

from .. import architecture, reference, tables, textbook
from . import book
from .book import GoogLeNet, Inception, conv_bn_relu, conv_relu

def googlenet(spec: architecture.GoogLeNetSpec = architecture.BOOK) -> GoogLeNet:
    """The textbook model of ``spec`` (kept as ``model.spec``), built symbolically."""
    block, net = textbook.classes(spec, book)
    model = net(spec.num_classes, conv_bn_relu if spec.batch_norm else conv_relu, block)
    if spec.head_pool == "avg7":  # the paper's 7x7 average pool
        fc = model.head.pop()
        model.head.pop(rebuild=False)
        for layer in (keras.layers.AveragePooling2D(7, 1), keras.layers.Flatten(), fc):
            model.head.add(layer)
    model(keras.KerasTensor((None, spec.input_size, spec.input_size, spec.in_channels)))
    model.spec = spec
    return model


def count_parameters(model: keras.layers.Layer) -> int:
    """Trainable parameters (``count_params()`` adds BatchNorm's moving statistics)."""
    if not model.built:
        raise ValueError(f"{type(model).__name__} has no weights yet: call it on a batch first")
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def branch_parameters(block: Inception) -> Dict[str, int]:
    """``{"branch1": n, ..., "branch4": n}`` for a built :class:`Inception`."""
    return {f"branch{i}": count_parameters(getattr(block, f"branch{i}")) for i in range(1, 5)}


def stage_rows(model: GoogLeNet, input_shape: Sequence[int]) -> List[Tuple]:
    """:func:`d2l_lite.counting.stage_rows` (C x H x W) measured on an NHWC zero batch."""
    X, rows = tf.zeros(input_shape), []
    for stage in stages(model):
        X = stage(X, training=False)
        rows.append((stage.name, (X.shape[-1], *X.shape[1:-1]), count_parameters(stage)))  # CHW
    if hasattr(model, "aux1"):  # (any class's) aux heads run in training only
        _, aux = model(keras.KerasTensor(tuple(input_shape)), training=True)
        rows += [(f"aux{i}", tuple(a.shape[1:]), count_parameters(getattr(model, f"aux{i}")))
                 for i, a in enumerate(aux, 1)]
    return rows


def layer_summary(model: GoogLeNet, input_shape: Sequence[int]) -> None:
    """Print :func:`stage_rows`: stage, output shape (N x H x W x C), parameters."""
    rows = [(name, (input_shape[0], *shape[1:], shape[0]), params)
            for name, shape, params in stage_rows(model, input_shape)]
    tables.print_table(("stage", "output shape", "parameters"), rows)


def stages(model: GoogLeNet) -> List[keras.layers.Layer]:
    """``b1`` ... ``b5`` and the head, the spec's stages in its order."""
    return [*model.stem.layers, *model.body.layers, model.head]


def sublayers(layer: keras.layers.Layer) -> Iterator[keras.layers.Layer]:
    """``layer`` and every layer inside it: stages, blocks, branches."""
    yield layer
    for child in ([getattr(layer, f"branch{i}") for i in range(1, 5)]
                  if hasattr(layer, "branch4") else getattr(layer, "layers", [])):
        yield from sublayers(child)


# Weights by name -----------------------------------------------------------------------

_SKIPPED = (keras.layers.Flatten, keras.layers.Dropout)  # no place in the description
_BN = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean",
       "running_var": "moving_variance"}


def _units(container) -> list:
    """The layers of a stage, branch or head that the description lists, in its order;
    a branch that is one Conv-(BN-)ReLU stands for itself."""
    layers = getattr(container, "layers", [container])
    if any(isinstance(layer, keras.layers.Conv2D) for layer in layers):
        return [container]
    return [layer for layer in layers if not isinstance(layer, _SKIPPED)]


def _pair(layers, container, path: str) -> Iterator[Tuple[str, object]]:
    """(neutral name, Keras variable) of each description layer and its Keras twin."""
    units = _units(container)
    if len(units) != len(layers):
        raise ValueError(f"{path or 'the model'}: the description has {len(layers)} layers, "
                         f"the Keras model {len(units)}: was it built for this spec?")
    for layer, unit in zip(layers, units):
        name = path + layer.name
        if isinstance(layer, architecture.Inception):
            for branch, branch_layers in layer.branches():
                yield from _pair(branch_layers, getattr(unit, branch), f"{name}/{branch}/")
            if layer.residual:
                yield from _pair((layer.shortcut(),), unit.shortcut, f"{name}/")
        elif isinstance(layer, (architecture.Conv, architecture.Dense)):
            inner = [l for l in getattr(unit, "layers", [unit]) if l.weights]
            yield f"{name}/weight", inner[0].kernel
            if inner[0].use_bias:
                yield f"{name}/bias", inner[0].bias
            for neutral, own in (_BN.items() if len(inner) > 1 else ()):
                yield f"{name}_bn/{neutral}", getattr(inner[1], own)


def _variables(model: GoogLeNet, spec: architecture.GoogLeNetSpec) -> Dict[str, object]:
    """Neutral name -> variable, stage by stage, then the auxiliary heads."""
    found = {}
    for stage, keras_stage in zip(spec.stages, stages(model)):
        found.update(_pair(stage.layers, keras_stage, ""))
    for head in spec.aux_heads:
        found.update(_pair(head.layers(), getattr(model, head.name), f"{head.name}/"))
    return found


def spec_of(model: GoogLeNet) -> architecture.GoogLeNetSpec:
    """``model.spec`` when :func:`googlenet` built it; otherwise the description read
    from the model's classes and layers (the input size it cannot tell:
    :func:`textbook.spec`'s for its stem and head)."""
    if hasattr(model, "spec"):
        return model.spec
    conv1 = model.stem.layers[0].layers[0]  # conv1's Sequential: [pad,] conv[, BN, ReLU]
    kernel = next(l for l in conv1.layers if isinstance(l, keras.layers.Conv2D)).kernel
    avg7 = any(isinstance(l, keras.layers.AveragePooling2D) for l in model.head.layers)
    return textbook.spec(
        model.block, type(model), in_channels=kernel.shape[2],
        num_classes=model.head.layers[-1].units, head_pool="avg7" if avg7 else "global",
        batch_norm=any(isinstance(l, keras.layers.BatchNormalization) for l in conv1.layers))


def tensor_names(model: GoogLeNet) -> Dict[str, str]:
    """Neutral name -> the Keras variable's path, for every parameter and statistic."""
    return {name: v.path for name, v in _variables(model, spec_of(model)).items()}


def _flatten_maps(spec) -> Dict[str, Tuple[int, int, int]]:
    """Each dense layer's weight name -> the (C, H, W) map it flattens."""
    return {f"{s.name}/weight": s.in_shape for s in architecture.walk(spec)
            if isinstance(s.layer, architecture.Dense)}


def _keras_layout(array: np.ndarray, chw) -> np.ndarray:
    if array.ndim == 4:  # O x I x H x W -> H x W x I x O
        return array.transpose(2, 3, 1, 0)
    if array.ndim == 2:  # out x (C H W) -> (H W C) x out: Keras's flatten order
        return array.reshape(-1, *chw).transpose(2, 3, 1, 0).reshape(-1, len(array))
    return array


def _torch_shape(shape: Tuple[int, ...]) -> Tuple[int, ...]:
    return (shape[3], shape[2], *shape[:2]) if len(shape) == 4 else shape[::-1]


def _torch_layout(array: np.ndarray, chw) -> np.ndarray:
    if array.ndim == 4:  # H x W x I x O -> O x I x H x W
        return array.transpose(3, 2, 0, 1)
    if array.ndim == 2:  # (H W C) x out -> out x (C H W)
        c, h, w = chw
        return array.T.reshape(-1, h, w, c).transpose(0, 3, 1, 2).reshape(len(array.T), -1)
    return array


def assign(model: GoogLeNet, weights: Dict[str, np.ndarray], spec) -> GoogLeNet:
    """:func:`load_weights` for the model of ``spec``."""
    variables, maps = _variables(model, spec), _flatten_maps(spec)
    reference.check_weights(weights, {name: _torch_shape(tuple(v.shape))
                                      for name, v in variables.items()}, "TensorFlow")
    for name, variable in variables.items():
        variable.assign(_keras_layout(np.asarray(weights[name], variable.dtype),
                                      maps.get(name)))
    return model


def load_weights(model: GoogLeNet, weights: Dict[str, np.ndarray]) -> GoogLeNet:
    """Neutral weights into ``model`` by name, layouts converted; returns it."""
    return assign(model, weights, spec_of(model))


def get_weights(model: GoogLeNet) -> Dict[str, np.ndarray]:
    """The model's tensors under neutral names, in PyTorch's layout."""
    maps = _flatten_maps(spec_of(model))
    return {name: _torch_layout(np.asarray(v.numpy()), maps.get(name))
            for name, v in _variables(model, spec_of(model)).items()}


def logits(model: GoogLeNet, X: np.ndarray) -> np.ndarray:
    """Logits (inference mode) for an NCHW float32 NumPy batch, as float32 NumPy,
    computed in IEEE float32 (TensorFlow's default TF32 on a GPU would move them)."""
    X = np.transpose(np.asarray(X, np.float32), (0, 2, 3, 1))  # NCHW -> NHWC
    tf32 = tf.config.experimental.tensor_float_32_execution_enabled()
    tf.config.experimental.enable_tensor_float_32_execution(False)
    try:
        return np.asarray(model(X, training=False), dtype=np.float32)
    finally:
        tf.config.experimental.enable_tensor_float_32_execution(tf32)
