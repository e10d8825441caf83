"""Fault injection for TensorFlow's data-parallel engine (issue 24): every mistake
a reader can make with the page's entry points ends within ``faults.BOUND_S``
with an error that says what went wrong and what to do.

TensorFlow's engine is one process: ``MirroredStrategy`` drives every device of
a machine from threads of the reader's own Python process, so two of the
classic faults do not apply. There is no worker for new processes to import,
so none can be "defined in ``__main__``" (the step is an ordinary function,
defined in a notebook or anywhere); and no rank can be killed apart from the
others, since a device is not a process (killing the one process ends the
whole run, as any program). Across machines (``MultiWorkerMirroredStrategy``)
there are processes: a peer that never connects is tested here; one that dies
mid-run is tested in ``test_tensorflow_parallel.py``. The child process of
``data_parallel_step`` (the conformance suite's entry point) can fail: tested
here (a stall, and arguments refused before it starts, are
``processes.child_step``'s, tested in test_parallel_faults.py).

TensorFlow splits the CPU into logical devices only before it first uses it,
and other test modules will have used it in this process. So the faults that
need several devices run in one long-lived child Python (``SERVER``), made
once for the module with three logical CPU devices: each test sends it the
name of a fault, and it answers with the error it got, which the test raises
again here, so ``faults.timed`` times the call itself (not TensorFlow's start)."""

import json
import os
import selectors
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest

import faults

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


ROOT = Path(__file__).resolve().parents[1]
FRAMEWORK = "TensorFlow"

SERVER = textwrap.dedent('''
    import json, sys
    import numpy as np
    from d2l_lite import tensorflow as d2l
    import keras
    import tensorflow as tf
    from d2l_lite import architecture, reference

    tf.get_logger().setLevel("ERROR")
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(  # before TF sets them up
        cpu, [tf.config.LogicalDeviceConfiguration()] * 3)
    two = d2l.mirrored_strategy(d2l.two_devices())
    SPEC = architecture.googlenet_spec(input_size=32)
    rng = np.random.default_rng(0)
    X = rng.random((16, 32, 32, 1)).astype(np.float32)
    y = tf.constant(rng.integers(0, 10, 16), tf.int32)

    def googlenet_step(global_batch_size=16):
        with two.scope():
            model = d2l.load_weights(d2l.googlenet(SPEC),
                                     reference.xavier_weights(SPEC, seed=0))
            optimizer = keras.optimizers.SGD(0.01)
        return model, d2l.parallel_step(two, model, optimizer, global_batch_size)

    def small_step(global_batch_size=16, graph=False):
        """A small model (tracing GoogLeNet would take long) and its step."""
        with two.scope():
            model = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(10)])
            model.build((None, 32, 32, 1))
            optimizer = keras.optimizers.AdamW(0.01)
            optimizer.build(model.trainable_variables)
        return model, d2l.parallel_step(two, model, optimizer, global_batch_size,
                                        graph=graph)

    def copies(model):  # each device's copy of each trainable weight
        per_device = two.run(lambda: [tf.identity(w) for w in model.trainable_variables])
        return [[c.numpy() for c in two.experimental_local_results(w)]
                for w in per_device]

    def nan_step(graph):
        """A NaN in image 11, in device 1's share (images 8..15); the weights
        before and after the refused step."""
        if graph:  # AdamW: zero gradients would still move its weights
            model, step = small_step(graph=True)
            step(d2l.split_batch(two, tf.constant(X), y))  # a good step first
        else:
            model, step = googlenet_step()
        before, poisoned = copies(model), X.copy()
        poisoned[11] = np.nan
        try:
            step(d2l.split_batch(two, tf.constant(poisoned), y))
        finally:
            after = copies(model)
            facts["unchanged"] = all(np.array_equal(b[0], a[d])
                                     for b, a in zip(before, after) for d in (0, 1))
            facts["finite"] = all(np.isfinite(a[d]).all() for a in after for d in (0, 1))

    def whole_step_in_tf_function():
        model, step = small_step()
        tf.function(step, autograph=False)(d2l.split_batch(two, tf.constant(X), y))

    FAULTS = {
        "no devices": lambda: d2l.mirrored_strategy(0),
        "-1 devices": lambda: d2l.mirrored_strategy(-1),
        "an empty device list": lambda: d2l.mirrored_strategy([]),
        "more devices than exist": lambda: d2l.mirrored_strategy(4),
        "a device that does not exist": lambda: d2l.mirrored_strategy(["/CPU:0", "/GPU:3"]),
        "a device named twice": lambda: d2l.mirrored_strategy(["/CPU:0", "/cpu:0"]),
        "16 images on 3 devices": lambda: d2l.split_batch(
            d2l.mirrored_strategy(3), tf.constant(X), y),
        "15 images on 2 devices": lambda: d2l.split_batch(two, tf.constant(X[:15]), y[:15]),
        "1 image on 2 devices": lambda: d2l.split_batch(two, tf.constant(X[:1]), y[:1]),
        "a global batch size that does not match": lambda: small_step(8)[1](
            d2l.split_batch(two, tf.constant(X), y)),
        "a NaN in one device's share": lambda: nan_step(graph=False),
        "a NaN in one device's share, graph=True": lambda: nan_step(graph=True),
        "the whole step in tf.function": whole_step_in_tf_function,
    }
    print("READY", flush=True)
    for line in sys.stdin:
        facts, error = {}, None
        try:
            FAULTS[line.strip()]()
        except Exception as caught:  # sent back to the test, which raises it again
            error = caught
        print(json.dumps({"error": type(error).__name__ if error else None,
                          "message": str(error) if error else "", "facts": facts}),
              flush=True)
''')

