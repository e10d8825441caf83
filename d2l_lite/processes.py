"""One function in several new processes, under one deadline that covers their
whole life, with the first failure reported in its own words.

The data-parallel chapter's multi-process engines (PyTorch's DDP over gloo or
NCCL) start one process per device. What can go wrong there is mostly not
the framework's: a worker the new processes cannot import, arguments that
cannot be sent, a process that raises, is killed or stalls. :func:`run` checks
what it can before any process starts, passes the arguments through a file
(so starting never blocks on a pipe that a dead process no longer reads),
and waits for the processes until ``timeout_s``: the first to fail stops
them all, and the message is that process's own exception (or the signal
that killed it) with the end of its stderr; at the deadline, every process's
last :func:`note` says what it was doing. :func:`child_step` runs one
data-parallel step in one new Python process, for the frameworks (JAX,
TensorFlow) that make their CPU devices only at start-up. Framework-neutral:
standard library and NumPy only."""

from __future__ import annotations

import importlib
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

import numpy as np

_ROOT = str(Path(__file__).resolve().parents[1])


def check_importable(worker: Callable) -> None:
    """Raise ``ValueError`` if new processes could not import ``worker``: they
    import it by module and name, so a function defined in a notebook (or typed
    at a prompt), inside another function, or a lambda, fails in every process
    before any of it runs."""
    module = getattr(worker, "__module__", None)
    name = getattr(worker, "__qualname__", repr(worker))
    main_file = str(getattr(sys.modules.get("__main__"), "__file__", "") or "")
    where = None
    if module == "__main__" and not main_file.endswith(".py"):
        where = "in this notebook (or at an interactive prompt)"
    elif "<lambda>" in name or "<locals>" in name:
        where = "inside another function (or as a lambda)"
    if where:
        raise ValueError(
            f"the worker {name} is defined {where}: each new process imports its "
            f"worker from a module by name and cannot import this one, so every "
            f"process would fail before running it. Define the worker in a .py file "
            f"(next to the notebook, say my_workers.py), import it, and pass that: "
            f"d2l_lite defines its workers in its modules for this reason.")


def check_count(nprocs, what: str = "processes", available: Optional[int] = None) -> None:
    """Raise ``ValueError`` unless ``nprocs`` is a whole number >= 1 (and, when
    ``available`` is given, at most that many ``what`` exist)."""
    if not isinstance(nprocs, int) or isinstance(nprocs, bool) or nprocs < 1:
        raise ValueError(f"the number of {what} must be a whole number >= 1, got "
                         f"{nprocs!r}")
    if available is not None and nprocs > available:
        raise ValueError(f"{nprocs} {what} asked for, but this machine has {available}: "
                         f"ask for at most {available}")


def check_timeout(timeout_s) -> None:
    """Raise ``ValueError`` unless ``timeout_s`` is a number of seconds > 0."""
    if isinstance(timeout_s, bool) or not (isinstance(timeout_s, (int, float))
                                           and timeout_s > 0):
        raise ValueError(f"timeout_s must be a number of seconds > 0, got {timeout_s!r}")


def check_labels(num_images: int, num_labels: int) -> None:
    """Raise ``ValueError`` unless a batch has one label per image."""
    if num_images != num_labels:
        raise ValueError(f"the batch has {num_images} images but {num_labels} labels: "
                         f"give one label per image")


def check_split(batch_size: int, parts: int, what: str = "processes", index: int = 0) -> None:
    """Raise ``ValueError`` unless a global batch of ``batch_size`` splits into
    ``parts`` equal, non-empty shares, as every engine of the book needs (PyTorch's
    DDP averages the processes' gradients with equal weights; JAX refuses to shard
    unevenly; TensorFlow and MXNet slice equally)."""
    if batch_size and not batch_size % parts:
        return
    shares = [len(range(r, batch_size, parts)) for r in range(parts)]
    lower, upper = batch_size - batch_size % parts, batch_size + parts - batch_size % parts
    sizes = " or ".join(str(k) for k in (lower, upper) if k)
    verb = "does" if batch_size == 1 else "do"
    raise ValueError(
        f"global batch {index} has {batch_size} image{'s' * (batch_size != 1)}, which "
        f"{verb} not split evenly over {parts} {what} (shares of {shares}). The "
        f"book's four engines all give each of them an equal share, so that the step "
        f"is the one-device step however an engine averages: PyTorch's DDP averages "
        f"the gradients with equal weights, which would count the images of a smaller "
        f"share more. Use a global batch that {parts} divides, e.g. {sizes} images.")


def non_finite(step: int, where: str, parts: int, one: str = "process") -> FloatingPointError:
    """The error for a NaN or an infinity seen on ``step`` ``where`` (e.g. "in the
    loss of device(s) [1]"), the update refused on all ``parts`` (each ``one``)."""
    many = one + ("es" if one.endswith("s") else "s")
    return FloatingPointError(
        f"step {step}: a NaN or an infinity {where} (of {parts} {many}); the update "
        f"was refused on every {one}, so no weight changed. Look for NaNs in that "
        f"{one}'s share of the batch; if the loss grew step by step before, lower the "
        f"learning rate.")


