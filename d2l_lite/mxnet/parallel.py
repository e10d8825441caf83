"""Data parallelism in MXNet: the parallel page's saved cells (verbatim), the checks
that make a step fail loudly (arguments before any work, NaNs and infinities before
the update), the deadline on MXNet's queued work, and the multi-machine kvstore."""

from __future__ import annotations

import atexit
import functools
import math
import os
import statistics
import sys
import threading
import time
from typing import Sequence

import mxnet as mx
from mxnet import autograd, gluon, nd
from mxnet.gluon import nn
from mxnet.gluon.contrib.nn import SyncBatchNorm

from .. import architecture, processes
from .book import GoogLeNet, Inception

#: The variables a ``dist_*`` kvstore reads, set by MXNet's launcher or by hand.
DMLC_VARIABLES = ("DMLC_ROLE", "DMLC_PS_ROOT_URI", "DMLC_PS_ROOT_PORT",
                  "DMLC_NUM_SERVER", "DMLC_NUM_WORKER")


def train_step_parallel(model, trainer, loss_fn, X, y, ctxs,
                        num_workers=1, timeout_s=120, check=True):
    """One data-parallel step: the batch split over ``ctxs``, forward and
    backward on each device, then ``trainer.step``: its kvstore sums the
    gradients of all devices and every copy gets the same update."""
    # arguments that cannot work: a ValueError before any work is queued
    check_step(model, trainer, X, y, ctxs, num_workers, timeout_s)
    X_parts = gluon.utils.split_and_load(X, ctxs)  # a slice per device
    y_parts = gluon.utils.split_and_load(y, ctxs)
    with autograd.record():
        losses = [loss_fn(model(X_i), y_i)
                  for X_i, y_i in zip(X_parts, y_parts)]
    for loss in losses:  # queued at once: the devices run in parallel
        loss.backward()
    if check:  # a NaN or an infinity on any device: no update, an error
        check_finite(model, trainer, losses, ctxs, timeout_s)
    # kvstore: sum over devices (and workers); divide by the global batch
    trainer.step(X.shape[0] * num_workers)
    wait_for_devices(timeout_s)  # a device stuck: an error, not a hang
    return sum(loss.sum().asscalar() for loss in losses) / X.shape[0]


def conv_sync_bn_relu(channels, kernel_size, stride=1, padding=0,
                      num_devices=2):
    """Conv-BN-ReLU whose BatchNorm normalises with the statistics of
    the batch on all ``num_devices`` devices together."""
    net = nn.HybridSequential()
    net.add(nn.Conv2D(channels, kernel_size, stride, padding,
                      use_bias=False),
            SyncBatchNorm(num_devices=num_devices,
                          momentum=1 - architecture.BN_MOMENTUM,
                          epsilon=architecture.BN_EPS),
            nn.Activation("relu"))
    return net


def sync_bn_googlenet(ctxs, num_classes=10):
    """The BatchNorm GoogLeNet with SyncBatchNorm, on ``ctxs``. One zero
    batch in inference mode gives the parameters their shapes (training
    mode would wait for the other devices' statistics)."""
    conv = functools.partial(conv_sync_bn_relu, num_devices=len(ctxs))
    model = GoogLeNet(num_classes, conv, Inception)
    model.initialize(mx.init.Xavier(), ctx=ctxs)
    with autograd.predict_mode():  # running statistics: no peers
        model(nd.zeros((1, 1, 96, 96), ctx=ctxs[0]))
    return model


def step_number(trainer) -> int:
    """The number of the step ``trainer`` is about to take, from 1: its
    optimiser's count of updates (``num_update``, which learning-rate schedules
    read), plus one. A refused step is not counted. With a ``dist_*`` kvstore the
    servers update the weights and count, so on a worker this stays 1 unless the
    trainer was made with ``update_on_kvstore=False``."""
    return trainer.optimizer.num_update + 1


def check_devices(ctxs) -> None:
    """Raise ``ValueError`` unless ``ctxs`` is a list of distinct devices that
    exist: CPU contexts (any number: each is a queue of MXNet's engine, not a
    core) or GPUs that this machine has (``mx.context.num_gpus()``)."""
    if (not isinstance(ctxs, (list, tuple))
            or not all(isinstance(ctx, mx.Context) for ctx in ctxs)):
        raise ValueError(f"ctxs must be a list of devices, e.g. [mx.cpu(0), mx.cpu(1)] "
                         f"or [mx.gpu(0), mx.gpu(1)], got {ctxs!r}")
    processes.check_count(len(ctxs), what="devices")
    if len(set(ctxs)) < len(ctxs):
        raise ValueError(f"the devices {list(ctxs)} name a device more than once: each "
                         f"device holds one copy of the model, so list each once")
    gpus = [ctx for ctx in ctxs if ctx.device_type == "gpu"]
    count = mx.context.num_gpus() if gpus else 0
    if gpus and count:
        processes.check_count(len(gpus), what="GPUs", available=count)
    for ctx in gpus:
        if ctx.device_id >= count:
            exist = (f"{count} GPU(s), {[mx.gpu(i) for i in range(count)]}" if count
                     else "no GPU: use CPU contexts, e.g. [mx.cpu(0), mx.cpu(1)]")
            raise ValueError(f"the device {ctx} does not exist: this machine has "
                             f"{exist}")