ERRORS = {error.__name__: error for error in
          (ValueError, RuntimeError, FloatingPointError, TimeoutError)}


class Server:
    """The child Python with three logical CPU devices; ``ask(fault)`` raises,
    here, the error the fault raised there."""

    def __init__(self, log):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER], cwd=ROOT, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=log, text=True)
        self.log, self.facts = log, {}
        self.read(timeout_s=120)  # READY: TensorFlow imported, devices made

    def read(self, timeout_s):
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            if not selector.select(timeout=timeout_s):
                pytest.fail(f"the server said nothing for {timeout_s} s")
        line = self.proc.stdout.readline()
        if not line:
            self.log.seek(0)
            pytest.fail(f"the server died: {self.log.read()[-3000:]}")
        return line

    def ask(self, fault):
        self.proc.stdin.write(fault + "\n")
        self.proc.stdin.flush()
        answer = json.loads(self.read(timeout_s=faults.BOUND_S))
        self.facts = answer["facts"]
        if answer["error"]:
            raise ERRORS.get(answer["error"], RuntimeError)(answer["message"])

    def close(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def server():
    with tempfile.TemporaryFile("w+") as log:
        server = Server(log)
        try:
            yield server
        finally:
            server.close()


def fault(server, name, error, match):
    """Ask ``server`` for fault ``name``: the message, after faults.timed's checks."""
    message, _ = faults.timed(lambda: server.ask(name), error, match, FRAMEWORK, name)
    return message


@pytest.mark.parametrize("name, match", [
    ("no devices", r"number of devices must be a whole number >= 1, got 0"),
    ("-1 devices", r"number of devices must be a whole number >= 1, got -1"),
    ("an empty device list", r"number of devices must be a whole number >= 1, got 0"),
    ("more devices than exist", r"4 devices asked for, but this machine has 3: ask for at "
                                r"most 3"),
    ("a device that does not exist", r"no device '/GPU:3' here: the devices are "
                                     r"\"/CPU:0\", \"/CPU:1\", \"/CPU:2\".*no GPU"),
    ("a device named twice", r"'/cpu:0' is named twice"),
])
def test_devices_that_cannot_be_are_refused(server, name, match):
    fault(server, name, ValueError, match)


@pytest.mark.parametrize("name, match", [
    ("16 images on 3 devices", r"16 images, which do not split evenly over 3 devices "
                               r"\(shares of \[6, 5, 5\]\).*e\.g\. 15 or 18 images"),
    ("15 images on 2 devices", r"15 images, which do not split evenly over 2 devices "
                               r"\(shares of \[8, 7\]\).*e\.g\. 14 or 16 images"),
    ("1 image on 2 devices", r"1 image, which does not split evenly over 2 devices "
                             r"\(shares of \[1, 0\]\).*e\.g\. 2 images"),
])
def test_a_batch_that_does_not_split_is_refused(server, name, match):
    fault(server, name, ValueError, match)


def test_a_global_batch_size_that_does_not_match_is_refused(server):
    """Each device would divide its loss by 8 while the devices hold 16 images:
    every gradient twice too large (test_tensorflow_parallel measured it)."""
    message = fault(server, "a global batch size that does not match", ValueError,
                    r"global_batch_size=8, but it was given a batch of 16 images")
    assert "2 times" in message and "global_batch_size=16" in message


@pytest.mark.parametrize("name", ["a NaN in one device's share",
                                  "a NaN in one device's share, graph=True"])
def test_a_nan_in_one_share_refuses_the_step_on_every_device(server, name):
    """Image 11 is device 1's: the error names device 1 and the step (the first
    of the page's GoogLeNet step; the second of the graph step, after a good
    one), and neither device's weights changed."""
    step = 2 if "graph" in name else 1
    fault(server, name, FloatingPointError,
          rf"^step {step}: a NaN or an infinity in the loss of device\(s\) \[1\] "
          rf"\(of 2 devices\); the update was refused on every device")
    assert server.facts == {"unchanged": True, "finite": True}, server.facts


def test_a_tf_function_around_the_whole_step_is_refused(server):
    """The checks raise on the host after each step: a tf.function around the
    whole step would lose them, so tracing it says to use graph=True."""
    fault(server, "the whole step in tf.function", RuntimeError,
          r"tf.function around the whole step.*parallel_step\(\.\.\., graph=True\)")


@pytest.fixture(scope="module")
def batch():
    from d2l_lite import architecture, reference
    spec = architecture.googlenet_spec(input_size=32)
    rng = np.random.default_rng(0)
    return (spec, reference.xavier_weights(spec, seed=0),
            rng.random((8, 1, 32, 32)), rng.integers(0, 10, 8))


def test_data_parallel_step_whose_child_fails_reports_its_error(batch):
    """A label of 10 for 10 classes: the child's own error (TensorFlow's, raised
    in the loss, its message first, without an op name in front), not a guess
    about it."""
    from d2l_lite.tensorflow import parallel
    spec, weights, X, y = batch
    bad = y.copy()
    bad[5] = 10
    faults.timed(lambda: parallel.data_parallel_step(spec, weights, X, bad, 0.1, 2),
                 RuntimeError, r"step failed in its child process: InvalidArgumentError: "
                 r"Received a label value of 10 which is outside the valid range of \[0, 10\)",
                 FRAMEWORK, "data_parallel_step's child fails")


def test_a_peer_that_never_connects_is_stopped_by_the_watchdog():
    """Worker 0 of two, alone: multi_worker_strategy's watchdog process stops it
    after timeout_s (3 s) with its message, in a subprocess since it kills the
    worker's whole process."""
    workers = [f"localhost:{port}" for port in faults.free_ports(2)]
    config = json.dumps({"cluster": {"worker": workers},
                         "task": {"type": "worker", "index": 0}})
    code = ("from d2l_lite import tensorflow as d2l; "
            "d2l.multi_worker_strategy(timeout_s=3); print('STRATEGY MADE')")

    def worker():
        result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, text=True,
                                capture_output=True, timeout=faults.BOUND_S,
                                env={**os.environ, "TF_CONFIG": config})
        if result.returncode:
            lines = [line for line in result.stderr.splitlines()
                     if line.startswith("multi_worker_strategy:")]
            raise RuntimeError("\n".join(lines) or result.stderr[-2000:])
        assert "STRATEGY MADE" not in result.stdout

    faults.timed(worker, RuntimeError,  # within BOUND_S, which faults.timed asserts
                 r"^multi_worker_strategy: the workers in TF_CONFIG did not all connect "
                 r"within 3 s, so this worker was stopped. Start every worker",
                 FRAMEWORK, "a peer that never connects (multi-worker)")
