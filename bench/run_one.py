"""One benchmark run of our trainer: one framework, one recipe, one JSON record.

``bench/train_bench.py`` starts this script once per (framework, recipe) in a
fresh process, with the framework's own interpreter (``.venv`` for PyTorch,
TensorFlow and JAX, ``.venv-mxnet`` for MXNet), so frameworks never share a
process or GPU memory. It loads Fashion-MNIST with
``d2l_lite.data.load_fashion_mnist`` (``D2L_FASHION_MNIST_DIR``), keeps the first
``--num-train`` / ``--num-test`` images, builds ``googlenet(architecture.BOOK)``
from the framework's module and calls its
``train(model, data, recipe, plot=False, progress=False)``.

The record (written to ``--out``) holds ``History.to_dict()``, versions, the
device and the compute dtype; ``"status"`` is ``"ok"``, or ``"not available: ..."``
when the framework module has no ``train`` yet or cannot be imported.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import platform
import sys
import time
import traceback
from importlib.metadata import PackageNotFoundError, version

MODULES = {"torch": "d2l_lite.torch", "tensorflow": "d2l_lite.tensorflow",
           "jax": "d2l_lite.jax", "mxnet": "d2l_lite.mxnet"}
PACKAGES = {"torch": ["torch"], "tensorflow": ["tensorflow", "keras"],
            "jax": ["jax", "jaxlib", "flax", "optax"], "mxnet": ["mxnet"]}


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def versions(framework: str) -> dict:
    out = {"python": platform.python_version(), "numpy": _version("numpy")}
    for name in PACKAGES[framework]:
        out[name] = _version(name)
    return out


def on_gpu(framework: str) -> bool:
    """Whether the framework sees a GPU (the trainers use it when there is one)."""
    if framework == "torch":
        import torch
        return torch.cuda.is_available()
    if framework == "tensorflow":
        import tensorflow as tf
        return bool(tf.config.list_physical_devices("GPU"))
    if framework == "jax":
        import jax
        return jax.default_backend() == "gpu"
    import mxnet as mx
    return mx.context.num_gpus() > 0


def call_train(framework: str, d2l, model, data, recipe, image_size: int):
    """``d2l.train(...)``, whatever the framework's variant of the interface.

    JAX/Flax models keep their parameters outside the module: if ``train``
    asks for them (a required parameter after ``recipe``), they are made with
    ``d2l.init``; if it returns them beside the history, the history is picked
    out of the tuple.
    """
    from d2l_lite import training

    train = d2l.train
    kwargs = dict(plot=False, progress=False, image_size=image_size)
    if framework == "mxnet":
        kwargs["device"] = d2l.try_gpu()  # MXNet's default is the model's context (CPU)
    params = list(inspect.signature(train).parameters.values())
    positional = [p for p in params
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    args = [model]
    for p in positional[1:]:
        if p.name == "data":
            args.append(data)
        elif p.name == "recipe":
            args.append(recipe)
        elif p.default is inspect.Parameter.empty:  # e.g. train(model, variables, data, recipe)
            from d2l_lite import architecture
            channels = getattr(model, "spec", architecture.BOOK).in_channels
            args.append(d2l.init(model, (1, image_size, image_size, channels),
                                 seed=recipe.seed))
        else:
            break
    result = train(*args, **kwargs)
    if isinstance(result, training.History):
        return result
    for item in result if isinstance(result, (tuple, list)) else ():
        if isinstance(item, training.History):
            return item
    raise TypeError(f"{MODULES[framework]}.train returned {type(result).__name__}, "
                    f"not a training.History")


def run(args) -> dict:
    record = {"framework": args.framework, "implementation": "d2l_lite",
              "recipe": args.recipe, "versions": versions(args.framework)}
    try:
        d2l = importlib.import_module(MODULES[args.framework])
    except Exception as err:  # a framework that does not import here
        record["status"] = f"not available: import {MODULES[args.framework]} failed ({err!r})"
        return record
    if not hasattr(d2l, "train"):
        record["status"] = f"not available: {MODULES[args.framework]} has no train() yet"
        return record
    from d2l_lite import architecture, training
    from d2l_lite.data import load_fashion_mnist

    recipe = {"classic": training.CLASSIC, "fast": training.FAST}[args.recipe]
    changes = {}
    if args.epochs:
        changes["num_epochs"] = args.epochs
    if args.batch_size:
        changes["batch_size"] = args.batch_size
    recipe = recipe.with_(**changes)
    data = load_fashion_mnist(verbose=False)
    if args.num_train or args.num_test:
        data = data.subset(args.num_train or len(data.train_labels),
                           args.num_test or len(data.test_labels))
    gpu = on_gpu(args.framework)
    model = d2l.googlenet(architecture.BOOK)
    start = time.perf_counter()
    history = call_train(args.framework, d2l, model, data, recipe, args.image_size)
    record.update({
        "status": "ok",
        "history": history.to_dict(),
        "fit_seconds": time.perf_counter() - start,
        "on_gpu": gpu,
        "device": history.device,
        # what the trainers do: bfloat16 compute only on a GPU, and never in MXNet 1.9
        "dtype": ("bfloat16 (mixed precision)"
                  if recipe.mixed_precision and gpu and args.framework != "mxnet"
                  else "float32"),
        # JAX always jits; PyTorch records every step as one CUDA graph on a GPU;
        # MXNet hybridizes for recipe.compile on any device; TensorFlow's XLA
        # (recipe.compile) runs only on a GPU
        "compiled": {"jax": True, "torch": gpu, "mxnet": recipe.compile,
                     "tensorflow": recipe.compile and gpu}[args.framework],
    })
    return record


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--framework", required=True, choices=sorted(MODULES))
    parser.add_argument("--recipe", required=True, choices=["classic", "fast"])
    parser.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--num-train", type=int, default=None, help="default: all 60,000")
    parser.add_argument("--num-test", type=int, default=None, help="default: all 10,000")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--out", required=True, help="where to write the JSON record")
    args = parser.parse_args(argv)
    try:
        record = run(args)
    except Exception:
        record = {"framework": args.framework, "implementation": "d2l_lite",
                  "recipe": args.recipe, "status": "failed",
                  "error": traceback.format_exc()[-4000:]}
        traceback.print_exc()
    with open(args.out, "w") as f:
        json.dump(record, f, indent=1)
    return 0 if record["status"].startswith(("ok", "not available")) else 1


if __name__ == "__main__":
    sys.exit(main())
