"""Fault injection for the multi-process engine (d2l_lite.processes, and
d2l_lite.torch.spawn with DistributedDataParallel on it): every mistake a reader
can plausibly make ends in an error that says what happened and what to do,
within a bound, never in a hang. pytest-timeout turns a hang into a failure."""

import os
import socket
import sys
import tempfile
import types

import numpy as np
import pytest

import fault_workers
import faults
from d2l_lite import architecture, processes, reference

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def run(worker, nprocs, *args, timeout_s=120):
    with tempfile.TemporaryDirectory() as out_dir:
        processes.run(worker, nprocs, args, timeout_s, out_dir)
        return sorted(open(os.path.join(out_dir, name)).read()
                      for name in os.listdir(out_dir) if name.endswith(".txt"))


def timed(call, error, match, fault=""):
    return faults.timed(call, error, match, "PyTorch", fault)


def test_the_engine_runs_and_collects():
    assert run(fault_workers.saving_worker, 2, "x") == ["0 x", "1 x"]


def test_a_process_that_raises_is_reported_in_its_own_words():
    message, _ = timed(lambda: run(fault_workers.raising_worker, 2),
                       RuntimeError, r"process 1 of 2 failed first", "a process raises")
    assert "KeyError" in message and "no image 99" in message


def test_a_killed_process_is_named_with_its_signal_and_stderr():
    message, _ = timed(lambda: run(fault_workers.killed_worker, 2),
                       RuntimeError, r"process 1 of 2 was killed by signal SIGKILL",
                       "a process is killed")
    assert "about to be killed" in message  # the end of its stderr


def test_stalled_processes_end_at_the_deadline_saying_what_each_did():
    message, seconds = timed(lambda: run(fault_workers.stalling_worker, 2, timeout_s=3),
                             TimeoutError, r"ran longer than 3 s", "processes stall")
    assert "process 0: waiting in an all-reduce" in message
    assert "process 1: stuck on purpose in step 3" in message


# processes.child_step: one step in one new Python process (JAX's and
# TensorFlow's data_parallel_step) -------------------------------------------------

def child_step(step, y=np.arange(4), num_devices=2, timeout_s=60):
    weights = {"fc/weight": np.ones((2, 3))}
    return processes.child_step(step, "a spec", weights, np.zeros((4, 1, 2, 2)), y, 0.5,
                                num_devices, timeout_s)


def test_a_child_step_returns_its_weights():
    assert child_step(fault_workers.halving_step)["fc/weight"].tolist() == [[0.5] * 3] * 2


@pytest.mark.parametrize("num_devices, y, match", [
    (0, np.arange(4), "number of devices must be a whole number >= 1, got 0"),
    (3, np.arange(4), "4 images, which do not split evenly over 3 devices"),
    (2, np.arange(3), "4 images but 3 labels")])
def test_a_child_step_that_cannot_work_is_refused_before_it_starts(num_devices, y, match):
    _, seconds = timed(lambda: child_step(fault_workers.halving_step, y, num_devices),
                       ValueError, match, f"child_step on {num_devices} devices")
    assert seconds < 1  # no child was started


def test_a_child_step_past_its_deadline_says_what_it_was_doing():
    message, seconds = timed(lambda: child_step(fault_workers.stalling_step, timeout_s=3),
                             TimeoutError, r"the 2-device step ran longer than timeout_s=3 "
                             r"s and its child process was stopped", "a child step stalls")
    assert "it was stuck on purpose in the all-reduce" in message
    assert "larger timeout_s" in message and seconds < 3 + 10


def test_a_failing_child_step_is_reported_in_its_own_words():
    message, _ = timed(lambda: child_step(fault_workers.raising_step), RuntimeError,
                       r"the 2-device step failed in its child process: ValueError: the "
                       r"weights lack 'fc/bias' \(spec 'a spec'\)", "a child step raises")
    assert "Traceback" in message  # the end of its stderr


