"""One contract for every backend (``d2l_lite.backend.Backend``).

Each backend installed in the environment that runs this file is held to the
same checks, through the interface only: the model a description builds has
the description's stages, shapes and parameters, takes the canonical weights
by name and then computes the NumPy reference's logits, starts BatchNorm's
statistics where PyTorch does, counts the analytic FLOPs, learns, and takes
the same step on two devices as on one.
``tools/run_tests.sh`` runs this file in the main environment (PyTorch,
TensorFlow, JAX) and in the MXNet one, and fails unless the two runs together
exercised every registered backend (each test writes its name to the file
that ``D2L_BACKENDS_SEEN`` names).
"""

import ast
import importlib
import inspect
import math
import os
from pathlib import Path

import numpy as np
import pytest

from d2l_lite import architecture, backend, counting, reference, training

BACKENDS = backend.available()
SPECS = {**architecture.VARIANTS,
         "naive": architecture.googlenet_spec(reduce=False),
         "paper": architecture.PAPER,
         "paper bn aux": architecture.PAPER_BN_AUX}
#: Small images for the tests that train: every layer still has an output.
SMALL = architecture.googlenet_spec(input_size=32)


@pytest.fixture(params=BACKENDS, scope="module")
def impl(request, torch_one_thread_if_any):
    seen = os.environ.get("D2L_BACKENDS_SEEN")
    if seen:
        with open(seen, "a") as out:
            out.write(request.param + "\n")
    return backend.get(request.param)


@pytest.fixture(scope="module")
def torch_one_thread_if_any():
    """One PyTorch thread per test worker (see conftest's ``torch_one_thread``)."""
    try:
        import torch
    except ImportError:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_registry_knows_every_backend():
    assert set(backend.BACKENDS) == {"torch", "tensorflow", "jax", "mxnet"}
    with pytest.raises(ValueError, match="no backend named 'caffe'.*torch, tensorflow"):
        backend.get("caffe")


def test_a_backend_implements_the_protocol(impl):
    assert isinstance(impl, backend.Backend)
    assert impl.name in backend.BACKENDS
    assert impl.parallel_dtype in ("float32", "float64")


def test_the_package_exports_the_shared_names(impl):
    """``d2l.X`` is there on every framework's page (``backend.PACKAGE_NAMES``), and
    the recipe comes first wherever one is made into an optimiser."""
    package = importlib.import_module(backend.BACKENDS[impl.name])
    missing = [name for name in backend.PACKAGE_NAMES if not hasattr(package, name)]
    assert not missing, f"{package.__name__} lacks {missing}"
    assert package.BACKEND is impl
    assert next(iter(inspect.signature(package.make_optimizer).parameters)) == "recipe"


def test_the_package_keeps_its_size_rules():
    """What keeps each file readable in one sitting: no module over 400 lines, no
    function over 60; and no ``except Exception`` that would hide a backend's error
    (a broad handler must raise, or hand on the error it names)."""
    root = Path(backend.__file__).parent
    for path in sorted(root.rglob("*.py")):
        source = path.read_text()
        where, lines = path.relative_to(root.parent), len(source.splitlines())
        assert lines <= 400, f"{where}: {lines} lines"
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                assert length <= 60, f"{where}: {node.name} is {length} lines"
            caught = isinstance(node, ast.ExceptHandler) and (
                ast.unparse(node.type) if node.type else "everything")
            if caught in ("Exception", "BaseException", "everything"):
                inside = list(ast.walk(ast.Module(body=node.body, type_ignores=[])))
                assert any(isinstance(n, ast.Raise) or (isinstance(n, ast.Name)
                           and n.id == node.name) for n in inside), \
                    f"{where}:{node.lineno} catches {caught} and drops it"


