"""FLOPs and time of a Keras forward pass: TensorFlow's profiler, by op type, and
what the description says it should count (``flop_rules``)."""

from typing import Dict, Sequence

import keras
import tensorflow as tf

from .. import runtime
from ..flop_rules import tensorflow_flops_by_op as expected_flops_by_op  # noqa: F401


def _forward(layer: keras.layers.Layer, input_shape):  # built first, outside the trace
    runtime.check_batch_shape(input_shape, channels_last=True)
    if not layer.built:
        layer(tf.zeros(input_shape))
    return tf.function(lambda X: layer(X, training=False))


def _profile(model_or_block: keras.layers.Layer,
             input_shape: Sequence[int]):
    """TensorFlow's profiler's float-operation view of one forward pass,
    by op type."""
    concrete = _forward(model_or_block, input_shape).get_concrete_function(
        tf.TensorSpec(input_shape, tf.float32))
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"  # return the numbers, print nothing
    # The v1 profiler's deprecation notice names a site-packages path:
    # noise on a page.
    logger, level = tf.get_logger(), tf.get_logger().level
    logger.setLevel("ERROR")
    try:
        return tf.compat.v1.profiler.profile(
            graph=concrete.graph, cmd="op", options=options)
    finally:
        logger.setLevel(level)


def count_flops(model_or_block: keras.layers.Layer, input_shape: Sequence[int]) -> int:
    """FLOPs of a forward pass on an NHWC batch: TF's registered per-op rules, added up."""
    return int(_profile(model_or_block, input_shape).total_float_ops)


def flops_by_op(model_or_block: keras.layers.Layer, input_shape: Sequence[int]) -> Dict[str, int]:
    """:func:`count_flops` by op type (``"Conv2D"``, ``"BiasAdd"`` ...), zeros left out."""
    counts, nodes = {}, list(_profile(model_or_block, input_shape).children)
    while nodes:  # the op view nests each op type under the previous one
        node = nodes.pop()
        if node.float_ops:
            counts[node.name] = int(node.float_ops)
        nodes.extend(node.children)
    return counts


def expected_flops(spec_or_block, input_size=None) -> int:  # count_flops for one image
    return sum(expected_flops_by_op(spec_or_block, input_size).values())


def time_forward(model_or_block: keras.layers.Layer, input_shape: Sequence[int],
                 repeats: int = 10, warmup: int = 2) -> float:
    """Median seconds of a ``tf.function`` forward pass on an NHWC batch, after ``warmup``."""
    forward, X = _forward(model_or_block, input_shape), tf.random.uniform(input_shape)
    return runtime.median_seconds(lambda: forward(X), repeats, warmup,
                                   tf.test.experimental.sync_devices)
