"""Data parallelism in MXNet: the parallel page's saved cells (verbatim), the deadline on
MXNet's queued work, and the multi-machine kvstore."""

from __future__ import annotations

import atexit
import functools
import os
import sys
import threading
from typing import Sequence

import mxnet as mx
from mxnet import autograd, gluon, nd
from mxnet.gluon import nn
from mxnet.gluon.contrib.nn import SyncBatchNorm

from .. import architecture
from .book import GoogLeNet, Inception

#: The variables a ``dist_*`` kvstore reads, set by MXNet's launcher or by hand.
DMLC_VARIABLES = ("DMLC_ROLE", "DMLC_PS_ROOT_URI", "DMLC_PS_ROOT_PORT",
                  "DMLC_NUM_SERVER", "DMLC_NUM_WORKER")


def train_step_parallel(model, trainer, loss_fn, X, y, ctxs,
                        num_workers=1, timeout_s=120):
    """One data-parallel step: the batch split over ``ctxs``, forward and
    backward on each device, then ``trainer.step``: its kvstore sums the
    gradients of all devices and every copy gets the same update."""
    X_parts = gluon.utils.split_and_load(X, ctxs)  # a slice per device
    y_parts = gluon.utils.split_and_load(y, ctxs)
    with autograd.record():
        losses = [loss_fn(model(X_i), y_i)
                  for X_i, y_i in zip(X_parts, y_parts)]
    for loss in losses:  # queued at once: the devices run in parallel
        loss.backward()
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


def _exit_now() -> None:
    """Flush and end the process at once, skipping MXNet's shutdown."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


def _finish_within(work, timeout_s: float, what: str, causes: Sequence[str]):
    """``work()``'s result, or a ``TimeoutError`` naming ``causes`` past ``timeout_s``."""
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
    and, if none answers, would wait for ever; past ``timeout_s`` this raises."""
    missing = [v for v in DMLC_VARIABLES if not os.environ.get(v)]
    if missing:
        raise RuntimeError(
            f"a {kind} kvstore needs the environment variables "
            f"{', '.join(DMLC_VARIABLES)}, which MXNet's launcher (or you) "
            f"sets for every process; unset here: {', '.join(missing)}")
    where = f"{os.environ['DMLC_PS_ROOT_URI']}:{os.environ['DMLC_PS_ROOT_PORT']}"
    return _finish_within(lambda: mx.kv.create(kind), timeout_s, (
        f"Joining the {kind} job (scheduler at {where}, "
        f"{os.environ['DMLC_NUM_SERVER']} servers, "
        f"{os.environ['DMLC_NUM_WORKER']} workers)"), (
        "the scheduler is not running, or not at that address and port, "
        "or a firewall blocks the port",
        "not every server and worker started, with the same DMLC_* values"))
