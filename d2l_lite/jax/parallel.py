"""Data parallelism in JAX: :func:`init_processes` (the launch recipe), and
:func:`data_parallel_step`, the page's engine (a batch sharded over CPU devices,
the state replicated, ``jax.jit(train_step)``) in a child process, where JAX
can make the devices and compute in float64."""

from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from .. import architecture
from .book import TrainState, train_step
from .model import get_weights, googlenet, port
from .train import input_shape, variables_of

#: The longest a child process's step may take (it compiles a GoogLeNet step).
TIMEOUT_S = 600
_ROOT = str(Path(__file__).resolve().parents[2])


def init_processes(coordinator_address: Optional[str] = None,
                   num_processes: Optional[int] = None, process_id: Optional[int] = None,
                   timeout_s: int = 120) -> None:
    """:func:`jax.distributed.initialize` with every wait bounded by ``timeout_s``.

    Call it once per process (one per machine; under Slurm and Open MPI on GPUs, one
    per GPU), before any other JAX call.
    Arguments left ``None`` come from ``JAX_COORDINATOR_ADDRESS`` or from the
    cluster JAX detects (Slurm, Open MPI, Kubernetes, Cloud TPU). Process 0 serves
    the coordinator at that address; any other process first waits up to
    ``timeout_s`` for it and raises a :class:`RuntimeError` saying what to check if
    it never answers (JAX itself would abort with a bare ``DEADLINE_EXCEEDED``).
    Then JAX waits up to ``timeout_s`` for all processes to join, and later ends
    every process when one stops sending heartbeats for ``timeout_s``: a failed
    launch ends with an error, never a hang."""
    address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
    if address and process_id:  # process 0 opens the port itself
        host, port = address.rsplit(":", 1)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
                break
            except OSError as err:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"JAX process {process_id}: no coordinator answered at {address} "
                        f"within {timeout_s} s ({err}). Start process 0 on that machine "
                        f"with the same address, check the host name and port (reachable "
                        f"from here, not blocked by a firewall), then launch again."
                    ) from err
                time.sleep(0.5)
    who = "JAX" if process_id is None else f"JAX process {process_id}"
    print(f"{who}: joining {num_processes or 'all'} processes at "
          f"{address or 'the address the cluster gives'}, for at most {timeout_s} s. "
          f"An error with DEADLINE_EXCEEDED means that some process did not start or "
          f"used another address: launch all of them, each with its own process id "
          f"and the same coordinator address.", file=sys.stderr, flush=True)
    jax.distributed.initialize(address, num_processes, process_id,
                               initialization_timeout=timeout_s,
                               heartbeat_timeout_seconds=timeout_s)


def data_parallel_step(spec: architecture.GoogLeNetSpec, weights: Dict[str, np.ndarray],
                       X: np.ndarray, y: np.ndarray, lr: float, num_devices: int,
                       timeout_s: float = TIMEOUT_S) -> Dict[str, np.ndarray]:
    """The neutral weights after one plain SGD step in float64 with the NCHW batch
    sharded over ``num_devices`` CPU devices, in a child process (JAX makes its
    devices at start-up) that ends within ``timeout_s``."""
    if not isinstance(num_devices, int) or num_devices < 1 or len(X) % num_devices:
        raise ValueError(f"a batch of {len(X)} does not split evenly over "
                         f"num_devices={num_devices!r} devices")
    with tempfile.TemporaryDirectory() as folder:
        with open(os.path.join(folder, "job.pkl"), "wb") as f:
            pickle.dump((spec, lr), f)
        np.savez(os.path.join(folder, "in.npz"), X=X, y=y, **weights)
        env = dict(os.environ, JAX_ENABLE_X64="1", JAX_PLATFORMS="cpu",
                   XLA_FLAGS=f"--xla_force_host_platform_device_count={num_devices}",
                   PYTHONPATH=os.pathsep.join([_ROOT, os.environ.get("PYTHONPATH", "")]))
        result = subprocess.run(
            [sys.executable, "-c", "import sys; from d2l_lite.jax import parallel; "
             "parallel.child(sys.argv[1])", folder],
            env=env, capture_output=True, text=True, timeout=timeout_s)
        if result.returncode:
            raise RuntimeError(f"the {num_devices}-device step failed:\n"
                               f"{result.stderr[-3000:]}")
        with np.load(os.path.join(folder, "out.npz")) as out:
            return {name: out[name] for name in out.files}


def child(folder: str) -> None:
    """:func:`data_parallel_step`'s child: ``job.pkl`` and ``in.npz`` in, ``out.npz`` out."""
    with open(os.path.join(folder, "job.pkl"), "rb") as f:
        spec, lr = pickle.load(f)
    with np.load(os.path.join(folder, "in.npz")) as arrays:
        weights = {name: arrays[name] for name in arrays.files}
    X, y = weights.pop("X"), weights.pop("y")
    model = googlenet(spec)
    variables = jax.tree.map(lambda a: a.astype(jnp.float64),
                             port(model, weights, spec, input_shape(spec)))
    state = TrainState.create(apply_fn=model.apply, params=variables["params"],
                              tx=optax.sgd(lr), batch_stats=variables.get("batch_stats", {}),
                              key=jax.random.key(0))
    mesh = Mesh(np.array(jax.devices()), ("data",))
    state = jax.device_put(state, NamedSharding(mesh, P()))  # a copy per device
    X, y = jax.device_put((jnp.asarray(X.transpose(0, 2, 3, 1), jnp.float64),
                           jnp.asarray(y, jnp.int32)), NamedSharding(mesh, P("data")))
    step = jax.jit(lambda s, X, y: train_step(s, X, y, dtype=jnp.float64))
    state, _, _ = step(state, X, y)
    np.savez(os.path.join(folder, "out.npz"), **get_weights(variables_of(state), spec))
