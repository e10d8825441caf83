"""Workers that fail on purpose, for tests/test_parallel_faults.py. They live in a
module because new processes import their worker by module and name."""

import os
import signal
import time

from d2l_lite import processes


def raising_worker(rank, world_size, out_dir):
    """Process 1 raises at once; process 0 would work for a minute."""
    if rank == 1:
        raise KeyError("no image 99 in process 1's share")
    time.sleep(60)


def killed_worker(rank, world_size, out_dir):
    """Process 1 is killed, as the out-of-memory killer would; 0 works on."""
    if rank == 1:
        print("process 1: about to be killed", flush=True, file=__import__("sys").stderr)
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(60)


def stalling_worker(rank, world_size, out_dir):
    """Both wait for ever, each saying where."""
    processes.note(out_dir, rank, "waiting in an all-reduce" if rank == 0
                   else "stuck on purpose in step 3")
    time.sleep(600)


def saving_worker(rank, world_size, value, out_dir):
    """Save ``value`` and the rank, as a real worker saves its results."""
    with open(os.path.join(out_dir, f"rank{rank}.txt"), "w") as f:
        f.write(f"{rank} {value}")


# Steps for processes.child_step: (spec, weights, X, y, lr, num_devices) -> weights


def halving_step(spec, weights, X, y, lr, num_devices):
    """Every weight times (1 - lr), with what it was given noted."""
    processes.child_note(f"stepping {len(X)} images on {num_devices} devices")
    return {name: w * (1 - lr) for name, w in weights.items()}


def stalling_step(spec, weights, X, y, lr, num_devices):
    processes.child_note("stuck on purpose in the all-reduce")
    time.sleep(600)


def raising_step(spec, weights, X, y, lr, num_devices):
    raise ValueError(f"the weights lack 'fc/bias' (spec {spec!r})")
