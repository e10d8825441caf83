"""The framework-neutral description, the analytic counter and the NumPy reference."""

import numpy as np
import pytest

from d2l_lite import architecture, counting, flop_rules, paper, reference, textbook


BOOK_PARAMS = 5_977_530  # the figure every chapter quotes, written once
BOOK_MACS = 276_066_304  # its multiply-adds for one 96x96 image


def test_book_model_counts():
    rows = counting.count_network(architecture.BOOK)
    assert counting.total_params(rows) == BOOK_PARAMS
    assert counting.total_macs(rows) == BOOK_MACS


def test_stage_rows_of_the_book():
    rows = counting.stage_rows(architecture.BOOK)
    assert rows == [
        ("b1", (64, 24, 24), 3_200), ("b2", (192, 12, 12), 114_944),
        ("b3", (480, 6, 6), 552_432), ("b4", (832, 3, 3), 2_809_168),
        ("b5", (1024, 3, 3), 2_487_536), ("head", (10,), 10_250)]
    assert sum(params for _, _, params in rows) == BOOK_PARAMS


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
    with pytest.raises(ValueError, match="at least 193x193"):  # the pages' example
        architecture.PAPER.check_input(3, 160, 160)


def test_wrong_channels_are_explained():
    with pytest.raises(ValueError, match="1-channel images but got 3 channels"):
        architecture.BOOK.check_input(3, 96, 96)


