"""GoogLeNet in PyTorch (``from d2l_lite import torch as d2l``): first the
code the chapters save here (d2l's ``#@save``), then the helpers for the checks
and experiments. PyTorch's layouts (NCHW, OIHW, dense ``(out, in)``) are the
canonical ones: nothing is transposed here."""

from __future__ import annotations

import os
import socket
import tempfile
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.flop_counter import FlopCounterMode

from . import architecture, counting, processes, reference, runtime, tables, training


def try_gpu() -> torch.device:
    """Return the GPU if there is one, else the CPU, and say which."""
    cuda = torch.cuda.is_available()
    print(runtime.device_notice("PyTorch", cuda, torch.cuda.get_device_name() if cuda else "cpu"))
    return torch.device("cuda" if cuda else "cpu")


def set_seed(seed: int) -> None:
    """Seed PyTorch's random number generators (CPU and every GPU)."""
    torch.manual_seed(seed)


# The Inception chapter ------------------------------------------------------------


def conv_relu(channels, kernel_size, stride=1, padding=0):
    """A convolution and its ReLU, GoogLeNet's building brick."""
    return nn.Sequential(
        nn.LazyConv2d(channels, kernel_size, stride, padding), nn.ReLU())


class Inception(nn.Module):
    """Four branches on the same input, concatenated on channels; the
    widths are the columns of the paper's Table 1."""
    def __init__(self, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj,
                 conv=conv_relu):
        super().__init__()
        self.branch1 = conv(ch1x1, 1)
        self.branch2 = nn.Sequential(conv(ch3x3red, 1),
                                     conv(ch3x3, 3, padding=1))
        self.branch3 = nn.Sequential(conv(ch5x5red, 1),
                                     conv(ch5x5, 5, padding=2))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1),
                                     conv(pool_proj, 1))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x),
                          self.branch3(x), self.branch4(x)], dim=1)


# The GoogLeNet chapter --------------------------------------------------------------


def max_pool():
    """The 3x3 max pool, stride 2, that halves the map between stages."""
    return nn.MaxPool2d(3, stride=2, padding=1)


class GoogLeNet(nn.Module):
    """The stem (b1, b2), the body (b3, b4, b5) and the head."""
    def __init__(self, num_classes=10, conv=conv_relu, block=Inception):
        super().__init__()
        self.conv, self.block = conv, block
        self.stem = nn.Sequential(OrderedDict(b1=self.b1(), b2=self.b2()))
        self.body = nn.Sequential(OrderedDict(
            b3=self.b3(), b4=self.b4(), b5=self.b5()))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d((1, 1)),
                                  nn.Flatten(), nn.LazyLinear(num_classes))

    def b1(self):  # N x 1 x 96 x 96 -> N x 64 x 24 x 24
        return nn.Sequential(self.conv(64, 7, stride=2, padding=3),
                             max_pool())

    def b2(self):  # -> N x 192 x 12 x 12
        return nn.Sequential(self.conv(64, 1),
                             self.conv(192, 3, padding=1), max_pool())

    def b3(self):  # -> N x 480 x 6 x 6
        c, block = self.conv, self.block
        return nn.Sequential(block(64, 96, 128, 16, 32, 32, c),
                             block(128, 128, 192, 32, 96, 64, c),
                             max_pool())

    def b4(self):  # -> N x 832 x 3 x 3
        c, block = self.conv, self.block
        return nn.Sequential(block(192, 96, 208, 16, 48, 64, c),
                             block(160, 112, 224, 24, 64, 64, c),
                             block(128, 128, 256, 24, 64, 64, c),
                             block(112, 144, 288, 32, 64, 64, c),
                             block(256, 160, 320, 32, 128, 128, c),
                             max_pool())

    def b5(self):  # -> N x 1024 x 3 x 3
        c, block = self.conv, self.block
        return nn.Sequential(block(256, 160, 320, 32, 128, 128, c),
                             block(384, 192, 384, 48, 128, 128, c))

    def forward(self, x):  # head: N x 1024 x 3 x 3 -> N x 10
        return self.head(self.body(self.stem(x)))