def note(out_dir: str, rank: int, what: str) -> None:
    """Record what process ``rank`` is doing now (quoted if the deadline passes)."""
    with open(os.path.join(out_dir, f"rank{rank}.status"), "w") as f:
        f.write(f"{time.time()}\n{what}")


def run(worker: Callable, nprocs: int, args: Sequence, timeout_s: float,
        out_dir: str, env: Optional[Dict[str, str]] = None) -> None:
    """Run ``worker(rank, nprocs, *args, out_dir)`` in ``nprocs`` new
    processes (the ``spawn`` start method) with ``env`` added to their
    environment; return when all have finished. Raise ``ValueError`` before
    starting any if ``nprocs``, ``timeout_s``, ``worker`` or ``args``
    cannot work; ``RuntimeError`` with the first failure's own message;
    ``TimeoutError`` when ``timeout_s`` passes first. Every process is
    stopped before this returns or raises."""
    check_count(nprocs)
    check_timeout(timeout_s)
    check_importable(worker)
    job = os.path.join(out_dir, "job.pickle")
    try:
        with open(job, "wb") as f:
            pickle.dump((worker, tuple(args), dict(env or {})), f,
                        protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError) as error:
        raise ValueError(
            f"the arguments cannot be sent to new processes ({error}): "
            f"pass plain data (arrays, numbers, strings, dataclasses of "
            f"them), not functions defined here, open files or locks"
        ) from error
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=_child,
                             args=(rank, nprocs, job, out_dir),
                             name=f"d2l-rank{rank}")
             for rank in range(nprocs)]
    deadline, started = time.monotonic() + timeout_s, []
    try:
        for proc in procs:
            proc.start()
            started.append(proc)
        while True:
            codes = [p.exitcode for p in procs]
            if any(code not in (None, 0) for code in codes):
                raise RuntimeError(_failure(out_dir, codes))
            if all(code == 0 for code in codes):
                return
            if time.monotonic() > deadline:
                statuses = _statuses(out_dir, nprocs)
                raise TimeoutError(
                    f"the {nprocs} processes ran longer than "
                    f"{timeout_s:.0f} s and were stopped. What each was "
                    f"doing:\n{statuses}\n"
                    f"Give a larger timeout_s if the work is just slow; a "
                    f"process that waits for the others (in a collective) "
                    f"while one of them does something else is stuck for "
                    f"good.")
            multiprocessing.connection.wait(
                [p.sentinel for p in procs if p.exitcode is None],
                timeout=0.5)
    finally:
        for proc in started:
            if proc.is_alive():
                proc.kill()
        for proc in started:
            proc.join(timeout=10)


def _child(rank: int, nprocs: int, job: str, out_dir: str) -> None:
    """A new process: its stderr to a file, the job from ``job``, the worker;
    an exception is noted (with when) for :func:`run` to report."""
    log = open(os.path.join(out_dir, f"rank{rank}.log"), "w", buffering=1)
    os.dup2(log.fileno(), 2)
    sys.stderr = log
    try:
        note(out_dir, rank, "loading its job")
        with open(job, "rb") as f:
            worker, args, env = pickle.load(f)
        os.environ.update(env)
        note(out_dir, rank, f"starting {getattr(worker, '__name__', 'the worker')}")
        worker(rank, nprocs, *args, out_dir)
        note(out_dir, rank, "finished")
    except BaseException as error:  # noted for run(), then raised again: exit status 1
        with open(os.path.join(out_dir, f"rank{rank}.error"), "w") as f:
            f.write(f"{time.time()}\n{type(error).__name__}: {error}\n"
                    f"{traceback.format_exc()}")
        raise


def _tail(path: str, lines: int = 12) -> str:
    try:
        with open(path) as f:
            text = f.read().rstrip().splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


def _failure(out_dir: str, codes) -> str:
    """The message for the first process that failed: its exception, or how it
    ended, and the end of its stderr."""
    nprocs, noted = len(codes), []
    for rank in range(nprocs):
        path = os.path.join(out_dir, f"rank{rank}.error")
        if os.path.exists(path):
            with open(path) as f:
                when, text = f.read().split("\n", 1)
            noted.append((float(when), rank, text))
    if noted:
        _, rank, text = min(noted)
        headline, trace = text.split("\n", 1)
        trace = "\n".join(trace.rstrip().splitlines()[-12:])
        return (f"process {rank} of {nprocs} failed first, so all were stopped: "
                f"{headline}\n(The others' errors, a closed connection or a timeout "
                f"in a collective, follow from it.) Its traceback ends:\n{trace}")
    rank = next(r for r, code in enumerate(codes) if code not in (None, 0))
    code = codes[rank]
    how = (f"was killed by signal {signal.Signals(-code).name}" if code < 0
           else f"exited with code {code} before its worker could raise")
    cause = (" Nothing in Python raised: such a signal comes from outside, e.g. "
             "the system's out-of-memory killer or a kill command." if code < 0 else
             " It could not run its worker (see its stderr).")
    last = _tail(os.path.join(out_dir, f"rank{rank}.log"))
    return (f"process {rank} of {nprocs} {how} while {_status(out_dir, rank)}, so all "
            f"were stopped.{cause}" + (f" Its stderr ends:\n{last}" if last else ""))