@pytest.mark.parametrize("nprocs", [0, -1, 2.5, True])
def test_a_number_of_processes_that_cannot_be(nprocs):
    timed(lambda: run(fault_workers.saving_worker, nprocs, "x"), ValueError,
          r"number of processes must be a whole number >= 1", f"{nprocs!r} processes")


def test_a_worker_defined_in_a_notebook_is_recognised(monkeypatch):
    """A notebook's __main__ has no .py file; its functions cannot be imported."""
    def my_ddp(rank, world_size, out_dir):
        pass
    my_ddp.__module__, my_ddp.__qualname__ = "__main__", "my_ddp"
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    message, _ = timed(lambda: run(my_ddp, 2), ValueError, r"defined in this notebook",
                       "a worker defined in __main__")
    assert "Define the worker in a .py file" in message


def test_a_local_function_or_lambda_is_recognised():
    def local(rank, world_size, out_dir):
        pass
    timed(lambda: run(local, 2), ValueError, r"inside another function")
    timed(lambda: run(lambda *a: None, 2), ValueError, r"inside another function")


def test_arguments_that_cannot_be_sent():
    timed(lambda: run(fault_workers.saving_worker, 2, lambda: 1), ValueError,
          r"arguments cannot be sent to new processes")


# PyTorch's DDP on the engine -------------------------------------------------------

import torch  # noqa: E402  (in .venv; a broken install must fail, not skip)
from d2l_lite import torch as d2l  # noqa: E402

IMAGE_SIZE = 32


@pytest.fixture(scope="module")
def job_parts(fashion_mnist):
    tiny = fashion_mnist.subset(16, 1)
    spec = architecture.BOOK
    return spec, reference.xavier_weights(spec, 0), tiny.train_images.copy(), \
        tiny.train_labels.astype(np.int64)


def job(parts, batches, **changes):
    spec, weights, images, labels = parts
    return d2l.DataParallelJob(spec, changes.pop("weights", weights),
                               changes.pop("images", images), labels, batches,
                               image_size=IMAGE_SIZE, timeout_s=30, **changes)


@pytest.mark.parametrize("batch, world_size, shares", [
    (16, 3, "[6, 5, 5]"), (15, 2, "[8, 7]"), (1, 2, "[1, 0]")])
def test_uneven_shares_are_refused_before_any_process_starts(
        job_parts, batch, world_size, shares):
    message, seconds = timed(
        lambda: d2l.spawn(d2l.ddp_worker, world_size, job(job_parts, [np.arange(batch)])),
        ValueError, r"not split evenly", f"a batch of {batch} on {world_size}")
    assert shares in message and "equal weights" in message
    assert seconds < 5  # no process was started


def test_an_optimiser_the_worker_does_not_know_is_refused(job_parts):
    with pytest.raises(ValueError, match="optimizer must be 'sgd' or 'adamw', got 'SGD'"):
        d2l.spawn(d2l.ddp_worker, 2, job(job_parts, [np.arange(16)], optimizer="SGD"))


def test_a_nan_in_one_share_refuses_the_step_and_names_the_process(job_parts):
    images = job_parts[2].astype(np.float32) / 255
    images[3] = np.nan  # image 3 is in process 1's share (1, 3, 5, ...)
    message, _ = timed(
        lambda: d2l.spawn(d2l.ddp_worker, 2, job(job_parts, [np.arange(16)], images=images),
                          timeout_s=120),
        RuntimeError, r"FloatingPointError: step 1: a NaN or an infinity in the logits "
                      r"of process\(es\) \[1\]", "a NaN in one share")
    assert "no weight changed" in message


def test_a_port_in_use_is_named(monkeypatch):
    """Named as in use, at once (a free port where no peer comes waits out
    the timeout, and says so: a different fault)."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
        monkeypatch.setenv("MASTER_PORT", str(busy.getsockname()[1]))
        _, seconds = timed(
            lambda: d2l.init_process_group(0, 2, torch.device("cpu"), timeout_s=5),
            RuntimeError, r"port 127.0.0.1:\d+ is in use", "a port in use")
    assert seconds < 5
