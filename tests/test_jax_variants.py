"""The variants chapter's JAX/Flax code beyond the contract test (which
holds every variant to the spec's stage rows, counts and logits): how Flax
keeps BatchNorm's statistics, the auxiliary heads in training only, the
auxiliary head's dense layer at 224x224 (the trainer on the variants:
``test_backends.py``). Shapes come from ``jax.eval_shape`` (nothing is
computed).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from d2l_lite import architecture, reference
from d2l_lite import jax as d2l

BN_AUX = architecture.googlenet_spec(batch_norm=True, aux_heads=True)


def shapes(spec):
    """The variables ``init`` would return for ``spec``, as shapes only."""
    x = jax.ShapeDtypeStruct((1, spec.input_size, spec.input_size, spec.in_channels),
                             jnp.float32)
    return jax.eval_shape(d2l.googlenet(spec).init, jax.random.key(0), x)


def test_paper_bn_aux_has_13_4_million_parameters():
    assert d2l.count_parameters(shapes(architecture.PAPER_BN_AUX)) == 13_385_816


def test_variant_layers_are_the_textbook_ones():
    variables = shapes(architecture.googlenet_spec(batch_norm=True, aux_heads=True,
                                                   factorize=True))
    params, stats = variables["params"], variables["batch_stats"]
    assert set(params["ConvBNReLU_0"]) == {"Conv_0", "BatchNorm_0"}
    assert set(params["ConvBNReLU_0"]["Conv_0"]) == {"kernel"}  # no conv bias
    assert set(params["ConvBNReLU_0"]["BatchNorm_0"]) == {"scale", "bias"}
    assert set(stats["ConvBNReLU_0"]["BatchNorm_0"]) == {"mean", "var"}
    block = params["FactorizedInception_0"]  # branch 3: 1x1, 3x3, 3x3
    assert block["ConvBNReLU_4"]["Conv_0"]["kernel"].shape == (3, 3, 16, 16)
    assert block["ConvBNReLU_5"]["Conv_0"]["kernel"].shape == (3, 3, 16, 32)
    assert {"AuxHead_0", "AuxHead_1"} <= set(params)
    assert params["AuxHead_0"]["Dense_0"]["kernel"].shape == (128, 1024)


def test_aux_head_weights_are_ported_at_224():
    # At 224x224 an auxiliary head flattens a 4 x 4 x 128 map: load_weights must
    # reorder fc1's rows from PyTorch's C x H x W to Flax's H x W x C.
    spec = architecture.PAPER_BN_AUX
    weights = reference.random_weights(spec, seed=2)
    variables = d2l.load_weights(d2l.googlenet(spec), weights, (1, 224, 224, 3))
    head = {collection: tree["AuxHead_0"] for collection, tree in variables.items()}
    x = np.random.default_rng(3).random((2, 512, 14, 14)).astype(np.float32)  # NCHW
    y = d2l.AuxHead(1000, d2l.ConvBNReLU).apply(head, jnp.asarray(x.transpose(0, 2, 3, 1)))
    expected = reference._avg_pool(x.astype(np.float64), 5, 3)  # 2 x 512 x 4 x 4
    expected = reference._conv_layer(architecture.Conv("conv", 128, 1, batch_norm=True),
                                     "aux1/conv", expected, weights).reshape(2, -1)
    for fc, relu in (("fc1", True), ("fc2", False)):
        expected = expected @ weights[f"aux1/{fc}/weight"].T + weights[f"aux1/{fc}/bias"]
        expected = np.maximum(expected, 0) if relu else expected
    np.testing.assert_allclose(np.asarray(y), expected, rtol=0,
                               atol=reference.float32_tolerance(expected))


def test_training_mode_returns_the_aux_logits_and_new_batch_stats():
    model = d2l.googlenet(BN_AUX)
    variables = d2l.load_weights(model, reference.xavier_weights(BN_AUX))
    X = jnp.asarray(reference.random_input(BN_AUX, batch_size=2).transpose(0, 2, 3, 1))
    # jitted without XLA's backend optimisations: compiles fastest (eager is slower)
    apply = jax.jit(functools.partial(model.apply, train=True, mutable=["batch_stats"]),
                    compiler_options={"xla_backend_optimization_level": 0})
    (y, aux), updates = apply(variables, X, rngs={"dropout": jax.random.key(0)})
    assert y.shape == (2, 10) and len(aux) == 2 and all(a.shape == (2, 10) for a in aux)
    # the running statistics moved from (0, 1) towards the batch's
    mean = updates["batch_stats"]["ConvBNReLU_0"]["BatchNorm_0"]["mean"]
    assert float(jnp.abs(mean).max()) > 0
