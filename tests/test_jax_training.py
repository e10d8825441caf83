"""Training in d2l_lite.jax: a few steps of the real loop on tiny data.

The loop is the one the training chapter runs, on a tiny network written
like the textbook's (one convolution, a pool and the head; ``TINY`` is its
spec) at 32x32, so each test compiles its step in seconds; the book's
GoogLeNet runs through the same code in the chapter's notebook.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from d2l_lite import architecture, training
from d2l_lite import jax as d2l

TINY = architecture.GoogLeNetSpec(
    in_channels=1, input_size=32, num_classes=10, head_pool="global",
    stages=(architecture.Stage("b1", "stem", (architecture.Conv("conv1", 8, 3, padding=1),
                                              architecture.MaxPool("maxpool1"))),
            architecture.Stage("head", "head", (architecture.GlobalAvgPool(),
                                                architecture.Dense("fc", 10)))))


class Tiny(nn.Module):
    """TINY written out: conv1 and maxpool1, then the head."""
    num_classes: int = 10

    @nn.compact
    def __call__(self, x, train=False):
        x = d2l.max_pool(d2l.ConvReLU(8, 3, padding=1)(x, train))
        return nn.Dense(self.num_classes)(jnp.mean(x, axis=(1, 2)))


@pytest.fixture(scope="module")
def fashion(fashion_mnist):
    return fashion_mnist.subset(128, 40)


def test_prepare_batch_resizes_on_the_device():
    images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (3, 28, 28)), jnp.uint8)
    X = d2l.prepare_batch(images, image_size=96)
    assert X.shape == (3, 96, 96, 1) and X.dtype == jnp.float32
    assert 0 <= float(X.min()) and float(X.max()) <= 1
    # Bilinear at pixel centres: a constant image stays constant, and a 2x
    # upsampling puts 0.25/0.75 mixtures of neighbours between the pixels.
    flat = d2l.prepare_batch(jnp.full((1, 28, 28), 51, jnp.uint8), image_size=56)
    np.testing.assert_allclose(np.asarray(flat), 0.2, atol=1e-6)
    ramp = jnp.tile(jnp.arange(28, dtype=jnp.uint8)[None, :], (28, 1))[None]
    row = np.asarray(d2l.prepare_batch(ramp, image_size=56))[0, 10, 1:5, 0] * 255
    np.testing.assert_allclose(row, [0.25, 0.75, 1.25, 1.75], atol=1e-4)


def test_sgd_weight_decay_is_coupled_like_torch():
    recipe = training.Recipe("sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)
    tx = d2l.optimizer(recipe)
    w, g = np.array([1.0, -2.0]), np.array([0.5, 0.25])
    params, state = {"w": jnp.asarray(w, jnp.float32)}, None
    state = tx.init(params)
    buf = np.zeros(2)
    for _ in range(3):  # torch.optim.SGD, written out
        d = g + 0.01 * w
        buf = 0.9 * buf + d
        w = w - 0.1 * (d + 0.9 * buf)
        updates, state = tx.update({"w": jnp.asarray(g, jnp.float32)}, state, params)
        params = optax.apply_updates(params, updates)
    np.testing.assert_allclose(np.asarray(params["w"]), w, rtol=1e-6)


def test_the_step_follows_the_learning_rate_it_is_given(fashion):
    # lr 0 for the whole run: nothing moves, whatever the recipe's lr
    recipe = training.Recipe("zero", num_epochs=1, batch_size=32, lr=0.0)
    _, variables = d2l.train(Tiny(), fashion, recipe, spec=TINY, plot=False,
                             progress=False)
    _, moved = d2l.train(Tiny(), fashion, recipe.with_(lr=0.1), spec=TINY, plot=False,
                         progress=False)
    start = d2l.init(Tiny(), (1, 32, 32, 1))  # its shapes; train starts from Xavier
    assert jax.tree.all(jax.tree.map(lambda a, b: a.shape == b.shape, variables, start))
    assert jax.tree.all(jax.tree.map(np.array_equal, variables,
                                     d2l.train(Tiny(), fashion, recipe, spec=TINY,
                                               plot=False, progress=False)[1]))
    assert not jax.tree.all(jax.tree.map(np.array_equal, moved, variables))


def test_train_step_on_the_page_returns_state_loss_and_correct():
    model = Tiny()
    variables = d2l.init(model, (4, 32, 32, 1))
    state = d2l.TrainState.create(apply_fn=model.apply, params=variables["params"],
                                  tx=optax.sgd(0.1), batch_stats={}, key=jax.random.key(0))
    X, y = jnp.ones((4, 32, 32, 1)), jnp.array([0, 1, 2, 3])
    new, loss, correct = jax.jit(d2l.train_step)(state, X, y)
    assert loss.shape == () and 0 <= int(correct) <= 4 and int(new.step) == 1
    assert not jax.tree.all(jax.tree.map(jnp.array_equal, new.params, state.params))


