"""Fault injection for JAX's data parallelism (d2l_lite.jax.parallel): each
mistake a reader can plausibly make with the page's entry points (``d2l.data_mesh``,
``d2l.shard_batch``, ``d2l.FiniteCheck``, ``d2l.data_parallel_step``,
``d2l.init_processes``) ends in an error that says what happened and what to do,
within ``faults.BOUND_S``, never in a hang; pytest-timeout turns a hang into a
failure.

Faults of the issue's classic list that do not apply to JAX's engine, and why:
the page's engine is one Python process that drives every device (``jax.jit``
over a mesh), so there is no worker function to define in ``__main__``, no job
to send, and no other process of ours that can raise, be killed or stall while
the rest wait in a collective: an exception anywhere in the step is an ordinary
exception in the reader's own process. What is left of them is covered here:
the child process of ``data_parallel_step`` that fails (its stall is
``processes.child_step``'s, tested in test_parallel_faults.py), and, for the
multi-process launch (``init_processes``), a coordinator that never answers and
a port in use (which JAX itself answers by aborting the process).

Checks that need two (or three) CPU devices run in a child process started with
``XLA_FLAGS=--xla_force_host_platform_device_count=N``: JAX reads the flag once,
when it starts, and other tests have started it in this process with one device.
Such a child re-raises nothing itself; it prints the error it caught, which the
test raises again here, so the seconds counted include the child's start."""

import builtins
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import faults
from d2l_lite import architecture, reference

import jax  # noqa: E402
from d2l_lite import jax as d2l  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[1]


def timed(call, error, match, fault=""):
    return faults.timed(call, error, match, "JAX", fault)


# In a child with N CPU devices -------------------------------------------------------

CHILD = textwrap.dedent("""
    import json, sys
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from jax.sharding import NamedSharding, PartitionSpec as P
    from d2l_lite import jax as d2l


    class Tiny(nn.Module):  # written like the textbook's, compiles in seconds
        @nn.compact
        def __call__(self, x, train=False):
            x = d2l.max_pool(d2l.ConvReLU(8, 3, padding=1)(x, train))
            return nn.Dense(10)(jnp.mean(x, axis=(1, 2)))


    def tiny_state(mesh, lr=0.01):
        model = Tiny()
        v = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 1)))
        state = d2l.TrainState.create(
            apply_fn=model.apply, params=v["params"], tx=optax.sgd(lr),
            batch_stats={}, key=jax.random.key(0))
        return jax.device_put(state, NamedSharding(mesh, P()))


    def batch(n, poison=()):
        rng = np.random.default_rng(0)
        X = rng.random((n, 32, 32, 1), np.float32)
        X[list(poison)] = np.nan
        return X, np.arange(n) % 10


    fault, args = sys.argv[1], json.loads(sys.argv[2])
    out = {}
    try:
        if fault == "split":  # a batch of args[0] images on args[1] devices
            mesh = d2l.data_mesh(args[1])
            d2l.shard_batch(mesh, *batch(args[0]))
        elif fault == "nan":  # a NaN in images args[0], learning rate args[1]
            mesh = d2l.data_mesh(2)
            state = tiny_state(mesh, args[1])
            X, y = d2l.shard_batch(mesh, *batch(16, poison=args[0]))
            check = d2l.FiniteCheck(d2l.train_step)
            kept, *_, flags = check.step(state, X, y)  # the compiled step
            out["unchanged"] = all(
                bool((np.asarray(a) == np.asarray(b)).all())
                for a, b in zip(jax.tree.leaves(kept.params),
                                jax.tree.leaves(state.params)))
            out["step"] = int(kept.step)
            check(state, X, y)  # raises on the host
    except (ValueError, FloatingPointError) as error:
        out.update(error=type(error).__name__, message=str(error))
    print(json.dumps(out))
""")


def child_report(num_devices, fault, *args):
    """What CHILD's ``fault`` reported with ``num_devices`` CPU devices."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(JAX_PLATFORMS="cpu", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT),
               XLA_FLAGS=f"--xla_force_host_platform_device_count={num_devices}")
    result = subprocess.run([sys.executable, "-c", CHILD, fault, json.dumps(args)],
                            cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=faults.BOUND_S)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def in_child(num_devices, fault, *args):
    """Raise again the error (``ValueError`` or ``FloatingPointError``) that
    CHILD's ``fault`` caught."""
    out = child_report(num_devices, fault, *args)
    if "error" in out:
        raise getattr(builtins, out["error"])(out["message"])
    return out


# The number of devices, the platform -----------------------------------------------

@pytest.mark.parametrize("num_devices", [0, -1, 2.5, True])
def test_a_number_of_devices_that_cannot_be(num_devices):
    timed(lambda: d2l.data_mesh(num_devices), ValueError,
          r"number of devices must be a whole number >= 1", f"{num_devices!r} devices")


def test_more_devices_than_exist_says_how_to_get_more_cpu_devices():
    too_many = max(len(jax.devices()), len(jax.devices("cpu"))) + 1
    message, _ = timed(lambda: d2l.data_mesh(too_many), ValueError,
                       rf"{too_many} devices asked for, but this machine has",
                       "more devices than exist")
    if jax.devices()[0].platform == "cpu":
        assert f"xla_force_host_platform_device_count={too_many}" in message
        assert "before jax is imported" in message


