"""d2l_lite.tensorflow.train beyond ``tests/test_backends.py`` (which holds the
trainer to the contract every framework meets): the batches it makes, the
optimisers' arithmetic against PyTorch's, and the bfloat16 policy."""

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("keras")

import tensorflow as tf  # noqa: E402

from d2l_lite import architecture  # noqa: E402
from d2l_lite import tensorflow as d2l  # noqa: E402

SPEC = architecture.BOOK
GPU = bool(tf.config.list_physical_devices("GPU"))


@pytest.fixture(scope="module")
def tiny(fashion_mnist):
    return fashion_mnist.subset(64, 48)


def bilinear(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of N x h x w images sampling at pixel centres (PyTorch's
    align_corners=False), written out in NumPy."""
    n, h, w = images.shape

    def axis(src: int):
        x = np.maximum((np.arange(size) + 0.5) * src / size - 0.5, 0)
        lo = np.minimum(np.floor(x).astype(int), src - 1)
        return lo, np.minimum(lo + 1, src - 1), x - lo

    (y0, y1, wy), (x0, x1, wx) = axis(h), axis(w)
    rows = images[:, y0] * (1 - wy)[None, :, None] + images[:, y1] * wy[None, :, None]
    return rows[:, :, x0] * (1 - wx) + rows[:, :, x1] * wx


def test_prepare_batch_gathers_scales_and_resizes(tiny):
    images, labels, test_images, test_labels = d2l.device_data(tiny, "/CPU:0")
    assert images.dtype == tf.uint8 and tuple(images.shape) == (64, 28, 28)
    assert labels.dtype == tf.int32 and tuple(test_labels.shape) == (48,)
    index = tf.constant([5, 0, 63])
    X = d2l.prepare_batch(images, index, image_size=96)
    assert X.dtype == tf.float32 and tuple(X.shape) == (3, 96, 96, 1)
    expected = bilinear(tiny.train_images[[5, 0, 63]].astype(np.float64) / 255, 96)
    assert np.abs(X.numpy()[..., 0] - expected).max() < 1e-5  # float32 rounding


def test_adamw_is_pytorchs_adamw():
    """d2l.AdamW against torch.optim.AdamW's update written out in NumPy
    (epsilon added to the bias-corrected sqrt(v)), over steps with very
    different gradient sizes."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal(6).astype(np.float32)
    variable = tf.Variable(w)
    optimizer = d2l.AdamW(1e-3, weight_decay=0.5)
    optimizer.build([variable])

    @tf.function
    def step(grad, lr):
        optimizer.learning_rate.assign(lr)
        optimizer.apply([grad], [variable])

    m = v = np.zeros(6)
    w = w.astype(np.float64)
    (beta1, beta2), eps = (0.9, 0.999), 1e-8
    for t, (scale, lr) in enumerate([(1e-7, 1e-3), (1e-3, 2e-3), (1.0, 1.5e-3), (1e-6, 1e-3)],
                                    start=1):
        grad = (rng.standard_normal(6) * scale).astype(np.float32)
        step(tf.constant(grad), tf.constant(lr, tf.float32))
        w = w * (1 - lr * 0.5)
        m = beta1 * m + (1 - beta1) * grad
        v = beta2 * v + (1 - beta2) * grad.astype(np.float64) ** 2
        m_hat, v_hat = m / (1 - beta1 ** t), v / (1 - beta2 ** t)
        w = w - lr * m_hat / (np.sqrt(v_hat) + eps)
    assert np.abs(variable.numpy() - w).max() < 1e-6


def test_keras_adamw_takes_shorter_first_steps_on_tiny_gradients():
    """The training page's aside: Keras adds epsilon before the bias correction, so
    with the same epsilon its first step on a tiny gradient is shorter than
    PyTorch's (d2l.AdamW), while on a large gradient the two agree."""
    def first_step(optimizer, grad):
        variable = tf.Variable(np.zeros(4, np.float32))
        optimizer.apply([tf.constant(grad, tf.float32)], [variable])
        return -variable.numpy() / 1e-3  # the step, in learning rates

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


def test_sgd_weight_decay_is_coupled_l2():
    """As torch.optim.SGD: the decay joins the gradient, so momentum carries it."""
    variable = tf.Variable([1.0, -2.0])
    optimizer = d2l.SGD(0.1, momentum=0.9, nesterov=False, l2=0.5)
    optimizer.build([variable])
    buf, w = np.zeros(2), np.array([1.0, -2.0])
    for grad in ([0.1, 0.2], [-0.3, 0.0]):
        optimizer.apply([tf.constant(grad)], [variable])
        buf = 0.9 * buf + (np.array(grad) + 0.5 * w)
        w = w - 0.1 * buf
    assert np.allclose(variable.numpy(), w, atol=1e-6)


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