# The FLOPs chapter -------------------------------------------------------------------


class NaiveInception(Inception):
    """The block without its 1x1 reductions: the 3x3 and 5x5
    convolutions read every input channel."""
    def __init__(self, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj,
                 conv=conv_relu):
        super().__init__(ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5,
                         pool_proj, conv)
        self.branch2 = conv(ch3x3, 3, padding=1)
        self.branch3 = conv(ch5x5, 5, padding=2)


# The variants chapter ----------------------------------------------------------------


def conv_bn_relu(channels, kernel_size, stride=1, padding=0, bias=False):
    """Conv-BN-ReLU: no conv bias, BatchNorm's shift takes its place."""
    return nn.Sequential(
        nn.LazyConv2d(channels, kernel_size, stride, padding, bias=bias),
        nn.LazyBatchNorm2d(), nn.ReLU())


class FactorizedInception(Inception):
    """Branch 3's 5x5 convolution as two 3x3 ones (Inception-v3)."""
    def __init__(self, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj,
                 conv=conv_relu):
        super().__init__(ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5,
                         pool_proj, conv)
        self.branch3 = nn.Sequential(conv(ch5x5red, 1),
                                     conv(ch5x5red, 3, padding=1),
                                     conv(ch5x5, 3, padding=1))


class ResidualInception(Inception):
    """The block plus a shortcut, as in ResNet: ReLU(branches(x) + a
    1x1 convolution of x to the block's width), no ReLU on the shortcut."""
    def __init__(self, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj,
                 conv=conv_relu):
        super().__init__(ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5,
                         pool_proj, conv)
        width = ch1x1 + ch3x3 + ch5x5 + pool_proj
        self.shortcut = nn.LazyConv2d(width, 1)  # linear

    def forward(self, x):
        return F.relu(super().forward(x) + self.shortcut(x))


def aux_head(num_classes, conv=conv_relu):
    """An auxiliary classifier: pool, 1x1 conv, two dense layers."""
    return nn.Sequential(nn.AvgPool2d(5, stride=3), conv(128, 1),
                         nn.Flatten(), nn.LazyLinear(1024), nn.ReLU(),
                         nn.Dropout(0.7), nn.LazyLinear(num_classes))


class GoogLeNetAux(GoogLeNet):
    """GoogLeNet with the paper's two auxiliary classifiers, which
    only run in training, after inception4a and inception4d."""
    def __init__(self, num_classes=10, conv=conv_relu, block=Inception):
        super().__init__(num_classes, conv, block)
        self.aux1 = aux_head(num_classes, conv)
        self.aux2 = aux_head(num_classes, conv)

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        b4 = self.body.b4
        x = b4[0](self.body.b3(self.stem(x)))       # inception4a
        aux1 = self.aux1(x)
        x = b4[3](b4[2](b4[1](x)))                  # 4b, 4c, 4d
        aux2 = self.aux2(x)
        x = self.body.b5(b4[5](b4[4](x)))           # 4e, pool, b5
        return self.head(x), (aux1, aux2)


class SmallStemGoogLeNet(GoogLeNet):
    """For 28x28 images: b1 is one 3x3 convolution, no max pool."""
    def b1(self):  # N x 1 x 28 x 28 -> N x 64 x 28 x 28
        return nn.Sequential(self.conv(64, 3, padding=1))


# The training chapter ----------------------------------------------------------------


