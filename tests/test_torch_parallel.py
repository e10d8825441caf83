"""Data parallelism with DistributedDataParallel (the parallel chapter) beyond
``tests/test_backends.py`` (which holds two processes to the one-device step):
synchronised BatchNorm takes the one-device step, per-process BatchNorm does
not. Failures: ``tests/test_parallel_faults.py``. 32x32 images keep it short."""

import numpy as np
import pytest

import torch  # noqa: E402  (in .venv; a broken install must fail, not skip)

from d2l_lite import architecture, reference  # noqa: E402
from d2l_lite import torch as d2l  # noqa: E402

IMAGE_SIZE = 32
LR = 0.01
# In float64 the steps differ only by the order of additions (each ~1e-16
# relative), which over a network's depth stays orders of magnitude under 1e-9
# of the update, while per-process BatchNorm takes a different step, off by a
# good fraction of the update itself.
EXACT = 1e-9     # of the largest update: float64's agreement
DIFFERENT = 0.1  # of the largest update: a step that is not the same step

pytestmark = [pytest.mark.usefixtures("torch_one_thread"), pytest.mark.slow]


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


def two_process_step(spec, images, labels, sync_bn):
    job = d2l.DataParallelJob(spec, reference.xavier_weights(spec, 0), images, labels,
                              [np.arange(16)], lr=LR, sync_bn=sync_bn,
                              image_size=IMAGE_SIZE, timeout_s=60, dtype="float64")
    ranks = d2l.spawn(d2l.ddp_worker, 2, job, timeout_s=120)
    assert [r["device"] for r in ranks] == ["cpu", "cpu"]
    assert all(len(r["losses"]) == 1 and np.isfinite(r["losses"][0]) for r in ranks)
    assert max_difference(ranks[0]["weights"], ranks[1]["weights"]) == 0
    return ranks[0]["weights"]


def max_difference(a, b):
    return max((a[name] - b[name]).abs().max().item() for name in a)


def test_synchronised_batchnorm_matches_one_device_and_local_does_not(fashion_mnist):
    tiny = fashion_mnist.subset(16, 1)
    batch = tiny.train_images.copy(), tiny.train_labels.astype(np.int64)
    spec = architecture.VARIANTS["batch norm"]
    after, update = one_device_step(spec, *batch)
    assert max_difference(two_process_step(spec, *batch, True), after) < EXACT * update
    assert max_difference(two_process_step(spec, *batch, False), after) > DIFFERENT * update


def test_fewer_gpus_than_processes_runs_every_process_on_the_cpu(monkeypatch, capsys):
    """One GPU and two processes (Colab's runtime): not a refusal, the CPU, said
    once. The processes themselves see this machine's devices."""
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    results = d2l.spawn(d2l.hello_worker, 2, timeout_s=120)
    assert "2 processes, 1 GPU(s) here: every process runs on the CPU" in \
        capsys.readouterr().out
    assert [r["sum"] for r in results] == [3.0, 3.0]
