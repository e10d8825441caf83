"""The contract between the textbook code and the spec.

The chapters write GoogLeNet out by hand in each framework; the spec
(``d2l_lite.architecture``) is what the book counts, tabulates and tests.
For every framework and every variant, ``d2l.googlenet(spec)`` (the textbook
classes the spec calls for) must match the spec stage by stage (names,
output shapes, parameters, from ``counting.stage_rows``), take the spec's
canonical weights tensor by tensor in creation order (``load_weights``
checks every shape) and then compute the NumPy reference's logits.
MXNet's twin is ``tests/mxnet/test_contract_mxnet.py``.
"""

import numpy as np
import pytest

from d2l_lite import architecture, counting, reference

SPECS = {**architecture.VARIANTS,
         "naive": architecture.googlenet_spec(reduce=False),
         "paper": architecture.PAPER,
         "paper bn aux": architecture.PAPER_BN_AUX}


def torch_case(spec, weights, X):
    from d2l_lite import torch as d2l
    model = d2l.googlenet(spec)
    rows = d2l.stage_rows(model, X.shape)
    count = d2l.count_parameters(model)
    return rows, count, d2l.logits(d2l.load_weights(model, weights), X)


def _nhwc(X):
    return np.ascontiguousarray(X.transpose(0, 2, 3, 1))


def tensorflow_case(spec, weights, X):
    from d2l_lite import tensorflow as d2l
    model = d2l.googlenet(spec)
    rows = d2l.stage_rows(model, _nhwc(X).shape)
    count = d2l.count_parameters(model)
    return rows, count, d2l.logits(d2l.load_weights(model, weights), X)


def jax_case(spec, weights, X):
    from d2l_lite import jax as d2l
    model = d2l.googlenet(spec)
    variables = d2l.init(model, _nhwc(X).shape)
    rows = d2l.stage_rows(model, _nhwc(X).shape)
    count = d2l.count_parameters(variables)
    variables = d2l.load_weights(model, weights, _nhwc(X).shape)
    return rows, count, d2l.logits(model, X, variables)


CASES = {"torch": torch_case, "tensorflow": tensorflow_case, "jax": jax_case}


@pytest.mark.parametrize("name", SPECS)
@pytest.mark.parametrize("framework", CASES)
def test_textbook_model_equals_spec(framework, name, torch_one_thread):
    pytest.importorskip(framework)
    spec = SPECS[name]
    weights = reference.random_weights(spec, seed=1)
    X = reference.random_input(spec, batch_size=2, seed=1)
    rows, count, logits = CASES[framework](spec, weights, X)
    assert [(stage, tuple(shape), params) for stage, shape, params in rows] \
        == counting.stage_rows(spec)
    assert count == counting.total_params(counting.count_network(spec))
    expected = reference.forward(spec, weights, X)
    # float32 against float64: a tolerance relative to the logits' magnitude
    assert np.abs(logits - expected).max() < reference.float32_tolerance(expected)


def test_stage_rows_of_the_book():
    assert counting.stage_rows(architecture.BOOK) == [
        ("b1", (64, 24, 24), 3_200), ("b2", (192, 12, 12), 114_944),
        ("b3", (480, 6, 6), 552_432), ("b4", (832, 3, 3), 2_809_168),
        ("b5", (1024, 3, 3), 2_487_536), ("head", (10,), 10_250)]


def test_ordered_puts_aux_heads_last_and_state_apart():
    params, state = reference.ordered(reference.random_weights(architecture.PAPER_BN_AUX))
    names = [name for name, _ in params]
    assert names[:3] == ["conv1/weight", "conv1_bn/weight", "conv1_bn/bias"]
    first_aux = next(i for i, n in enumerate(names) if n.startswith("aux"))
    assert all(n.startswith("aux") for n in names[first_aux:])
    assert names[first_aux - 2:first_aux] == ["fc/weight", "fc/bias"]
    assert all(n.endswith(("running_mean", "running_var")) for n, _ in state)
    assert len(state) == 2 * sum(n.endswith("_bn/weight") for n in names)


def test_check_shapes_names_the_first_mismatch():
    with pytest.raises(ValueError, match="conv2/weight"):
        reference.check_shapes(["conv1/weight", "conv2/weight"], [(1, 2), (3, 4)],
                               [(1, 2), (4, 3)], "PyTorch")
    with pytest.raises(ValueError, match="2 tensors but the PyTorch model has 1"):
        reference.check_shapes(["a", "b"], [(1,), (2,)], [(1,)], "PyTorch")
