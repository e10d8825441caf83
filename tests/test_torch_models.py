"""The textbook PyTorch code: the Inception block and GoogLeNet as the
chapters write them. That the built model equals the spec (every variant,
stage rows, counts, logits) is ``tests/test_contract.py``; here: the block,
the helpers' messages, and what the pages rely on."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from d2l_lite import architecture, counting, reference  # noqa: E402
from d2l_lite import torch as d2l  # noqa: E402

BLOCK = architecture.INCEPTION_3A
WIDTHS = (64, 96, 128, 16, 32, 32)

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def built_block(cls=d2l.Inception):
    block = cls(*WIDTHS)
    block(torch.zeros(1, 192, 28, 28))
    return block


def test_block_widths_are_table_1s_row():
    assert WIDTHS == (BLOCK.ch1x1, BLOCK.ch3x3red, BLOCK.ch3x3, BLOCK.ch5x5red,
                      BLOCK.ch5x5, BLOCK.pool_proj)


def test_block_output_and_branch_parameters():
    block = built_block()
    assert tuple(block(torch.zeros(2, 192, 28, 28)).shape) == (2, 256, 28, 28)
    assert d2l.branch_parameters(block) == counting.branch_params(BLOCK, (192, 28, 28))
    assert d2l.count_parameters(block) == 163_696


def test_block_matches_the_reference():
    block = built_block()
    weights = reference.random_weights(architecture.BOOK, seed=2)
    for name, tensor in zip([n for n in weights if n.startswith("inception3a/")],
                            block.parameters()):
        with torch.no_grad():
            tensor.copy_(torch.from_numpy(weights[name]))
    X = np.random.default_rng(0).random((2, 192, 28, 28)).astype(np.float32)
    with torch.no_grad():
        Y = block(torch.from_numpy(X)).numpy()
    expected = reference.inception_forward(BLOCK, X, weights)
    assert np.abs(Y - expected).max() < reference.float32_tolerance(expected)


def test_unbuilt_block_says_to_run_a_batch_first():
    with pytest.raises(ValueError, match="Run one batch through it first"):
        d2l.count_parameters(d2l.Inception(*WIDTHS))


def test_googlenet_is_stem_body_head_of_named_stages():
    model = d2l.googlenet(architecture.BOOK)
    assert [n for n, _ in model.stem.named_children()] == ["b1", "b2"]
    assert [n for n, _ in model.body.named_children()] == ["b3", "b4", "b5"]
    assert d2l.count_parameters(model) == 5_977_530
    assert d2l.count_parameters(d2l.googlenet(architecture.PAPER)) == 6_998_552


def test_layer_summary_prints_the_stage_rows(capsys):
    d2l.layer_summary(d2l.googlenet(architecture.BOOK), (1, 1, 96, 96))
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["stage", "output", "shape", "parameters"]
    assert out[2].split() == ["b1", "(1,", "64,", "24,", "24)", "3,200"]
    assert out[-1].split() == ["head", "(1,", "10)", "10,250"]


def test_logits_restore_the_mode():
    model = d2l.googlenet(architecture.BOOK)
    model.train()
    d2l.logits(model, reference.random_input(architecture.BOOK))
    assert model.training


def test_load_weights_names_the_tensor_that_does_not_fit():
    model = d2l.googlenet(architecture.BOOK)
    with pytest.raises(ValueError, match="conv1/weight"):
        d2l.load_weights(model, reference.random_weights(architecture.PAPER))
    with pytest.raises(ValueError, match="tensors but the PyTorch model"):
        d2l.load_weights(model, reference.random_weights(architecture.PAPER_BN_AUX))


def test_paper_model_fails_exactly_below_the_specs_smallest_input():
    smallest = architecture.PAPER.min_input_size()
    model = d2l.googlenet(architecture.PAPER).eval()
    with torch.no_grad():
        assert tuple(model(torch.zeros(1, 3, smallest, smallest)).shape) == (1, 1000)
        with pytest.raises(RuntimeError):
            model(torch.zeros(1, 3, smallest - 1, smallest - 1))
