"""The harness the four d2l reference scripts share (``bench/d2l_reference*.py``):
the command line, the data and history a run starts from (:func:`start`), the
per-epoch line and the JSON record (:func:`record`). Standard library at import
(``d2l_lite`` is imported where it is used), so it imports beside any framework."""

from __future__ import annotations

import argparse
import json
import platform
import time
import traceback
from importlib.metadata import version
from typing import Callable, Optional, Tuple

#: ``--num-workers`` where d2l's data pipeline has no worker processes.
NO_WORKERS = "ignored: d2l's data pipeline here has no worker processes"


class TimedTrainer:
    """Mixed into each reference's ``d2l.Trainer`` subclass, before ``d2l.Trainer``:
    the run's :class:`d2l_lite.training.History` and the seconds of each epoch's test
    pass, which that subclass's copy of d2l's ``fit_epoch`` fills in (through
    :func:`record_epoch`)."""

    def __init__(self, max_epochs, num_gpus=0, gradient_clip_val=0, history=None):
        super().__init__(max_epochs, num_gpus, gradient_clip_val)
        self.history = history
        self.validation_seconds = []


def timed_fit(trainer, model, data, setup_start: float, **fit_args) -> Tuple[float, float]:
    """d2l's ``trainer.fit(model, data, **fit_args)``, timed: ``(setup_seconds,
    fit_seconds)``, the seconds since ``setup_start`` (the model, trainer and data
    module made) and those of the fit itself."""
    setup_seconds = time.perf_counter() - setup_start
    start = time.perf_counter()
    trainer.fit(model, data, **fit_args)
    return setup_seconds, time.perf_counter() - start


def package_version(name: str) -> str:
    """The installed version of distribution ``name``."""
    return version(name)


def record_epoch(trainer, loss_sum: float, seen: int, correct: int, total: int,
                 seconds: float) -> None:
    """Add one epoch to ``trainer.history`` (a :class:`d2l_lite.training.History`) and
    print it: d2l's loop counts no training accuracy, so that is NaN."""
    from d2l_lite import training
    trainer.history.epochs.append(training.EpochStats(
        epoch=trainer.epoch + 1, train_loss=loss_sum / seen, train_acc=float("nan"),
        test_acc=correct / total, seconds=seconds, images_per_sec=seen / seconds))
    print(f"  epoch {trainer.epoch + 1}/{trainer.max_epochs}: {seconds:.1f} s train "
          f"({seen / seconds:,.0f} images/s), {trainer.validation_seconds[-1]:.1f} s test, "
          f"loss {loss_sum / seen:.3f}, test acc {correct / total:.3f}", flush=True)


def history_record(history) -> dict:
    """``history.to_dict()`` for JSON: the training accuracy d2l does not count is None
    (NaN is not JSON)."""
    record = history.to_dict()
    for epoch in record["epochs"]:
        epoch["train_acc"] = None
    return record


def start(args: argparse.Namespace, framework: str, device: str):
    """What every reference does before d2l's code runs: ``(arrays, history)``, the
    shared Fashion-MNIST (``--num-train`` / ``--num-test`` of it) and an empty
    ``d2l_lite.training.History`` of d2l's recipe for ``framework`` on ``device``."""
    from d2l_lite import training
    from d2l_lite.data import load_fashion_mnist
    arrays = load_fashion_mnist(verbose=False)
    if args.num_train or args.num_test:
        arrays = arrays.subset(args.num_train or len(arrays.train_labels),
                               args.num_test or len(arrays.test_labels))
    recipe = training.Recipe("d2l", num_epochs=args.epochs, batch_size=args.batch_size,
                             lr=args.lr, optimizer="sgd")
    return arrays, training.History(f"d2l ({framework})", recipe, device,
                                    len(arrays.train_labels), len(arrays.test_labels))


def record(args: argparse.Namespace, trainer, setup_seconds: float, fit_seconds: float,
           versions: dict, **fields) -> dict:
    """The JSON record of a run that finished: ``trainer``'s history and test times,
    the set-up and fit times, ``--board``, the versions (Python's and d2l's added to
    the framework's) and the framework's own ``fields`` (``on_gpu``, ``dtype``,
    ``parameters``, ``device``, ``threads``...)."""
    return {"status": "ok", "history": history_record(trainer.history),
            "setup_seconds": setup_seconds, "fit_seconds": fit_seconds,
            "validation_seconds": trainer.validation_seconds,
            "board_drawn": bool(args.board),
            "versions": {"python": platform.python_version(), **versions,
                         "d2l": package_version("d2l")},
            **fields}


def main(run: Callable[[argparse.Namespace], dict], description: str,
         argv: Optional[list] = None, workers_help: str = NO_WORKERS) -> int:
    """Parse the reference's command line, call ``run(args)`` and write its record
    (or ``{"status": "failed", "error": ...}``) to ``--out``; 0 if the run was ok."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--num-train", type=int, default=None)
    parser.add_argument("--num-test", type=int, default=None)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--num-workers", type=int, default=4, help=workers_help)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--board", action="store_true",
                        help="let d2l's ProgressBoard draw (matplotlib) as in the book")
    parser.add_argument("--out", required=True, help="where to write the JSON record")
    args = parser.parse_args(argv)
    try:
        record = run(args)
    except Exception:
        traceback.print_exc()
        record = {"status": "failed", "error": traceback.format_exc()[-4000:]}
    with open(args.out, "w") as f:
        json.dump(record, f, indent=1)
    return 0 if record["status"] == "ok" else 1
