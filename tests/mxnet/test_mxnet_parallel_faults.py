"""Fault injection for MXNet's data parallelism (d2l_lite.mxnet.parallel, run in the
MXNet environment only): every mistake a reader can plausibly make with the page's
entry points (``train_step_parallel``, ``wait_for_devices``, ``dist_kvstore``) ends in
an error that says what happened and what to do, within ``faults.BOUND_S``, never in a
hang or in a silently wrong step. pytest-timeout turns a hang into a failure.

    .venv-mxnet/bin/python -m pytest tests/mxnet/test_mxnet_parallel_faults.py -q \\
        -p no:cacheprovider

What can hang for good (a SyncBatchNorm layer waiting for a device, a worker waiting
for its scheduler) runs in a fresh Python: a stuck MXNet engine cannot be cancelled
(see ``_finish_within``), and the process must end by itself.

Which of the issue's classic faults do not apply to MXNet, and why. Gluon drives all
the devices of a machine from one Python process (one engine thread per device
queue), so there are no worker processes:
 * "a process raises": nothing runs elsewhere; an operator that fails on a device
   raises ``MXNetError`` in the reader's own process at the next wait, in MXNet's
   words, with nothing to gather from other processes.
 * "a process is killed": there is no other process on one machine; in a dist_sync
   job a scheduler, server or worker that stops leaves the others waiting, which is
   the deadline of ``dist_kvstore`` (a scheduler that never answers) and of
   ``wait_for_devices`` in every step.
 * "a process stalls": a device whose queued work never finishes is the deadline test
   (a SyncBatchNorm layer whose peer device never runs).
 * "a port in use": one machine needs no port; in a dist_sync job only the scheduler
   binds one (on ``import mxnet``, not through d2l_lite), and a worker pointed at a
   port where no scheduler of its job answers is the no-scheduler test.
 * "a worker defined in __main__": nothing is pickled or imported by a new process;
   the step runs whatever the notebook defined.
"""

import builtins
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

mx = pytest.importorskip("mxnet")

from mxnet import gluon, nd  # noqa: E402

from d2l_lite import architecture, reference  # noqa: E402
from d2l_lite import mxnet as d2l  # noqa: E402

import faults  # noqa: E402  (tests/, on the path by conftest.py)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
TWO = [mx.cpu(0), mx.cpu(1)]
LOSS = gluon.loss.SoftmaxCrossEntropyLoss()


def timed(call, error, match, fault=""):
    return faults.timed(call, error, match, "MXNet", fault)


@pytest.fixture(scope="module")
def batch(fashion_mnist):
    """The page's global batch: the first 16 training images, 96 x 96, and labels."""
    images = nd.array(fashion_mnist.train_images[:16], dtype="uint8")
    return (d2l.prepare_batch(images, nd.arange(16, dtype="int32")),
            nd.array(fashion_mnist.train_labels[:16]))


def fresh(ctxs=TWO):
    """The book's GoogLeNet with the page's weights on ``ctxs``, and its SGD trainer."""
    model = d2l.googlenet(architecture.BOOK)
    model.collect_params().reset_ctx(ctxs)
    d2l.load_weights(model, reference.xavier_weights(architecture.BOOK, seed=0))
    trainer = gluon.Trainer(model.collect_params(), "sgd", {"learning_rate": 0.01},
                            kvstore="device")
    return model, trainer


def weights_on(model, ctx):
    return [p.data(ctx).asnumpy() for p in model.collect_params().values()
            if p.grad_req != "null"]


def same(a, b):
    return all(np.array_equal(p, q) for p, q in zip(a, b))


