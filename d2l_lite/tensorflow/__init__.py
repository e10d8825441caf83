"""GoogLeNet in Keras, as ``from d2l_lite import tensorflow as d2l`` gives it to the
pages: the saved textbook code (``book``), the model and its weights by name
(``model``), training (``train``), FLOPs and timing (``flops``), data parallelism
(``parallel``; the checks its page's cells call, ``checks``) and the uniform
interface, ``BACKEND`` (``backend``)."""

import contextlib
import os
import sys

# A default TF reads once, on import: without an NVIDIA device, level 3 also
# hides the "failed call to cuInit" error TF logs while probing for CUDA.
_GPU_MACHINE = os.path.exists("/dev/nvidiactl")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2" if _GPU_MACHINE else "3")


@contextlib.contextmanager
def _quiet_import():
    """Without an NVIDIA device, send file descriptor 2 to /dev/null while TF loads:
    TF 2.19+ logs its CUDA probe ("Could not find cuda drivers") and a oneDNN notice
    before its logging reads TF_CPP_MIN_LOG_LEVEL (tensorflow/tensorflow#100442).
    Import errors still raise, and print after stderr is back."""
    if _GPU_MACHINE:
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


with _quiet_import():
    import keras  # noqa: E402
    import tensorflow as tf  # noqa: E402, F401

if keras.backend.backend() != "tensorflow":  # pragma: no cover - KERAS_BACKEND set elsewhere
    raise ImportError("d2l_lite.tensorflow needs Keras on TensorFlow: unset KERAS_BACKEND")

from .checks import *  # noqa: E402, F401, F403
from .book import *  # noqa: E402, F401, F403
from .model import *  # noqa: E402, F401, F403
from .flops import *  # noqa: E402, F401, F403
from .parallel import *  # noqa: E402, F401, F403
from .train import *  # noqa: E402, F401, F403
from .backend import BACKEND  # noqa: E402, F401