def train_step(model, optimizer, X, y, label_smoothing=0.0, bf16=False):
    """One step: forward, loss, gradients, update."""
    # no cached bfloat16 weights: the step may be recorded as a CUDA graph
    with torch.autocast(X.device.type, torch.bfloat16, enabled=bf16,
                        cache_enabled=False):
        y_hat, aux = training.split_aux(model(X))
        loss = F.cross_entropy(y_hat, y, label_smoothing=label_smoothing)
        # auxiliary heads (variants chapter) add their losses x 0.3
        aux_loss = sum(
            F.cross_entropy(a, y, label_smoothing=label_smoothing)
            for a in aux)
    (loss + 0.3 * aux_loss).backward()  # gradients
    optimizer.step()                      # update
    return loss.detach(), (y_hat.argmax(dim=1) == y).sum()


# The spec meets the model ------------------------------------------------------------


def googlenet(spec: architecture.GoogLeNetSpec = architecture.BOOK) -> GoogLeNet:
    """The textbook model of ``spec``, its lazy parameters made by :func:`_build`."""
    block, net = (globals()[name]  # the same class names in every framework
                  for name in architecture.textbook_classes(spec))
    bias = spec.stages[0].layers[0].conv_bias  # conv1 as every convolution
    conv = partial(conv_bn_relu, bias=bias) if spec.batch_norm else conv_relu
    model = net(spec.num_classes, conv, block)
    if spec.head_pool == "avg7":  # the paper's 7x7 average pool
        model.head[0] = nn.AvgPool2d(7, stride=1)
    return _build(model, spec)


def _build(model: nn.Module, spec: architecture.GoogLeNetSpec) -> nn.Module:
    """Make lazy parameters with one zero batch; forget its BatchNorm statistics."""
    if any(nn.parameter.is_lazy(p) for p in model.parameters()):
        with torch.no_grad():
            model(torch.zeros(2, spec.in_channels, spec.input_size, spec.input_size,
                              device=_device(model)))
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.reset_running_stats()
    return model


def _require_built(module: nn.Module) -> None:
    if any(nn.parameter.is_lazy(p) for p in module.parameters()):
        raise ValueError(
            f"this {type(module).__name__} has lazy layers that have not seen an input "
            f"yet, so their parameters do not exist. Run one batch through it first, "
            f"e.g. block(torch.zeros(1, 192, 28, 28)) for a block that gets 192 channels.")


def count_parameters(model: nn.Module) -> int:
    """Total number of parameters of a built model (lazy layers must have seen an input)."""
    _require_built(model)
    return sum(p.numel() for p in model.parameters())


def branch_parameters(block: Inception) -> Dict[str, int]:
    """``{"branch1": n, ..., "branch4": n}`` for a built :class:`Inception`."""
    return {f"branch{i}": count_parameters(getattr(block, f"branch{i}")) for i in range(1, 5)}


def stage_rows(model: GoogLeNet, input_shape: Sequence[int]) -> List[Tuple]:
    """:func:`d2l_lite.counting.stage_rows` measured: (stage, C x H x W, parameters)."""
    X, rows = torch.zeros(tuple(input_shape), device=_device(model)), []
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for name, stage in [*model.stem.named_children(), *model.body.named_children(),
                            ("head", model.head)]:
            X = stage(X)
            rows.append((name, tuple(X.shape[1:]), count_parameters(stage)))
        if hasattr(model, "aux1"):  # GoogLeNetAux: training mode runs the heads
            model.train()
            _, aux = model(torch.zeros((2, *input_shape[1:]), device=_device(model)))
            rows += [(f"aux{i}", tuple(a.shape[1:]),
                      count_parameters(getattr(model, f"aux{i}"))) for i, a in enumerate(aux, 1)]
    model.train(was_training)
    return rows


def layer_summary(model: GoogLeNet, input_shape: Sequence[int]) -> None:
    """Print :func:`stage_rows`: stage, output shape (N x C x H x W), parameters."""
    rows = [(name, (input_shape[0], *shape), params)
            for name, shape, params in stage_rows(model, input_shape)]
    tables.print_table(("stage", "output shape", "parameters"), rows)


