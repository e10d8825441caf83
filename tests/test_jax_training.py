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

from d2l_lite import architecture, reference, training
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


def test_the_step_follows_the_learning_rate_it_is_given(fashion):
    # lr 0 for the whole run: every weight is still the Xavier start
    recipe = training.Recipe("zero", num_epochs=1, batch_size=32, lr=0.0)
    _, variables = d2l.train(Tiny(), fashion, recipe, spec=TINY, plot=False,
                             progress=False)
    _, moved = d2l.train(Tiny(), fashion, recipe.with_(lr=0.1), spec=TINY, plot=False,
                         progress=False)
    start = reference.xavier_weights(TINY, seed=recipe.seed)
    for trained, same in ((variables, True), (moved, False)):
        weights = d2l.get_weights(trained, TINY)
        assert weights.keys() == start.keys()
        assert all(np.array_equal(weights[k], start[k]) for k in start) == same


def test_train_step_on_the_page_returns_state_loss_and_correct():
    model = Tiny()
    variables = d2l.init(model, (4, 32, 32, 1))
    state = d2l.TrainState.create(apply_fn=model.apply, params=variables["params"],
                                  tx=optax.sgd(0.1), batch_stats={}, key=jax.random.key(0))
    X, y = jnp.ones((4, 32, 32, 1)), jnp.array([0, 1, 2, 3])
    new, loss, correct = jax.jit(d2l.train_step)(state, X, y)
    assert loss.shape == () and 0 <= int(correct) <= 4 and int(new.step) == 1
    assert not jax.tree.all(jax.tree.map(jnp.array_equal, new.params, state.params))


