"""PyTorch behind :class:`d2l_lite.backend.Backend`: the page-level functions,
called with NCHW NumPy arrays and neutral weight names (PyTorch's layouts are
the neutral ones, so nothing is transposed)."""

from __future__ import annotations

import numpy as np
import torch

from .. import architecture
from . import book, flops, model, parallel, train


class TorchBackend:
    """The book's PyTorch code through the uniform interface."""

    name, title, parallel_dtype = "torch", "PyTorch", "float64"

    def build(self, spec):
        return model.googlenet(spec).eval()

    def count_parameters(self, net):
        return model.count_parameters(net)

    def stage_rows(self, net, spec):
        shape = (1, spec.in_channels, spec.input_size, spec.input_size)
        return [(name, tuple(out), params)
                for name, out, params in model.stage_rows(net, shape)]

    tensor_names = staticmethod(model.tensor_names)
    load_weights = staticmethod(model.load_weights)
    get_weights = staticmethod(model.get_weights)
    logits = staticmethod(model.logits)

    def count_flops(self, net, spec):
        return flops.count_flops(net, (1, spec.in_channels, spec.input_size, spec.input_size))

    def prepare_batch(self, images, image_size):
        images = torch.as_tensor(images)
        return train.prepare_batch(images, torch.arange(len(images)), image_size).numpy()

    def optimizer_steps(self, recipe, weights, grads, rates):
        w = torch.nn.Parameter(torch.tensor(weights))
        optimizer = train.make_optimizer(recipe, [w])
        for grad, rate in zip(grads, rates):
            optimizer.param_groups[0]["lr"] = rate  # as the trainer's schedule sets it
            w.grad = torch.tensor(grad)
            optimizer.step()
        return w.detach().numpy()

    def train_step(self, net, X, y, lr):
        """One plain SGD step with the page's :func:`~.book.train_step`."""
        device, was_training = model._device(net), net.training
        optimizer = torch.optim.SGD(net.parameters(), lr=lr)
        optimizer.zero_grad()
        net.train()
        X = torch.as_tensor(X, dtype=torch.float32, device=device)
        y = torch.as_tensor(y, dtype=torch.int64, device=device)
        loss, _ = book.train_step(net, optimizer, X, y)
        net.train(was_training)
        return float(loss)

    def train(self, net, data, recipe, **options):
        options.setdefault("spec", model.spec_of(net))
        return train.train(net, data, recipe, **options)

    def data_parallel_step(self, spec: architecture.GoogLeNetSpec, weights, X, y, lr,
                           num_devices):
        """The page's :func:`~.parallel.ddp_worker` on ``num_devices`` CPU processes
        in float64, one global batch; the parameters after the step (the worker
        saves no BatchNorm statistics)."""
        if X.shape[1] != 1:
            raise ValueError(f"the page's worker takes one-channel images, got "
                             f"{X.shape[1]} channels")
        # the worker resizes its images to image_size: bilinear to the same size
        # (align_corners=False) weighs each pixel by 1, so they arrive unchanged
        job = parallel.DataParallelJob(
            spec, weights, np.ascontiguousarray(X[:, 0]), np.asarray(y, np.int64),
            [np.arange(len(X))], lr=lr, image_size=spec.input_size, dtype="float64")
        ranks = parallel.spawn(parallel.ddp_worker, num_devices, job, timeout_s=300)
        keys = {key: name for name, key in model.tensor_names(model.googlenet(spec)).items()}
        return {keys[key]: tensor.numpy() for key, tensor in ranks[0]["weights"].items()}


BACKEND = TorchBackend()
