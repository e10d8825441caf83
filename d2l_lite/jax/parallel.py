"""Data parallelism in JAX: the page's helpers (:func:`data_mesh` takes the
devices, :func:`shard_batch` splits a batch over them, :class:`FiniteCheck`
refuses a step that is not finite), :func:`init_processes` (the launch recipe),
and :func:`data_parallel_step`, the page's engine (a batch sharded over CPU
devices, the state replicated, ``jax.jit(train_step)``) in a child process,
where JAX can make the devices and compute in float64. Wrong arguments are
refused before anything runs, in the words of :mod:`d2l_lite.processes`."""

from __future__ import annotations

import math
import os
import socket
import sys
import time
from typing import Callable, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from .. import architecture, processes, training
from .book import TrainState, train_step
from .model import get_weights, googlenet, port
from .train import input_shape, variables_of

#: The longest a child process's step may take (it compiles a GoogLeNet step).
TIMEOUT_S = 600
_CPU_FLAG = "--xla_force_host_platform_device_count"


def data_mesh(num_devices: int, platform: Optional[str] = None) -> Mesh:
    """A mesh with one axis, ``"data"``, over the first ``num_devices`` devices
    of ``platform`` ("gpu", "cpu", ...). Without a platform: JAX's default
    devices (the GPUs, if any) when there are enough, else the CPU devices.
    Raise ``ValueError``, saying what exists, for a count that cannot be or a
    platform this JAX does not have."""
    processes.check_count(num_devices, what="devices")
    if platform is None:
        devices = jax.devices()
        if len(devices) < num_devices:
            devices = jax.devices("cpu")
    else:
        try:
            devices = jax.devices(platform)
        except RuntimeError as error:  # JAX's words for a platform it lacks
            default = jax.devices()
            raise ValueError(
                f"no {platform!r} devices here ({error}); this JAX has "
                f"{len(default)} {default[0].platform} device(s). Ask for "
                f"platform={default[0].platform!r} (or leave it out), or install a "
                f"JAX build for {platform!r} on a machine that has such devices."
            ) from error
    try:
        processes.check_count(num_devices, what="devices", available=len(devices))
    except ValueError as error:
        kind = devices[0].platform
        advice = (f" JAX made {len(devices)} CPU device(s) when it started: for "
                  f"{num_devices}, set XLA_FLAGS={_CPU_FLAG}={num_devices} before "
                  f"jax is imported (first cell), restart the kernel and run again."
                  if kind == "cpu" else f" (its {kind} devices: {devices})")
        raise ValueError(f"{error}.{advice}") from error
    return Mesh(np.array(devices[:num_devices]), ("data",))


def shard_batch(mesh: Mesh, *arrays, index: int = 0):
    """``arrays`` (a batch's images and labels) split along their first axis,
    one equal share per device of ``mesh``'s ``"data"`` axis: ``jax.device_put``
    with ``NamedSharding(mesh, P("data"))``, after checking that they have as
    many rows each and that the batch divides evenly (``index`` names the batch
    in the error); JAX alone would raise a sharding error about tiling factors."""
    sizes = [len(a) for a in arrays]
    if len(set(sizes)) > 1:
        raise ValueError(f"global batch {index}: the arrays have {sizes} rows; the "
                         f"images and the labels of a batch must have as many each")
    processes.check_split(sizes[0] if sizes else 0, mesh.shape["data"], what="devices",
                          index=index)
    shared = jax.device_put(arrays, NamedSharding(mesh, P("data")))
    return shared[0] if len(arrays) == 1 else shared


