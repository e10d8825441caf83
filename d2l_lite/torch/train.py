"""Training in PyTorch: the device, batches on it, the optimisers, CUDA graphs
and :func:`train`, the book's trainer on :func:`d2l_lite.training.fit`."""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Optional, Tuple

import torch
from torch.nn import functional as F

from .. import architecture, reference, runtime, training
from ..data import pixel_scale
from .book import GoogLeNet, train_step
from .model import _build, load_weights


def try_gpu() -> torch.device:
    """Return the GPU if there is one, else the CPU, and say which."""
    cuda = torch.cuda.is_available()
    print(runtime.device_notice("PyTorch", cuda, torch.cuda.get_device_name() if cuda else "cpu"))
    return torch.device("cuda" if cuda else "cpu")


def set_seed(seed: int) -> None:
    """Seed PyTorch's random number generators (CPU and every GPU)."""
    torch.manual_seed(seed)


def device_data(data, device: torch.device) -> Tuple[torch.Tensor, ...]:
    """Train and test images (uint8) and labels on ``device``, copied once."""
    return tuple(torch.tensor(array, dtype=dtype, device=device) for array, dtype in (
        (data.train_images, torch.uint8), (data.train_labels, torch.int64),
        (data.test_images, torch.uint8), (data.test_labels, torch.int64)))


def prepare_batch(images: torch.Tensor, index: torch.Tensor,
                  image_size: int = 96,
                  channels_last: bool = False) -> torch.Tensor:
    """``images[index]`` as a float32 ``B x 1 x S x S`` batch in [0, 1]:
    uint8 pixels divided by 255, float ones taken as they are."""
    X = images[index].unsqueeze(1).float()  # B x 1 x 28 x 28
    X = X.div_(pixel_scale(images.dtype))
    X = F.interpolate(X, size=(image_size, image_size), mode="bilinear",
                      align_corners=False, antialias=False)
    if channels_last:
        return X.contiguous(memory_format=torch.channels_last)
    return X


def make_optimizer(recipe, parameters, lr=None, cuda: bool = False):
    """The recipe's optimiser over ``parameters``, with learning rate ``lr`` (default
    ``recipe.lr``; a tensor on the GPU that a CUDA graph reads). GPU (``cuda``): fused
    kernels, and AdamW's state ``capturable``."""
    lr = recipe.lr if lr is None else lr
    fused = cuda or None  # None: PyTorch's default
    if recipe.optimizer == "sgd":  # weight_decay coupled: L2 added to the gradient
        return torch.optim.SGD(parameters, lr=lr, momentum=recipe.momentum,
                               nesterov=recipe.nesterov, weight_decay=recipe.weight_decay,
                               fused=fused)
    return torch.optim.AdamW(parameters, lr=lr, weight_decay=recipe.weight_decay,
                             fused=fused, capturable=cuda)  # decay decoupled


class GraphedStep:
    """``step(*inputs)`` recorded once as a CUDA graph and then replayed:
    one launch per training step instead of hundreds of small kernels,
    each waiting on Python.

    The first ``warmup`` calls run ``step`` eagerly on a side stream
    (cuDNN picks its kernels, the optimiser creates its state); the next
    call records the graph on copies of its inputs, and every call from
    then on copies its inputs into those and replays the graph. The
    outputs are the graph's own tensors, overwritten by the next replay.
    What the graph reads besides its inputs (weights, optimiser state, a
    learning-rate tensor) must stay where it is: change it in place.
    Without CUDA, or with ``enabled=False``, every call runs ``step``
    eagerly on the same buffers."""

    def __init__(self, step, warmup: int = 3,
                 enabled: Optional[bool] = None):
        self.step, self.warmup = step, warmup
        if enabled is None:
            enabled = torch.cuda.is_available()
        self.enabled = enabled
        self.calls, self.graph = 0, None
        self.inputs, self.outputs = None, None

    def __call__(self, *inputs):
        self.calls += 1
        if not self.enabled:
            return self.step(*inputs)
        if self.calls <= self.warmup:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side), warnings.catch_warnings():
                # a capturable optimiser warns when it steps outside a
                # graph, which is what a warm-up step is for
                warnings.filterwarnings(
                    "ignore", "This instance was constructed with "
                    "capturable=True")
                outputs = self.step(*inputs)
            torch.cuda.current_stream().wait_stream(side)
            return outputs
        if self.graph is None:
            self.inputs = [x.clone() for x in inputs]
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(graph):  # records; runs nothing
                    self.outputs = self.step(*self.inputs)
            except RuntimeError as error:  # e.g. an op that syncs the CPU
                self.enabled = False
                print(f"PyTorch: the training step could not be recorded "
                      f"as a CUDA graph, so it runs eagerly (slower, same "
                      f"numbers): {error}")
                return self.step(*inputs)
            self.graph = graph
        for static, x in zip(self.inputs, inputs):
            static.copy_(x)
        self.graph.replay()
        return self.outputs


