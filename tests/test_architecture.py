"""The framework-neutral description, the analytic counter and the NumPy reference."""

import numpy as np
import pytest

from d2l_lite import architecture, counting, paper, reference


def test_book_model_counts():
    rows = counting.count_network(architecture.BOOK)
    assert counting.total_params(rows) == 5_977_530
    assert counting.total_macs(rows) == 276_066_304


def test_paper_model_counts():
    rows = counting.count_network(architecture.PAPER)
    assert counting.total_params(rows) == 6_998_552
    assert counting.total_macs(rows) == 1_582_671_872  # "about 1.58 G"


def test_detail_rows_sum_to_block_rows():
    coarse = counting.count_network(architecture.BOOK)
    fine = counting.count_network(architecture.BOOK, detail=True)
    assert counting.total_params(fine) == counting.total_params(coarse)
    assert counting.total_macs(fine) == counting.total_macs(coarse)
    assert any(r.name == "inception4e/branch3/5x5" for r in fine)


def test_inception_3a_worked_example():
    rows = {r.name.split("/", 1)[1]: r for r in
            counting.count_inception(architecture.INCEPTION_3A, (192, 28, 28))}
    assert architecture.INCEPTION_3A.out_channels == 256
    # The 5x5 branch with and without its 16-channel 1x1 reduction.
    naive = counting.count_conv(architecture.Conv("5x5", 32, 5, padding=2), (192, 28, 28))
    assert naive.macs == 120_422_400
    assert rows["branch3/5x5_reduce"].macs + rows["branch3/5x5"].macs == 12_443_648
    assert sum(r.params for r in rows.values()) == 163_328 + 368 == 163_696  # weights + biases


def test_spatial_sizes_of_the_book_model():
    assert architecture.BOOK.spatial_sizes(96) == (
        ("b1", 24), ("b2", 12), ("b3", 6), ("b4", 3), ("b5", 3), ("head", 1))
    assert dict(architecture.PAPER.spatial_sizes(224))["b5"] == 7


def test_minimum_input_sizes():
    assert architecture.BOOK.min_input_size() == 1  # global pooling takes anything
    assert architecture.PAPER.min_input_size() == 193  # ceil(n / 32) >= 7
    architecture.PAPER.check_input(3, 193, 193)
    with pytest.raises(ValueError, match="too small.*193x193.*7x7 average pool"):
        architecture.PAPER.check_input(3, 192, 192)


def test_wrong_channels_are_explained():
    with pytest.raises(ValueError, match="1-channel images but got 3 channels"):
        architecture.BOOK.check_input(3, 96, 96)


@pytest.mark.parametrize("kwargs, message", [
    ({"in_channels": 0}, "in_channels must be a positive int"),
    ({"num_classes": 2.5}, "num_classes must be a positive int"),
    ({"head_pool": "max"}, "head_pool must be 'global' or 'avg7'"),
    ({"input_size": 100, "head_pool": "avg7"}, "too small"),
])
def test_spec_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        architecture.googlenet_spec(**kwargs)


def test_part_lookup():
    assert [s.name for s in architecture.BOOK.part("stem")] == ["b1", "b2"]
    assert [s.name for s in architecture.BOOK.part("body")] == ["b3", "b4", "b5"]
    with pytest.raises(ValueError, match="part must be"):
        architecture.BOOK.part("neck")


def test_reference_weights_match_the_counter():
    shapes = reference.parameter_shapes(architecture.BOOK)
    assert sum(int(np.prod(s)) for s in shapes.values()) == 5_977_530
    assert shapes["conv1/weight"] == (64, 1, 7, 7)
    assert shapes["inception3a/branch2/3x3/weight"] == (128, 96, 3, 3)
    assert shapes["fc/weight"] == (10, 1024)


def test_reference_forward_is_deterministic_and_well_scaled():
    weights = reference.random_weights(architecture.BOOK, seed=0)
    x = reference.random_input(architecture.BOOK, batch_size=2, seed=0)
    y = reference.forward(architecture.BOOK, weights, x)
    assert y.shape == (2, 10) and y.dtype == np.float64
    assert 0.1 < np.abs(y).max() < 100  # nothing vanished or exploded
    np.testing.assert_array_equal(y, reference.forward(architecture.BOOK, weights, x))


def test_reference_max_pool_ignores_padding():
    # A window that overlaps the padding must return the real maximum, even
    # when every real value is negative (padding is -inf, not 0).
    x = -np.ones((1, 1, 2, 2))
    out = reference._max_pool(x, kernel=3, stride=2, padding=1)
    assert out.shape == (1, 1, 1, 1) and out.item() == -1


def test_paper_table1_rows_that_follow_from_the_architecture():
    rows = paper.compare_table1()
    assert [r.layer for r in rows if r.params_agree] == [
        "conv2+conv3", "inception3a", "inception3b", "inception4b", "fc"]
    assert [r.layer for r in rows if not r.ops_agree] == ["conv1", "inception5a"]
    conv1 = rows[0]
    assert conv1.computed_params_k == round(9408 / 1024, 1)


def test_torchvision_count_is_reconciled_exactly():
    steps = paper.torchvision_params()
    assert steps[0][1] == 6_998_552
    assert sum(n for _, n in steps[:-1]) == steps[-1][1] == 6_624_904


def test_paper_head_rejects_inputs_too_large_for_its_7x7_pool():
    assert architecture.PAPER.input_size_range == (193, 224)
    assert architecture.BOOK.input_size_range == (1, None)
    with pytest.raises(ValueError, match="too large.*193 to 224.*head_pool='global'"):
        architecture.PAPER.check_input(3, 224, 256)


def test_naive_counterfactual_drops_only_the_reductions():
    naive = architecture.googlenet_spec(reduce=False)
    block = naive.stages[2].layers[0]
    assert [len(layers) for _, layers in block.branches()] == [1, 1, 1, 2]
    assert block.out_channels == architecture.INCEPTION_3A.out_channels
    assert counting.total_macs(counting.count_network(naive)) > 2 * 276_066_304


def test_count_any_and_branch_params():
    assert counting.analytic_flops(architecture.BOOK) == 2 * 276_066_304
    assert counting.analytic_flops(architecture.INCEPTION_3A, (192, 28, 28)) == 2 * 128_049_152
    assert counting.branch_params(architecture.INCEPTION_3A, (192, 28, 28)) == {
        "branch1": 12_352, "branch2": 129_248, "branch3": 15_920, "branch4": 6_176}
    with pytest.raises(ValueError, match="needs input_size=\\(channels, height, width\\)"):
        counting.count_any(architecture.INCEPTION_3A, 28)
    with pytest.raises(ValueError, match="expected a GoogLeNetSpec"):
        counting.count_any("googlenet")
