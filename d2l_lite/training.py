"""Framework-neutral parts of training: recipes, run scales, the history, the shared loop
(:func:`fit`) and its progress bar (its live plot is ``plotting.ProgressPlot``). Each
framework's ``train`` brings only its two steps."""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from . import tables
from .data import minibatch_indices
from .plotting import ProgressPlot, plot_history  # noqa: F401 (pages call training.plot_history)
from .runtime import Timer, env_flag, small_scale


@dataclass(frozen=True)
class Recipe:
    """Everything that decides how a model is trained. ``schedule``: ``"constant"``,
    ``"cosine"``, ``"step"`` (/10 after half and three quarters of the steps after warm-up) or ``"paper"``
    (4% lower every 8 epochs), after linear warm-up. ``mixed_precision``: bf16 on a GPU."""
    name: str
    num_epochs: int = 10
    batch_size: int = 128
    lr: float = 0.01
    optimizer: str = "sgd"
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    mixed_precision: bool = False
    compile: bool = False
    seed: int = 0

    def _repr_pretty_(self, printer, cycle):  # IPython's display: wrapped to the page
        printer.text(tables.fit(repr(self)))

    def __post_init__(self):
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {self.optimizer!r}")
        if self.schedule not in ("constant", "cosine", "step", "paper"):
            raise ValueError(f"schedule must be 'constant', 'cosine', 'step' or 'paper', "
                             f"got {self.schedule!r}")
        for name in ("num_epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        for name, ok, rule in (
                ("lr", math.isfinite(self.lr) and self.lr >= 0, "a number >= 0"),
                ("weight_decay", self.weight_decay >= 0, ">= 0"),
                ("warmup_epochs", 0 <= self.warmup_epochs <= self.num_epochs,
                 f"from 0 to num_epochs ({self.num_epochs})"),
                ("momentum", 0 <= self.momentum < 1, "in [0, 1)")):
            if not ok:
                raise ValueError(f"{name} must be {rule}, got {getattr(self, name)}")
        if self.optimizer == "adamw" and (self.momentum or self.nesterov):
            raise ValueError("momentum and nesterov are SGD's: AdamW keeps its own moving "
                             "averages (PyTorch's betas, 0.9 and 0.999); use "
                             "optimizer='sgd' or leave them at 0 and False")
        if self.nesterov and not self.momentum:
            raise ValueError("nesterov=True needs a momentum > 0 (e.g. momentum=0.9), "
                             "as torch.optim.SGD does")

    def with_(self, **changes) -> "Recipe":
        """A copy with some fields changed."""
        return replace(self, **changes)


#: Dive into Deep Learning's recipe: plain SGD, lr 0.01, batch 128, 10 epochs.
CLASSIC = Recipe("classic", num_epochs=10, batch_size=128, lr=0.01, optimizer="sgd")
#: The book's best in 10 epochs: AdamW, cosine with warm-up, label smoothing, bf16, compiled.
FAST = Recipe("fast", num_epochs=10, batch_size=256, lr=2e-3, optimizer="adamw",
              weight_decay=0.05, schedule="cosine", warmup_epochs=1.0,
              label_smoothing=0.1, mixed_precision=True, compile=True)


def steps_per_epoch(num_train: int, batch_size: int) -> int:
    """Full batches per epoch (the last partial one is dropped); at least one."""
    if num_train < batch_size:
        raise ValueError(f"{num_train} training images make no full batch of "
                         f"{batch_size}; use more data or a smaller batch_size")
    return num_train // batch_size


