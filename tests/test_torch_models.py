"""d2l_lite.torch: the Inception block and GoogLeNet against the spec, the
analytic counts and the NumPy reference forward pass."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from d2l_lite import architecture, counting, reference  # noqa: E402
from d2l_lite import torch as d2l  # noqa: E402

BLOCK = architecture.INCEPTION_3A
WIDTHS = (BLOCK.ch1x1, BLOCK.ch3x3red, BLOCK.ch3x3, BLOCK.ch5x5red, BLOCK.ch5x5,
          BLOCK.pool_proj)
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def block():
    d2l.set_seed(0)
    block = d2l.Inception(*WIDTHS)
    block(torch.zeros(1, 192, 28, 28))  # materialise the lazy layers
    return block


@pytest.fixture(scope="module")
def book():
    d2l.set_seed(0)
    return d2l.GoogLeNet(architecture.BOOK)


@pytest.fixture(scope="module")
def paper():
    d2l.set_seed(0)
    return d2l.GoogLeNet(architecture.PAPER)


# The Inception block ---------------------------------------------------------

def test_inception_output_shape(block):
    Y = block(torch.rand(2, 192, 28, 28))
    assert tuple(Y.shape) == (2, BLOCK.out_channels, 28, 28) == (2, 256, 28, 28)


def test_inception_branch_parameters_match_counting(block):
    analytic = {}
    for row in counting.count_inception(BLOCK, (192, 28, 28)):
        branch = row.name.split("/")[1]
        analytic[branch] = analytic.get(branch, 0) + row.params
    assert d2l.branch_parameters(block) == analytic
    assert d2l.count_parameters(block) == sum(analytic.values()) == 163_696


def test_inception_layers_follow_the_spec(block):
    """Names, kernels, strides and paddings are those of architecture.Inception."""
    for branch, layers in BLOCK.branches():
        modules = getattr(block, branch)
        for layer in layers:
            module = getattr(modules, layer.name)
            assert module.kernel_size in (layer.kernel, (layer.kernel, layer.kernel))
            assert module.stride in (layer.stride, (layer.stride, layer.stride))
            assert module.padding in (layer.padding, (layer.padding, layer.padding))
            if isinstance(layer, architecture.Conv):
                assert module.out_channels == layer.out_channels


def test_inception_matches_reference(block):
    weights = reference.random_weights(architecture.BOOK, seed=1)
    prefix = f"{BLOCK.name}/"
    state = {name[len(prefix):].replace("/", "."): torch.from_numpy(value)
             for name, value in weights.items() if name.startswith(prefix)}
    block.load_state_dict(state)
    X = np.random.default_rng(1).random((2, 192, 28, 28)).astype(np.float32)
    with torch.no_grad():
        Y = block(torch.from_numpy(X)).numpy()
    expected = reference.inception_forward(BLOCK, X, weights)
    assert np.abs(Y - expected).max() < TOLERANCE


def test_unbuilt_block_cannot_be_counted():
    block = d2l.Inception(*WIDTHS)
    with pytest.raises(ValueError, match="Run one batch through it first"):
        d2l.branch_parameters(block)
    with pytest.raises(ValueError, match="Run one batch through it first"):
        d2l.count_parameters(block)


def test_bad_arguments_raise_value_error(book):
    with pytest.raises(ValueError, match="ch3x3 must be a positive int"):
        d2l.Inception(64, 96, 0, 16, 32, 32)
    with pytest.raises(ValueError, match="takes an Inception block"):
        d2l.branch_parameters(book)
    with pytest.raises(ValueError, match="GoogLeNetSpec"):
        d2l.GoogLeNet("book")
    with pytest.raises(ValueError, match="seed"):
        d2l.set_seed(-1)


# GoogLeNet ---------------------------------------------------------------------

def test_parts_hold_the_spec_stages(book):
    for part in ("stem", "body", "head"):
        names = [name for name, _ in getattr(book, part).named_children()]
        assert names == [stage.name for stage in architecture.BOOK.part(part)]
    assert isinstance(book.body.b3.inception3a, d2l.Inception)


def test_parameter_counts(book, paper):
    for model, spec, expected in ((book, architecture.BOOK, 5_977_530),
                                  (paper, architecture.PAPER, 6_998_552)):
        analytic = counting.total_params(counting.count_network(spec))
        assert d2l.count_parameters(model) == analytic == expected


def test_stage_output_shapes_follow_the_spec(book):
    spec = architecture.BOOK
    channels = {"b1": 64, "b2": 192, "b3": 480, "b4": 832, "b5": 1024}
    for size in (96, 64, 112):
        X = torch.zeros(1, 1, size, size)
        with torch.no_grad():
            shapes = []
            for part in ("stem", "body", "head"):
                for name, stage in getattr(book, part).named_children():
                    X = stage(X)
                    shapes.append((name, tuple(X.shape)))
        expected = [(name, (1, channels[name], side, side))
                    for name, side in spec.spatial_sizes(size) if name != "head"]
        assert shapes[:-1] == expected
        assert shapes[-1] == ("head", (1, spec.num_classes))


def test_layer_summary_prints_one_row_per_stage(book, capsys):
    d2l.layer_summary(book, (1, 1, 96, 96))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["stage", "part", "output", "shape", "parameters"]
    assert [line.split()[0] for line in lines[2:]] == ["b1", "b2", "b3", "b4", "b5", "head"]
    assert "(1, 1024, 3, 3)" in lines[-2] and lines[-1].endswith("10,250")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_logits_match_reference_book(book, seed):
    weights = reference.random_weights(architecture.BOOK, seed=seed)
    d2l.load_weights(book, weights)
    X = reference.random_input(architecture.BOOK, batch_size=2, seed=seed)
    Y = d2l.logits(book, X)
    assert Y.dtype == np.float32 and Y.shape == (2, 10)
    assert np.abs(Y - reference.forward(architecture.BOOK, weights, X)).max() < TOLERANCE


def test_logits_match_reference_book_batch_of_8(book):
    weights = reference.random_weights(architecture.BOOK, seed=3)
    d2l.load_weights(book, weights)
    X = reference.random_input(architecture.BOOK, batch_size=8, seed=3)
    Y = d2l.logits(book, X)
    assert np.abs(Y - reference.forward(architecture.BOOK, weights, X)).max() < TOLERANCE


def test_logits_match_reference_paper(paper):
    weights = reference.random_weights(architecture.PAPER, seed=0)
    d2l.load_weights(paper, weights)
    X = reference.random_input(architecture.PAPER, batch_size=1, seed=0)
    Y = d2l.logits(paper, X)
    assert Y.shape == (1, 1000)
    assert np.abs(Y - reference.forward(architecture.PAPER, weights, X)).max() < TOLERANCE


def test_logits_restore_mode_and_precision(book):
    precision = torch.backends.cudnn.conv.fp32_precision
    book.train()
    d2l.logits(book, reference.random_input(architecture.BOOK, batch_size=1))
    assert book.training
    assert torch.backends.cudnn.conv.fp32_precision == precision
    book.eval()


def test_load_weights_rejects_weights_that_do_not_fit(book):
    weights = reference.random_weights(architecture.BOOK)
    with pytest.raises(ValueError, match="do not fit this model"):
        d2l.load_weights(book, {k: v for k, v in weights.items() if k != "fc/bias"})
    with pytest.raises(ValueError, match="conv1/weight has shape"):
        d2l.load_weights(book, reference.random_weights(architecture.PAPER))  # 3 channels
    weights["conv1/weight"] = weights["conv1/weight"].transpose(2, 3, 1, 0)  # HWIO
    with pytest.raises(ValueError, match="conv1/weight has shape"):
        d2l.load_weights(book, weights)


def test_too_small_input_raises_before_any_layer(paper):
    with pytest.raises(ValueError, match="too small"):
        paper(torch.zeros(1, 3, 160, 160))
    with pytest.raises(ValueError, match="too small"):
        d2l.layer_summary(paper, (1, 3, 160, 160))
    smallest = architecture.BOOK.min_input_size()
    with pytest.raises(ValueError, match="too small"):
        d2l.GoogLeNet(architecture.BOOK)(torch.zeros(1, 1, smallest - 1, smallest - 1))


def test_wrong_channel_count_raises(book):
    with pytest.raises(ValueError, match="1-channel images but got 3 channels"):
        book(torch.zeros(1, 3, 96, 96))
    with pytest.raises(ValueError, match="N x C x H x W"):
        d2l.logits(book, np.zeros((1, 96, 96), dtype=np.float32))


def test_set_seed_makes_initialisation_repeatable():
    d2l.set_seed(7)
    first = d2l.Inception(*WIDTHS)
    first(torch.zeros(1, 192, 8, 8))
    d2l.set_seed(7)
    second = d2l.Inception(*WIDTHS)
    second(torch.zeros(1, 192, 8, 8))
    for a, b in zip(first.parameters(), second.parameters()):
        assert torch.equal(a, b)


def test_try_gpu_says_where_it_runs(capsys):
    device = d2l.try_gpu()
    out = capsys.readouterr().out
    assert out.startswith("PyTorch: ") and out.count("\n") == 1
    assert device.type == ("cuda" if torch.cuda.is_available() else "cpu")