def _status(out_dir: str, rank: int) -> str:
    try:
        with open(os.path.join(out_dir, f"rank{rank}.status")) as f:
            when, what = f.read().split("\n", 1)
    except (OSError, ValueError):
        return "starting"
    return f"{what} (for {time.time() - float(when):.0f} s)"


def _statuses(out_dir: str, nprocs: int) -> str:
    return "\n".join(f"  process {rank}: {_status(out_dir, rank)}" for rank in range(nprocs))


def child_step(step: Callable, spec, weights: Dict[str, np.ndarray], X: np.ndarray,
               y: np.ndarray, lr: float, num_devices: int, timeout_s: float,
               env: Optional[Dict[str, str]] = None, slow: str = "") -> Dict[str, np.ndarray]:
    """``step(spec, weights, X, y, lr, num_devices)`` (a module-level function) in a
    new Python process with ``env`` added, stopped after ``timeout_s``: its weights.
    ``ValueError`` before the child starts for arguments that cannot work;
    ``RuntimeError`` with the child's own exception and the end of its stderr;
    ``TimeoutError`` saying what the child was doing (its last :func:`child_note`)
    and ``slow``, why the work may just be slow."""
    check_count(num_devices, what="devices")
    check_labels(len(X), len(y))
    check_split(len(y), num_devices, what="devices")
    check_timeout(timeout_s)
    check_importable(step)
    with tempfile.TemporaryDirectory() as folder:
        with open(os.path.join(folder, "job.pkl"), "wb") as f:
            pickle.dump((step.__module__, step.__qualname__, spec, lr, num_devices), f)
        np.savez(os.path.join(folder, "in.npz"), X=X, y=y, **weights)
        path = os.pathsep.join([_ROOT, *filter(None, sys.path)])  # as spawn's children
        try:
            result = subprocess.run(
                [sys.executable, "-c", "import sys; from d2l_lite import processes; "
                 "processes._child_step(sys.argv[1])", folder],
                env={**os.environ, **(env or {}), "PYTHONPATH": path},
                capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as expired:  # run() has killed the child
            raise TimeoutError(
                f"the {num_devices}-device step ran longer than timeout_s={timeout_s:g} s "
                f"and its child process was stopped; it was {_last_note(expired.stderr)}. "
                f"Give a larger timeout_s if the step is just slow{slow}.") from None
        failure = Path(folder, "error.txt")
        if result.returncode:
            own = (failure.read_text() if failure.exists() else f"it exited with code "
                   f"{result.returncode} before its step could raise")
            raise RuntimeError(f"the {num_devices}-device step failed in its child "
                               f"process: {own}\nIts stderr ends:\n{result.stderr[-3000:]}")
        with np.load(os.path.join(folder, "out.npz")) as out:
            return {name: out[name] for name in out.files}


def child_note(what: str) -> None:
    """In :func:`child_step`'s child: what it does now (quoted if time runs out)."""
    print(f"d2l child: {what}", file=sys.stderr, flush=True)


def _last_note(stderr) -> str:
    if isinstance(stderr, bytes):
        stderr = stderr.decode(errors="replace")
    notes = [line[len("d2l child: "):] for line in (stderr or "").splitlines()
             if line.startswith("d2l child: ")]
    return notes[-1] if notes else "starting Python"


def _child_step(folder: str) -> None:
    """:func:`child_step`'s child: the job in, the weights out; an exception is
    written to ``error.txt`` (type and first line) and raised again."""
    try:
        child_note("loading its job")
        with open(os.path.join(folder, "job.pkl"), "rb") as f:
            module, name, spec, lr, num_devices = pickle.load(f)
        with np.load(os.path.join(folder, "in.npz")) as arrays:
            weights = {key: arrays[key] for key in arrays.files}
        X, y = weights.pop("X"), weights.pop("y")
        child_note(f"importing {module}")
        step = getattr(importlib.import_module(module), name)
        np.savez(os.path.join(folder, "out.npz"),
                 **step(spec, weights, X, y, lr, num_devices))
    except BaseException as error:  # written for the parent, then raised again
        lines = str(error).strip().splitlines()
        first = lines[0] if lines else ""
        Path(folder, "error.txt").write_text(f"{type(error).__name__}: {first}")
        raise
