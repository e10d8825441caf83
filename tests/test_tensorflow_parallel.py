"""The TensorFlow engine of the data-parallel chapter (``d2l_lite.tensorflow``,
"Data parallelism"): one step on two devices is the step on one device, with
BatchNorm only when its statistics are synchronised, and a multi-worker run
whose peer dies ends with an error instead of a hang (a peer that never comes:
``test_tensorflow_parallel_faults.py``).

Two logical CPU devices can only be made before TensorFlow sets up its
devices, which other test modules in the same process have done by then, so
every check runs in a fresh Python process, itself under a timeout. Small
images (32x32) keep each to seconds; the notebook runs the 96x96 model."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import faults

pytestmark = pytest.mark.slow  # processes or devices of their own


ROOT = Path(__file__).resolve().parents[1]
RTOL = 0.01  # of the largest update, as on the page
BN_EXACT = 1e-6  # with synchronised BatchNorm, in float64: see its test

STEPS = textwrap.dedent('''
    import json
    import numpy as np
    from d2l_lite import tensorflow as d2l
    import keras
    import tensorflow as tf
    from d2l_lite import architecture, data, reference

    tf.get_logger().setLevel("ERROR")
    SIZE, LR = 32, 0.01
    strategy = d2l.mirrored_strategy(d2l.two_devices())
    fashion = data.load_fashion_mnist(verbose=False)
    X = d2l.prepare_batch(tf.constant(fashion.train_images[:16]),
                          tf.range(16), image_size=SIZE)
    y = tf.constant(fashion.train_labels[:16], tf.int32)

    def start(spec, conv=None):
        model = d2l.GoogLeNet(spec.num_classes, conv) if conv \\
            else d2l.googlenet(spec)
        model(keras.KerasTensor((None, SIZE, SIZE, 1)))
        return d2l.load_weights(model, reference.xavier_weights(spec, 0))

    def weights(model):
        return [w.numpy() for w in model.trainable_variables]

    def difference(a, b):
        return max(float(np.abs(u - v).max()) for u, v in zip(a, b))

    def one_device(spec, dtype="float32"):
        keras.config.set_dtype_policy(dtype)
        try:
            with tf.device("/CPU:0"):
                model = start(spec)
                before = weights(model)
                d2l.train_step(model, keras.optimizers.SGD(LR),
                               tf.cast(X, dtype), y)
        finally:
            keras.config.set_dtype_policy("float32")
        return weights(model), difference(weights(model), before)

    def two_devices(spec, conv=None, global_batch_size=16, dtype="float32"):
        keras.config.set_dtype_policy(dtype)
        try:
            with strategy.scope():
                model = start(spec, conv)
                optimizer = keras.optimizers.SGD(LR)
            step = d2l.parallel_step(strategy, model, optimizer,
                                     global_batch_size)
            step(d2l.split_batch(strategy, tf.cast(X, dtype), y))
        finally:
            keras.config.set_dtype_policy("float32")
        copies = strategy.run(
            lambda: [tf.identity(w) for w in model.trainable_variables])
        copies = [[c.numpy() for c in strategy.experimental_local_results(w)]
                  for w in copies]
        return ([c[0] for c in copies],
                all(np.array_equal(c[0], k) for c in copies for k in c))

    out = {"devices": list(strategy.extended.worker_devices)}
    one, update = one_device(architecture.BOOK)
    two, equal = two_devices(architecture.BOOK)
    out["plain"] = {"update": update, "copies_equal": equal,
                    "difference": difference(two, one)}
    # each device's mean loss added up would be twice the gradient:
    # parallel_step refuses a global_batch_size that is not the batch's
    try:
        two_devices(architecture.BOOK, global_batch_size=8)
        out["plain"]["wrong_scaling_refused"] = False
    except ValueError:
        out["plain"]["wrong_scaling_refused"] = True
    bn = architecture.VARIANTS["batch norm"]
    one, update = one_device(bn, "float64")
    synced, equal = two_devices(bn, d2l.conv_bn_relu_synced, dtype="float64")
    out["bn"] = {"update": update, "copies_equal": equal,
                 "synced": difference(synced, one),
                 "per_device": difference(two_devices(bn, dtype="float64")[0], one)}
    print("RESULT", json.dumps(out))
''')


def run_python(code, timeout_s):
    """Run ``code`` in a fresh interpreter; fail (not hang) after ``timeout_s``."""
    try:
        return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                              text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as error:  # run() has killed it
        pytest.fail(f"still running after {timeout_s} s, killed: {error.stderr}")


@pytest.fixture(scope="module")
def steps():
    """Both checks' steps from one fresh process (one TensorFlow start-up)."""
    result = run_python(STEPS, timeout_s=300)
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert result.returncode == 0 and lines, result.stdout + result.stderr
    return json.loads(lines[-1][len("RESULT "):])


def test_two_devices_take_the_one_device_step(steps):
    """Plain SGD on GoogLeNet: the copies on the two devices are equal to the
    last bit, and within 1% of the update of the one-device step. A step whose
    loss would be scaled by the wrong batch size is refused."""
    assert len(steps["devices"]) == 2
    out = steps["plain"]
    assert out["copies_equal"]
    assert 0 < out["update"]
    assert out["difference"] < RTOL * out["update"], out
    assert out["wrong_scaling_refused"], out


def test_batchnorm_matches_only_when_synchronised(steps):
    """The BatchNorm variant, in float64: synchronised statistics give the
    one-device step; per-device statistics miss by about the update itself.
    In float32 BatchNorm on 8 images magnifies rounding to about 1% of the
    update, by an amount that depends on the processor; float64 leaves the
    synchronised layer's own cancellation (its variance is E[x^2] - E[x]^2),
    measured at ~1e-8 of the update, far under 1e-6."""
    out = steps["bn"]
    assert out["copies_equal"]
    assert out["synced"] < BN_EXACT * out["update"], out
    assert out["per_device"] > 0.5 * out["update"], out


def tf_config(ports, index):
    return json.dumps({"cluster": {"worker": [f"localhost:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


WORKER = textwrap.dedent('''
    import os, sys, time
    from d2l_lite import tensorflow as d2l
    import tensorflow as tf

    strategy = d2l.multi_worker_strategy(timeout_s=float(sys.argv[1]))

    def contribute():
        context = tf.distribute.get_replica_context()
        return context.all_reduce("sum", tf.constant(1.0))

    total = strategy.experimental_local_results(strategy.run(contribute))
    print("SUM", float(total[0]), flush=True)
    if sys.argv[2] == "die":  # after the first all-reduce: a crash
        os._exit(1)
    time.sleep(2)  # the other worker is gone by now
    try:
        strategy.run(contribute)
        print("SECOND ALL-REDUCE RETURNED", flush=True)
    except tf.errors.OpError as error:
        print("ERROR", type(error).__name__, flush=True)
''')


def test_a_peer_that_dies_makes_the_next_all_reduce_fail():
    """Two workers all-reduce once; then worker 1 dies. Worker 0's next
    all-reduce raises (the dead worker's heartbeats stop) instead of waiting."""
    ports = faults.free_ports(2)
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, "60", mode], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "TF_CONFIG": tf_config(ports, index)})
             for index, mode in enumerate(("live", "die"))]
    try:
        outs = [p.communicate(timeout=120) for p in procs]
    except subprocess.TimeoutExpired:
        pytest.fail("a worker was still running after 120 s")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    (out0, err0), (out1, _) = outs
    assert "SUM 2.0" in out1 and "SUM 2.0" in out0, out0 + err0
    assert "ERROR" in out0 and "SECOND ALL-REDUCE RETURNED" not in out0, out0 + err0
