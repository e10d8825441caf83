"""The textbook PyTorch code beyond ``tests/test_backends.py`` (which holds every
variant's model to its description: stage rows, counts, logits, weights by
name): the block and its branches, lazy layers, the helpers' messages, a
hand-built model taking weights by name, and what the pages rely on."""

from dataclasses import replace

import numpy as np
import pytest

import torch  # noqa: E402  (in .venv; a broken install must fail, not skip)

from d2l_lite import architecture, counting, reference  # noqa: E402
from d2l_lite import torch as d2l  # noqa: E402

BLOCK = architecture.INCEPTION_3A
WIDTHS = (BLOCK.ch1x1, BLOCK.ch3x3red, BLOCK.ch3x3, BLOCK.ch5x5red, BLOCK.ch5x5,
          BLOCK.pool_proj)

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.mark.parametrize("cls, spec", [(d2l.Inception, BLOCK),
                                       (d2l.NaiveInception, replace(BLOCK, reduce=False))],
                         ids=["inception", "naive"])
def test_block_output_and_branch_parameters(cls, spec):
    block = cls(*WIDTHS)
    with pytest.raises(ValueError, match="Run one batch through it first"):
        d2l.count_parameters(block)
    block(torch.zeros(1, 192, 28, 28))
    assert tuple(block(torch.zeros(2, 192, 28, 28)).shape) == (2, spec.out_channels, 28, 28)
    branches = counting.branch_params(spec, (192, 28, 28))
    assert d2l.branch_parameters(block) == branches
    assert d2l.count_parameters(block) == sum(branches.values())
    if cls is d2l.NaiveInception:  # no 1x1 reductions before the 3x3 and 5x5
        assert [type(m).__name__ for m in block.branch3] == ["Conv2d", "ReLU"]


def test_layer_summary_prints_the_stage_rows(capsys):
    model = d2l.googlenet(architecture.BOOK)
    assert [n for n, _ in model.stem.named_children()] == ["b1", "b2"]
    assert [n for n, _ in model.body.named_children()] == ["b3", "b4", "b5"]
    d2l.layer_summary(model, (1, 1, 96, 96))
    out = capsys.readouterr().out.splitlines()
    rows = counting.stage_rows(architecture.BOOK)
    assert out[0].split() == ["stage", "output", "shape", "parameters"]
    assert out[2].split() == ["b1", "(1,", *[f"{c}," for c in rows[0][1][:-1]],
                              f"{rows[0][1][-1]})", f"{rows[0][2]:,}"]
    assert out[-1].split() == ["head", "(1,", f"{rows[-1][1][0]})", f"{rows[-1][2]:,}"]


def test_measuring_a_model_leaves_it_as_it_was():
    """stage_rows runs the aux heads in training mode, count_flops in eval mode
    (the heads idle): neither moves BatchNorm's statistics or the mode."""
    spec = architecture.googlenet_spec(batch_norm=True, aux_heads=True)
    model = d2l.googlenet(spec).train()
    before = [b.clone() for b in model.buffers()]
    d2l.stage_rows(model, (1, 1, 96, 96))
    assert d2l.count_flops(model, (1, 1, 96, 96)) == d2l.expected_flops(spec)
    assert model.training and all((b == a).all() for b, a in zip(model.buffers(), before))


def test_a_hand_built_models_description_is_read_from_its_layers():
    model = d2l.GoogLeNet(num_classes=1000)
    model(torch.zeros(1, 3, 224, 224))
    spec = d2l.spec_of(model)
    assert (spec.in_channels, spec.num_classes, spec.head_pool) == (3, 1000, "global")


def test_a_hand_built_model_takes_weights_by_name_and_logits_restore_the_mode():
    """The GoogLeNet page builds ``GoogLeNet()`` itself: its names come from its
    classes. A model of another description says which tensors differ."""
    spec = architecture.BOOK
    model = d2l.GoogLeNet()
    model(torch.zeros(1, 1, 96, 96))
    weights = reference.random_weights(spec, seed=3)
    X = reference.random_input(spec, seed=3)
    logits = d2l.logits(d2l.load_weights(model, weights), X)
    assert model.training
    expected = reference.forward(spec, weights, X)
    assert np.abs(logits - expected).max() < reference.float32_tolerance(expected)
    with pytest.raises(ValueError, match="conv1/weight"):
        d2l.load_weights(model, reference.random_weights(architecture.PAPER))
    with pytest.raises(ValueError, match="conv1/bias.*conv1_bn/weight"):
        d2l.load_weights(model, reference.random_weights(architecture.PAPER_BN_AUX))
