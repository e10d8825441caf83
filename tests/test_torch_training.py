"""d2l_lite.torch.train on a few Fashion-MNIST images beyond ``tests/test_backends.py``
(which holds its batches and optimisers to the common contract): the data on
the device, channels-last batches, and CUDA graphs (refused on a CPU; on a GPU
the replayed step equals the eager one). Small images (32x32) keep it to
seconds; the notebooks run 96x96."""

import math

import numpy as np
import pytest

import torch  # noqa: E402  (in .venv; a broken install must fail, not skip)

from d2l_lite import architecture, reference, training  # noqa: E402
from d2l_lite import torch as d2l  # noqa: E402

SPEC = architecture.BOOK
IMAGE_SIZE = 32


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def tiny(fashion_mnist):
    return fashion_mnist.subset(32, 24)


def test_device_data_and_channels_last_batches(tiny):
    images, labels, _, test_labels = d2l.device_data(tiny, torch.device("cpu"))
    assert (images.dtype, labels.dtype, tuple(test_labels.shape)) == \
        (torch.uint8, torch.int64, (24,))
    X = d2l.prepare_batch(images, torch.tensor([5, 0]), 96, channels_last=True)
    assert X.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CPU's message")
def test_cuda_graphs_without_cuda_are_refused(tiny):
    with pytest.raises(ValueError, match="CUDA graphs are a GPU feature"):
        d2l.train(d2l.googlenet(SPEC), tiny, training.CLASSIC.with_(batch_size=16),
                  graph=True, plot=False, progress=False)


# CUDA graphs ------------------------------------------------------------------
# On a GPU, d2l.train records its step once as a CUDA graph and replays it; on a
# CPU the very same step function runs eagerly on the same buffers (the tests
# above). The GPU tests hold the replayed step to the eager one.

needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="CUDA graphs need an NVIDIA GPU; here the step's eager twin runs (tests above)")


def test_graphed_step_without_cuda_runs_the_step_every_call():
    calls = []
    graphed = d2l.GraphedStep(lambda x: calls.append(x) or x * 2, enabled=False)
    for k in range(5):
        assert torch.equal(graphed(torch.tensor([k])), torch.tensor([2 * k]))
    assert len(calls) == 5


@needs_cuda
def test_graphed_step_replays_with_each_calls_inputs():
    calls = []

    def step(x):
        calls.append(1)
        return x * 2

    graphed = d2l.GraphedStep(step, warmup=1)
    for k in range(5):
        x = torch.full((3,), float(k), device="cuda")
        assert torch.equal(graphed(x), x * 2), k
    assert len(calls) == 2  # one warm-up call, one recording; the rest replayed


@needs_cuda
@pytest.mark.parametrize("recipe, tolerance", [
    # TF32 convolutions (cuDNN's default) keep 10 mantissa bits, ~5e-4 relative:
    # two runs may pick different cuDNN algorithms (benchmark mode), which round
    # differently; over 12 SGD steps that stays well under 2% of the distance the
    # weights moved. A graph that replayed stale batches would be O(1) away.
    (training.CLASSIC.with_(num_epochs=2, batch_size=16), 0.02),
    # bfloat16 keeps 8 bits (~4e-3 relative per rounding), through ~60 layers and
    # AdamW's normalised steps: allow 10%.
    (training.FAST.with_(num_epochs=2, batch_size=16), 0.10),
], ids=["classic-float32", "fast-bfloat16"])
def test_graphed_training_equals_eager_training(fashion_mnist, recipe, tolerance):
    data = fashion_mnist.subset(96, 64)  # 6 steps an epoch: 3 warm-up, then the graph
    weights = {}
    for graph in (True, False):
        model = d2l.googlenet(SPEC)
        d2l.train(model, data, recipe, device="cuda", image_size=IMAGE_SIZE, graph=graph,
                  plot=False, progress=False)
        weights[graph] = d2l.get_weights(model)
    start = reference.xavier_weights(SPEC, seed=recipe.seed)

    def distance(a, b):
        return math.sqrt(sum(((a[k] - b[k].astype(np.float64)) ** 2).sum() for k in start))

    moved, apart = distance(weights[False], start), distance(weights[True], weights[False])
    assert moved > 0
    assert apart < tolerance * moved, (apart, moved)
