"""The variants chapter's comparison: the baseline and one change per run, with the
same budget; each framework page trains them with its ``train``."""

from __future__ import annotations

from dataclasses import replace
from typing import Dict, List, Tuple

from . import architecture, counting, tables, training
from .architecture import GoogLeNetSpec
from .training import History, Recipe, RunScale

#: The book's recipe without label smoothing, so that it can be one of the changes.
BASELINE = training.FAST.with_(name="baseline", label_smoothing=0.0)

#: (run name, model, recipe): one change from the baseline each.
RUNS: Tuple[Tuple[str, GoogLeNetSpec, Recipe], ...] = (
    ("baseline", architecture.BOOK, BASELINE),
    ("batch norm", architecture.VARIANTS["batch norm"], BASELINE.with_(name="batch norm")),
    ("aux heads", architecture.VARIANTS["aux heads"], BASELINE.with_(name="aux heads")),
    ("label smoothing", architecture.BOOK,
     BASELINE.with_(name="label smoothing", label_smoothing=0.1)),
    ("step decay", architecture.BOOK, BASELINE.with_(name="step decay", schedule="step")),
    ("28x28", architecture.VARIANTS["28x28"], BASELINE.with_(name="28x28")),
    ("residual", architecture.VARIANTS["residual"], BASELINE.with_(name="residual")),
)


def comparison_scale(scale: RunScale) -> RunScale:
    """The scale of each run: smaller than one training page's, except on a GPU."""
    if scale.name == "small":  # the chapter's precision (float32 on a CPU)
        return replace(scale, num_train=128, num_test=64, max_epochs=1, note="small-scale "
                       "mode: each run 128 train / 64 test images, 1 epoch,\nbatches of 32"
                       + (", in float32" if scale.mixed_precision is False else ""))
    if scale.name == "reduced":  # the training chapter's CPU run, fewer test images
        return replace(scale, num_test=2_000, note="no GPU: each run 10,000 train / "
                       "2,000 test images, 2 epochs, batches of 32,\nin float32 "
                       "(bfloat16 is a GPU option)")
    return scale


def comparison_table(histories: Dict[str, History]) -> None:
    """One row per run: parameters, accuracy, time."""
    specs = {name: spec for name, spec, _ in RUNS}
    rows = []
    for name, h in histories.items():
        rows.append((name, counting.total_params(counting.count_network(specs[name])),
                     h.final_test_acc, max(h.metric("test_acc")), h.train_seconds,
                     round(h.steady_images_per_sec)))
    tables.print_table(("run", "parameters", "final acc", "best acc", "train s",
                        "images/s"), rows, {"final acc": 3, "best acc": 3, "train s": 1})


def check_comparison(histories: Dict[str, History], scale: RunScale) -> List[str]:
    """Assert that all runs ran, complete and finite (a plateau or instability is a result,
    not a failure; beyond the small scale at least six of the seven must beat 0.5, so that
    the comparison compares runs that learned); return one line per run: learned (above
    0.2), plateau, unstable."""
    assert list(histories) == [name for name, _, _ in RUNS], list(histories)
    lines = []
    for name, _, recipe in RUNS:
        history = histories[name]
        training.check_complete(history, scale.apply_recipe(recipe))
        outcome = ("unstable" if max(history.metric("train_loss")) > training.DIVERGED_LOSS
                   else "learned" if history.final_test_acc > 0.2 else "plateau")
        lines.append(f"{name}: {tables.plural(len(history.epochs), 'epoch')}, finite, {outcome} "
                     f"(final test acc {history.final_test_acc:.3f})")
    above = [name for name, h in histories.items() if h.final_test_acc > 0.5]
    assert scale.name == "small" or len(above) >= len(RUNS) - 1, \
        f"only {above} beat 0.5: the comparison needs a larger scale"
    return lines


def conclusions(histories: Dict[str, History], again: History) -> List[str]:
    """Each run against the baseline, judged by the baseline's seed-to-seed spread: the
    gap between the baseline and ``again``, the same run from another seed. A difference
    within that spread is no evidence either way; one of up to two spreads is a hint that
    more seeds would have to confirm; beyond two spreads, a result."""
    base = histories["baseline"].final_test_acc
    spread = abs(again.final_test_acc - base)
    lines = [f"baseline {base:.3f}, seed {again.recipe.seed}: "
             f"{again.final_test_acc:.3f}; spread {spread:.3f}"]
    for name, h in list(histories.items())[1:]:
        diff = h.final_test_acc - base
        side = "better" if diff > 0 else "worse"
        if abs(diff) <= spread:
            verdict = "within the spread: no conclusion"
        elif spread == 0:
            verdict = f"{side}; the seeds agreed, so no yardstick"
        else:
            spreads = abs(diff) / spread
            verdict = (f"{side}, {spreads:.1f} spreads: "
                       + ("a hint" if spreads <= 2 else "a result"))
        lines.append(f"{name:16s}{diff:+.3f}  {verdict}")
    return lines