@pytest.mark.parametrize("kwargs, message", [
    ({"in_channels": 0}, "in_channels must be a positive int"),
    ({"num_classes": 2.5}, "num_classes must be a positive int"),
    ({"head_pool": "max"}, "head_pool must be 'global' or 'avg7'"),
    ({"in_channels": True}, "in_channels must be a positive int"),
    # a description whose own size is unfit is described again, not resized
    ({"input_size": 100, "head_pool": "avg7"}, "too small.*input_size from 193 to 224"),
    ({"stem": "small", "head_pool": "avg7", "input_size": 40}, r"ceil\(n / 8\).*49 to 56"),
    ({"aux_heads": True, "input_size": 32}, "65x65. At 32x32 the auxiliary head 'aux1'"),
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
    assert sum(int(np.prod(s)) for s in shapes.values()) == BOOK_PARAMS
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
    assert counting.total_macs(counting.count_network(naive)) > 2 * BOOK_MACS


def test_count_any_and_branch_params():
    assert counting.analytic_flops(architecture.BOOK) == 2 * BOOK_MACS
    assert counting.analytic_flops(architecture.INCEPTION_3A, (192, 28, 28)) == 2 * 128_049_152
    assert counting.branch_params(architecture.INCEPTION_3A, (192, 28, 28)) == {
        "branch1": 12_352, "branch2": 129_248, "branch3": 15_920, "branch4": 6_176}
    with pytest.raises(ValueError, match="needs input_size=\\(channels, height, width\\)"):
        counting.count_any(architecture.INCEPTION_3A, 28)
    with pytest.raises(ValueError, match="expected a GoogLeNetSpec"):
        counting.count_any("googlenet")


# Variants (last chapter) -------------------------------------------------------

VARIANT_PARAMS = {"baseline": BOOK_PARAMS, "batch norm": 5_984_810, "aux heads": 6_395_598,
                  "factorized 5x5": 5_669_434, "28x28": 5_974_970, "residual": 9_178_922}


@pytest.mark.parametrize("name", sorted(VARIANT_PARAMS))
def test_variant_parameter_counts(name):
    rows = counting.count_network(architecture.VARIANTS[name])
    assert counting.total_params(rows) == VARIANT_PARAMS[name]


def test_batch_norm_trades_each_conv_bias_for_a_scale_and_a_shift():
    plain = counting.count_network(architecture.BOOK, detail=True)
    bn = counting.count_network(architecture.VARIANTS["batch norm"], detail=True)
    channels = sum(r.out_shape[0] for r in plain if r.kind == "conv")
    assert counting.total_params(bn) - counting.total_params(plain) == channels
    assert counting.total_macs(bn) == counting.total_macs(plain)  # BN is not a MAC


def test_textbook_classes_name_one_class_per_variant_and_refuse_mixtures():
    names = {name: textbook.class_names(spec)
             for name, spec in architecture.VARIANTS.items()}
    assert names == {"baseline": ("Inception", "GoogLeNet"),
                     "batch norm": ("Inception", "GoogLeNet"),
                     "aux heads": ("Inception", "GoogLeNetAux"),
                     "factorized 5x5": ("FactorizedInception", "GoogLeNet"),
                     "28x28": ("Inception", "SmallStemGoogLeNet"),
                     "residual": ("ResidualInception", "GoogLeNet")}
    assert textbook.class_names(architecture.googlenet_spec(reduce=False)) == (
        "NaiveInception", "GoogLeNet")
    for kwargs, both in (({"reduce": False, "residual": True}, "naive and residual"),
                         ({"input_size": 28, "stem": "small", "aux_heads": True},
                          "small stem and aux heads")):
        with pytest.raises(ValueError, match=both):
            textbook.class_names(architecture.googlenet_spec(**kwargs))



def test_textbook_spec_inverts_textbook_classes_by_name():
    """A page defines its own copies of the classes: the same names, other objects."""
    pages = {name: type(name, (), {}) for name in (
        "Inception", "NaiveInception", "FactorizedInception", "ResidualInception",
        "GoogLeNet", "GoogLeNetAux", "SmallStemGoogLeNet")}
    for spec in (*architecture.VARIANTS.values(), architecture.googlenet_spec(reduce=False)):
        block, net = (pages[name] for name in textbook.class_names(spec))
        sizes = {"input_size": spec.input_size, "batch_norm": spec.batch_norm}
        assert textbook.spec(block, net, **sizes) == spec
    subclass = type("MyBlock", (pages["ResidualInception"],), {})
    assert textbook.spec(subclass, pages["GoogLeNet"]).stages == (
        architecture.VARIANTS["residual"].stages)
    with pytest.raises(ValueError, match="MyNet: not a textbook class"):
        textbook.spec(pages["Inception"], type("MyNet", (), {}))

def test_residual_blocks_add_one_linear_1x1_projection_each():
    spec = architecture.VARIANTS["residual"]
    rows = counting.count_network(spec, detail=True)
    shortcuts = [r for r in rows if r.name.endswith("/shortcut")]
    blocks = [r for r in counting.count_network(architecture.BOOK)
              if r.name.startswith("inception")]
    assert [r.name for r in shortcuts] == [f"{b.name}/shortcut" for b in blocks]
    # C_in x C_out weights and C_out biases, at the block's map size
    assert [r.params for r in shortcuts] == [
        b.in_shape[0] * b.out_shape[0] + b.out_shape[0] for b in blocks]
    assert counting.total_params(rows) - BOOK_PARAMS == sum(r.params for r in shortcuts)
    assert all(not r.layer.relu for r in architecture.walk(spec) if "shortcut" in r.name)
    with pytest.raises(ValueError, match="residual"):
        flop_rules.xla_flops(spec)


def test_aux_heads_are_trained_but_not_run_at_inference():
    spec = architecture.VARIANTS["aux heads"]
    rows = counting.count_network(spec, detail=True)
    aux = [r for r in rows if r.part == "aux"]
    assert [r.name for r in aux] == ["aux1/pool", "aux1/conv", "aux1/fc1", "aux1/fc2",
                                     "aux2/pool", "aux2/conv", "aux2/fc1", "aux2/fc2"]
    assert aux[0].in_shape == (512, 6, 6) and aux[1].out_shape == (128, 1, 1)
    assert counting.inference_macs(rows) == counting.total_macs(
        counting.count_network(architecture.BOOK))
    assert counting.analytic_flops(spec) == counting.analytic_flops(architecture.BOOK)
    assert spec.min_input_size() == 65  # inception4a must leave a 5x5 map for the pool
    with pytest.raises(ValueError, match="too small"):
        spec.check_input(1, 64, 64)


def test_factorized_branch_sees_a_5x5_window_with_fewer_weights():
    block = architecture.replace(architecture.INCEPTION_3A, factorize=True)
    layers = dict(block.branches())["branch3"]
    assert [(c.name, c.kernel, c.out_channels) for c in layers] == [
        ("5x5_reduce", 1, 16), ("5x5a", 3, 16), ("5x5b", 3, 32)]
    params = counting.branch_params(block, (192, 28, 28))
    assert params["branch3"] == (192 * 16 + 16) + (16 * 16 * 9 + 16) + (16 * 32 * 9 + 32)


def test_paper_bn_aux_counts_match_the_torchinfo_figures():
    """13.39M parameters and 3.17 G mult-adds: torchinfo counts a (2, 3, 224, 224)
    batch in eval mode (aux heads not run, their parameters still counted)."""
    spec = architecture.PAPER_BN_AUX
    assert counting.total_params(counting.count_network(spec)) == 13_385_816
    assert counting.torchinfo_mult_adds(spec, batch_size=2) == 3_165_374_864
    assert round(counting.torchinfo_mult_adds(spec, batch_size=2) / 1e9, 2) == 3.17
    # PAPER without BN: each conv's bias costs C x H x W mult-adds in torchinfo's rule
    rows = counting.count_network(architecture.PAPER, detail=True)
    bias_adds = sum(r.out_shape[0] * r.out_shape[1] * r.out_shape[2]
                    for r in rows if r.kind == "conv")
    assert counting.torchinfo_mult_adds(architecture.PAPER) == (
        counting.total_macs(rows) + bias_adds + 1000)


def test_small_stem_keeps_28x28_images_large_enough():
    spec = architecture.VARIANTS["28x28"]
    assert dict(spec.spatial_sizes(28))["b2"] == 14
    assert dict(architecture.BOOK.spatial_sizes(28))["b2"] == 4
    with pytest.raises(ValueError, match="stem"):
        architecture.googlenet_spec(stem="tiny")


def test_classic_networks_counts():
    from d2l_lite import classic_nets

    vgg = counting.count_network(classic_nets.vgg11_spec())
    assert counting.total_params(vgg) == 132_863_336  # torchvision's vgg11
    assert counting.total_macs(vgg) == 7_609_090_048  # its 7.61 GFLOPS (MACs)
    alexnet = counting.count_network(classic_nets.alexnet_spec(input_size=227))
    assert counting.total_params(alexnet) == 62_378_344  # the paper's AlexNet, one tower
    nin = classic_nets.nin_spec()
    assert not any(r.kind == "dense" for r in counting.count_network(nin))
