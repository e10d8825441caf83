"""Framework-neutral arithmetic of data parallelism: what one training step moves
between devices, and what that costs (the data-parallel chapter's cost model)."""

from __future__ import annotations


def allreduce_bytes(num_params: int, num_devices: int, bytes_per_value: int = 4) -> float:
    """Bytes each device sends (and receives) in a ring all-reduce of the gradients:
    ``2 (N - 1) / N`` times the gradient's size, half to reduce, half to share."""
    if num_devices < 1:
        raise ValueError(f"num_devices must be >= 1, got {num_devices}")
    return 2 * (num_devices - 1) / num_devices * num_params * bytes_per_value


def step_seconds(compute_seconds: float, num_params: int, num_devices: int,
                 bandwidth: float, bytes_per_value: int = 4) -> float:
    """One data-parallel step with the same batch per device: the single-device step
    (``compute_seconds``) plus the all-reduce at ``bandwidth`` bytes/s, not overlapped."""
    return compute_seconds + allreduce_bytes(num_params, num_devices,
                                             bytes_per_value) / bandwidth


def speedup(compute_seconds: float, num_params: int, num_devices: int,
            bandwidth: float, bytes_per_value: int = 4) -> float:
    """Images per second on ``num_devices`` over images per second on one (N images'
    batches per step, each step longer by the all-reduce)."""
    return num_devices * compute_seconds / step_seconds(
        compute_seconds, num_params, num_devices, bandwidth, bytes_per_value)
