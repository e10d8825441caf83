"""Framework-neutral run-time settings (the scale of the run), the machine and
device notices, and wall-clock timing."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Callable

#: Set to 1 (``make test`` and CI do) for quick training runs on a few hundred images.
SMALL_SCALE_ENV = "D2L_SMALL_SCALE"


def small_scale() -> bool:
    """True when ``D2L_SMALL_SCALE`` asks for the quick, small-scale mode."""
    return env_flag(SMALL_SCALE_ENV)


def env_flag(name: str) -> bool:
    """An environment variable as a switch: unset, empty, 0, false or no is off."""
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def check_batch_shape(input_shape, channels_last: bool) -> None:
    """The FLOP counters' check: ``input_shape`` is a batch of images, four
    numbers (three would run as a batch of 2-d images), NCHW or NHWC."""
    if len(input_shape) != 4:
        layout, example = (("N x H x W x C", "(1, 28, 28, 192)") if channels_last
                           else ("N x C x H x W", "(1, 192, 28, 28)"))
        raise ValueError(f"input_shape must be {layout}, e.g. {example}, "
                         f"got {tuple(input_shape)}")


def device_notice(framework: str, is_gpu: bool, name: str) -> str:
    """One plain line saying where ``framework`` runs; printed by ``try_gpu``."""
    if is_gpu:
        return f"{framework}: using the GPU ({name})"
    return f"{framework}: no GPU found, running on the CPU ({name}): slow at full scale."


def hardware() -> str:
    """The machine in words: the GPU's name, else the CPU's model and cores."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
        names = [line.strip() for line in out.stdout.splitlines() if line.strip()]
        if out.returncode == 0 and names:
            return names[0] + (f" (x{len(names)}, one used)" if len(names) > 1 else "")
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        model = next(line.split(":", 1)[1].strip() for line in lines
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    return f"CPU: {model}, {os.cpu_count()} cores"


def median_seconds(call: Callable, repeats: int = 10, warmup: int = 2,
                   sync: Callable = lambda: None) -> float:
    """Median seconds of ``call()`` over ``repeats`` calls after ``warmup`` untimed ones,
    with ``sync()`` around each."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}")
    times = []
    for i in range(warmup + repeats):
        sync()
        timer = Timer()
        call()
        sync()
        if i >= warmup:
            times.append(timer.elapsed())
    return statistics.median(times)


class Timer:
    """Wall-clock seconds; the frameworks synchronise the device before reading it."""
    def __init__(self):
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start
