"""Data parallelism with DistributedDataParallel (the parallel chapter):
two gloo processes on the CPU take the one-device step, with and without
synchronised BatchNorm, and a missing or failing process ends the run with
a clear error instead of a hang. 32x32 images keep each run to seconds."""

import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from d2l_lite import architecture, reference  # noqa: E402
from d2l_lite import torch as d2l  # noqa: E402

IMAGE_SIZE = 32
LR = 0.01
# The equality claims are tested in float64, where they are exact: the steps
# differ only by the order of float64 additions (each ~1e-16 relative), which
# over a network's depth stays orders of magnitude under 1e-9 of the update,
# while per-device BatchNorm takes a different step, off by a good fraction
# of the update itself. No machine's float32 rounding enters either side.
EXACT = 1e-9     # of the largest update: float64's agreement
DIFFERENT = 0.1  # of the largest update: a step that is not the same step

pytestmark = [pytest.mark.usefixtures("torch_one_thread"), pytest.mark.slow]


@pytest.fixture(scope="module")
def batch(fashion_mnist):
    tiny = fashion_mnist.subset(16, 1)
    return tiny.train_images.copy(), tiny.train_labels.astype(np.int64)


def one_device_step(spec, images, labels):
    """The page's reference: one SGD step on all 16 images in this process, in
    float64."""
    model = d2l.load_weights(d2l.googlenet(spec), reference.xavier_weights(spec, 0))
    model.double()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    X = d2l.prepare_batch(torch.as_tensor(images), torch.arange(16), IMAGE_SIZE)
    d2l.train_step(model, optimizer, X.double(), torch.as_tensor(labels))
    update = max((LR * p.grad).abs().max().item() for p in model.parameters())
    return {n: p.detach() for n, p in model.named_parameters()}, update


def two_process_step(spec, images, labels, sync_bn=False):
    job = d2l.DataParallelJob(spec, reference.xavier_weights(spec, 0), images, labels,
                              [np.arange(16)], lr=LR, sync_bn=sync_bn,
                              image_size=IMAGE_SIZE, timeout_s=60, dtype="float64")
    ranks = d2l.spawn(d2l.ddp_worker, 2, job, timeout_s=120)
    assert [r["device"] for r in ranks] == ["cpu", "cpu"]
    assert all(len(r["losses"]) == 1 and np.isfinite(r["losses"][0]) for r in ranks)
    return ranks


def max_difference(a, b):
    return max((a[name] - b[name]).abs().max().item() for name in a)


def test_two_processes_take_the_one_device_step(batch):
    """DDP averages the two halves' gradients: the weights after the step are
    those of one step on the whole batch, the same in both processes."""
    spec = architecture.BOOK
    ranks = two_process_step(spec, *batch)
    after, update = one_device_step(spec, *batch)
    assert max_difference(ranks[0]["weights"], ranks[1]["weights"]) == 0
    assert max_difference(ranks[0]["weights"], after) < EXACT * update


def test_synchronised_batchnorm_matches_one_device_and_local_does_not(batch):
    spec = architecture.VARIANTS["batch norm"]
    after, update = one_device_step(spec, *batch)
    synced = two_process_step(spec, *batch, sync_bn=True)
    local = two_process_step(spec, *batch, sync_bn=False)
    assert max_difference(synced[0]["weights"], after) < EXACT * update
    assert max_difference(local[0]["weights"], after) > DIFFERENT * update
    for ranks in (synced, local):
        assert max_difference(ranks[0]["weights"], ranks[1]["weights"]) == 0


def test_a_missing_process_is_a_clear_error_not_a_hang(monkeypatch):
    """Rank 0 of 2 alone: it gives up after its timeout and says what to do;
    and spawn stops processes that outlive its own deadline."""
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(d2l.free_port()))
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="did not all meet .* within 2 s.*MASTER_PORT"):
        d2l.init_process_group(0, 2, torch.device("cpu"), timeout_s=2)
    assert time.monotonic() - start < 20
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="ran longer than"):
        d2l.spawn(d2l.hello_worker, 2, timeout_s=0.5)
    assert time.monotonic() - start < 20


def test_a_failing_process_stops_the_others_with_its_error(batch):
    """Rank 1's half of the batch has a label out of range: its error is the
    one reported, and rank 0, left waiting in the all-reduce, is stopped."""
    images, labels = batch
    labels = labels.copy()
    labels[1::2] = 99  # rank 1 takes every second image, from image 1
    spec = architecture.BOOK
    job = d2l.DataParallelJob(spec, reference.xavier_weights(spec, 0), images, labels,
                              [np.arange(16)], image_size=IMAGE_SIZE, timeout_s=60)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=r"process 1 of 2 failed first(.|\n)*99"):
        d2l.spawn(d2l.ddp_worker, 2, job, timeout_s=120)
    assert time.monotonic() - start < 45