def test_a_platform_that_does_not_exist_says_what_exists():
    platforms = {d.platform for d in jax.devices()}
    missing = "tpu" if "gpu" in platforms else "gpu"
    message, _ = timed(lambda: d2l.data_mesh(2, platform=missing), ValueError,
                       rf"no '{missing}' devices here", "a platform that does not exist")
    assert f"this JAX has {len(jax.devices())} {jax.devices()[0].platform}" in message


# The batch -----------------------------------------------------------------------------

@pytest.mark.parametrize("batch, num_devices, shares", [
    (16, 3, "[6, 5, 5]"), (15, 2, "[8, 7]"), (1, 2, "[1, 0]")])
def test_an_indivisible_batch_is_refused_before_it_is_placed(batch, num_devices, shares):
    message, _ = timed(lambda: in_child(num_devices, "split", batch, num_devices),
                       ValueError, rf"has {batch} images?, which do(es)? not split evenly "
                                   rf"over {num_devices} devices",
                       f"a batch of {batch} on {num_devices} devices")
    assert shares in message and "equal weights" in message


def test_a_nan_in_one_share_refuses_the_step_and_names_the_device():
    """Image 11 is in device 1's share (images 8 to 15). The compiled step
    returns the state unchanged (weights and step counter); the host raises."""
    report = {}

    def call():
        report.update(child_report(2, "nan", [11], 0.01))
        raise getattr(builtins, report["error"])(report["message"])
    message, _ = timed(call, FloatingPointError,
                       r"step 1: a NaN or an infinity in the loss of device\(s\) \[1\] "
                       r"\(of 2 devices\)", "a NaN in one share")
    assert "no weight changed" in message
    assert report["unchanged"] and report["step"] == 0, report


def test_an_update_that_overflows_is_refused_as_the_gradient():
    """A finite loss but a learning rate of 1e300 (inf in float32): the
    update, so the new weights, are not finite."""
    report = {}

    def call():
        report.update(child_report(2, "nan", [], 1e300))
        raise getattr(builtins, report["error"])(report["message"])
    timed(call, FloatingPointError, r"step 1: a NaN or an infinity in the averaged "
                                    r"gradient \(of 2 devices\)", "an update that overflows")
    assert report["unchanged"] and report["step"] == 0, report


# The conformance suite's child process --------------------------------------------------

SPEC = architecture.googlenet_spec(input_size=32)


def small_batch(n=8, poison=()):
    rng = np.random.default_rng(0)
    X = rng.random((n, 1, 32, 32)).astype(np.float32)  # NCHW, as the suite's
    X[list(poison)] = np.nan
    return X, (np.arange(n) % 10).astype(np.int64)


def test_a_failing_child_step_is_reported_in_its_own_words():
    """Weights missing a tensor: the child's own ValueError, before it compiles.
    (A NaN in the child's batch is refused by the same ``FiniteCheck`` as
    above; compiling GoogLeNet there would take this test past its bound.)"""
    X, y = small_batch()
    weights = reference.xavier_weights(SPEC)
    missing = sorted(weights)[0]
    del weights[missing]
    message, _ = timed(lambda: d2l.data_parallel_step(SPEC, weights, X, y, 0.1, 2),
                       RuntimeError, r"the 2-device step failed in its child process: "
                                     r"ValueError: the weights lack",
                       "data_parallel_step's child fails")
    assert missing in message and "Traceback" in message  # the end of its stderr


# The multi-process launch ------------------------------------------------------------

def test_a_coordinator_that_never_answers():
    """Process 1 waits for process 0 at a port nobody listens on."""
    address = f"127.0.0.1:{faults.free_ports(1)[0]}"
    message, seconds = timed(lambda: d2l.init_processes(address, 2, 1, timeout_s=3),
                             RuntimeError, r"JAX process 1: no coordinator answered at "
                                           r"127.0.0.1:\d+ within 3 s",
                             "a coordinator that never answers")
    assert "Start process 0" in message and seconds >= 3


def test_a_port_in_use_is_named_before_jax_aborts():
    """Process 0 on a busy port: JAX would abort the whole process."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        address = f"127.0.0.1:{busy.getsockname()[1]}"
        timed(lambda: d2l.init_processes(address, 2, 0, timeout_s=3), RuntimeError,
              r"JAX process 0: port \d+ of 127.0.0.1:\d+ is in use", "a port in use")


@pytest.mark.parametrize("num_processes, process_id, match", [
    (0, 0, "number of processes must be a whole number >= 1"),
    (2, 2, "process_id must be a whole number from 0 to 1, got 2"),
    (2, -1, "process_id must be a whole number from 0 to 1, got -1")])
def test_launch_arguments_that_cannot_be(num_processes, process_id, match):
    timed(lambda: d2l.init_processes(f"127.0.0.1:{faults.free_ports(1)[0]}", num_processes,
                                     process_id, timeout_s=3), ValueError, match)