def _placement(device, graph: Optional[bool], recipe) -> Tuple[torch.device, bool, bool]:
    """``(device, graph, bf16)`` of a run: CUDA graphs and bfloat16 need a GPU."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = device.type == "cuda"
    graph, bf16 = cuda if graph is None else graph, recipe.mixed_precision and cuda
    if graph and not cuda:
        raise ValueError("graph=True needs a CUDA device: CUDA graphs are a GPU feature; "
                         "leave graph=None to capture on a GPU and run eagerly elsewhere")
    if recipe.mixed_precision and not cuda:
        print("PyTorch on the CPU: float32 instead of bfloat16 (a GPU option here).")
    return device, graph, bf16


@contextmanager
def _cudnn_benchmark(enabled: bool):
    """cuDNN's benchmark mode set to ``enabled`` for a ``with`` block."""
    saved, torch.backends.cudnn.benchmark = torch.backends.cudnn.benchmark, enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = saved


def train(model: GoogLeNet, data, recipe=training.CLASSIC, *, spec=architecture.BOOK,
          device=None, image_size: Optional[int] = None, graph: Optional[bool] = None,
          cudnn_benchmark: bool = True, plot: bool = True,
          progress: bool = True) -> training.History:
    """Train ``model`` (of ``spec``) from :func:`d2l_lite.reference.xavier_weights`
    with :func:`train_step` on :func:`d2l_lite.training.fit`. On a GPU each step is
    one CUDA graph (:class:`GraphedStep`; ``graph=False`` runs it eagerly) and
    ``mixed_precision`` means bfloat16 autocast with channels-last tensors.
    ``cudnn_benchmark``: cuDNN times several algorithms for each convolution shape
    the first time it meets it and keeps the fastest (else its heuristics choose)."""
    training.check_recipe(recipe)
    device, graph, bf16 = _placement(device, graph, recipe)
    size = image_size or spec.input_size
    set_seed(recipe.seed)
    _build(model.to(device), spec)
    load_weights(model, reference.xavier_weights(spec, seed=recipe.seed))
    if bf16:
        model.to(memory_format=torch.channels_last)
    train_X, train_y, test_X, _ = device_data(data, device)
    # a graph reads the learning rate from a tensor, which the schedule changes in place
    lr = torch.tensor(recipe.lr, device=device) if graph else recipe.lr
    optimizer = make_optimizer(recipe, model.parameters(), lr, device.type == "cuda")

    def step(index):  # what the graph records: the whole training step
        optimizer.zero_grad(set_to_none=True)  # backward() then writes fresh gradients
        return train_step(model, optimizer, prepare_batch(train_X, index, size, bf16),
                          train_y[index], recipe.label_smoothing, bf16)

    graphed = GraphedStep(step, enabled=graph)

    def fit_step(index, rate):
        if graph:
            lr.fill_(rate)
        else:
            for group in optimizer.param_groups:
                group["lr"] = rate
        model.train()
        return graphed(index)

    def eval_step(index):
        model.eval()
        with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=bf16):
            return model(prepare_batch(test_X, index, size, bf16)).argmax(dim=1)

    cuda = device.type == "cuda"
    try:  # one input shape: cuDNN picks its kernels once
        with _cudnn_benchmark(cudnn_benchmark):
            return training.fit(
                "PyTorch", recipe, torch.cuda.get_device_name(device) if cuda else "cpu",
                len(train_y), data.test_labels, fit_step, eval_step,
                to_device=lambda a: torch.as_tensor(a, device=device), sync=sync_of(device),
                to_numpy=lambda t: t.cpu().numpy(), compiled=graph,
                first_calls=graphed.warmup + 2, plot=plot, progress=progress)
    finally:
        model.eval()


def sync_of(device: torch.device):
    """A function that waits for ``device`` (a no-op on the CPU)."""
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
