"""The contract between MXNet's textbook code and the spec (MXNet environment only).

The twin of ``tests/test_contract.py`` for the framework that lives in its
own environment: for every variant, ``d2l.googlenet(spec)`` must match the
spec stage by stage (names, output shapes, parameters, from
``counting.stage_rows``), take the spec's canonical weights tensor by tensor
in creation order, and then compute the NumPy reference's logits.

    .venv-mxnet/bin/python -m pytest tests/mxnet/test_contract_mxnet.py -q -p no:cacheprovider
"""

import numpy as np
import pytest

pytest.importorskip("mxnet")

from d2l_lite import architecture, counting, reference  # noqa: E402
from d2l_lite import mxnet as d2l  # noqa: E402

SPECS = {**architecture.VARIANTS,
         "naive": architecture.googlenet_spec(reduce=False),
         "paper": architecture.PAPER,
         "paper bn aux": architecture.PAPER_BN_AUX}


@pytest.mark.parametrize("name", SPECS)
def test_textbook_model_equals_spec(name):
    spec = SPECS[name]
    weights = reference.random_weights(spec, seed=1)
    X = reference.random_input(spec, batch_size=2, seed=1)
    model = d2l.googlenet(spec)
    assert d2l.stage_rows(model, X.shape) == counting.stage_rows(spec)
    assert d2l.count_parameters(model) == counting.total_params(counting.count_network(spec))
    logits = d2l.logits(d2l.load_weights(model, weights), X)
    assert logits.dtype == np.float32 and logits.shape == (2, spec.num_classes)
    expected = reference.forward(spec, weights, X)
    assert np.abs(logits - expected).max() < reference.float32_tolerance(expected)


def test_known_totals():
    assert d2l.count_parameters(d2l.googlenet(architecture.BOOK)) == 5_977_530
    assert d2l.count_parameters(d2l.googlenet(architecture.PAPER)) == 6_998_552
