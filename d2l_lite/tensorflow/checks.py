"""The checks of the parallel page's engine, which its saved cells call: the
strategy made from checked device names, and :class:`FiniteCheck`, which refuses a
step whose batch is not the global batch or in which a device saw a NaN or an
infinity."""

import numpy as np
import tensorflow as tf

from .. import processes


def mirrored_strategy(devices):
    """``tf.distribute.MirroredStrategy`` over ``devices``: a list of names
    (``["/CPU:0", "/CPU:1"]``, as :func:`two_devices` gives) or a number, the
    first that many GPUs (or, without GPUs, logical CPU devices). Checked
    first, since TensorFlow takes a device that does not exist ("/GPU:3") and
    an empty list (every device) without a word."""
    gpus = tf.config.list_logical_devices("GPU")
    present = gpus or tf.config.list_logical_devices("CPU")
    if isinstance(devices, (str, tf.DeviceSpec)):
        devices = [devices]
    if not isinstance(devices, (list, tuple)):
        processes.check_count(devices, what="devices", available=len(present))
        return tf.distribute.MirroredStrategy([d.name for d in present[:devices]])
    processes.check_count(len(devices), what="devices")  # an empty list
    names = {(d.device_type, tf.DeviceSpec.from_string(d.name).device_index): d.name
             for d in tf.config.list_logical_devices()}
    here = ", ".join(f'"/{kind}:{index}"' for kind, index in names)
    found = []
    for device in devices:
        spec = (device if isinstance(device, tf.DeviceSpec)
                else tf.DeviceSpec.from_string(str(device)))
        key = ((spec.device_type or "").upper(), spec.device_index)
        if key not in names:
            hint = ("" if key[0] != "GPU" or gpus else
                    " This machine has no GPU: d2l.two_devices() splits the CPU into "
                    "two logical devices instead.")
            raise ValueError(f"there is no device {device!r} here: the devices are "
                             f"{here}. Name devices from that list, or give a number "
                             f"of devices.{hint}")
        if names[key] in found:
            raise ValueError(f"the device {device!r} is named twice in {list(devices)}: "
                             f"name each device once")
        found.append(names[key])
    return tf.distribute.MirroredStrategy(found)


class FiniteCheck:
    """The checks of the page's ``parallel_step``. On the host, before a step:
    the batch it is given has ``global_batch_size`` images (:meth:`check_batch`).
    On each device, before the update (:meth:`apply`): a NaN or an infinity in
    that device's loss or in the norm of its gradient sets a flag; one
    all-reduce of ``2 x devices`` flags tells every device every flag, and the
    update is applied on every device or on none. On the host, after the
    step (:meth:`raise_if_flagged`): a ``FloatingPointError`` that names the
    devices and the step. ``steps`` counts the updates made (a refused step
    is not one, as in JAX's and MXNet's optimiser counts).
    ``enabled=False`` leaves out the flags and their all-reduce (only to time
    what they cost)."""

    def __init__(self, strategy, global_batch_size, enabled=True):
        processes.check_count(global_batch_size, what="images in the global batch")
        self.strategy, self.global_batch_size, self.steps = (
            strategy, global_batch_size, 0)
        self.enabled = enabled

    def check_batch(self, batch):
        """``ValueError`` unless ``batch`` (from ``split_batch``) holds
        ``global_batch_size`` images: each device divides its loss by that
        number, so another one would scale every gradient."""
        shares = [y.shape[0] for y in self.strategy.experimental_local_results(batch[-1])]
        if None in shares:  # traced with unknown shapes: nothing to check here
            return
        # on several workers, this worker holds only its own replicas' shares
        size = sum(shares) * self.strategy.num_replicas_in_sync // len(shares)
        if size != self.global_batch_size:
            raise ValueError(
                f"parallel_step was made with global_batch_size="
                f"{self.global_batch_size}, but it was given a batch of {size} images "
                f"({' + '.join(map(str, shares))} on the devices): each device divides "
                f"its loss by {self.global_batch_size}, so every gradient would be "
                f"{size / self.global_batch_size:g} times what it should be. Make the "
                f"step with global_batch_size={size}, the size of the batch before "
                f"split_batch, or give it batches of {self.global_batch_size}.")

    def apply(self, optimizer, grads, variables, loss):
        """In a replica context: ``optimizer.apply(grads, variables)`` on every
        device if no device flagged a NaN or an infinity, else on none. Returns
        the all-reduced flags: the loss of device 0, 1, ..., then the
        gradient of device 0, 1, ..."""
        context = tf.distribute.get_replica_context()
        n, i = context.num_replicas_in_sync, context.replica_id_in_sync_group
        if not self.enabled:  # d2l's step: no flags, no all-reduce of them
            optimizer.apply(grads, variables)
            return tf.zeros([2 * n])
        bad = tf.cast(tf.stack([~tf.math.is_finite(loss),
                                ~tf.math.is_finite(tf.linalg.global_norm(grads))]),
                      tf.float32)
        mine = bad[:, None] * tf.one_hot(i, n)[None, :]  # 2 x n, this device's column
        flags = context.all_reduce("sum", tf.reshape(mine, [-1]))  # every device's
        finite = tf.reduce_all(tf.equal(flags, 0.0))

        # Zero gradients instead (tf.where) would not leave the weights alone:
        # AdamW still moves them by its momentum and weight decay, and advances
        # its moments and step count. So the update is skipped, on every device
        # alike. apply() synchronises the devices (a merge call), which
        # MirroredStrategy forbids inside a tf.cond in a replica context, so the
        # tf.cond is made in the cross-replica context and calls apply() on each
        # device from there: the way Keras's LossScaleOptimizer skips a step.
        def update(strategy, finite, grads):
            def apply_all():
                strategy.extended.call_for_each_replica(
                    optimizer.apply, args=(grads, variables))
                return tf.constant(True)

            # every device computed the same flags: take device 0's
            tf.cond(strategy.experimental_local_results(finite)[0], apply_all,
                    lambda: tf.constant(False))
        context.merge_call(update, args=(finite, grads))
        return flags

    def raise_if_flagged(self, flags):
        """On the host, after each step: count it if it updated, or raise the
        ``FloatingPointError`` of :func:`d2l_lite.processes.non_finite` if a
        device flagged a NaN or an infinity (its update was refused)."""
        flags = self.strategy.experimental_local_results(flags)[0]
        if not tf.executing_eagerly():
            raise RuntimeError(
                "parallel_step's checks raise on the host after each step, which a "
                "tf.function around the whole step cannot do: make the step with "
                "parallel_step(..., graph=True), which traces the devices' work "
                "into a graph and keeps the checks outside it")
        flags = np.asarray(flags).reshape(2, -1)
        n = flags.shape[1]
        losses, grads = (np.flatnonzero(row).tolist() for row in flags)
        if losses or grads:
            where = (f"in the loss of device(s) {losses}" if losses else
                     f"in the gradient of device(s) {grads}")
            raise processes.non_finite(self.steps + 1, where, n, "device")
        self.steps += 1