@pytest.mark.parametrize("name", SPECS)
def test_the_model_is_the_description(impl, name):
    spec = SPECS[name]
    model = impl.build(spec)
    assert impl.stage_rows(model, spec) == counting.stage_rows(spec)
    assert impl.count_parameters(model) == counting.total_params(counting.count_network(spec))
    expected_names = {**reference.parameter_shapes(spec), **reference.state_shapes(spec)}
    assert set(impl.tensor_names(model)) == set(expected_names)
    weights = reference.random_weights(spec, seed=1)
    X = reference.random_input(spec, batch_size=2, seed=1)
    impl.load_weights(model, weights)
    back = impl.get_weights(model)
    assert set(back) == set(weights)
    for key, array in weights.items():  # layouts converted there and back: exact
        np.testing.assert_array_equal(back[key], array, err_msg=key)
    expected = reference.forward(spec, weights, X)
    logits = impl.logits(model, X)
    assert logits.shape == expected.shape and logits.dtype == np.float32
    # float32 against float64: a tolerance relative to the logits' magnitude
    assert np.abs(logits - expected).max() < reference.float32_tolerance(expected)


def test_batch_norm_statistics_start_fresh(impl):
    """Every running mean 0 and every running variance 1 after building, where
    PyTorch's BatchNorm2d starts: the state the description names."""
    spec = architecture.VARIANTS["batch norm"]
    names = reference.state_shapes(spec)
    state = {k: v for k, v in impl.get_weights(impl.build(spec)).items() if k in names}
    assert len(state) == len(names) > 0
    for key, value in state.items():
        expected = 0.0 if key.endswith("running_mean") else 1.0
        np.testing.assert_array_equal(value, expected, err_msg=key)


def test_a_conv_bias_beside_batchnorm_is_built_or_refused(impl):
    """The tutorial's conv biases beside BatchNorm (TUTORIAL_V1): PyTorch's
    conv_bn_relu keeps them; the others' has none and says so, rather than
    build a model that differs from its description."""
    spec = architecture.TUTORIAL_V1
    if impl.name == "torch":
        assert impl.count_parameters(impl.build(spec)) == counting.total_params(
            counting.count_network(spec))
    else:
        with pytest.raises(ValueError, match="conv_bias=True.*PyTorch's only"):
            impl.build(spec)


def test_the_papers_head_takes_a_7x7_map_only(impl):
    """The paper's 7x7 average pool: the smallest input that leaves a 7x7 map runs,
    one pixel less is refused (an error from the framework's shapes, or JAX's
    check) that names the 6x6 map it got, each in its framework's words."""
    spec = architecture.PAPER
    model, smallest = impl.build(spec), spec.min_input_size()
    X = np.zeros((1, 3, smallest, smallest), np.float32)
    assert impl.logits(model, X).shape == (1, spec.num_classes)
    six_by_six = {"torch": r"1024x6x6", "tensorflow": r"shape=\(1, 6, 6, 1024\)",
                  "jax": r"this input gives 6x6", "mxnet": r"exceeds input \(6 padded"}
    assert impl.name in six_by_six, "a new backend: add its framework's words here"
    with pytest.raises((RuntimeError, ValueError),  # MXNetError is a RuntimeError
                       match=six_by_six[impl.name]):
        impl.logits(model, X[:, :, 1:, 1:])


def test_weights_are_found_by_name_not_by_order(impl):
    """Two tensors of the same shape swapped in the dictionary's order land in
    their own places; a missing or misshapen tensor is named."""
    spec = architecture.BOOK
    model = impl.build(spec)
    weights = reference.random_weights(spec, seed=2)
    shuffled = dict(reversed(list(weights.items())))
    impl.load_weights(model, shuffled)
    X = reference.random_input(spec, seed=2)
    expected = reference.forward(spec, weights, X)
    assert np.abs(impl.logits(model, X) - expected).max() < reference.float32_tolerance(expected)
    missing = {k: v for k, v in weights.items() if k != "inception4b/branch3/5x5/weight"}
    with pytest.raises(ValueError, match="inception4b/branch3/5x5/weight"):
        impl.load_weights(model, missing)
    wrong = {**weights, "fc/bias": np.zeros(11, np.float32)}
    with pytest.raises(ValueError, match="fc/bias"):
        impl.load_weights(model, wrong)


