"""One benchmark run of our trainer: one framework, one recipe, one JSON record.

``bench/train_bench.py`` starts this script once per (framework, recipe) in a
fresh process, with the framework's own interpreter (``.venv`` for PyTorch,
TensorFlow and JAX, ``.venv-mxnet`` for MXNet), so frameworks never share a
process or GPU memory. It loads Fashion-MNIST with
``d2l_lite.data.load_fashion_mnist`` (``D2L_FASHION_MNIST_DIR``), keeps the first
``--num-train`` / ``--num-test`` images, builds ``googlenet(architecture.BOOK)``
through ``d2l_lite.backend`` (``build``) and calls its
``train(model, data, recipe, plot=False, progress=False)``.

The record (written to ``--out``) holds ``History.to_dict()``, versions, the
device and the compute dtype. A framework that cannot be imported, or a run
that fails, ends the process with its traceback and a non-zero exit code, so
``train_bench.py`` reports it as failed, with the reason, and exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from importlib.metadata import PackageNotFoundError, version

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


def run(args) -> dict:
    """Train and return the record; an exception (a framework that does not
    import, a failed run) ends the process with its traceback and exit code 1."""
    from d2l_lite import architecture, backend, training
    from d2l_lite.data import load_fashion_mnist

    impl = backend.get(args.framework)
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
    model = impl.build(architecture.BOOK)
    start = time.perf_counter()
    history = impl.train(model, data, recipe, plot=False, progress=False,
                         image_size=args.image_size)
    return {
        "framework": args.framework, "implementation": "d2l_lite",
        "recipe": args.recipe, "versions": versions(args.framework),
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
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--framework", required=True, choices=sorted(PACKAGES))
    parser.add_argument("--recipe", required=True, choices=["classic", "fast"])
    parser.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--num-train", type=int, default=None, help="default: all 60,000")
    parser.add_argument("--num-test", type=int, default=None, help="default: all 10,000")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--out", required=True, help="where to write the JSON record")
    args = parser.parse_args(argv)
    record = run(args)
    with open(args.out, "w") as f:
        json.dump(record, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
