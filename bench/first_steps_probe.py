"""What the first steps of a GPU training run cost, under a few settings.

    python bench/first_steps_probe.py --out probe.json [--budget 150]

Each setting trains the book's recipe (bfloat16, batch 256) for 2 epochs on
the first 15,360 training images (60 steps an epoch) in a fresh process with
empty caches: PyTorch with cuDNN's benchmark mode on (the book's) and off
(``d2l_lite.torch.train(..., cudnn_benchmark=...)``), then JAX under a few XLA
compiler options (``d2l_lite.jax.train(..., compiler_options=...)``). Per
setting: the first steps' cost beyond steady ones (``History.compile_seconds``:
compiling, autotuning, recording a CUDA graph), the whole first epoch, and the
second epoch's images/s (the steady rate). A setting that would start after
``--budget`` seconds is skipped. Needs a GPU; on a CPU each setting says so.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
from train_bench import cache_environment  # noqa: E402  (bench/, standard library)

#: name -> (framework, keyword arguments of its train()), cheapest first.
OPTION_SETS = {
    "PyTorch, cuDNN benchmark mode off": ("torch", {"cudnn_benchmark": False}),
    "PyTorch, cuDNN benchmark mode on (the book's)": ("torch", {"cudnn_benchmark": True}),
}
#: JAX: name -> XLA compiler options (DebugOptions fields), cheapest to compile first.
XLA_OPTION_SETS = {
    "autotune level 1, no fusion autotuner or Triton GEMMs": {
        "xla_gpu_autotune_level": 1,
        "xla_gpu_experimental_enable_fusion_autotuner": False,
        "xla_gpu_enable_triton_gemm": False},
    "autotune level 0 (cuDNN's heuristics, no timing)": {"xla_gpu_autotune_level": 0},
    "autotune level 1 (the book's)": {"xla_gpu_autotune_level": 1},
    "XLA's defaults (autotune level 4)": {},
}
OPTION_SETS.update({f"JAX, {name}": ("jax", {"compiler_options": options})
                    for name, options in XLA_OPTION_SETS.items()})


def child(name: str) -> dict:
    sys.path.insert(0, str(ROOT))
    import importlib

    from d2l_lite import training
    from d2l_lite.data import load_fashion_mnist

    framework, kwargs = OPTION_SETS[name]
    d2l = importlib.import_module(f"d2l_lite.{framework}")
    if framework == "jax":
        import jax
        gpu, version = jax.default_backend() == "gpu", jax.__version__
    else:
        import torch
        gpu, version = torch.cuda.is_available(), torch.__version__
    if not gpu:
        return {"status": "no GPU: nothing measured"}
    data = load_fashion_mnist(verbose=False).subset(15_360, 2_560)
    recipe = training.FAST.with_(num_epochs=2)
    result = d2l.train(d2l.GoogLeNet(), data, recipe, plot=False, progress=False, **kwargs)
    history = result[0] if isinstance(result, tuple) else result
    first, second = history.epochs
    return {"status": "ok", "compile_seconds": round(history.compile_seconds, 2),
            "first_epoch_seconds": round(first.seconds, 2),
            "steady_images_per_sec": round(second.images_per_sec),
            "test_acc_after_2_epochs": round(second.test_acc, 4),
            "version": version, "device": history.device}


def save(out: str, results) -> None:
    Path(out).write_text(json.dumps({"settings": {
        "recipe": "fast, 2 epochs", "num_train": 15_360, "num_test": 2_560,
        "compile_caches": "cold"}, "results": results}, indent=1) + "\n")


def run_setting(name: str, options: dict, limit: float) -> dict:
    """One option set in a fresh process with empty compile caches: its record."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        env = dict(os.environ, **cache_environment(Path(tmp)))  # empty caches
        t = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, __file__, "--out", str(out),
                                   "--child", name], env=env, capture_output=True,
                                  text=True, timeout=limit)
            record = json.loads(out.read_text()) if out.exists() else {
                "status": f"failed (exit {proc.returncode})",
                "tail": proc.stderr[-1500:]}
        except subprocess.TimeoutExpired as err:  # the next sets still run
            record = {"status": f"failed (timed out after {limit:.0f} s)",
                      "tail": (err.stderr or b"")[-1500:].decode(errors="replace")}
    record.update(name=name, options=options,
                  process_seconds=round(time.perf_counter() - t, 1))
    return record


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--budget", type=float, default=150.0,
                   help="start no option set after this many seconds")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        Path(args.out).write_text(json.dumps(child(args.child)))
        return 0
    start, results = time.perf_counter(), []
    for name, (_, options) in OPTION_SETS.items():
        elapsed = time.perf_counter() - start
        if elapsed > args.budget:
            record = {"options": options, "name": name, "status": "skipped (budget)"}
        else:
            record = run_setting(name, options, max(30.0, args.budget + 60 - elapsed))
            print(json.dumps(record), flush=True)
        results.append(record)
        save(args.out, results)  # after each setting: a run cut short keeps them
    failed = [r["name"] for r in results if r["status"].startswith("failed")]
    if failed:
        print(f"failed: {', '.join(failed)} (their output's tail is in {args.out})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
