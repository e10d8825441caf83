"""The JAX/Flax backend of :class:`d2l_lite.backend.Backend`: the page-level
functions behind the one contract (NCHW NumPy in, neutral weight names)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import optax

from .. import architecture, reference
from . import flops, model, parallel, train


@dataclass(eq=False)
class Model:
    """What :meth:`JaxBackend.build` returns: a Flax module holds no parameters,
    so its ``variables`` (replaced by ``load_weights``, ``train_step`` and
    ``train``) and the ``spec`` it was built from travel with it."""
    module: nn.Module
    variables: dict
    spec: architecture.GoogLeNetSpec


class JaxBackend:
    """JAX/Flax (linen, NHWC); data-parallel steps in float64 in a child process."""
    name, title, parallel_dtype = "jax", "JAX", "float64"

    def build(self, spec: architecture.GoogLeNetSpec) -> Model:
        """The textbook module with the book's start weights (no compile: ``init``'s)."""
        module = model.googlenet(spec)
        return Model(module, model.port(module, reference.xavier_weights(spec), spec,
                                        train.input_shape(spec)), spec)

    def count_parameters(self, m: Model) -> int:
        return model.count_parameters(m.variables)

    def stage_rows(self, m: Model, spec) -> List[tuple]:
        return model.stage_rows(m.module, train.input_shape(spec))

    def tensor_names(self, m: Model) -> Dict[str, str]:
        return {name: "/".join(t.path) for name, t in model.tensor_paths(m.spec).items()}

    def load_weights(self, m: Model, weights) -> Model:
        m.variables = model.port(m.module, weights, m.spec, train.input_shape(m.spec))
        return m

    def get_weights(self, m: Model) -> Dict[str, np.ndarray]:
        return model.get_weights(m.variables, m.spec)

    def logits(self, m: Model, X: np.ndarray) -> np.ndarray:
        return model.logits(m.module, X, m.variables)

    def count_flops(self, m: Model, spec) -> int:
        """2 x the jaxpr's multiply-adds (XLA's own count, ``d2l.count_flops``, adds
        biases, ReLUs and pools, and skips padding taps)."""
        return flops.matmul_flops(m.module, train.input_shape(spec))

    def prepare_batch(self, images, image_size):
        X = train.prepare_batch(jnp.asarray(images), image_size)
        return np.asarray(X).transpose(0, 3, 1, 2)  # NHWC -> NCHW

    def optimizer_steps(self, recipe, weights, grads, rates):
        tx, w = train.make_optimizer(recipe), jnp.asarray(weights)
        state = tx.init(w)
        for grad, rate in zip(grads, rates):
            state.hyperparams["learning_rate"] = rate  # as the trainer's step does
            updates, state = tx.update(jnp.asarray(grad), state, w)
            w = optax.apply_updates(w, updates)
        return np.asarray(w)

    def train_step(self, m: Model, X: np.ndarray, y: np.ndarray, lr: float) -> float:
        m.variables, loss = train.sgd_step(m.module, m.variables, X, y, lr)
        return loss

    def train(self, m: Model, data, recipe, **options):
        history, m.variables = train.train(m.module, data, recipe, spec=m.spec, **options)
        return history

    def data_parallel_step(self, spec, weights, X, y, lr, num_devices):
        return parallel.data_parallel_step(spec, weights, X, y, lr, num_devices)


BACKEND = JaxBackend()
