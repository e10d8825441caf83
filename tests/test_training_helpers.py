"""Framework-neutral pieces of d2l_lite.training: schedules and the checks the
training notebooks run on their histories."""

import json
import math
from pathlib import Path

import pytest

from d2l_lite import architecture, tables, training

ROOT = Path(__file__).resolve().parents[1]


def test_step_schedule_divides_by_ten_twice():
    recipe = training.Recipe("r", num_epochs=4, lr=0.1, schedule="step")
    rates = [training.learning_rate(recipe, step, steps_per_epoch=10) for step in range(40)]
    assert rates[0] == rates[19] == pytest.approx(0.1)
    assert rates[20] == rates[29] == pytest.approx(0.01)
    assert rates[30] == rates[39] == pytest.approx(0.001)
    # after a warm-up: halfway and three quarters through the steps that follow it
    warm = recipe.with_(num_epochs=2, warmup_epochs=1.0)
    rates = [training.learning_rate(warm, step, steps_per_epoch=8) for step in range(16)]
    assert rates[7] == rates[11] == pytest.approx(0.1)
    assert rates[12] == rates[13] == pytest.approx(0.01)
    assert rates[14] == rates[15] == pytest.approx(0.001)
    with pytest.raises(ValueError, match="'step'"):
        training.Recipe("r", schedule="linear")


@pytest.mark.parametrize("changes, match", [
    (dict(lr=-0.1), "lr must be a number >= 0, got -0.1"),
    (dict(lr=float("nan")), "lr must be"),
    (dict(weight_decay=-1e-4), "weight_decay must be >= 0"),
    (dict(warmup_epochs=11.0), r"warmup_epochs must be from 0 to num_epochs \(10\)"),
    (dict(momentum=1.0), r"momentum must be in \[0, 1\)"),
    (dict(nesterov=True), "nesterov=True needs a momentum > 0"),
    (dict(optimizer="adamw", momentum=0.9), "momentum and nesterov are SGD's"),
])
def test_a_recipe_that_cannot_train_as_meant_is_refused(changes, match):
    """Silently, a negative rate would climb the loss, a warm-up longer than
    the run would never reach the rate, and AdamW would ignore a momentum."""
    with pytest.raises(ValueError, match=match):
        training.CLASSIC.with_(**changes)


def _history(recipe, losses, accs):
    history = training.History("X", recipe, "cpu", 100, 50)
    for i, (loss, acc) in enumerate(zip(losses, accs)):
        history.epochs.append(training.EpochStats(i + 1, loss, acc, acc, 1.0, 100.0))
    return history


SMALL = training.run_scale(has_gpu=False, small=True)
REDUCED = training.run_scale(has_gpu=False, small=False)
FULL = training.run_scale(has_gpu=True, small=False)


def test_check_history_at_small_scale_accepts_a_plateau():
    recipe = training.CLASSIC.with_(num_epochs=2)
    checked = training.check_history(_history(recipe, [2.302, 2.303], [0.1, 0.1]),
                                     recipe, SMALL)
    assert checked == ["2 epochs", "finite", "no divergence"]


@pytest.mark.parametrize("losses, accs, scale, message", [
    ([2.3, 2.9], [0.1, 0.1], SMALL, "rose to 2.900"),
    ([2.3, math.nan], [0.1, 0.1], SMALL, "nan"),
    ([2.3, 2.2], [0.1, 0.3], FULL, "fast: test accuracy 0.300 < 0.8"),
    ([2.3, 0.5], [0.6, 0.79], REDUCED, "fast: test accuracy 0.790 < 0.8"),
    ([1.0, 1.2], [0.8, 0.8], FULL, "1.000 -> 1.200"),
])
def test_check_history_catches_what_must_not_happen(losses, accs, scale, message):
    recipe = training.FAST.with_(num_epochs=2)
    with pytest.raises(AssertionError, match=message):
        training.check_history(_history(recipe, losses, accs), recipe, scale)


