"""d2l_lite.tensorflow.train beyond ``tests/test_backends.py`` (which holds the
trainer, its batches and its optimisers to the contract every framework
meets): the data kept on the device, Keras's own AdamW against ours (the
page's aside), the bfloat16 policy and Dropout's seeds."""

import numpy as np
import pytest


import tensorflow as tf  # noqa: E402

from d2l_lite import architecture, training  # noqa: E402
from d2l_lite import tensorflow as d2l  # noqa: E402

SPEC = architecture.BOOK
GPU = bool(tf.config.list_physical_devices("GPU"))


@pytest.fixture(scope="module")
def tiny(fashion_mnist):
    return fashion_mnist.subset(64, 48)


def test_device_data_keeps_the_images_as_uint8(tiny):
    images, labels, _, test_labels = d2l.device_data(tiny, "/CPU:0")
    assert images.dtype == tf.uint8 and tuple(images.shape) == (64, 28, 28)
    assert labels.dtype == tf.int32 and tuple(test_labels.shape) == (48,)


def test_a_hand_built_model_is_trained_as_what_it_is(tiny):
    """The backend reads a hand-built model's description from its layers
    (Keras makes them on the first call), never assuming the book's."""
    with pytest.raises(ValueError, match="call the model on one batch first"):
        d2l.BACKEND.train(d2l.SmallStemGoogLeNet(), tiny, training.CLASSIC)
    model = d2l.SmallStemGoogLeNet()
    model(tf.zeros((1, 28, 28, 1)))
    assert d2l.spec_of(model) == architecture.googlenet_spec(input_size=28, stem="small")
    recipe = training.CLASSIC.with_(num_epochs=1, batch_size=32)
    history = d2l.BACKEND.train(model, tiny, recipe, plot=False, progress=False)
    assert len(history.epochs) == 1  # at 28x28: the book's spec would fail to load


def test_keras_adamw_takes_shorter_first_steps_on_tiny_gradients():
    """The training page's aside: Keras adds epsilon before the bias correction, so
    with the same epsilon its first step on a tiny gradient is shorter than
    PyTorch's (d2l.AdamW), while on a large gradient the two agree."""
    def first_step(optimizer, grad):
        variable = tf.Variable(np.zeros(4, np.float32))
        optimizer.apply([tf.constant(grad, tf.float32)], [variable])
        return -variable.numpy() / 1e-3  # the step, in learning rates

    # rtol 1e-5: a float32 step is a handful of operations, each rounding by
    # at most 6e-8, far under 1e-5; Keras's epsilon off by 0.24x is far over
    for scale, ratio in [(1e-7, 0.4), (1.0, 1.0)]:
        grad = np.full(4, scale)
        ours = first_step(d2l.AdamW(1e-3, weight_decay=0.0), grad)
        keras_ = first_step(tf.keras.optimizers.AdamW(1e-3, weight_decay=0.0,
                                                      epsilon=1e-8), grad)
        assert np.allclose(ours, 1 / (1 + 1e-8 / scale), rtol=1e-5)  # lr * g / (|g| + eps)
        if ratio < 1:  # 1e-7 / (sqrt(0.001) * 1e-7 + 1e-8) * sqrt(0.001) / 0.1: 0.24
            assert np.all(keras_ < ratio * ours)
        else:
            assert np.allclose(keras_, ours, rtol=1e-5)


def test_bfloat16_policy_is_set_and_restored():
    model = d2l.googlenet(SPEC)
    with d2l.bfloat16(model, True):
        fc = model.head.layers[-1]
        conv1 = model.stem.layers[0].layers[0].layers[-1]
        assert fc.dtype_policy.name == "float32"
        assert conv1.dtype_policy.name == "mixed_bfloat16"
        assert conv1.dtype_policy.compute_dtype == "bfloat16"
        assert conv1.dtype_policy.variable_dtype == "float32"  # weights stay float32
    assert {layer.dtype_policy.name for layer in d2l.sublayers(model)} == {"float32"}


def test_the_trainer_restarts_dropout_from_the_recipes_seed():
    """Keras seeds each Dropout from Python's random state when the layer is made,
    so two models differ; ``train`` restarts them from the recipe's seed
    (``seed_random_layers``), so that two runs draw the same masks."""
    def seed_states(model):
        weights = {id(w) for w in model.weights}
        return [v.numpy().tolist() for v in model.variables if id(v) not in weights]

    first, second = d2l.GoogLeNetAux(), d2l.GoogLeNetAux()
    assert len(seed_states(first)) == 2  # the two heads' Dropout
    assert seed_states(first) != seed_states(second)
    for model in (first, second):
        d2l.seed_random_layers(model, 0)
    assert seed_states(first) == seed_states(second)
    d2l.seed_random_layers(second, 1)
    assert seed_states(first) != seed_states(second)