def in_fresh_python(code, env=None, timeout=90):
    """Run ``code`` in a fresh Python of this environment, which must end by itself
    with exit status 1; raise its last exception again here, with its type and its
    whole message (the part of stderr from the last ``SomeError: `` line on)."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                            env={**os.environ, **(env or {})}, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 1, (result.returncode, result.stderr[-3000:])
    starts = list(re.finditer(r"^(\w+Error): ", result.stderr, re.MULTILINE))
    assert starts, result.stderr[-3000:]
    last = starts[-1]
    raise getattr(builtins, last.group(1))(result.stderr[last.end():].strip())


# Devices ---------------------------------------------------------------------------

def test_no_devices(batch):
    model, trainer = fresh()
    timed(lambda: d2l.train_step_parallel(model, trainer, LOSS, *batch, []), ValueError,
          r"the number of devices must be a whole number >= 1, got 0", "0 devices")


def test_a_gpu_that_does_not_exist(batch):
    model, trainer = fresh()
    missing = mx.gpu(mx.context.num_gpus())  # gpu(0) here: this machine has none
    message, _ = timed(
        lambda: d2l.train_step_parallel(model, trainer, LOSS, *batch, [missing]),
        ValueError, rf"the device gpu\({missing.device_id}\) does not exist: this "
                    rf"machine has", "a GPU that does not exist")
    if not mx.context.num_gpus():
        assert "no GPU: use CPU contexts, e.g. [mx.cpu(0), mx.cpu(1)]" in message


def test_devices_that_are_no_list_of_distinct_devices(batch):
    model, trainer = fresh()
    timed(lambda: d2l.train_step_parallel(model, trainer, LOSS, *batch, mx.cpu(0)),
          ValueError, r"ctxs must be a list of devices", "one device, not a list")
    timed(lambda: d2l.train_step_parallel(model, trainer, LOSS, *batch,
                                          [mx.cpu(0), mx.cpu(0)]),
          ValueError, r"name a device more than once", "a device listed twice")


# The batch and the other arguments ---------------------------------------------------

@pytest.mark.parametrize("size, ndev, shares", [(16, 3, [6, 5, 5]), (15, 2, [8, 7]),
                                                (1, 2, [1, 0])])
def test_a_batch_that_does_not_split_evenly(batch, size, ndev, shares):
    """MXNet's split_and_load refuses these too (in its own words); the step refuses
    them first, with the shares and the batch sizes that would work."""
    ctxs = [mx.cpu(i) for i in range(ndev)]
    model, trainer = fresh(ctxs)
    X, y = batch[0][:size], batch[1][:size]
    message, _ = timed(
        lambda: d2l.train_step_parallel(model, trainer, LOSS, X, y, ctxs), ValueError,
        rf"global batch 1 has {size} images?, which do(es)? not split evenly over "
        rf"{ndev} devices \(shares of {re.escape(str(shares))}\)",
        f"a batch of {size} on {ndev} devices")
    assert "Use a global batch that" in message
    assert trainer.optimizer.num_update == 0


def test_other_arguments_that_cannot_be(batch):
    model, trainer = fresh()
    X, y = batch
    step = d2l.train_step_parallel
    timed(lambda: step(model, trainer, LOSS, X, y[:8], TWO), ValueError,
          r"the batch has 16 images but 8 labels", "fewer labels than images")
    for workers in (0, 0.5, True):
        timed(lambda: step(model, trainer, LOSS, X, y, TWO, num_workers=workers),
              ValueError, r"the number of workers must be a whole number >= 1",
              f"num_workers={workers!r}")
    timed(lambda: step(model, trainer, LOSS, X, y, TWO, timeout_s=0), ValueError,
          r"timeout_s must be a number of seconds > 0", "timeout_s=0")
    # A zero deadline would otherwise end the process at exit (see _finish_within).
    timed(lambda: d2l.wait_for_devices(0), ValueError,
          r"timeout_s must be a number of seconds > 0", "wait_for_devices(0)")


# Non-finite values -------------------------------------------------------------------

def test_a_nan_in_one_share_is_refused_on_every_device(batch):
    """Image 9 is in device 1's share. Device 1's loss stays finite (max-pooling drops
    NaNs) while its gradient is NaN: the step is refused before trainer.step, no
    weight changes on either device, and the next step is step 1 again."""
    model, trainer = fresh()
    X, y = batch
    poisoned = X.copy()
    poisoned[9] = np.nan
    before = [weights_on(model, ctx) for ctx in TWO]
    message, _ = timed(
        lambda: d2l.train_step_parallel(model, trainer, LOSS, poisoned, y, TWO),
        FloatingPointError, r"step 1: a NaN or an infinity in the gradient of "
                            r"device\(s\) \[1\] \(of 2 devices\)", "a NaN in one share")
    assert "the update was refused on every device, so no weight changed" in message
    assert all(same(weights_on(model, ctx), old) for ctx, old in zip(TWO, before))
    assert trainer.optimizer.num_update == 0
    # The trainer and its kvstore are as before: a clean step is the page's step.
    loss = d2l.train_step_parallel(model, trainer, LOSS, X, y, TWO)
    assert 2.0 < loss < 2.6 and trainer.optimizer.num_update == 1
    after = [weights_on(model, ctx) for ctx in TWO]
    assert same(after[0], after[1]) and not same(after[0], before[0])


def test_a_nan_in_one_devices_loss_names_the_loss_and_the_step(batch):
    """After one good step, a loss that is NaN on device 1 only: "step 2", "loss"."""
    model, trainer = fresh()
    X, y = batch
    d2l.train_step_parallel(model, trainer, LOSS, X, y, TWO)
    before = [weights_on(model, ctx) for ctx in TWO]

    def nan_on_device_1(y_hat, y):
        return LOSS(y_hat, y) * (np.nan if y_hat.context == mx.cpu(1) else 1.0)

    timed(lambda: d2l.train_step_parallel(model, trainer, nan_on_device_1, X, y, TWO),
          FloatingPointError, r"step 2: a NaN or an infinity in the loss of "
                              r"device\(s\) \[1\]", "a NaN in one device's loss")
    assert all(same(weights_on(model, ctx), old) for ctx, old in zip(TWO, before))


def test_an_infinite_gradient_on_one_device_only(batch):
    """A loss that is finite everywhere but whose gradient is infinite on device 0
    (the square root's slope at 0)."""
    model, trainer = fresh()
    X, y = batch

    def steep_on_device_0(y_hat, y):
        at_zero = 0.0 if y_hat.context == mx.cpu(0) else 1.0
        return LOSS(y_hat, y) + nd.sqrt(nd.square(y_hat).sum(axis=1) * at_zero)

    timed(lambda: d2l.train_step_parallel(model, trainer, steep_on_device_0, X, y, TWO),
          FloatingPointError, r"step 1: a NaN or an infinity in the gradient of "
                              r"device\(s\) \[0\]", "an infinite gradient on one device")


# What waits: SyncBatchNorm, the deadline, the multi-machine kvstore -------------------

SYNC_BN_NET = """
import mxnet as mx
from mxnet import autograd, gluon, nd
from mxnet.gluon import nn
from d2l_lite import mxnet as d2l
ctxs = [mx.cpu(0), mx.cpu(1)]
net = nn.HybridSequential()
net.add(d2l.conv_sync_bn_relu(4, 3, padding=1, num_devices={ndev}), nn.Dense(10))
net.initialize(ctx=ctxs)
with autograd.predict_mode():
    net(nd.zeros((1, 1, 8, 8)))
"""


def test_sync_batchnorm_built_for_another_number_of_devices():
    """num_devices=3 on 2 devices waits for ever in SyncBatchNorm: refused up front."""
    code = SYNC_BN_NET.format(ndev=3) + """
trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
d2l.train_step_parallel(net, trainer, gluon.loss.SoftmaxCrossEntropyLoss(),
                        nd.ones((4, 1, 8, 8)), nd.zeros(4), ctxs, timeout_s=5)
"""
    message, _ = timed(lambda: in_fresh_python(code, {"MXNET_CPU_TEMP_COPY": "1024"}),
                       ValueError, r"the model's SyncBatchNorm layers wait for "
                                   r"num_devices=3 devices .* split over 2",
                       "SyncBatchNorm num_devices != devices")
    assert "d2l.sync_bn_googlenet(ctxs)" in message


def test_wait_for_devices_ends_at_its_deadline():
    """A SyncBatchNorm layer whose peer device never runs (work queued by hand, past
    the step's checks): the wait ends at its deadline, and the process by itself."""
    code = SYNC_BN_NET.format(ndev=2) + """
with autograd.record():  # cpu(0) only: its peer never comes
    loss = net(nd.ones((2, 1, 8, 8), ctx=mx.cpu(0))).sum()
loss.backward()
d2l.wait_for_devices(timeout_s=3)
"""
    message, seconds = timed(
        lambda: in_fresh_python(code, {"MXNET_CPU_TEMP_COPY": "1024"}), TimeoutError,
        r"MXNet's queued work did not finish within 3 s", "a device's work never ends")
    assert "SyncBatchNorm(num_devices=N)" in message and "cannot be cancelled" in message


def test_dist_kvstore_without_the_launchers_variables(monkeypatch):
    for name in d2l.DMLC_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    timed(lambda: d2l.dist_kvstore("dist_sync", timeout_s=3), RuntimeError,
          r"needs the environment variables .* unset here: DMLC_ROLE, DMLC_PS_ROOT_URI",
          "dist_kvstore without DMLC_* variables")
    dmlc = {"DMLC_ROLE": "worker", "DMLC_PS_ROOT_URI": "127.0.0.1",
            "DMLC_PS_ROOT_PORT": "9091", "DMLC_NUM_SERVER": "1", "DMLC_NUM_WORKER": "2"}
    for name, value in {**dmlc, "DMLC_NUM_WORKER": ""}.items():
        monkeypatch.setenv(name, value)
    timed(lambda: d2l.dist_kvstore("dist_sync", timeout_s=3), RuntimeError,
          r"unset here: DMLC_NUM_WORKER$")
    monkeypatch.setenv("DMLC_NUM_WORKER", "two")
    timed(lambda: d2l.dist_kvstore("dist_sync", timeout_s=3), ValueError,
          r"DMLC_NUM_WORKER must be a whole number >= 1, got 'two'",
          "dist_kvstore with DMLC_NUM_WORKER=two")
    timed(lambda: d2l.dist_kvstore("device", timeout_s=3), ValueError,
          r"kind must name a multi-machine kvstore", "dist_kvstore('device')")


def test_dist_kvstore_whose_scheduler_never_answers():
    port = faults.free_ports(1)[0]  # nobody listens there
    dmlc = {"DMLC_ROLE": "worker", "DMLC_PS_ROOT_URI": "127.0.0.1",
            "DMLC_PS_ROOT_PORT": str(port), "DMLC_NUM_SERVER": "1",
            "DMLC_NUM_WORKER": "1"}
    code = """
from d2l_lite import mxnet as d2l
d2l.dist_kvstore("dist_sync", timeout_s=3)
"""
    message, _ = timed(lambda: in_fresh_python(code, dmlc), TimeoutError,
                       rf"Joining the dist_sync job \(scheduler at 127.0.0.1:{port}.* "
                       rf"did not finish within 3 s", "a scheduler that never answers")
    assert "the scheduler is not running" in message