def test_the_history_plot_shows_a_plateau_flat_and_survives_a_diverged_run():
    """Both axes start at zero (a loss at ln 10 to the third decimal must not
    fill its axis), and a run whose loss became inf or NaN is still drawn:
    the live plot is redrawn during training, before any check has run."""
    import matplotlib
    matplotlib.use("Agg")
    from d2l_lite import plotting
    recipe = training.CLASSIC.with_(num_epochs=3)
    flat = _history(recipe, [2.3033, 2.3021, 2.3003], [0.1, 0.12, 0.1])
    diverged = _history(recipe, [2.3, math.inf, math.nan], [0.1, 0.1, 0.1])
    for history, top in ((flat, 2.3033), (diverged, math.log(10))):
        loss, acc = plotting.plot_history([history]).axes
        assert loss.get_ylim() == pytest.approx((0, 1.1 * top))  # a margin above
        assert acc.get_ylim() == (0, 1)


def test_check_history_at_full_scale():
    recipe = training.FAST.with_(num_epochs=2)
    checked = training.check_history(_history(recipe, [1.0, 0.4], [0.8, 0.9]), recipe, FULL)
    assert checked[-2:] == ["loss fell", "test acc >= 0.8"]
    classic = training.CLASSIC.with_(num_epochs=2)
    checked = training.check_history(_history(classic, [2.3, 1.4], [0.1, 0.6]), classic, FULL)
    assert checked[-2:] == ["loss fell", "test acc > 0.5"]


def test_the_reduced_scale_asks_the_book_recipe_for_the_target_not_the_classic():
    assert (REDUCED.num_train, REDUCED.num_test, REDUCED.max_epochs) == (10_000, 10_000, 2)
    classic = training.CLASSIC.with_(num_epochs=2)
    checked = training.check_history(_history(classic, [2.30, 2.30], [0.1, 0.1]), classic, REDUCED)
    assert checked == ["2 epochs", "finite", "no divergence"]


@pytest.mark.parametrize("value, name", [("", "reduced"), ("0", "reduced"),
                                         ("false", "reduced"), ("No", "reduced"),
                                         ("1", "full"), ("yes", "full")])
def test_the_full_scale_switch_reads_as_the_small_scale_one(monkeypatch, value, name):
    monkeypatch.setenv("D2L_FULL_SCALE", value)
    assert training.run_scale(has_gpu=False, small=False).name == name


def test_a_cpu_scale_caps_a_recipe_and_says_float32_once():
    """Every CPU scale asks for float32 and says so in its note, so neither a
    training page's trainer nor the comparison's eight runs repeat it."""
    from d2l_lite import variants

    assert REDUCED.apply_recipe(training.FAST) == training.FAST.with_(
        num_epochs=2, batch_size=32, mixed_precision=False)  # nothing else changes
    assert FULL.apply_recipe(training.FAST) == training.FAST
    runs = variants.comparison_scale(REDUCED)
    assert runs.apply_recipe(variants.BASELINE).mixed_precision is False
    assert "float32" in REDUCED.note and "float32" in runs.note
    for scale in (SMALL, variants.comparison_scale(SMALL)):  # the tests' CPU scales
        assert scale.apply_recipe(training.FAST).mixed_precision is False
        assert scale.note.endswith(", in float32")
    on_gpu = training.run_scale(has_gpu=True, small=True)  # bfloat16 runs there
    assert on_gpu.apply_recipe(training.FAST).mixed_precision and "float32" not in on_gpu.note
    assert variants.comparison_scale(FULL).apply_recipe(variants.BASELINE) == variants.BASELINE


def test_fit_records_quarter_epochs_and_the_test_predictions():
    import numpy as np
    labels = np.arange(10) % 3
    recipe = training.CLASSIC.with_(num_epochs=2, batch_size=2)
    history = training.fit(
        "numpy", recipe, "cpu", 16, labels, lambda index, lr: (1.0, 1),
        lambda index: index % 3 if len(index) else index, plot=False, progress=False)
    assert [round(p[0], 3) for p in history.points] == [0.25, 0.5, 0.75, 1.0,
                                                        1.25, 1.5, 1.75, 2.0]
    assert all(p[1:] == (1.0, 0.5) for p in history.points)
    assert history.final_test_acc == 1.0 and history.test_predictions.tolist() == labels.tolist()
    assert "test_predictions" not in history.to_dict()


