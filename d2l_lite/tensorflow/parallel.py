"""Data parallelism beyond the page's cells (``book.py``) and their checks
(``checks.py``): a multi-worker strategy that cannot hang, and one SGD step of a spec
on ``n`` CPU devices, run in a child process, since TensorFlow can split the CPU into
devices only before it first uses it.

One process, several devices: tf.distribute.MirroredStrategy keeps a copy of every
variable on each device, runs the step on each device's share of the batch and
all-reduces the gradients. Across machines: MultiWorkerMirroredStrategy."""

import os
import re
import subprocess
import sys
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
    devices by MirroredStrategy, in a child process (TensorFlow splits the CPU
    only before it first uses it): :func:`processes.child_step`, which says how
    it fails. The child makes as many devices as asked: none is "missing"."""
    return processes.child_step(
        child, spec, weights, X, y, lr, num_devices, timeout_s,
        slow=" (the child imports TensorFlow and builds the model first)")


def child(spec, weights, X, y, lr, num_devices) -> Dict[str, np.ndarray]:
    """:func:`data_parallel_step` in its child: make the devices, then step."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * num_devices)
    strategy = mirrored_strategy(num_devices)
    keras.config.set_dtype_policy("float64")
    with strategy.scope():
        model = load_weights(googlenet(spec), weights)
        optimizer = keras.optimizers.SGD(lr)
    step = parallel_step(strategy, model, optimizer, len(y))
    processes.child_note("running the step")
    X = tf.constant(X.transpose(0, 2, 3, 1), tf.float64)  # NCHW -> NHWC
    try:
        step(split_batch(strategy, X, tf.constant(y, tf.int32)))
    except tf.errors.OpError as error:  # raised again without the op's name in front
        message = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", error.message)
        raise type(error)(error.node_def, error.op, message) from None
    return get_weights(model)
