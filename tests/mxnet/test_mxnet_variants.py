"""The GoogLeNet variants in d2l_lite.mxnet (run in the MXNet environment only).

    .venv-mxnet/bin/python -m pytest tests/mxnet/test_mxnet_variants.py -q -p no:cacheprovider

Conv-BN-ReLU with PyTorch's settings, the FLOPs and the loss the trainer logs
with aux heads (the trainer on the variants, and every variant's layers,
weights and logits: ``test_backends.py``).
"""


import numpy as np
import pytest

mx = pytest.importorskip("mxnet")

from mxnet import autograd, gluon, nd  # noqa: E402

from d2l_lite import architecture, training  # noqa: E402
from d2l_lite import mxnet as d2l  # noqa: E402
from d2l_lite.data import minibatch_indices  # noqa: E402

BN_AUX = architecture.googlenet_spec(batch_norm=True, aux_heads=True)


@pytest.fixture(scope="module")
def tiny(fashion_mnist):
    return fashion_mnist.subset(64, 32)


def test_batch_norm_layers():
    model = d2l.googlenet(BN_AUX)
    conv, bn, relu = model.stem[0][0]
    assert isinstance(conv, gluon.nn.Conv2D) and conv.bias is None  # no conv bias
    assert isinstance(bn, gluon.nn.BatchNorm) and isinstance(relu, gluon.nn.Activation)
    assert bn._kwargs["eps"] == architecture.BN_EPS  # Gluon keeps them only there
    assert bn._kwargs["momentum"] == pytest.approx(1 - architecture.BN_MOMENTUM)
    # Running statistics are state: not trained (their values: test_backends.py)
    stats = {name: p for name, p in model.collect_params().items() if "running" in name}
    assert stats and all(p.grad_req == "null" for p in stats.values())


def test_count_flops_leaves_out_aux_heads():
    spec = architecture.VARIANTS["aux heads"]
    model = d2l.googlenet(spec)
    assert d2l.count_flops(model, (1, 1, 96, 96)) == d2l.expected_flops(spec)


def _check_history(history, recipe):
    training.check_complete(history, recipe)
    assert all(0 <= e.train_acc <= 1 and 0 <= e.test_acc <= 1 for e in history.epochs)


def test_train_logs_the_main_head_loss(tiny):
    """lr 0: the weights stay put, so the logged loss can be recomputed. It is
    the main head's cross-entropy alone (the aux heads' losses are only trained on)."""
    model = d2l.googlenet(BN_AUX)
    recipe = training.CLASSIC.with_(lr=0.0, num_epochs=1, batch_size=16, seed=4)
    history = d2l.train(model, tiny, recipe, spec=BN_AUX, plot=False, progress=False)
    _check_history(history, recipe)
    images = nd.array(tiny.train_images, dtype="uint8")
    total = 0.0
    for index in minibatch_indices(64, 16, shuffle=True, seed=4, epoch=0, drop_last=True):
        X = d2l.prepare_batch(images, nd.array(index, dtype="int32"), image_size=96)
        with autograd.train_mode():  # batch statistics, as in the training step
            main, aux = model(X)
        assert len(aux) == 2
        logp = main.log_softmax(axis=1).asnumpy()
        total += -logp[np.arange(16), tiny.train_labels[index]].sum()
    # rel 1e-5: the same float32 log-softmax, summed in another order over 64
    # images (a few float32 roundings of ~6e-8); an aux head's loss added in
    # would move it by more than a tenth
    assert history.epochs[0].train_loss == pytest.approx(total / 64, rel=1e-5)