@pytest.mark.parametrize("name", ["baseline", "naive"])
def test_the_flop_counter_counts_the_analytic_flops(impl, name):
    spec = SPECS[name]
    assert impl.count_flops(impl.build(spec), spec) == counting.analytic_flops(spec)


def bilinear(images: np.ndarray, size: int) -> np.ndarray:
    """PyTorch's bilinear resize (``align_corners=False``: samples at pixel
    centres, clamped at the edges) of N x h x w images, in float64 NumPy."""
    _, h, w = images.shape

    def axis(src: int):
        x = np.maximum((np.arange(size) + 0.5) * src / size - 0.5, 0)
        lo = np.minimum(np.floor(x).astype(int), src - 1)
        return lo, np.minimum(lo + 1, src - 1), x - lo

    (y0, y1, wy), (x0, x1, wx) = axis(h), axis(w)
    rows = images[:, y0] * (1 - wy)[None, :, None] + images[:, y1] * wy[None, :, None]
    return rows[:, :, x0] * (1 - wx) + rows[:, :, x1] * wx


@pytest.mark.parametrize("size", [96, 56, 28])
def test_the_trainers_batches_are_pytorchs_bilinear_resize(impl, size):
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28)).astype(np.uint8)
    X = impl.prepare_batch(images, size)
    assert X.shape == (3, 1, size, size) and X.dtype == np.float32
    # float32 sampling positions are off by up to 28 x 2**-24 ~ 2e-6 of a pixel,
    # and neighbouring pixels differ by at most 1: 1e-5 bounds both and rounding
    np.testing.assert_allclose(X[:, 0], bilinear(images / 255, size), rtol=0, atol=1e-5)


def test_the_trainers_batches_take_float_pixels_as_they_are(impl):
    """uint8 pixels are divided by 255, float ones are in [0, 1] already (the
    PyTorch parallel page poisons a float copy with a NaN): dividing them again, or
    casting them to uint8 (MXNet's backend did: 0.8 became 0), would feed the
    model a black image. Integers of another type are refused."""
    pixels = np.full((2, 28, 28), 204, np.uint8)
    np.testing.assert_allclose(impl.prepare_batch(pixels, 28), 0.8, rtol=1e-6)
    np.testing.assert_allclose(impl.prepare_batch(pixels / np.float32(255), 28), 0.8,
                               rtol=1e-6)
    for other in (np.int64, np.uint16):  # MXNet has no uint16: refused before it
        with pytest.raises(ValueError, match="takes uint8 pixels .* or floats in"):
            impl.prepare_batch(pixels.astype(other), 28)


def pytorch_steps(recipe, w, grads, rates):
    """``torch.optim.SGD`` (weight decay coupled: added to the gradient, which
    momentum then carries) and ``torch.optim.AdamW`` (decay decoupled; epsilon
    added to the bias-corrected square root), written out in float64."""
    w, m, v, (b1, b2), eps = w.astype(np.float64), 0.0, 0.0, (0.9, 0.999), 1e-8
    for t, (g, lr) in enumerate(zip(grads, rates), start=1):
        if recipe.optimizer == "sgd":
            d = g + recipe.weight_decay * w
            m = recipe.momentum * m + d
            w = w - lr * (d + recipe.momentum * m if recipe.nesterov else m)
        else:
            w = w * (1 - lr * recipe.weight_decay)
            m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
            w = w - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    return w