def load_weights(model: GoogLeNet, weights: Dict[str, np.ndarray]) -> GoogLeNet:
    """Copy canonical weights into ``model`` in creation order
    (:func:`d2l_lite.reference.ordered`), as they are; returns the model."""
    _require_built(model)
    params, state = reference.ordered(weights)
    bn_state = [t for bn in model.modules() if isinstance(bn, nn.BatchNorm2d)
                for t in (bn.running_mean, bn.running_var)]
    for arrays, tensors in ((params, list(model.parameters())), (state, bn_state)):
        reference.check_shapes([name for name, _ in arrays], [a.shape for _, a in arrays],
                               [t.shape for t in tensors], "PyTorch")
        with torch.no_grad():
            for tensor, (_, array) in zip(tensors, arrays):
                tensor.copy_(torch.as_tensor(np.asarray(array, np.float32)))
    return model


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def logits(model: nn.Module, X: np.ndarray) -> np.ndarray:
    """Float32 NumPy logits of an NCHW batch in eval mode, with IEEE float32
    convolutions (cuDNN's default TF32 would move them by about 1e-3)."""
    was_training, conv = model.training, torch.backends.cudnn.conv
    precision, conv.fp32_precision = conv.fp32_precision, "ieee"
    model.eval()
    try:
        with torch.no_grad():
            Y = model(torch.as_tensor(np.asarray(X, np.float32), device=_device(model)))
    finally:
        model.train(was_training)
        conv.fp32_precision = precision
    return Y.float().cpu().numpy()


# Training ------------------------------------------------------------------------


def device_data(data, device: torch.device) -> Tuple[torch.Tensor, ...]:
    """Train and test images (uint8) and labels on ``device``, copied once."""
    return tuple(torch.tensor(array, dtype=dtype, device=device) for array, dtype in (
        (data.train_images, torch.uint8), (data.train_labels, torch.int64),
        (data.test_images, torch.uint8), (data.test_labels, torch.int64)))


def prepare_batch(images: torch.Tensor, index: torch.Tensor, image_size: int = 96,
                  channels_last: bool = False) -> torch.Tensor:
    """``images[index]`` as a float32 ``B x 1 x S x S`` batch in [0, 1]
    (uint8 images are divided by 255, float ones taken as they are)."""
    X = images[index].unsqueeze(1).float()  # B x 1 x 28 x 28
    if images.dtype == torch.uint8:
        X = X.div_(255)
    X = F.interpolate(X, size=(image_size, image_size), mode="bilinear",
                      align_corners=False, antialias=False)
    return X.contiguous(memory_format=torch.channels_last) if channels_last else X


def _optimizer(model: nn.Module, recipe, lr):
    """The recipe's optimiser with learning rate ``lr`` (a float, or a tensor on the
    GPU that a CUDA graph reads). GPU: fused kernels, and AdamW's state ``capturable``."""
    cuda = _device(model).type == "cuda"
    fused = cuda or None  # None: PyTorch's default
    if recipe.optimizer == "sgd":  # weight_decay coupled: L2 added to the gradient
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=recipe.momentum,
                               nesterov=recipe.nesterov, weight_decay=recipe.weight_decay,
                               fused=fused)
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=recipe.weight_decay,
                             fused=fused, capturable=cuda)  # decay decoupled


