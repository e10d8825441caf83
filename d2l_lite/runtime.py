"""Framework-neutral run-time settings: scale of the run and device notices."""

from __future__ import annotations

import os

__all__ = ["SMALL_SCALE_ENV", "small_scale", "device_notice"]

#: Set to 1 (``make test`` and CI do) to run training notebooks on a few
#: hundred images for a couple of epochs: same code path, 96x96 inputs.
SMALL_SCALE_ENV = "D2L_SMALL_SCALE"


def small_scale() -> bool:
    """True when ``D2L_SMALL_SCALE`` asks for the quick, small-scale mode."""
    value = os.environ.get(SMALL_SCALE_ENV, "").strip().lower()
    return value not in ("", "0", "false", "no")


def device_notice(framework: str, is_gpu: bool, name: str) -> str:
    """One plain line saying where ``framework`` runs; printed by ``try_gpu``."""
    if is_gpu:
        return f"{framework}: using the GPU ({name})"
    return (f"{framework}: no GPU found, running on the CPU ({name}). This works, "
            f"but training at full scale will be slow.")
