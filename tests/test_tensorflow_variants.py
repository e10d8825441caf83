"""The variants of the last chapter in TensorFlow/Keras: BatchNorm, auxiliary
heads, the factorised 5x5 branch and the 28x28 stem, built from the same spec
options, against the analytic counts and the NumPy reference forward pass."""

import math

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("keras")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from d2l_lite import architecture, counting, reference, training  # noqa: E402
from d2l_lite import tensorflow as d2l  # noqa: E402

SPECS = dict(architecture.VARIANTS, **{"paper bn aux": architecture.PAPER_BN_AUX})
TOLERANCE = 1e-4


def _built(spec: architecture.GoogLeNetSpec) -> d2l.GoogLeNet:
    """A model built from its input shape alone (symbolically: no computation)."""
    model = d2l.GoogLeNet(spec)
    model.build((None, spec.input_size, spec.input_size, spec.in_channels))
    return model


@pytest.fixture(scope="module")
def tiny(fashion_mnist):
    return fashion_mnist.subset(64, 32)


@pytest.fixture(scope="module")
def variants():
    """One model per variant with ``reference.random_weights(spec, seed=1)``
    loaded: Keras models are slow to build, so the tests share them."""
    cache = {}

    def get(name):
        if name not in cache:
            spec = SPECS[name]
            cache[name] = d2l.GoogLeNet(spec)
            d2l.load_weights(cache[name], reference.random_weights(spec, seed=1))
        return cache[name]
    return get


@pytest.mark.parametrize("name", sorted(architecture.VARIANTS))
def test_variant_counts_and_logits(variants, name):
    """Trainable parameters == the analytic count; logits == the reference's."""
    spec = SPECS[name]
    model = variants(name)
    expected = counting.total_params(counting.count_network(spec))
    assert d2l.count_parameters(model) == expected
    statistics = sum(2 * int(np.prod(w.shape)) for w in model.weights
                     if w.path.endswith("moving_mean"))
    assert (statistics > 0) == spec.batch_norm
    assert model.count_params() == expected + statistics  # Keras counts the statistics too
    weights = reference.random_weights(spec, seed=1)
    X = reference.random_input(spec, batch_size=2, seed=2)
    got = d2l.logits(model, X)
    assert got.shape == (2, spec.num_classes)
    assert np.abs(got - reference.forward(spec, weights, X)).max() < TOLERANCE


def test_paper_bn_aux_count():
    spec = architecture.PAPER_BN_AUX
    assert d2l.count_parameters(_built(spec)) == counting.total_params(
        counting.count_network(spec)) == 13_385_816


def test_count_parameters_needs_a_built_model():
    with pytest.raises(ValueError, match="not built"):
        d2l.count_parameters(d2l.GoogLeNet(architecture.VARIANTS["aux heads"]))


def test_batch_norm_layers_follow_the_spec():
    model = d2l.GoogLeNet(architecture.VARIANTS["batch norm"])
    model(tf.zeros((1, 96, 96, 1)))  # an inference call: the statistics stay 0 and 1
    b1 = model.stem.get_layer("b1")
    conv, bn = b1.get_layer("conv1"), b1.get_layer("conv1_bn")
    assert conv.bias is None and not conv.use_bias
    assert bn.epsilon == architecture.BN_EPS
    assert bn.momentum == pytest.approx(1 - architecture.BN_MOMENTUM)
    assert np.all(bn.moving_mean.numpy() == 0) and np.all(bn.moving_variance.numpy() == 1)
    block = model.body.get_layer("b3").get_layer("inception3a")
    assert [layer.name for layer in block.branches[2].layers] == [
        "5x5_reduce", "5x5_reduce_bn", "5x5_reduce_relu", "5x5", "5x5_bn", "5x5_relu"]


def test_factorized_branch_names_and_widths(variants):
    block = variants("factorized 5x5").body.get_layer("b3").get_layer("inception3a")
    convs = [layer for layer in block.branches[2].layers
             if isinstance(layer, keras.layers.Conv2D)]
    assert [(c.name, c.kernel_size, c.filters) for c in convs] == [
        ("5x5_reduce", (1, 1), 16), ("5x5a", (3, 3), 16), ("5x5b", (3, 3), 32)]


def test_bn_aux_heads_load_and_run_in_training_only():
    """Every canonical name (BatchNorm statistics, aux heads) is loaded; the
    heads run only with training=True, and their weights exist before that."""
    spec = architecture.googlenet_spec(batch_norm=True, aux_heads=True)
    weights = reference.random_weights(spec, seed=4)
    model = d2l.GoogLeNet(spec)
    d2l.load_weights(model, weights)  # builds the model with an inference call
    variables = d2l._canonical_variables(model)
    assert set(variables) == set(weights)
    assert "aux1/conv_bn/running_var" in variables and "aux2/fc1/weight" in variables
    assert np.array_equal(variables["aux2/fc1/weight"].numpy(), weights["aux2/fc1/weight"].T)
    assert np.array_equal(variables["inception4e/branch3/5x5_bn/running_mean"].numpy(),
                          weights["inception4e/branch3/5x5_bn/running_mean"])
    X = tf.random.uniform((2, 96, 96, 1))
    logits, aux = model(X, training=True)
    assert tuple(logits.shape) == (2, 10) and [tuple(a.shape) for a in aux] == [(2, 10)] * 2
    assert tuple(model(X).shape) == (2, 10)
    with pytest.raises(ValueError, match="missing"):
        d2l.load_weights(d2l.GoogLeNet(architecture.BOOK), weights)


@pytest.mark.parametrize("name", ["bn + aux heads", "28x28"])
def test_train_variant_smoke(tiny, name):
    spec = architecture.googlenet_spec(batch_norm=True, aux_heads=True) \
        if name == "bn + aux heads" else architecture.VARIANTS[name]
    model = d2l.GoogLeNet(spec)
    recipe = training.FAST.with_(num_epochs=1, batch_size=16, schedule="step")
    # bn + aux heads: the smallest images its aux heads take (72), to keep it
    # quick on a CPU; 28x28: the default, the spec's own input size
    image_size = 72 if spec.aux_heads else None
    history = d2l.train(model, tiny, recipe, device="/CPU:0", image_size=image_size,
                        plot=False, progress=False)
    assert len(history.epochs) == 1
    e = history.epochs[0]
    assert all(math.isfinite(v) for v in (e.train_loss, e.train_acc, e.test_acc))
    assert all(np.all(np.isfinite(w.numpy())) for w in model.weights)
    if spec.batch_norm:  # BatchNorm ran in training mode: its moving statistics moved
        bn = model.stem.get_layer("b1").get_layer("conv1_bn")
        assert np.abs(bn.moving_mean.numpy()).max() > 0