class GraphedStep:
    """``step(*inputs)`` recorded once as a CUDA graph and then replayed: one launch
    per training step instead of hundreds of small kernels, each waiting on Python.

    The first ``warmup`` calls run ``step`` eagerly on a side stream (cuDNN picks its
    kernels, the optimiser creates its state); the next call records the graph on
    copies of its inputs, and every call from then on copies its inputs into those
    and replays the graph. The outputs are the graph's own tensors, overwritten by the
    next replay. What the graph reads besides its inputs (weights, optimiser state, a
    learning-rate tensor) must stay where it is: change it in place. Without CUDA, or
    with ``enabled=False``, every call runs ``step`` eagerly on the same buffers."""

    def __init__(self, step, warmup: int = 3, enabled: Optional[bool] = None):
        self.step, self.warmup = step, warmup
        self.enabled = torch.cuda.is_available() if enabled is None else enabled
        self.calls, self.graph, self.inputs, self.outputs = 0, None, None, None

    def __call__(self, *inputs):
        self.calls += 1
        if not self.enabled:
            return self.step(*inputs)
        if self.calls <= self.warmup:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side), warnings.catch_warnings():
                # a capturable optimiser warns when it steps outside a graph,
                # which is what a warm-up step is for
                warnings.filterwarnings("ignore", "This instance was constructed with "
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
            except RuntimeError as error:  # e.g. an operation that syncs the CPU
                self.enabled = False
                print(f"PyTorch: the training step could not be recorded as a CUDA "
                      f"graph, so it runs eagerly (slower, same numbers): {error}")
                return self.step(*inputs)
            self.graph = graph
        for static, x in zip(self.inputs, inputs):
            static.copy_(x)
        self.graph.replay()
        return self.outputs


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
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = device.type == "cuda"
    graph, bf16 = cuda if graph is None else graph, recipe.mixed_precision and cuda
    if graph and not cuda:
        raise ValueError("graph=True needs a CUDA device: CUDA graphs are a GPU feature; "
                         "leave graph=None to capture on a GPU and run eagerly elsewhere")
    if recipe.mixed_precision and not cuda:
        print("PyTorch on the CPU: float32 instead of bfloat16 (a GPU option here).")
    size = image_size or spec.input_size
    set_seed(recipe.seed)
    _build(model.to(device), spec)
    load_weights(model, reference.xavier_weights(spec, seed=recipe.seed))
    if bf16:
        model.to(memory_format=torch.channels_last)
    train_X, train_y, test_X, _ = device_data(data, device)
    # a graph reads the learning rate from a tensor, which the schedule changes in place
    lr = torch.tensor(recipe.lr, device=device) if graph else recipe.lr
    optimizer = _optimizer(model, recipe, lr)

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

    benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = cudnn_benchmark
    try:  # one input shape: cuDNN picks its kernels once
        return training.fit(
            "PyTorch", recipe, torch.cuda.get_device_name(device) if cuda else "cpu",
            len(train_y), data.test_labels, fit_step, eval_step,
            to_device=lambda a: torch.as_tensor(a, device=device), sync=sync_of(device),
            to_numpy=lambda t: t.cpu().numpy(), compiled=graph,
            first_calls=graphed.warmup + 2, plot=plot, progress=progress)
    finally:
        torch.backends.cudnn.benchmark = benchmark
        model.eval()


def sync_of(device: torch.device):
    """A function that waits for ``device`` (a no-op on the CPU)."""
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


# FLOPs and timing ----------------------------------------------------------------


def count_flops(model_or_block: nn.Module, input_shape: Sequence[int]) -> int:
    """``FlopCounterMode``'s FLOPs of one forward pass: 2 per multiply-accumulate
    of convolutions and matrix products, nothing for the rest."""
    if len(input_shape) != 4:
        raise ValueError(f"input_shape must be N x C x H x W, e.g. (1, 192, 28, 28), "
                         f"got {tuple(input_shape)}")
    X = torch.zeros(tuple(input_shape), device=_device(model_or_block))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model_or_block(X)
    return counter.get_total_flops()


#: What :func:`count_flops` reports for one image: 2 x the analytic MACs.
expected_flops = counting.analytic_flops


def time_forward(model_or_block: nn.Module, input_shape: Sequence[int],
                 repeats: int = 10, warmup: int = 2) -> float:
    """Median seconds of an eager forward pass (eval mode, no gradients) after
    ``warmup`` passes (lazy layers, cuDNN's kernel choice, caches)."""
    device = _device(model_or_block)
    X = torch.rand(tuple(input_shape), device=device)
    sync = sync_of(device)
    was_training = model_or_block.training
    model_or_block.eval()
    try:
        with torch.no_grad():
            return training.median_seconds(lambda: model_or_block(X), repeats, warmup, sync)
    finally:
        model_or_block.train(was_training)


# Data parallelism ----------------------------------------------------------------
# One process per device, each with a copy of the model and its share of every
# batch; DistributedDataParallel averages the gradients during backward(). The
# processes are started with torch.multiprocessing, which imports the workers
# from here (a function defined in a notebook cannot be imported by them).


def process_device(rank, world_size):
    """GPU ``rank`` if there is a GPU for every process, else the CPU."""
    if torch.cuda.device_count() >= world_size:
        torch.cuda.set_device(rank)
        return torch.device("cuda", rank)
    return torch.device("cpu")


def init_process_group(rank, world_size, device, timeout_s=60.0):
    """Join the group at MASTER_ADDR:MASTER_PORT (from the environment):
    NCCL between GPUs, gloo between CPUs. ``timeout_s`` bounds the wait
    for the other processes and every collective operation."""
    try:
        dist.init_process_group(
            "nccl" if device.type == "cuda" else "gloo", rank=rank,
            world_size=world_size, timeout=timedelta(seconds=timeout_s))
    except dist.DistError as error:  # a peer never came, or port busy
        where = (f"{os.environ.get('MASTER_ADDR')}:"
                 f"{os.environ.get('MASTER_PORT')}")
        raise RuntimeError(
            f"rank {rank}: the {world_size} processes did not all meet "
            f"at {where} within {timeout_s:.0f} s. Start every process "
            f"with the same MASTER_ADDR, MASTER_PORT and WORLD_SIZE, "
            f"make sure rank 0 runs and its port is free and reachable, "
            f"then start them all again.") from error


def free_port():
    """A TCP port that is free now on this machine (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(worker, world_size, *args, timeout_s=600.0):
    """Run ``worker(rank, world_size, *args, out_dir)`` in ``world_size`` new
    processes; return what each saved as ``out_dir/rank<r>.pt``. One deadline,
    ``timeout_s``, covers their whole run. Checked before any starts: the
    number of processes (one per GPU where there are GPUs), the worker, and
    every argument with a ``check(world_size)`` method (a
    :class:`DataParallelJob`). See :func:`d2l_lite.processes.run`."""
    processes.check_count(world_size)
    gpus = torch.cuda.device_count()
    if gpus and world_size > gpus:
        raise ValueError(
            f"{world_size} processes asked for, {gpus} GPU(s) here: one process per "
            f"GPU. Ask for at most {gpus}, or hide the GPUs (CUDA_VISIBLE_DEVICES="
            f"'' before Python starts) to run every process on the CPU.")
    for arg in args:
        if hasattr(arg, "check"):
            arg.check(world_size)
    env = {"MASTER_ADDR": "127.0.0.1",  # rank 0's host: this one
           "MASTER_PORT": str(free_port())}  # where rank 0 listens
    with tempfile.TemporaryDirectory() as out_dir:
        processes.run(worker, world_size, args, timeout_s, out_dir, env)
        return [torch.load(os.path.join(out_dir, f"rank{r}.pt"))
                for r in range(world_size)]


def hello_worker(rank, world_size, out_dir):
    """Join the group, all-reduce ``rank + 1``, save what came back."""
    torch.set_num_threads(1)  # one core per process
    device = process_device(rank, world_size)
    init_process_group(rank, world_size, device)
    try:
        x = torch.tensor([rank + 1.0], device=device)
        dist.all_reduce(x)  # the sum over all processes, in place
        torch.save({"device": str(device), "backend": dist.get_backend(),
                    "threads": torch.get_num_threads(), "sum": x.item()},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@dataclass(frozen=True)
class DataParallelJob:
    """What every process does: the model (``spec``, ``weights``), the
    images (uint8, N x 28 x 28) and labels, the global batches (arrays of
    indices, shared out among the processes) and the optimiser."""
    spec: architecture.GoogLeNetSpec
    weights: dict            # name -> array, as reference.xavier_weights
    images: np.ndarray
    labels: np.ndarray
    batches: list            # of index arrays
    optimizer: str = "sgd"   # plain SGD, or "adamw" (weight decay 0.05)
    lr: float = 0.01
    sync_bn: bool = False    # BatchNorm with the global batch's statistics
    image_size: int = 96
    timeout_s: float = 60.0  # the longest wait for a peer
    dtype: str = "float32"   # "float64": exact comparisons on a CPU

    def check(self, world_size):
        """Raise ValueError, before any process starts, if the job cannot
        run as asked on ``world_size`` processes."""
        check_job(self, world_size)


def ddp_worker(rank, world_size, job, out_dir):
    """Process ``rank``: train a DDP copy of the model on its share of
    every global batch; save its weights and losses in ``out_dir``."""
    torch.set_num_threads(1)  # one core per process
    device = process_device(rank, world_size)
    processes.note(out_dir, rank, "joining the process group")
    init_process_group(rank, world_size, device, job.timeout_s)
    try:
        dtype = getattr(torch, job.dtype)
        model = load_weights(googlenet(job.spec), job.weights)
        if job.sync_bn:
            model = sync_batchnorm(model, device)
        model = DDP(model.to(device, dtype))  # rank 0's weights for all
        if job.optimizer == "sgd":
            optimizer = torch.optim.SGD(model.parameters(), lr=job.lr)
        else:
            optimizer = torch.optim.AdamW(model.parameters(), lr=job.lr,
                                          weight_decay=0.05)
        check = FiniteCheck(model, optimizer, rank, world_size)
        images = torch.as_tensor(job.images, device=device)
        labels = torch.as_tensor(job.labels, device=device)
        losses, start = [], time.perf_counter()
        for step, batch in enumerate(job.batches, 1):
            processes.note(out_dir, rank, f"step {step}")  # for a timeout
            # this process's share, as DistributedSampler deals it out:
            # images rank, rank + world_size, rank + 2 * world_size, ...
            index = torch.as_tensor(batch[rank::world_size], device=device)
            X = prepare_batch(images, index, job.image_size).to(dtype)
            optimizer.zero_grad()
            # backward() inside train_step averages the gradients
            loss, _ = train_step(model, optimizer, X, labels[index])
            losses.append(loss.item())
        weights = {name: p.detach().cpu()
                   for name, p in model.module.named_parameters()}
        torch.save({"device": str(device), "losses": losses,
                    "weights": weights, "check_seconds": check.seconds,
                    "steps_seconds": time.perf_counter() - start},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def check_job(job: DataParallelJob, world_size: int) -> None:
    """What :meth:`DataParallelJob.check` checks: every global batch splits
    into equal shares (DDP averages the processes' gradients with equal
    weights, so unequal shares would weigh images unequally), every index
    names an image, and the dtype is one the worker knows."""
    if job.dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {job.dtype!r}")
    if len(job.images) != len(job.labels):
        raise ValueError(f"{len(job.images)} images but {len(job.labels)} labels")
    for i, batch in enumerate(job.batches):
        n = len(batch)
        if n == 0 or n % world_size:
            shares = [len(batch[r::world_size]) for r in range(world_size)]
            lower, upper = n - n % world_size, n + world_size - n % world_size
            sizes = " or ".join(str(k) for k in (lower, upper) if k)
            raise ValueError(
                f"global batch {i} has {n} image{'s' * (n != 1)}, which do not "
                f"split evenly over "
                f"{world_size} processes (shares of {shares}): DDP averages the "
                f"processes' gradients with equal weights, so images in smaller "
                f"shares would count more, and the step would not be the one-device "
                f"step. Use a global batch that {world_size} divides, e.g. "
                f"{sizes} images.")
        if n and (np.min(batch) < 0 or np.max(batch) >= len(job.images)):
            raise ValueError(f"global batch {i} has indices outside 0..{len(job.images) - 1}")


class FiniteCheck:
    """Before each optimiser step, all processes agree that no process saw a
    NaN or an infinity, in its own logits or in the averaged gradient, or the
    step is refused on all of them with a ``FloatingPointError`` that names the
    processes and the step. One all-reduce of ``2 x world_size`` flags per
    step; ``seconds`` adds up what the checks took."""

    def __init__(self, model, optimizer, rank, world_size):
        self.rank, self.world_size, self.step, self.seconds = rank, world_size, 0, 0.0
        self.logits_finite = None
        model.register_forward_hook(self.see_logits)
        optimizer.register_step_pre_hook(self.before_step)

    def see_logits(self, module, inputs, output):
        logits = output[0] if isinstance(output, tuple) else output
        self.logits_finite = torch.isfinite(logits).all()

    def before_step(self, optimizer, args, kwargs):
        start, self.step = time.perf_counter(), self.step + 1
        grads = [p.grad for group in optimizer.param_groups
                 for p in group["params"] if p.grad is not None]
        size = self.world_size
        flags = torch.zeros(2 * size, device=grads[0].device)
        flags[self.rank] = (~self.logits_finite).float()
        norm = torch.nn.utils.get_total_norm(grads)
        flags[size + self.rank] = (~torch.isfinite(norm)).float()
        dist.all_reduce(flags)  # every process learns every flag
        self.seconds += time.perf_counter() - start
        logits = flags[:size].nonzero().flatten().tolist()
        if logits or flags[size:].any():
            if logits and self.rank not in logits:
                time.sleep(1)  # the process that saw it is the one reported
            where = (f"in the logits of process(es) {logits}" if logits else
                     "in the averaged gradient")
            raise FloatingPointError(
                f"step {self.step}: a NaN or an infinity {where} (of {size} "
                f"processes); the update was refused on every process, so no "
                f"weight changed. Look for NaNs in that process's share of the "
                f"batch; if the loss grew step by step before, lower the learning "
                f"rate.")


class AllReduceSum(torch.autograd.Function):
    """``dist.all_reduce`` that autograd can differentiate: the gradient
    of a sum over the processes is the sum of their gradients."""

    @staticmethod
    def forward(ctx, x):
        x = x.clone()
        dist.all_reduce(x)  # sum over all processes
        return x

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class AllReduceBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm with the statistics of the global batch: per-channel
    sums over all processes, as ``nn.SyncBatchNorm`` computes them on
    GPUs, written with ``dist.all_reduce`` for CPUs."""

    def forward(self, X):
        if not self.training:
            return super().forward(X)
        C, dims = X.shape[1], (0, 2, 3)
        n = X.new_full((1,), X.numel() // C)  # values per channel here
        total = AllReduceSum.apply(torch.cat([X.sum(dims), n]))
        N = total[C]  # values per channel in the global batch
        mean = total[:C] / N
        centered = X - mean.view(1, C, 1, 1)
        var = AllReduceSum.apply((centered * centered).sum(dims)) / N
        with torch.no_grad():  # running statistics as in BatchNorm2d
            self.num_batches_tracked += 1
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var * N / (N - 1), self.momentum)
        scale = self.weight * torch.rsqrt(var + self.eps)
        return (centered * scale.view(1, C, 1, 1)
                + self.bias.view(1, C, 1, 1))


def sync_batchnorm(model, device):
    """Every BatchNorm2d of ``model`` made to use the global batch:
    ``nn.SyncBatchNorm`` on GPUs, ``AllReduceBatchNorm2d`` on CPUs."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) is nn.BatchNorm2d:
                bn = AllReduceBatchNorm2d(
                    child.num_features, child.eps, child.momentum)
                bn.load_state_dict(child.state_dict())
                setattr(module, name, bn)
    return model