class FiniteCheck:
    """``jax.jit(step)`` that refuses a step in which a NaN or an infinity
    appears: the state comes back unchanged and the call raises the
    ``FloatingPointError`` of :func:`d2l_lite.processes.non_finite`, naming the
    step (the state's ``step`` + 1) and the devices whose share of the batch
    gave a non-finite loss, or the averaged gradient. ``step(state, X, y)`` must
    return ``(state, loss, ...)`` like ``d2l.train_step``, ``loss`` the mean
    over the batch; ``X`` sharded along ``"data"``, as :func:`shard_batch` does."""

    def __init__(self, step: Callable):
        self.step = jax.jit(lambda state, X, y: _refuse_non_finite(step, state, X, y))
        self.losses = jax.jit(_example_losses)

    def __call__(self, state, X, y):
        new, *rest, finite = self.step(state, X, y)
        if not finite.all():  # the host waits for the step here, as float(loss) would
            raise self.error(state, X, y, bool(finite[0]))
        return (new, *rest)

    def error(self, state, X, y, loss_finite: bool) -> FloatingPointError:
        """The error for a refused step: which devices' shares gave a loss that
        is not finite (found now, only when a step failed), else the gradient."""
        losses = self.losses(state, X, y)  # one per image, sharded like X
        mesh = getattr(X.sharding, "mesh", None)  # None: X is on one device
        order = [d.id for d in (np.ravel(mesh.devices) if mesh is not None
                                else sorted(X.sharding.device_set, key=lambda d: d.id))]
        bad = sorted(order.index(shard.device.id) for shard in losses.addressable_shards
                     if not np.isfinite(np.asarray(shard.data)).all())
        where = ("in the averaged gradient" if loss_finite else
                 f"in the loss of device(s) {bad}" if bad else
                 "in the mean loss (each device's share was finite; their sum "
                 "overflowed)")
        return processes.non_finite(int(state.step) + 1, where, len(order), one="device")


def _refuse_non_finite(step, state, X, y):
    """``step`` with its update refused unless the loss and the new state are
    finite; also returns the two flags.

    Why this is the check, and why it is cheap: under ``jax.jit`` with the batch
    sharded, the mean loss is already the all-reduce of the devices' partial
    sums, and a NaN or an infinity in any device's share reaches it (IEEE sums
    keep them); so a finite mean loss means every device's loss was finite, and
    the flag rides on the all-reduce the step does anyway: no collective is
    added. ``train_step`` does not return the averaged gradient, but a NaN or
    an infinity in it makes the update, so the new weights, non-finite (with
    SGD and with Adam's moments alike): the check reads the new state (weights,
    BatchNorm statistics, optimiser state), one pass over replicated arrays on
    each device, without communication. ``jnp.where`` keeps the old state when
    a flag is set (no Python branch in the compiled step); which device it was
    is worked out only when a step fails (:meth:`FiniteCheck.error`)."""
    new, loss, *rest = step(state, X, y)
    loss_finite = jnp.isfinite(loss).all()
    state_finite = jnp.stack([jnp.isfinite(a).all() for a in jax.tree.leaves(new)
                              if jnp.issubdtype(a.dtype, jnp.inexact)]).all()
    ok = loss_finite & state_finite
    kept = jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, state)
    return (kept, loss, *rest, jnp.stack([loss_finite, state_finite]))


def _example_losses(state, X, y):
    """Each image's loss in the training forward pass that ``train_step``
    makes (its dropout key, BatchNorm in training mode), sharded like ``X``."""
    _, dropout_key = jax.random.split(state.key)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    output, _ = state.apply_fn(variables, X, train=True, mutable=["batch_stats"],
                               rngs={"dropout": dropout_key})
    y_hat, _ = training.split_aux(output)
    return optax.softmax_cross_entropy_with_integer_labels(y_hat.astype(X.dtype), y)


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
    timeout_s = _check_launch(num_processes, process_id, timeout_s)
    address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
    if address:
        _probe_coordinator(address, process_id, timeout_s)
    who = "JAX" if process_id is None else f"JAX process {process_id}"
    print(f"{who}: joining {num_processes or 'all'} processes at "
          f"{address or 'the address the cluster gives'}, for at most {timeout_s} s. "
          f"An error with DEADLINE_EXCEEDED means that some process did not start or "
          f"used another address: launch all of them, each with its own process id "
          f"and the same coordinator address.", file=sys.stderr, flush=True)
    jax.distributed.initialize(address, num_processes, process_id,
                               initialization_timeout=timeout_s,
                               heartbeat_timeout_seconds=timeout_s)


