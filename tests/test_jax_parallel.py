"""Data parallelism in JAX (the parallel chapter): what its page relies on.

The page runs the book's GoogLeNet on two CPU devices that
``--xla_force_host_platform_device_count=2`` makes out of one CPU. That flag
only counts when JAX starts, and other tests in this pytest process have
started JAX with one device, so every check here runs in a child process,
with a time limit. The network is a tiny one written like the textbook's
(two convolutions, a pool and the head), so each check compiles in seconds;
the page runs the same code on GoogLeNet.

Every step runs in float64 (JAX_ENABLE_X64), where "the same step" is a claim
that holds to the order of float64 additions on any CPU, and another step
(per-device BatchNorm) differs by orders of magnitude more.
"""

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import faults

pytestmark = pytest.mark.slow  # processes or devices of their own

ROOT = Path(__file__).resolve().parents[1]
LIMIT_S = 120  # for any child process: a hang fails the test, it never blocks it

COMMON = textwrap.dedent("""
    import json, sys
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from d2l_lite import jax as d2l


    class Tiny(nn.Module):
        conv: type = d2l.ConvReLU

        @nn.compact
        def __call__(self, x, train=False):
            x = d2l.max_pool(self.conv(8, 3, padding=1)(x, train))
            x = self.conv(16, 3, padding=1)(x, train)
            return nn.Dense(10)(jnp.mean(x, axis=(1, 2)))


    def max_diff(a, b):
        return max(float(np.abs(np.asarray(u) - np.asarray(v)).max())
                   for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


    def start(conv):
        model = Tiny(conv)
        v = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 1)))
        return d2l.TrainState.create(
            apply_fn=model.apply, params=v["params"], tx=optax.sgd(0.01),
            batch_stats=v.get("batch_stats", {}), key=jax.random.key(0))


    def one_device(state, X, y):
        '''The step on one device, and the largest change it made.'''
        one, _, _ = step(*jax.device_put((state, X, y), jax.local_devices()[0]))
        return one, max_diff(one.params, state.params)


    def data():
        rng = np.random.default_rng(0)
        X = d2l.prepare_batch(jnp.asarray(rng.integers(0, 256, (16, 28, 28)),
                                          jnp.uint8), 32)
        return X, jnp.asarray(rng.integers(0, 10, 16), jnp.int32)


    def in_float64(tree):
        return jax.tree.map(lambda a: a.astype(jnp.float64)
                            if jnp.issubdtype(jnp.result_type(a), jnp.floating)
                            else a, tree)


    # the training step in the batch's dtype (float64 under JAX_ENABLE_X64=1)
    step = jax.jit(lambda s, X, y: d2l.train_step(s, X, y, dtype=X.dtype))
""")

TWO_DEVICES = COMMON + textwrap.dedent("""
    X, y = data()
    devices = jax.devices()
    mesh = Mesh(np.array(devices), ("data",))
    batch, replicated = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())


    def local_step(state, X, y):  # the page's unsynchronised step
        def loss_fn(params):
            logits, new = state.apply_fn(
                {"params": params, "batch_stats": state.batch_stats},
                X, train=True, mutable=["batch_stats"])
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, y)
            return loss.mean(), new["batch_stats"]
        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params)
        grads = jax.lax.pmean(grads, "data")
        stats = jax.lax.pmean(stats, "data")
        return state.apply_gradients(grads=grads, batch_stats=stats)


    unsync = jax.jit(jax.shard_map(local_step, mesh=mesh, out_specs=P(),
                                   in_specs=(P(), P("data"), P("data")),
                                   check_vma=False))
    out = {"devices": [d.platform for d in devices]}
    X = X.astype(jnp.float64)  # JAX_ENABLE_X64=1: every step in float64
    for name, conv in (("plain", d2l.ConvReLU), ("batch norm", d2l.ConvBNReLU)):
        state = in_float64(start(conv))
        args = (jax.device_put(state, replicated), *jax.device_put((X, y), batch))
        compiled = step.lower(*args).compile()
        two, _, _ = compiled(*args)
        one, update = one_device(state, X, y)
        out[name] = {"all-reduce": "all-reduce" in compiled.as_text(),
                     "update": update,
                     "two": max_diff(two.params, one.params),
                     "unsync": max_diff(unsync(*args).params, one.params)}
    print(json.dumps(out))
""")