def learning_rate(recipe: Recipe, step: int, steps_per_epoch: int) -> float:
    """The learning rate at optimiser step ``step`` (0-based) under ``recipe``."""
    if recipe.schedule == "constant":
        return recipe.lr
    total = recipe.num_epochs * steps_per_epoch
    warmup = int(recipe.warmup_epochs * steps_per_epoch)
    if step < warmup:
        return recipe.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    if recipe.schedule == "paper":
        return recipe.lr * 0.96 ** (step // (8 * steps_per_epoch))
    if recipe.schedule == "step":
        return recipe.lr * (0.1 ** ((progress >= 0.5) + (progress >= 0.75)))
    return recipe.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@dataclass(frozen=True)
class RunScale:
    """How much data and how many epochs a training notebook uses (None: all)."""
    name: str                  # "small", "reduced" or "full"
    num_train: Optional[int]
    num_test: Optional[int]
    max_epochs: Optional[int]
    max_batch_size: Optional[int]
    note: str
    mixed_precision: Optional[bool] = None  # overrides the recipe's (None: keeps it)

    def apply(self, data, recipe: Recipe):
        """The data subset and the capped recipe (small batches: enough steps)."""
        if self.num_train is not None:
            data = data.subset(self.num_train, self.num_test)
        return data, self.apply_recipe(recipe)

    def apply_recipe(self, recipe: Recipe) -> Recipe:
        """The recipe capped for this scale (epochs, batch size; precision if it sets one)."""
        bf16 = recipe.mixed_precision if self.mixed_precision is None else self.mixed_precision
        return recipe.with_(num_epochs=min(recipe.num_epochs, self.max_epochs or math.inf),
                            batch_size=min(recipe.batch_size, self.max_batch_size or math.inf),
                            mixed_precision=bf16)


FULL_SCALE_ENV = "D2L_FULL_SCALE"


def run_scale(has_gpu: bool, small: Optional[bool] = None) -> RunScale:
    """``"small"`` with ``D2L_SMALL_SCALE=1`` (or ``small``: the code runs), ``"reduced"``
    without a GPU (unless ``D2L_FULL_SCALE=1``), else ``"full"``; on a CPU, in float32."""
    bf16, in_f32 = (None, "") if has_gpu else (False, ", in float32")
    if small_scale() if small is None else small:
        return RunScale("small", 512, 256, 2, 32,
                        "small-scale mode (D2L_SMALL_SCALE=1): 512 train / 256 test "
                        f"images,\nat most 2 epochs, batches of at most 32{in_f32}", bf16)
    if not has_gpu and not env_flag(FULL_SCALE_ENV):
        return RunScale("reduced", 10_000, 10_000, 2, 32,
                        "no GPU: a reduced run, 10,000 train images for 2 epochs, batch "
                        "<= 32,\ntested on all 10,000 test images, in float32 (bfloat16 "
                        f"is a GPU option;\n{FULL_SCALE_ENV}=1 for the full run)", bf16)
    return RunScale("full", None, None, None, None, f"full run: 60,000 train / 10,000 test "
                    f"images{in_f32}", bf16)


@dataclass
class EpochStats:
    """One epoch's metrics; ``seconds`` covers the training steps only."""
    epoch: int
    train_loss: float
    train_acc: float
    test_acc: float
    seconds: float
    images_per_sec: float


@dataclass
class History:
    """What a training run returns: per-epoch metrics and timings."""
    framework: str
    recipe: Recipe
    device: str
    num_train: int
    num_test: int
    compile_seconds: float = 0.0
    #: Seconds from the first step to the last evaluation (the run's wall time).
    wall_seconds: float = 0.0
    epochs: List[EpochStats] = field(default_factory=list)
    #: ``(epoch, train_loss, train_acc)`` every quarter epoch (epoch as a fraction).
    points: List[Tuple[float, float, float]] = field(default_factory=list)
    #: The predicted class of every test image after the last epoch.
    test_predictions: Optional[np.ndarray] = field(default=None, repr=False)

    def metric(self, name: str) -> List[float]:
        """One metric per epoch, e.g. ``history.metric("test_acc")``."""
        return [getattr(e, name) for e in self.epochs]

    @property
    def final_test_acc(self) -> float:
        return self.epochs[-1].test_acc if self.epochs else float("nan")

    @property
    def train_seconds(self) -> float:
        """Seconds spent in epochs (compilation included in the first)."""
        return sum(e.seconds for e in self.epochs)

    @property
    def steady_images_per_sec(self) -> float:
        """Images per second of the epochs after the first (which includes compiling)."""
        return float(np.mean([e.images_per_sec for e in self.epochs[1:] or self.epochs]))

    def to_dict(self) -> Dict:
        """The run as plain values (without the 10,000 test predictions)."""
        out = asdict(self)  # the recipe and epochs become dicts too
        del out["test_predictions"]
        return out

    def summary(self) -> str:
        """Lines of at most 75 characters: the run (in two lines when one is too
        narrow for it), its time, its metrics."""
        if not self.epochs:
            return f"{self.framework}: no epochs run"
        e, ips = self.epochs[-1], self.steady_images_per_sec
        steps = len(self.epochs) * (self.num_train // self.recipe.batch_size)
        run = (f"{self.framework}, {self.recipe.name} recipe, {self.device}: "
               f"{tables.plural(len(self.epochs), 'epoch')} of {self.num_train:,} images, "
               f"{steps:,} steps")
        return ((run.replace(": ", ":\n  ", 1) if len(run) > 75 else run) + "\n"
                f"  training {self.train_seconds:.1f} s (compile {self.compile_seconds:.1f} s), "
                f"{self.wall_seconds:.0f} s with evaluation, {ips:,.0f} images/s\n"
                f"  train loss {e.train_loss:.3f}, train acc {e.train_acc:.3f}, "
                f"test acc {e.test_acc:.3f} ({self.num_test:,} test images)")


def results_table(*histories: History) -> None:
    """One row per run, the same columns on every framework's page; ``compile s`` is
    what the first steps cost beyond steady ones, ``wall s`` includes evaluation."""
    tables.print_table(
        ("recipe", "epochs", "test acc", "train s", "images/s", "compile s", "wall s"),
        [(h.recipe.name, len(h.epochs), h.final_test_acc, h.train_seconds,
          round(h.steady_images_per_sec), h.compile_seconds, round(h.wall_seconds))
         for h in histories],
        {"test acc": 3, "train s": 1, "compile s": 1})


SUMMARY = re.compile(r"^(?P<framework>[\w/]+), (?P<recipe>\w+) recipe, (?P<device>[^:\n]+):\s+"
                     r"(?P<epochs>\d+) epochs? of (?P<images>[\d,]+) images.*?"
                     r"(?P<wall>\d+) s with evaluation.*?test acc (?P<acc>[\d.]+)", re.M | re.S)


def committed_results(folder, pages=("pytorch", "tensorflow", "jax", "mxnet")) -> List[Tuple]:
    """(framework, recipe, device, epochs x images, test acc, wall s) of every run whose
    :meth:`History.summary` the committed outputs of ``folder``'s framework pages print;
    a page that is not there (a notebook opened on its own) is left out."""
    rows = []
    for page in pages:
        path = Path(folder) / f"{page}.ipynb"
        if not path.exists():
            continue
        cells = json.loads(path.read_text())["cells"]
        text = "".join("".join(out.get("text", "")) for cell in cells
                       for out in cell.get("outputs", []))
        rows += [(m["framework"], m["recipe"], m["device"],
                  f"{m['epochs']} x {m['images']}", m["acc"], m["wall"])
                 for m in SUMMARY.finditer(text)]
    return rows


def split_aux(output) -> Tuple:
    """``(logits, [aux logits...])`` from a model's training-mode output."""
    return output if isinstance(output, tuple) else (output, [])


def compile_seconds(times: List[float]) -> float:
    """What the first calls of a compiled step cost beyond a steady call (the last of
    ``times``): tracing, compiling, recording CUDA graphs."""
    return max(0.0, sum(times[:-1]) - times[-1] * (len(times) - 1)) if len(times) > 1 else 0.0


def check_recipe(recipe) -> Recipe:
    """Return ``recipe`` if it is a :class:`Recipe`; else say what to pass."""
    if not isinstance(recipe, Recipe):
        raise ValueError(f"recipe must be a training.Recipe such as training.CLASSIC or "
                         f"training.FAST, got {type(recipe).__name__}")
    return recipe


def eval_batches(num_test: int, batch_size: int) -> Tuple[np.ndarray, np.ndarray]:
    """``(index, valid)``, each ``num_batches x batch_size``: the last batch is
    padded with image 0 and masked, so a compiled evaluation sees one shape."""
    index = np.arange(-(-num_test // batch_size) * batch_size)  # whole batches
    valid = index < num_test
    return np.where(valid, index, 0).reshape(-1, batch_size), valid.reshape(-1, batch_size)


def _predict(call: Callable, batches, num_test: int, to_numpy: Callable) -> np.ndarray:
    """The ``num_test`` predicted classes, as int64, of ``call(j)`` for each test batch."""
    return np.concatenate([np.asarray(to_numpy(call(j))).astype(np.int64)
                           for j in range(len(batches))])[:num_test]


def fit(framework: str, recipe: Recipe, device: str, num_train: int, test_labels,
        train_step: Callable, eval_step: Callable, *, to_device: Callable = np.asarray,
        sync: Callable = lambda: None, to_numpy: Callable = np.asarray,
        compiled: bool = False, first_calls: int = 4, plot: bool = True,
        progress: bool = True, points_per_epoch: int = 4) -> History:
    """The loop the four frameworks share: ``train_step(index, lr)`` returns the mean loss
    and correct count, left on the device and read ``points_per_epoch`` times an epoch;
    ``eval_step(index)``, the predicted classes, read after each epoch. With ``compiled``,
    the first ``first_calls`` calls of each are timed; their excess is ``compile_seconds``."""
    test_labels = np.asarray(test_labels)
    num_test, batch = len(test_labels), recipe.batch_size
    steps = steps_per_epoch(num_train, batch)
    history = History(framework, recipe, device, num_train, num_test)
    live = ProgressPlot(f"{framework}, {recipe.name} recipe", recipe.num_epochs,
                        enabled=None if plot else False)
    eval_index = to_device(eval_batches(num_test, batch)[0])
    ends = {round(k * steps / points_per_epoch) for k in range(1, points_per_epoch + 1)}
    first: Dict[str, List[float]] = {"train": [], "eval": []}
    wall = Timer()

    def run(kind: str, step: Callable, i: int, *args):
        if not (compiled and not history.epochs and i < first_calls):
            return step(*args)
        timer = Timer()
        out = step(*args)
        sync()
        first[kind].append(timer.elapsed())
        return out

    for epoch in range(recipe.num_epochs):
        order = to_device(np.stack(list(minibatch_indices(
            num_train, batch, shuffle=True, seed=recipe.seed, epoch=epoch, drop_last=True))))
        bar = batch_progress(steps, epoch + 1, recipe.num_epochs, enabled=progress)
        totals, since, loss_sum, correct = [0.0, 0.0], 0, 0, 0
        timer = Timer()
        for i in range(steps):
            lr = learning_rate(recipe, epoch * steps + i, steps)
            loss, hits = run("train", train_step, i, order[i], lr)
            loss_sum, correct = loss_sum + loss, correct + hits
            bar.update(1)
            if i + 1 in ends:  # one read of the device every quarter epoch
                loss_sum, correct = float(to_numpy(loss_sum)), float(to_numpy(correct))
                history.points.append((epoch + (i + 1) / steps, loss_sum / (i + 1 - since),
                                       correct / ((i + 1 - since) * batch)))
                totals, since = [totals[0] + loss_sum, totals[1] + correct], i + 1
                loss_sum = correct = 0
        sync()
        seconds = timer.elapsed()
        bar.close()
        history.test_predictions = predicted = _predict(
            lambda j: run("eval", eval_step, j, eval_index[j]), eval_index, num_test, to_numpy)
        if compiled and not history.epochs:
            history.compile_seconds = sum(map(compile_seconds, first.values()))
        history.epochs.append(EpochStats(
            epoch=epoch + 1, train_loss=totals[0] / steps, train_acc=totals[1] / (steps * batch),
            test_acc=float(np.mean(predicted == test_labels)), seconds=seconds,
            images_per_sec=steps * batch / seconds))
        history.wall_seconds = wall.elapsed()
        live.update(history)
    return history


CHANCE_LOSS = math.log(10)  # cross-entropy of a uniform guess over ten classes
#: A training loss above this in any epoch means the run diverged.
DIVERGED_LOSS = CHANCE_LOSS + 0.25


def check_complete(history: History, recipe: Recipe) -> None:
    """Assert one entry per epoch of ``recipe``, every number finite."""
    assert history.recipe == recipe, (history.recipe, recipe)
    assert len(history.epochs) == recipe.num_epochs, (len(history.epochs), recipe.num_epochs)
    for e in history.epochs:
        values = (e.train_loss, e.train_acc, e.test_acc, e.seconds, e.images_per_sec)
        assert all(math.isfinite(v) for v in values), (recipe.name, e)


#: The test accuracy the book's recipe must reach at the reduced and the full scale.
TARGET_ACC = 0.80


def check_history(history: History, recipe: Recipe, scale: RunScale) -> List[str]:
    """Assert what must hold at ``scale``; return what was checked. At the small scale a
    run need only be complete and not diverge; at the reduced and full scales the book's
    recipe must lower its loss and reach :data:`TARGET_ACC`, and on the full scale d2l's
    classic recipe must beat 0.5."""
    check_complete(history, recipe)
    checked = [tables.plural(recipe.num_epochs, "epoch"), "finite"]
    worst = max(e.train_loss for e in history.epochs)
    assert worst < DIVERGED_LOSS, f"{recipe.name}: training loss rose to {worst:.3f}"
    checked.append("no divergence")
    first, last = history.epochs[0].train_loss, history.epochs[-1].train_loss
    book = recipe.name != CLASSIC.name
    if scale.name == "full" or (scale.name == "reduced" and book):
        assert last < first, f"{recipe.name}: training loss {first:.3f} -> {last:.3f}"
        checked.append("loss fell")
    if scale.name != "small" and book:
        assert history.final_test_acc >= TARGET_ACC, \
            f"{recipe.name}: test accuracy {history.final_test_acc:.3f} < {TARGET_ACC}"
        checked.append(f"test acc >= {TARGET_ACC}")
    elif scale.name == "full":
        assert history.final_test_acc > 0.5, f"{recipe.name}: {history.final_test_acc:.3f}"
        checked.append("test acc > 0.5")
    return checked


def batch_progress(num_batches: int, epoch: int, num_epochs: int, enabled: bool = True):
    """A tqdm bar over one epoch's batches."""
    from tqdm.auto import tqdm
    return tqdm(total=num_batches, desc=f"epoch {epoch}/{num_epochs}", leave=False,
                disable=not enabled, unit="batch")