def test_check_comparison_reports_outcomes_and_requires_all_runs():
    from d2l_lite import variants

    scale = variants.comparison_scale(SMALL)
    histories = {}
    for name, _, recipe in variants.RUNS:
        applied = scale.apply_recipe(recipe)
        loss, acc = {"batch norm": (1.5, 0.6), "step decay": (2.9, 0.1)}.get(name, (2.3, 0.1))
        histories[name] = _history(applied, [loss] * applied.num_epochs,
                                   [acc] * applied.num_epochs)
    lines = variants.check_comparison(histories, scale)
    assert [line.split(",")[-1].split(" (")[0].strip() for line in lines] == [
        "plateau", "learned", "plateau", "plateau", "unstable", "plateau", "plateau"]
    del histories["28x28"]
    with pytest.raises(AssertionError):
        variants.check_comparison(histories, scale)


def test_the_papers_schedule_lowers_the_rate_4_percent_every_8_epochs():
    recipe = training.CLASSIC.with_(num_epochs=20, schedule="paper")
    rates = [training.learning_rate(recipe, epoch * 10, 10) for epoch in range(20)]
    assert rates[:8] == [0.01] * 8
    assert rates[8] == rates[15] == pytest.approx(0.0096)
    assert rates[16] == pytest.approx(0.01 * 0.96 ** 2)


def test_fit_narrows_a_padded_table_and_wraps_a_long_repr():
    table = "\n".join(["-" * 80, f"{'Layer':>20}{'Output Shape':>42}{'Param #':>18}",
                       f"{'Conv2D-2':>20}{'(1, 64, 48, 48)':>42}{3200:>18}", "=" * 80])
    narrow = tables.fit(table).splitlines()
    assert max(map(len, narrow)) <= 75 and narrow[2].split() == ["Conv2D-2", "(1,", "64,",
                                                                 "48,", "48)", "3200"]
    assert narrow[0] == "-" * len(narrow[0])  # a rule loses the same columns
    repr_ = "  (0): Conv2D(1 -> 64, kernel_size=(7, 7), stride=(2, 2), padding=(3, 3), " \
            "Activation(relu))"
    assert tables.fit(repr_).splitlines() == [
        "  (0): Conv2D(1 -> 64, kernel_size=(7, 7), stride=(2, 2), padding=(3, 3),",
        "      Activation(relu))"]
    assert tables.fit("short") == "short"


def test_table_numbers_keep_commas_and_never_turn_exponential():
    """Integers and floats of four or more digits alike carry commas, so a
    column reads the same whichever type a value arrived as."""
    lines = tables.format_table(("a", "b"), [(1_072, 1018.0), (159, 159.5),
                                             (0, 19103.4), (1, 0.81066)]).splitlines()
    assert [line.split() for line in lines[2:]] == [
        ["1,072", "1,018"], ["159", "159.5"], ["0", "19,103"], ["1", "0.8107"]]
    fixed = tables.format_table(("acc", "s"), [(0.8, 1234.56), (0.8766, 9.0)],
                                {"acc": 3, "s": 1}).splitlines()
    assert fixed[2:] == ["0.800  1,234.6", "0.877      9.0"]


def test_a_recipe_is_printed_beside_the_copy_a_run_uses(capsys):
    tables.print_fields(("setting", "book's recipe", "this run"),
                        ("batch_size", "lr", "optimizer"),
                        training.FAST, training.FAST.with_(batch_size=32))
    assert [line.split() for line in capsys.readouterr().out.splitlines()[2:]] == [
        ["batch_size", "256", "32"], ["lr", "0.002", "0.002"],
        ["optimizer", "adamw", "adamw"]]


def test_a_recipe_displays_wrapped_to_the_page():
    pretty = pytest.importorskip("IPython.lib.pretty")
    lines = pretty.pretty(training.FAST).splitlines()
    assert lines[0].startswith("Recipe(name='fast'") and len(lines) > 1
    assert max(map(len, lines)) <= 75 and "".join(lines).count("=") == len(
        repr(training.FAST).split("=")) - 1


def test_beyond_the_small_scale_six_of_seven_variants_must_learn():
    from d2l_lite import variants

    scale = variants.comparison_scale(REDUCED)
    histories = {}
    for k, (name, _, recipe) in enumerate(variants.RUNS):
        applied = scale.apply_recipe(recipe)
        acc = 0.1 if k < 2 else 0.8  # two runs at chance: one too many
        histories[name] = _history(applied, [1.0] * applied.num_epochs,
                                   [acc] * applied.num_epochs)
    with pytest.raises(AssertionError, match="larger scale"):
        variants.check_comparison(histories, scale)
    histories["baseline"].epochs[-1].test_acc = 0.8
    assert len(variants.check_comparison(histories, scale)) == len(variants.RUNS)