@pytest.mark.parametrize("recipe, rates", [
    # SGD at a constant rate: MXNet's and Keras's momentum buffers hold rate x
    # gradient, PyTorch's and optax's the gradient, so only there are they equal
    (training.CLASSIC.with_(momentum=0.9, weight_decay=0.01), [0.1] * 4),
    (training.CLASSIC.with_(momentum=0.9, nesterov=True, weight_decay=0.01), [0.1] * 4),
    (training.FAST.with_(weight_decay=0.2), [1e-3, 2e-3, 1.5e-3, 1e-3]),
], ids=["sgd", "nesterov", "adamw"])
def test_a_recipe_is_pytorchs_optimiser(impl, recipe, rates):
    """The same parameter, gradients and rates give PyTorch's steps, including on
    gradients near AdamW's epsilon (1e-7, 1e-6), where Keras's and MXNet's
    own AdamW take shorter steps than PyTorch's."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal(6).astype(np.float32)
    grads = [(rng.standard_normal(6) * scale).astype(np.float32)
             for scale in (1e-7, 1e-3, 1.0, 1e-6)]
    expected = pytorch_steps(recipe, w, grads, rates)
    # float32 steps: a few roundings of |w| ~ 1 per step, far below the
    # smallest step compared (AdamW's first, about 1e-3 x 0.5)
    np.testing.assert_allclose(impl.optimizer_steps(recipe, w, grads, rates), expected,
                               rtol=0, atol=1e-6)


def fashion_batch(fashion_mnist, size, n=16):
    """The first ``n`` training images, upsampled to ``size`` (nearest), NCHW."""
    rows = np.arange(size) * 28 // size
    X = fashion_mnist.train_images[:n][:, rows][:, :, rows] / np.float32(255)
    return X[:, None].astype(np.float32), fashion_mnist.train_labels[:n].astype(np.int64)


def test_training_steps_lower_the_loss(impl, fashion_mnist):
    """Plain SGD on one batch, from d2l's initialisation: five steps fit it better."""
    model = impl.build(SMALL)
    impl.load_weights(model, reference.xavier_weights(SMALL, seed=0))
    X, y = fashion_batch(fashion_mnist, SMALL.input_size)
    losses = [impl.train_step(model, X, y, lr=0.05) for _ in range(6)]
    assert all(np.isfinite(losses)), losses
    assert losses[-1] < losses[0], losses


# The trainer (``Backend.train``): the training chapter's loop on 64 images ------


@pytest.fixture(scope="module")
def tiny_data(fashion_mnist):
    return fashion_mnist.subset(64, 40)


#: The SGD run below; with lr 0 it also shows where training starts (a JAX run
#: of either then reuses the other's compiled step: the rate is an argument).
SGD = training.CLASSIC.with_(num_epochs=3, batch_size=16, lr=0.1, momentum=0.9)


def test_training_starts_from_the_reference_xavier_weights(impl, tiny_data):
    """With a learning rate of 0 the weights stay where ``train`` put them,
    whatever the model held before."""
    model = impl.load_weights(impl.build(SMALL), reference.random_weights(SMALL, seed=5))
    recipe = SGD.with_(num_epochs=1, lr=0.0, seed=3)
    impl.train(model, tiny_data, recipe, plot=False, progress=False)
    after = impl.get_weights(model)
    for name, array in reference.xavier_weights(SMALL, seed=3).items():
        np.testing.assert_array_equal(after[name], array, err_msg=name)


@pytest.mark.parametrize("recipe", [
    SGD,
    training.FAST.with_(num_epochs=3, batch_size=16, lr=1e-2, schedule="constant",
                        warmup_epochs=0.0),
], ids=["sgd", "adamw"])
def test_the_trainer_lowers_the_loss_and_reports_every_epoch(impl, tiny_data, recipe,
                                                             capsys):
    history = impl.train(impl.build(SMALL), tiny_data, recipe, plot=False, progress=False)
    if recipe.mixed_precision and history.device == "cpu":  # says it uses float32
        out = capsys.readouterr().out
        assert "bfloat16" in out and "float32" in out, out
    assert history.framework == impl.title and history.recipe == recipe
    assert (history.num_train, history.num_test) == (64, 40)
    assert [e.epoch for e in history.epochs] == [1, 2, 3]
    for e in history.epochs:
        assert all(math.isfinite(v) for v in (e.train_loss, e.train_acc, e.test_acc,
                                                e.seconds, e.images_per_sec))
        assert 0 <= e.train_acc <= 1 and 0 <= e.test_acc <= 1
        assert e.test_acc * 40 == pytest.approx(round(e.test_acc * 40))  # all 40, once
    assert history.epochs[-1].train_loss < history.epochs[0].train_loss
    assert history.compile_seconds >= 0