def sync_batchnorm_devices(model) -> set:
    """The ``num_devices`` of every SyncBatchNorm layer in ``model``."""
    found = set()

    def see(block):
        if isinstance(block, SyncBatchNorm):
            # Gluon keeps num_devices only in the operator's arguments: no public
            # attribute or getter holds it.
            found.add(block._kwargs["ndev"])

    model.apply(see)
    return found


def check_step(model, trainer, X, y, ctxs, num_workers=1, timeout_s=120) -> None:
    """Raise ``ValueError`` for arguments of :func:`train_step_parallel` that
    cannot give the one-device step: devices that do not exist (see
    :func:`check_devices`), a batch that does not split into equal shares
    (``split_and_load`` would refuse it too, in words of its own), as many labels
    as images, ``num_workers`` a whole number >= 1, ``timeout_s`` > 0, and a model
    whose SyncBatchNorm layers wait for another number of devices than
    ``len(ctxs)`` (in every pass, for ever). Nothing is queued before these pass."""
    check_devices(ctxs)
    processes.check_count(num_workers, what="workers")
    processes.check_timeout(timeout_s)
    processes.check_labels(X.shape[0], y.shape[0])
    processes.check_split(X.shape[0], len(ctxs), what="devices",
                          index=step_number(trainer))
    waits = sync_batchnorm_devices(model) - {len(ctxs)}
    if waits:
        raise ValueError(
            f"the model's SyncBatchNorm layers wait for num_devices={min(waits)} "
            f"devices in every forward and backward pass, but the batch is split over "
            f"{len(ctxs)}: the step would wait for ever. Build the model for these "
            f"devices (d2l.sync_bn_googlenet(ctxs) sets num_devices=len(ctxs)), or "
            f"pass {min(waits)} devices.")


def device_sums(model, losses, ctxs):
    """Queue, on each device, the sum of its loss and the squared norm of its
    gradients (``nd.multi_sum_sq``, one operator for all parameters): each is
    finite exactly when the values summed are (short of an overflow past
    3e38, itself a gradient out of bounds). One pair of NDArrays per device."""
    params = [p for p in model.collect_params().values() if p.grad_req != "null"]
    sums = []
    for ctx, loss in zip(ctxs, losses):
        grads = [p.grad(ctx) for p in params]
        squares = nd.multi_sum_sq(*grads, num_arrays=len(grads))
        sums.append((loss.sum(), squares.sum()))
    return sums


def check_finite(model, trainer, losses, ctxs, timeout_s=120) -> None:
    """Before ``trainer.step``: raise ``FloatingPointError`` if any device's loss
    or gradients hold a NaN or an infinity, naming the devices and the step
    (:func:`step_number`). MXNet drives all devices from one process, so the
    host gathers every device's loss and gradient norm (the all-reduce of the
    flags is a copy of ``2 x len(ctxs)`` numbers) and tests them; ``trainer.step``
    is then not called, so no device's weights, and nothing of the trainer or its
    kvstore, change. (BatchNorm's running statistics were already updated by the
    forward pass.) The wait is under the deadline of :func:`wait_for_devices`."""
    sums = device_sums(model, losses, ctxs)
    wait_for_devices(timeout_s)
    seen = [(math.isfinite(loss.asscalar()), math.isfinite(squares.asscalar()))
            for loss, squares in sums]
    in_loss = [i for i, (loss_ok, _) in enumerate(seen) if not loss_ok]
    in_grad = [i for i, (_, grads_ok) in enumerate(seen) if not grads_ok]
    if in_loss or in_grad:
        where = (f"in the loss of device(s) {in_loss}" if in_loss else
                 f"in the gradient of device(s) {in_grad}")
        raise processes.non_finite(step_number(trainer), where, len(ctxs), "device")


def time_finite_check(model, trainer, loss_fn, X, y, ctxs, repeats=5, timeout_s=120):
    """Seconds of one :func:`train_step_parallel` step with the non-finite check
    and without it (the median of ``repeats`` steps each, taken in turn after one
    of each to warm up). Each step updates the weights, as in training."""
    times = {"with": [], "without": []}
    for run in range(repeats + 1):
        for kind in times:
            start = time.perf_counter()
            train_step_parallel(model, trainer, loss_fn, X, y, ctxs, timeout_s=timeout_s,
                                check=kind == "with")
            if run:  # the first of each warms up
                times[kind].append(time.perf_counter() - start)
    return {kind: statistics.median(seconds) for kind, seconds in times.items()}