def test_a_difference_counts_only_beyond_the_seed_spread():
    from d2l_lite import variants

    recipe = variants.BASELINE.with_(num_epochs=1)
    histories = {name: _history(recipe, [1.0], [acc]) for name, acc in
                 (("baseline", 0.80), ("batch norm", 0.85), ("residual", 0.79),
                  ("28x28", 0.77), ("aux heads", 0.83))}
    again = _history(recipe.with_(seed=1), [1.0], [0.82])
    lines = variants.conclusions(histories, again)
    assert lines[0] == "baseline 0.800, seed 1: 0.820; spread 0.020"
    assert [line.split("  ")[-1] for line in lines[1:]] == [
        "better, 2.5 spreads: a result", "within the spread: no conclusion",
        "worse, 1.5 spreads: a hint", "better, 1.5 spreads: a hint"]
    again.epochs[-1].test_acc = 0.80  # two seeds that agree measure nothing
    assert variants.conclusions(histories, again)[1].endswith(
        "better; the seeds agreed, so no yardstick")


def test_the_training_index_collects_every_pages_committed_runs():
    rows = training.committed_results(ROOT / "chapters" / "training")
    assert [(framework, recipe) for framework, recipe, *_ in rows] == [
        (fw, recipe) for fw in ("PyTorch", "TensorFlow", "JAX", "MXNet")
        for recipe in ("classic", "fast")]
    assert all(0 <= float(acc) <= 1 and int(wall) > 0 for *_, acc, wall in rows)


def test_every_framework_trains_through_the_shared_loop():
    """training.fit draws each epoch's order (data.minibatch_indices, seeded) and each
    step's rate (training.learning_rate); every framework's d2l.train hands its step to
    it, so the four see the same batches and the same schedule."""
    import inspect
    fit = inspect.getsource(training.fit)
    assert "minibatch_indices(" in fit and "learning_rate(recipe" in fit
    for fw in ("torch", "tensorflow", "jax", "mxnet"):
        assert "training.fit(" in (ROOT / "d2l_lite" / fw / "train.py").read_text(), fw
        # the page's step writes the paper's auxiliary weight as a literal
        book = (ROOT / "d2l_lite" / fw / "book.py").read_text()
        assert f"+ {architecture.AUX_LOSS_WEIGHT} * " in book, fw


def test_the_results_table_prints_every_accuracy_to_three_places(capsys):
    """0.100 beside 0.824, never 0.1; the steady rate leaves out the first epoch."""
    classic = _history(training.CLASSIC.with_(num_epochs=2), [2.3, 2.3], [0.1, 0.1])
    fast = _history(training.FAST.with_(num_epochs=2), [2.0, 1.0], [0.5, 0.8241])
    fast.epochs[0].images_per_sec, fast.compile_seconds, fast.wall_seconds = 5.0, 4.04, 2.6
    training.results_table(classic, fast)
    assert [line.split() for line in capsys.readouterr().out.splitlines()[2:]] == [
        ["classic", "2", "0.100", "2.0", "100", "0.0", "0"],
        ["fast", "2", "0.824", "2.0", "100", "4.0", "3"]]


def test_a_summary_fits_the_page_and_the_training_index_reads_it(tmp_path):
    recipe = training.FAST.with_(num_epochs=2)
    history = _history(recipe, [2.0, 1.0], [0.5, 0.8])
    history.framework, history.device = "JAX", "NVIDIA H100 80GB HBM3"
    text = history.summary()
    assert max(len(line) for line in text.splitlines()) <= 75, text
    cell = {"cell_type": "code", "outputs": [{"output_type": "stream", "text": text}]}
    (tmp_path / "jax.ipynb").write_text(json.dumps({"cells": [cell]}))
    assert training.committed_results(tmp_path) == [
        ("JAX", "fast", "NVIDIA H100 80GB HBM3", "2 x 100", "0.800",
         f"{history.wall_seconds:.0f}")]