def test_the_trainer_refuses_what_it_cannot_train(impl, tiny_data):
    model = impl.build(SMALL)
    with pytest.raises(ValueError, match="no full batch"):
        impl.train(model, tiny_data, training.CLASSIC.with_(batch_size=128), plot=False,
                   progress=False)
    with pytest.raises(ValueError, match="training.Recipe"):
        impl.train(model, tiny_data, "classic", plot=False, progress=False)


@pytest.mark.parametrize("spec", [
    # the smallest images its aux heads take, rounded up, to keep it quick on a CPU
    architecture.googlenet_spec(batch_norm=True, aux_heads=True, input_size=72),
    architecture.VARIANTS["28x28"]], ids=["bn + aux heads", "28x28"])
def test_the_variants_train(impl, tiny_data, spec):
    """BatchNorm's statistics and the aux heads' losses through the trainer (in
    training mode: the running means move), and the 28x28 stem at its own size.
    Each trains at its spec's size: the model a backend builds remembers it."""
    model = impl.build(spec)
    recipe = training.FAST.with_(num_epochs=1, batch_size=16)
    e, = impl.train(model, tiny_data, recipe, plot=False, progress=False).epochs
    assert all(math.isfinite(v) for v in (e.train_loss, e.train_acc, e.test_acc))
    weights = impl.get_weights(model)
    assert all(np.isfinite(w).all() for w in weights.values())
    if spec.batch_norm:
        assert np.abs(weights["conv1_bn/running_mean"]).max() > 0


# Data parallelism (``Backend.data_parallel_step``) -----------------------------------


@pytest.mark.slow  # processes or devices of their own
def test_two_devices_take_the_one_device_step(impl, fashion_mnist):
    weights = reference.xavier_weights(SMALL, seed=0)
    X, y = fashion_batch(fashion_mnist, SMALL.input_size, n=8)
    one = impl.data_parallel_step(SMALL, weights, X, y, 0.1, 1)
    two = impl.data_parallel_step(SMALL, weights, X, y, 0.1, 2)
    update = max(np.abs(one[k] - weights[k]).max() for k in weights)
    gap = max(np.abs(two[k] - one[k]).max() for k in weights)
    # float64: the two halves' gradients summed in another order, ~1e-16 of the
    # update per addition. float32: ~1e-7 per addition over a batch of 8 and
    # the images' positions; 1e-4 of the update is still 1,000x below what
    # weighting the halves wrongly (or not averaging them) would cost.
    tolerance = 1e-9 if impl.parallel_dtype == "float64" else 1e-4
    assert update > 1e-3, "the step must move the weights for the comparison to mean anything"
    assert gap <= tolerance * update, f"{impl.name}: {gap:.2e} vs update {update:.2e}"


@pytest.mark.slow
@pytest.mark.parametrize("num_devices, match", [
    (0, r"must be a whole number >= 1, got 0"),
    (3, r"8 images, which do not split evenly over 3 (devices|processes) "
        r"\(shares of \[3, 3, 2\]\)")])
def test_a_device_count_that_cannot_be_is_refused(impl, fashion_mnist, num_devices,
                                                  match):
    """0 devices, or a batch of 8 that does not split over 3: a ValueError
    before anything starts, saying what was asked, in the same words."""
    X, y = fashion_batch(fashion_mnist, SMALL.input_size, n=8)
    with pytest.raises(ValueError, match=match):
        impl.data_parallel_step(SMALL, reference.xavier_weights(SMALL), X, y, 0.1,
                                num_devices)