def _exit_now() -> None:
    """Flush and end the process at once, skipping MXNet's shutdown."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


def _finish_within(work, timeout_s: float, what: str, causes: Sequence[str]):
    """``work()``'s result, or a ``TimeoutError`` naming ``causes`` past ``timeout_s``."""
    processes.check_timeout(timeout_s)
    result, errors, done = [], [], threading.Event()

    def run():
        try:
            result.append(work())
        except BaseException as error:  # raised again in the caller's thread
            errors.append(error)
        finally:
            done.set()

    threading.Thread(target=run, daemon=True).start()
    if not done.wait(timeout_s):
        # MXNet has no call to cancel queued work, and its shutdown waits for
        # all of it; atexit runs the last handler registered first.
        atexit.register(_exit_now)
        raise TimeoutError(
            f"{what} did not finish within {timeout_s:g} s. Likely causes:\n"
            + "".join(f" * {cause}\n" for cause in causes)
            + "The stuck work cannot be cancelled: fix the cause, then restart "
              "the kernel (a script stops by itself, with exit status 1).")
    if errors:
        raise errors[0]
    return result[0]


def wait_for_devices(timeout_s: float = 120) -> None:
    """``nd.waitall()`` with a deadline. MXNet queues work and runs it
    asynchronously; a collective whose peer never comes would make
    ``nd.waitall`` wait for ever, so past ``timeout_s`` this raises."""
    _finish_within(nd.waitall, timeout_s, "MXNet's queued work", (
        "SyncBatchNorm(num_devices=N) waits for N devices in every forward "
        "and backward pass: give data to exactly N devices",
        "on CPU devices, operators of all devices share MXNET_CPU_TEMP_COPY "
        "scratch buffers (4 by default) and run in the order queued, which "
        "turns SyncBatchNorm's wait into a cycle: set the variable to 1024 "
        "before mxnet is imported",
        "with a dist kvstore, a worker, server or the scheduler stopped: "
        "see its log"))


def dist_kvstore(kind: str = "dist_sync", timeout_s: float = 120) -> mx.kv.KVStore:
    """``mx.kv.create(kind)`` for a worker of a multi-machine job, with a deadline:
    the worker waits for the scheduler at ``DMLC_PS_ROOT_URI:DMLC_PS_ROOT_PORT``
    and, if none answers, would wait for ever; past ``timeout_s`` this raises.
    ``ValueError`` for a ``kind`` that is not ``dist_*``, a role other than
    ``worker`` or a port or count that is not a whole number; ``RuntimeError``
    when a variable is unset."""
    if not (isinstance(kind, str) and kind.startswith("dist_")):
        raise ValueError(f"kind must name a multi-machine kvstore, e.g. 'dist_sync' or "
                         f"'dist_async', got {kind!r}; on one machine, pass "
                         f"kvstore='device' to gluon.Trainer instead")
    missing = [v for v in DMLC_VARIABLES if not os.environ.get(v)]
    if missing:
        raise RuntimeError(
            f"a {kind} kvstore needs the environment variables "
            f"{', '.join(DMLC_VARIABLES)}, which MXNet's launcher (or you) "
            f"sets for every process; unset here: {', '.join(missing)}")
    if os.environ["DMLC_ROLE"] != "worker":
        raise ValueError(f"DMLC_ROLE is {os.environ['DMLC_ROLE']!r} here: only a worker "
                         f"joins with a kvstore; a scheduler or a server only imports "
                         f"mxnet, which serves the job (see the page's commands)")
    for name in ("DMLC_PS_ROOT_PORT", "DMLC_NUM_SERVER", "DMLC_NUM_WORKER"):
        if not os.environ[name].isdigit() or int(os.environ[name]) < 1:
            raise ValueError(f"{name} must be a whole number >= 1, got "
                             f"{os.environ[name]!r}")
    where = f"{os.environ['DMLC_PS_ROOT_URI']}:{os.environ['DMLC_PS_ROOT_PORT']}"
    return _finish_within(lambda: mx.kv.create(kind), timeout_s, (
        f"Joining the {kind} job (scheduler at {where}, "
        f"{os.environ['DMLC_NUM_SERVER']} servers, "
        f"{os.environ['DMLC_NUM_WORKER']} workers)"), (
        "the scheduler is not running, or not at that address and port, "
        "or a firewall blocks the port",
        "not every server and worker started, with the same DMLC_* values"))