def _check_launch(num_processes, process_id, timeout_s) -> int:
    """:func:`init_processes`'s arguments checked; ``timeout_s`` in whole seconds."""
    if num_processes is not None:
        processes.check_count(num_processes, what="processes")
    if process_id is not None and (not isinstance(process_id, int)
                                   or isinstance(process_id, bool) or process_id < 0
                                   or (num_processes and process_id >= num_processes)):
        top = num_processes - 1 if num_processes else "num_processes - 1"
        raise ValueError(f"process_id must be a whole number from 0 to {top}, got "
                         f"{process_id!r}")
    processes.check_timeout(timeout_s)
    return int(math.ceil(timeout_s))  # JAX takes whole seconds


def _probe_coordinator(address: str, process_id, timeout_s: int) -> None:
    """Process 0: its port is free (JAX would abort the process). Any other: the
    coordinator answers within ``timeout_s`` (JAX would abort with a bare
    ``DEADLINE_EXCEEDED``)."""
    if process_id == 0:  # JAX aborts the process if the port is taken
        port = int(address.rsplit(":", 1)[1])
        with socket.socket() as probe:
            try:
                probe.bind(("", port))
            except OSError as err:
                raise RuntimeError(
                    f"JAX process 0: port {port} of {address} is in use by another "
                    f"program ({err}), so the coordinator cannot open it. Pick another "
                    f"port, the same in every process, or end the program holding it."
                ) from err
    if process_id:  # process 0 opens the port itself
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


def data_parallel_step(spec: architecture.GoogLeNetSpec, weights: Dict[str, np.ndarray],
                       X: np.ndarray, y: np.ndarray, lr: float, num_devices: int,
                       timeout_s: float = TIMEOUT_S) -> Dict[str, np.ndarray]:
    """The neutral weights after one plain SGD step in float64 with the NCHW batch
    sharded over ``num_devices`` CPU devices, in a child process (JAX makes its
    devices at start-up): :func:`processes.child_step`, which says how it fails."""
    return processes.child_step(
        child, spec, weights, X, y, lr, num_devices, timeout_s,
        env={"JAX_ENABLE_X64": "1", "JAX_PLATFORMS": "cpu",
             "XLA_FLAGS": f"{_CPU_FLAG}={num_devices}"},
        slow=" (compiling GoogLeNet takes a minute on a CPU)")


def child(spec, weights, X, y, lr, num_devices) -> Dict[str, np.ndarray]:
    """:func:`data_parallel_step` in its child, whose devices are the CPU's
    ``num_devices``; a NaN is refused by :class:`FiniteCheck`."""
    model = googlenet(spec)
    variables = jax.tree.map(lambda a: a.astype(jnp.float64),
                             port(model, weights, spec, input_shape(spec)))
    state = TrainState.create(apply_fn=model.apply, params=variables["params"],
                              tx=optax.sgd(lr), batch_stats=variables.get("batch_stats", {}),
                              key=jax.random.key(0))
    mesh = data_mesh(num_devices, "cpu")
    state = jax.device_put(state, NamedSharding(mesh, P()))  # a copy per device
    X, y = shard_batch(mesh, jnp.asarray(X.transpose(0, 2, 3, 1), jnp.float64),
                       jnp.asarray(y, jnp.int32))
    step = FiniteCheck(lambda s, X, y: train_step(s, X, y, dtype=jnp.float64))
    processes.child_note("compiling and running the step")
    state, _, _ = step(state, X, y)
    return get_weights(variables_of(state), spec)