PROCESS = COMMON + textwrap.dedent("""
    address, pid = sys.argv[1], int(sys.argv[2])
    d2l.init_processes(address, 2, pid, timeout_s=60)
    X, y = data()
    X = X.astype(jnp.float64)  # JAX_ENABLE_X64=1: every step in float64
    from jax.experimental import multihost_utils

    mesh = Mesh(np.array(jax.devices()), ("data",))
    state = in_float64(start(d2l.ConvBNReLU))
    local = jax.tree.map(jnp.asarray, state)  # its step is a Python int
    # the same state in every process; each process holds its half batch
    half = slice(8 * pid, 8 * pid + 8)
    two, _, _ = step(*multihost_utils.host_local_array_to_global_array(
        (local, X[half], y[half]), mesh, (P(), P("data"), P("data"))))
    two = jax.tree.map(lambda a: np.asarray(a.addressable_data(0)), two.params)
    one, update = one_device(state, X, y)
    print(json.dumps({"process": pid, "devices": len(jax.devices()),
                      "two": max_diff(two, one.params), "update": update}))
    jax.distributed.shutdown()
""")


def child_env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(JAX_PLATFORMS="cpu", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), **extra)
    return env


def run_child(source, *args, env=None, timeout=LIMIT_S):
    result = subprocess.run([sys.executable, "-c", source, *map(str, args)], cwd=ROOT,
                            env=env or child_env(), capture_output=True, text=True,
                            timeout=timeout)
    return result


def last_json(result):
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_two_devices_take_the_one_device_step():
    """The page's engine: a batch sharded over two devices, the state
    replicated, ``jax.jit(d2l.train_step)``: XLA all-reduces the gradients
    (and BatchNorm's statistics), so the step is the one-device step, in
    float64 to its rounding; per-device BatchNorm (shard_map) is another step."""
    out = last_json(run_child(TWO_DEVICES, env=child_env(
        XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_ENABLE_X64="1")))
    assert out["devices"] == ["cpu", "cpu"]
    # In float64 the steps differ only by the order of float64 additions, far
    # under 1e-9 of the update; another step differs by orders of magnitude more.
    for name in ("plain", "batch norm"):
        r = out[name]
        assert r["all-reduce"], f"{name}: XLA inserted no all-reduce"
        assert r["update"] > 0, r
        assert r["two"] < 1e-9 * r["update"], f"{name}: two devices differ from one: {r}"
    plain, bn = out["plain"], out["batch norm"]
    # without BatchNorm the explicit shard_map + pmean step is the same step;
    # it computes its loss another way (integer labels, no smoothing), which
    # put it 1.3e-8 of the update away when this was written: far under 1e-6
    assert plain["unsync"] < 1e-6 * plain["update"], plain
    # with it, each device normalising its own 8 images gives another step:
    # 2% of the update in this small network, six orders above the rest
    assert bn["unsync"] > 1e-3 * bn["update"], bn


def test_two_processes_take_the_one_device_step():
    """The launch recipe on one machine: two processes, one CPU device each,
    joined by ``d2l.init_processes``; each feeds its half of the batch."""
    address = f"127.0.0.1:{faults.free_ports(1)[0]}"
    children = [subprocess.Popen([sys.executable, "-c", PROCESS, address, str(pid)],
                                 cwd=ROOT, env=child_env(JAX_ENABLE_X64="1"),
                                 stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for pid in (0, 1)]
    try:
        outputs = [child.communicate(timeout=LIMIT_S) for child in children]
    finally:
        for child in children:
            child.kill()  # a no-op for those that ended
    for child, (stdout, stderr) in zip(children, outputs):
        assert child.returncode == 0, stderr[-3000:]
        out = json.loads(stdout.strip().splitlines()[-1])
        assert out["devices"] == 2
        assert out["two"] < 1e-9 * out["update"], out  # float64: exact


def test_a_missing_process_ends_the_job():
    """Process 0 waiting for a process that never starts ends after the
    timeout with JAX's DEADLINE_EXCEEDED and the advice printed before."""
    source = ("from d2l_lite import jax as d2l\n"
              f"d2l.init_processes('127.0.0.1:{faults.free_ports(1)[0]}', 2, 0, timeout_s=3)\n"
              "print('joined')\n")
    start = time.monotonic()
    result = run_child(source, timeout=60)
    assert result.returncode != 0 and "joined" not in result.stdout
    # the 3 s deadline and JAX's start, far from run_child's 60 s (a hang)
    assert time.monotonic() - start < 30
    assert "DEADLINE_EXCEEDED" in result.stderr
    assert "launch all of them" in result.stderr
