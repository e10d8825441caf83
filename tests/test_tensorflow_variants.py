"""The variants chapter's Keras code beyond the contract test: auxiliary heads
in training only (their weights made before), BatchNorm with PyTorch's
settings, an auxiliary head's inputs in PyTorch's order (the trainer on the
variants, their layers, weights and logits, and fresh BatchNorm state:
``test_backends.py``)."""

import numpy as np
import pytest


import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from d2l_lite import architecture, reference  # noqa: E402
from d2l_lite import tensorflow as d2l  # noqa: E402


def test_aux_heads_run_in_training_only():
    model = d2l.googlenet(architecture.VARIANTS["aux heads"])
    assert model.aux1.built and model.aux2.built  # made before any training call
    X = tf.zeros((2, 96, 96, 1))
    logits, aux = model(X, training=True)
    assert tuple(logits.shape) == (2, 10) and [tuple(a.shape) for a in aux] == [(2, 10)] * 2
    assert tuple(model(X).shape) == (2, 10)


def test_batch_norm_takes_pytorchs_settings():
    model = d2l.googlenet(architecture.VARIANTS["batch norm"])
    pad, conv, bn, relu = model.stem.layers[0].layers[0].layers  # b1's conv1
    assert isinstance(pad, keras.layers.ZeroPadding2D) and not conv.use_bias
    assert bn.epsilon == architecture.BN_EPS
    assert bn.momentum == pytest.approx(1 - architecture.BN_MOMENTUM)
    statistics = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    assert model.count_params() == d2l.count_parameters(model) + statistics


def test_aux_head_reads_its_4x4_map_in_pytorchs_order():
    """At 224x224 an auxiliary head flattens a 128 x 4 x 4 map: load_weights
    reorders fc1's inputs from PyTorch's C x H x W to Keras's H x W x C."""
    spec = architecture.PAPER_BN_AUX
    weights = reference.random_weights(spec, seed=3)
    model = d2l.load_weights(d2l.googlenet(spec), weights)
    X = np.random.default_rng(0).random((1, 14, 14, 512)).astype(np.float32)
    got = model.aux1(X, training=False).numpy()
    w = {k[len("aux1/"):]: v.astype(np.float64) for k, v in weights.items()
         if k.startswith("aux1/")}
    x = X[0].transpose(2, 0, 1).astype(np.float64)  # C x H x W
    pooled = np.array([[x[:, 3 * i:3 * i + 5, 3 * j:3 * j + 5].mean(axis=(1, 2))
                        for j in range(4)] for i in range(4)]).transpose(2, 0, 1)
    y = np.einsum("oc,chw->ohw", w["conv/weight"][:, :, 0, 0], pooled)
    scale = w["conv_bn/weight"] / np.sqrt(w["conv_bn/running_var"] + architecture.BN_EPS)
    y = (y - w["conv_bn/running_mean"][:, None, None]) * scale[:, None, None]
    y = np.maximum(y + w["conv_bn/bias"][:, None, None], 0).reshape(-1)  # C x H x W order
    y = np.maximum(w["fc1/weight"] @ y + w["fc1/bias"], 0)
    expected = w["fc2/weight"] @ y + w["fc2/bias"]
    assert np.abs(got[0] - expected).max() < reference.float32_tolerance(expected)


def test_unknown_combination_is_refused():
    with pytest.raises(ValueError, match="small stem and aux heads at once"):
        d2l.googlenet(architecture.googlenet_spec(input_size=28, stem="small",
                                                  aux_heads=True))
