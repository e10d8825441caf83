"""Data parallelism beyond the page's cells (``book.py``) and their checks
(``checks.py``): a multi-worker strategy that cannot hang, and one SGD step of a spec
on ``n`` CPU devices, run in a child process, since TensorFlow can split the CPU into
devices only before it first uses it.

One process, several devices: tf.distribute.MirroredStrategy keeps a copy of every
variable on each device, runs the step on each device's share of the batch and
all-reduces the gradients. Across machines: MultiWorkerMirroredStrategy."""

import os
import pickle
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict

import keras
import numpy as np
import tensorflow as tf

from .. import architecture, processes
from .book import parallel_step, split_batch
from .checks import mirrored_strategy
from .model import get_weights, googlenet, load_weights


_WATCHDOG = """
import os, signal, sys, time
parent, timeout_s = int(sys.argv[1]), float(sys.argv[2])
time.sleep(timeout_s)
if os.getppid() == parent:  # still waiting (else it has exited)
    sys.stderr.write(sys.argv[3] + "\\n")
    sys.stderr.flush()
    os.kill(parent, signal.SIGKILL)
"""


def multi_worker_strategy(timeout_s=120.0):
    """MultiWorkerMirroredStrategy for the cluster in TF_CONFIG, with
    every wait bounded by ``timeout_s``: if the workers have not all
    connected by then, this worker is stopped with a message that says
    what to check; a collective operation that takes longer fails."""
    processes.check_timeout(timeout_s)
    message = (
        f"multi_worker_strategy: the workers in TF_CONFIG did not all "
        f"connect within {timeout_s:g} s, so this worker was stopped. "
        f"Start every worker (same cluster, its own task index), check "
        f"each host:port is right and reachable, then start all again.")
    # TF waits for its peers in its C++ runtime, with no public timeout,
    # holding Python's GIL (no Python thread runs) and deaf to SIGTERM
    # and Ctrl-C: only another process can stop a worker stuck there.
    watchdog = subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG, str(os.getpid()),
         str(timeout_s), message])
    try:
        options = tf.distribute.experimental.CommunicationOptions(
            timeout_seconds=timeout_s)
        return tf.distribute.MultiWorkerMirroredStrategy(
            communication_options=options)
    finally:
        watchdog.kill()
        watchdog.wait()


def data_parallel_step(spec: architecture.GoogLeNetSpec, weights: Dict[str, np.ndarray],
                       X: np.ndarray, y: np.ndarray, lr: float, num_devices: int,
                       timeout_s: float = 300.0) -> Dict[str, np.ndarray]:
    """The neutral weights after one float64 SGD step of ``spec``'s model from
    ``weights`` on the NCHW batch ``(X, y)``, split over ``num_devices`` logical CPU
    devices by MirroredStrategy, in a child process stopped after ``timeout_s``.
    Checked first: ``num_devices``, the split, ``timeout_s``. The child makes as
    many logical CPU devices as asked, so there is no "more than exist" here.
    A failure in the child raises ``RuntimeError`` with its own exception."""
    processes.check_count(num_devices, what="devices")
    processes.check_labels(len(X), len(y))
    processes.check_split(len(y), num_devices, what="devices")
    processes.check_timeout(timeout_s)
    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp, "in.npz"), Path(tmp, "out.npz")
        failure = Path(tmp, "error.txt")
        np.savez(source, X=X, y=y, lr=lr, num_devices=num_devices,
                 spec=np.frombuffer(pickle.dumps(spec), np.uint8), **weights)
        root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [root, *filter(None, [os.environ.get("PYTHONPATH")])])}
        start = time.monotonic()
        try:
            result = subprocess.run(
                [sys.executable, "-c", "import sys; from d2l_lite.tensorflow import parallel;"
                 " parallel.child_step(*sys.argv[1:])", str(source), str(target),
                 str(failure)],
                capture_output=True, text=True, timeout=timeout_s, env=env)
        except subprocess.TimeoutExpired as error:  # run() has killed it
            tail = "\n".join((error.stderr or b"").decode(errors="replace")
                             .rstrip().splitlines()[-12:]) if error.stderr else ""
            raise TimeoutError(
                f"the {num_devices}-device step ran longer than timeout_s={timeout_s:g} s "
                f"and its child process was stopped after "
                f"{time.monotonic() - start:.0f} s. Give a larger timeout_s if the "
                f"step is just slow (the child imports TensorFlow and builds the "
                f"model first)." + (f" Its stderr ends:\n{tail}" if tail else "")
            ) from error
        if result.returncode:
            tail = "\n".join(result.stderr.rstrip().splitlines()[-12:])
            own = (failure.read_text().strip() if failure.exists() else
                   f"it exited with code {result.returncode} before its step could raise")
            raise RuntimeError(f"the {num_devices}-device step failed in its child "
                               f"process: {own}\nIts stderr ends:\n{tail}")
        with np.load(target) as out:
            return {name: out[name] for name in out.files}


def child_step(source: str, target: str, failure: str) -> None:
    """:func:`data_parallel_step` inside the child: make the devices, then step;
    an exception is written to ``failure`` (its type and first line) and raised."""
    try:
        _child_step(source, target)
    except BaseException as error:  # recorded for the parent, then raised again
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        first = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", first)  # TF's op name
        Path(failure).write_text(f"{type(error).__name__}: {first}")
        raise


def _child_step(source: str, target: str) -> None:
    with np.load(source) as data:
        arrays = {name: data[name] for name in data.files}
    spec, n = pickle.loads(arrays.pop("spec").tobytes()), int(arrays.pop("num_devices"))
    X, y, lr = arrays.pop("X"), arrays.pop("y"), float(arrays.pop("lr"))
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * n)
    strategy = mirrored_strategy(n)
    keras.config.set_dtype_policy("float64")
    with strategy.scope():
        model = load_weights(googlenet(spec), arrays)
        optimizer = keras.optimizers.SGD(lr)
    step = parallel_step(strategy, model, optimizer, len(y))
    X = tf.constant(X.transpose(0, 2, 3, 1), tf.float64)  # NCHW -> NHWC
    step(split_batch(strategy, X, tf.constant(y, tf.int32)))
    np.savez(target, **get_weights(model))
