"""Data parallelism in PyTorch (the parallel chapter): one process per device,
each with a copy of the model and its share of every batch;
DistributedDataParallel averages the gradients during backward(). The
processes are started by :func:`spawn` on :mod:`d2l_lite.processes`, which
imports the workers from here, ``d2l_lite.torch.parallel`` (a function defined
in a notebook cannot be imported by them). The page's saved cells are here
verbatim, beside the helpers they call."""

from __future__ import annotations

import os
import socket
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from .. import architecture, processes
from .book import train_step
from .model import googlenet, load_weights
from .train import prepare_batch


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
        if "EADDRINUSE" in str(error):  # at once, not after timeout_s
            raise RuntimeError(
                f"rank {rank}: port {where} is in use (another job, or "
                f"a run still ending), so rank 0 cannot listen there. "
                f"Set MASTER_PORT to a free one (free_port() finds one)."
            ) from error
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
    ``timeout_s``, covers their whole run. One process per GPU where there is
    a GPU for each, else all on the CPU, said once (:func:`process_device`).
    Checked before any starts: the number of processes, the worker, and every
    argument with a ``check(world_size)`` method (a :class:`DataParallelJob`).
    See :func:`d2l_lite.processes.run`."""
    processes.check_count(world_size)
    gpus = torch.cuda.device_count()
    if 0 < gpus < world_size:  # process_device then puts every process on the CPU
        print(f"PyTorch: {world_size} processes, {gpus} GPU(s) here: every process "
              f"runs on the CPU (one process per GPU needs {world_size} GPUs).")
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
    names an image, and the dtype and optimiser are ones the worker knows."""
    if job.dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {job.dtype!r}")
    if job.optimizer not in ("sgd", "adamw"):
        raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {job.optimizer!r}")
    if len(job.images) != len(job.labels):
        raise ValueError(f"{len(job.images)} images but {len(job.labels)} labels")
    for i, batch in enumerate(job.batches):
        n = len(batch)
        processes.check_split(n, world_size, index=i)
        if n and (np.min(batch) < 0 or np.max(batch) >= len(job.images)):
            raise ValueError(f"global batch {i} has indices outside 0..{len(job.images) - 1}")


class FiniteCheck:
    """Before each optimiser step, all processes agree that no process saw a
    NaN or an infinity, in its own logits or in the averaged gradient, or the
    step is refused on all of them with a ``FloatingPointError`` that names the
    processes and the step. One all-reduce of ``2 x world_size`` flags per
    step; ``step`` counts the updates made (a refused step is not one, as
    in JAX's and MXNet's optimiser counts); ``seconds`` adds up what the
    checks took."""

    def __init__(self, model, optimizer, rank, world_size):
        self.rank, self.world_size, self.step, self.seconds = rank, world_size, 0, 0.0
        self.logits_finite = None
        model.register_forward_hook(self.see_logits)
        optimizer.register_step_pre_hook(self.before_step)

    def see_logits(self, module, inputs, output):
        logits = output[0] if isinstance(output, tuple) else output
        self.logits_finite = torch.isfinite(logits).all()

    def before_step(self, optimizer, args, kwargs):
        start = time.perf_counter()
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
            raise processes.non_finite(self.step + 1, where, size)
        self.step += 1


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
