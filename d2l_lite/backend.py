"""The one interface every framework implements, and the registry of the four.

A chapter page uses its framework's own idioms (``from d2l_lite import torch
as d2l``; ``d2l.GoogLeNet()``). Everything that treats the frameworks alike,
the benchmark, ``tests/test_backends.py`` and the parity test, goes through
:class:`Backend` instead, so that one contract says what "build", "port
weights" or "train" means::

    from d2l_lite import architecture, backend, reference
    torch = backend.get("torch")
    model = torch.build(architecture.BOOK)
    torch.load_weights(model, reference.random_weights(architecture.BOOK))
    torch.logits(model, X)          # equals reference.forward(...) in float32

Weights cross the interface under neutral names, the description's layer
paths (``reference.parameter_shapes`` and ``reference.state_shapes``):
``"inception3a/branch2/3x3_reduce/weight"``, ``"conv1_bn/running_mean"``, in
PyTorch's layout (convolutions OIHW, dense layers out x in, reading an NCHW
map). Each backend maps these names to its own tensors by the model's
structure, so moving weights between frameworks is a dictionary lookup; the
layout conversion happens in the backend, once.

Images cross it as NumPy arrays in NCHW order (float32, pixels in [0, 1]);
labels as int64. ``model`` is whatever :meth:`Backend.build` returns: the
framework's model object (JAX: the module with its variables).
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import (Any, Dict, List, Optional, Protocol, Sequence, Tuple,
                    runtime_checkable)

import numpy as np

from .architecture import GoogLeNetSpec

#: Backend name -> the package that implements it (its ``BACKEND`` object).
BACKENDS = {"torch": "d2l_lite.torch", "tensorflow": "d2l_lite.tensorflow",
            "jax": "d2l_lite.jax", "mxnet": "d2l_lite.mxnet"}
#: The distribution each backend needs, to tell whether it can run here.
FRAMEWORKS = {"torch": "torch", "tensorflow": "tensorflow", "jax": "flax",
              "mxnet": "mxnet"}

#: The names every framework package exports, each for the same job, so that
#: ``d2l.X`` means one thing on all four pages of a chapter. Arguments, results
#: and layouts follow the framework's idiom: JAX passes variables and train
#: states and returns new ones (``train``: the history and the variables;
#: ``load_weights``: the variables), MXNet's ``train_step`` takes Gluon's trainer
#: and loss, batches are NHWC in TensorFlow and JAX, NCHW in PyTorch and MXNet.
PACKAGE_NAMES = (
    # book.py, the pages' saved code
    "Inception", "NaiveInception", "FactorizedInception", "ResidualInception",
    "GoogLeNet", "GoogLeNetAux", "SmallStemGoogLeNet", "max_pool", "train_step",
    # model.py, the model against its description
    "googlenet", "spec_of", "count_parameters", "branch_parameters", "stage_rows",
    "layer_summary", "load_weights", "get_weights", "logits",
    # train.py
    "try_gpu", "set_seed", "device_data", "prepare_batch", "make_optimizer", "train",
    # flops.py, and backend.py
    "count_flops", "expected_flops", "time_forward", "BACKEND")

Weights = Dict[str, np.ndarray]
StageRow = Tuple[str, Tuple[int, ...], int]  # (C, H, W), or (C,) for a 1x1 output


@runtime_checkable
class Backend(Protocol):
    """What a framework provides to the book's shared code and tests."""

    #: The registry key (``"torch"``) and the framework's name in prose (``"PyTorch"``).
    name: str
    title: str
    #: The dtype :meth:`data_parallel_step` computes in: ``"float64"`` where the
    #: framework's data-parallel engine supports it on a CPU, else ``"float32"``.
    parallel_dtype: str

    def build(self, spec: GoogLeNetSpec) -> Any:
        """The textbook model that ``spec`` describes (the page's classes, not a
        second implementation), with its parameters made, in inference mode.
        It keeps ``spec`` (the input size, which its layers cannot tell) for
        the methods below that take no spec."""

    def count_parameters(self, model: Any) -> int:
        """Trainable parameters (BatchNorm statistics are not parameters)."""

    def stage_rows(self, model: Any, spec: GoogLeNetSpec) -> List[StageRow]:
        """``counting.stage_rows(spec)`` measured on the model: for each stage
        (``b1`` ... ``b5``, ``head``, then ``aux1``, ``aux2``), its name, its
        output's ``(C, H, W)`` for one ``spec.input_size`` image (``(C,)`` where it
        is 1x1: the head, the auxiliary heads), and its parameters."""

    def tensor_names(self, model: Any) -> Dict[str, str]:
        """Neutral name -> the framework's own name of the same tensor, for
        every parameter and BatchNorm statistic, found from the model's
        structure (never from the order in which tensors were created)."""

    def load_weights(self, model: Any, weights: Weights) -> Any:
        """Copy neutral ``weights`` into ``model`` by name (a ``ValueError``
        names a missing, extra or misshapen tensor); return the model."""

    def get_weights(self, model: Any) -> Weights:
        """The model's tensors under neutral names, in PyTorch's layout: the
        inverse of :meth:`load_weights`."""

    def logits(self, model: Any, X: np.ndarray) -> np.ndarray:
        """Float32 inference logits of an NCHW batch, computed in IEEE float32
        (no TF32 on a GPU)."""

    def count_flops(self, model: Any, spec: GoogLeNetSpec) -> int:
        """2 x the multiply-accumulates of the convolutions and dense layers in
        one forward pass on one image, read from the framework (its FLOP
        counter, TF's profiler's Conv2D and MatMul ops, JAX's traced program):
        ``counting.analytic_flops(spec)``. A page's ``d2l.count_flops`` may
        count more (TF's profiler and XLA add biases and pools)."""

    def prepare_batch(self, images: np.ndarray, image_size: int) -> np.ndarray:
        """What the trainer feeds the model from uint8 ``N x 28 x 28`` images:
        pixels divided by 255, resized bilinearly as PyTorch does
        (``align_corners=False``) to ``image_size``; as float32 NCHW NumPy.
        Float images are taken to be in [0, 1] already; any other dtype is
        refused (``data.pixel_scale``)."""

    def optimizer_steps(self, recipe, weights: np.ndarray, grads: Sequence[np.ndarray],
                        rates: Sequence[float]) -> np.ndarray:
        """``recipe``'s optimiser, as the trainer makes it, on one float32
        parameter that starts at ``weights``: step ``t`` takes gradient
        ``grads[t]`` at learning rate ``rates[t]``. The parameter at the end."""

    def train_step(self, model: Any, X: np.ndarray, y: np.ndarray, lr: float) -> float:
        """One plain SGD step (no momentum, no weight decay) on the batch; the
        loss before the update."""

    def train(self, model: Any, data, recipe, **options):
        """The book's trainer (``training.fit`` with the framework's steps):
        a ``training.History``. ``options``: ``plot``, ``progress``,
        ``image_size`` and the framework's own."""

    def data_parallel_step(self, spec: GoogLeNetSpec, weights: Weights, X: np.ndarray,
                           y: np.ndarray, lr: float, num_devices: int) -> Weights:
        """The trained weights (BatchNorm's statistics may be left out) after
        one plain SGD step of the model ``spec`` describes (at least every
        spec without BatchNorm and aux heads), starting from ``weights``, with
        the batch split evenly over
        ``num_devices`` CPU devices or processes by the framework's own
        data-parallel engine (``num_devices=1``: the one-device step), in
        :attr:`parallel_dtype`. Where the framework makes its devices only at
        start-up, it runs in a child process (``processes.child_step``);
        never takes longer than its deadline."""


def available() -> List[str]:
    """The backends whose framework is installed in this environment (as a
    distribution: a folder named ``mxnet`` on ``sys.path`` is not MXNet)."""
    return [name for name in BACKENDS if _installed(FRAMEWORKS[name])]


def _installed(distribution: str) -> bool:
    try:
        metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


def get(name: str) -> Backend:
    """The backend registered under ``name``; a ``ValueError`` lists the names."""
    if name not in BACKENDS:
        raise ValueError(f"no backend named {name!r}; the backends are "
                         f"{', '.join(BACKENDS)}")
    found: Optional[Backend] = getattr(importlib.import_module(BACKENDS[name]),
                                       "BACKEND", None)
    if not isinstance(found, Backend):
        raise TypeError(f"{BACKENDS[name]}.BACKEND does not implement "
                        f"d2l_lite.backend.Backend")
    return found
