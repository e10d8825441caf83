"""d2l_lite.mxnet.train beyond ``tests/test_backends.py`` (which holds the
trainer to the contract every framework meets): the batches it makes and the
optimisers' arithmetic against PyTorch's. Run in the MXNet environment only::

    .venv-mxnet/bin/python -m pytest tests/mxnet/test_mxnet_training.py -q -p no:cacheprovider
"""

import numpy as np
import pytest

mx = pytest.importorskip("mxnet")

from mxnet import autograd, gluon, nd  # noqa: E402

from d2l_lite import training  # noqa: E402
from d2l_lite import mxnet as d2l  # noqa: E402

def test_prepare_batch_matches_half_pixel_bilinear():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 28, 28)).astype(np.uint8)
    X = d2l.prepare_batch(nd.array(images, dtype="uint8"), nd.array([4, 0], dtype="int32"),
                          image_size=96).asnumpy()
    assert X.shape == (2, 1, 96, 96) and X.dtype == np.float32
    # Bilinear with align_corners=False (PyTorch's rule), written out in NumPy.
    src = (np.arange(96) + 0.5) * 28 / 96 - 0.5
    src = np.clip(src, 0, None)
    lo = np.minimum(np.floor(src).astype(int), 27)
    hi = np.minimum(lo + 1, 27)
    frac = src - lo
    img = images[[4, 0]].astype(np.float64) / 255
    rows = img[:, lo] * (1 - frac)[None, :, None] + img[:, hi] * frac[None, :, None]
    expected = rows[:, :, lo] * (1 - frac) + rows[:, :, hi] * frac
    np.testing.assert_allclose(X[:, 0], expected, atol=1e-5)  # float32 rounding


def _tiny_net(seed):
    net = gluon.nn.Dense(3, in_units=4)
    net.initialize(mx.init.Uniform(0.5))
    rng = np.random.default_rng(seed)
    net.weight.set_data(nd.array(rng.standard_normal((3, 4))))
    net.bias.set_data(nd.array(rng.standard_normal(3)))
    return net


def _grads(net, rng):
    x = nd.array(rng.standard_normal((8, 4)))
    with autograd.record():
        loss = (net(x) ** 2).sum(axis=1)  # per-example loss, summed by backward
    loss.backward()
    return {"w": net.weight.grad().asnumpy() / 8, "b": net.bias.grad().asnumpy() / 8}


def _step(trainer, lr):
    trainer.set_learning_rate(lr)
    trainer.step(8)


def test_adamw_matches_torch_adamw():
    """Three steps of d2l.AdamW against torch.optim.AdamW's update, in NumPy."""
    recipe = training.FAST.with_(lr=0.05, weight_decay=0.2)
    net = _tiny_net(0)
    trainer = d2l._trainer(net, recipe)
    assert isinstance(trainer.optimizer, d2l.AdamW)
    w = {"w": net.weight.data().asnumpy().astype(np.float64),
         "b": net.bias.data().asnumpy().astype(np.float64)}
    m = {k: np.zeros_like(v) for k, v in w.items()}
    v = {k: np.zeros_like(v) for k, v in w.items()}
    rng = np.random.default_rng(1)
    for t, lr in enumerate([0.05, 0.03, 0.01], start=1):
        grads = _grads(net, rng)
        _step(trainer, lr)
        for k in w:  # torch.optim.AdamW
            w[k] *= 1 - lr * recipe.weight_decay
            m[k] = 0.9 * m[k] + 0.1 * grads[k]
            v[k] = 0.999 * v[k] + 0.001 * grads[k] ** 2
            m_hat, v_hat = m[k] / (1 - 0.9 ** t), v[k] / (1 - 0.999 ** t)
            w[k] -= lr * m_hat / (np.sqrt(v_hat) + 1e-8)
    np.testing.assert_allclose(net.weight.data().asnumpy(), w["w"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(net.bias.data().asnumpy(), w["b"], rtol=1e-5, atol=1e-6)


def test_adamw_epsilon_is_pytorchs_for_tiny_gradients():
    """With gradients near epsilon, PyTorch's bias-corrected epsilon decides the step."""
    net = _tiny_net(4)
    w0 = net.weight.data().asnumpy().astype(np.float64)
    trainer = d2l._trainer(net, training.FAST.with_(lr=0.01, weight_decay=0.0))
    with autograd.record():
        loss = (net(nd.ones((8, 4))) * 1e-9).sum(axis=1)
    loss.backward()
    g = net.weight.grad().asnumpy().astype(np.float64) / 8
    _step(trainer, 0.01)
    # Step 1 of torch.optim.AdamW: m_hat = g, v_hat = g**2.
    expected = w0 - 0.01 * g / (np.abs(g) + 1e-8)
    np.testing.assert_allclose(net.weight.data().asnumpy(), expected, rtol=0, atol=1e-6)


def test_sgd_step_couples_weight_decay_like_torch():
    recipe = training.CLASSIC.with_(lr=0.1, weight_decay=0.01)
    net = _tiny_net(2)
    trainer = d2l._trainer(net, recipe)
    w = net.weight.data().asnumpy().astype(np.float64)
    grads = _grads(net, np.random.default_rng(3))
    _step(trainer, 0.1)
    expected = w - 0.1 * (grads["w"] + 0.01 * w)  # torch.optim.SGD, weight_decay coupled
    np.testing.assert_allclose(net.weight.data().asnumpy(), expected, rtol=1e-5, atol=1e-6)


