"""What XLA's GPU compile of the JAX training step costs under a few compiler options.

    python bench/jax_compile_probe.py --out probe.json [--budget 150]

Each option set trains the book's recipe (bfloat16, batch 256) for 2 epochs on
the first 15,360 training images (60 steps an epoch) in a fresh process with no
compilation cache, through ``d2l_lite.jax.train(..., compiler_options=...)``:
the first epoch's compile estimate (``History.compile_seconds``, which covers
the step and the evaluation), the whole first epoch, and the second epoch's
images/s (the steady rate). The sets run from the cheapest to compile to the
default; a set that would start after ``--budget`` seconds is skipped. Needs a
GPU; on a CPU it says so and writes nothing.
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

#: name -> XLA compiler options (DebugOptions fields), cheapest to compile first.
OPTION_SETS = {
    "autotune level 1, no fusion autotuner or Triton GEMMs": {
        "xla_gpu_autotune_level": 1,
        "xla_gpu_experimental_enable_fusion_autotuner": False,
        "xla_gpu_enable_triton_gemm": False},
    "autotune level 0 (cuDNN's heuristics, no timing)": {"xla_gpu_autotune_level": 0},
    "autotune level 1 (the book's)": {"xla_gpu_autotune_level": 1},
    "XLA's defaults (autotune level 4)": {},
}


def child(name: str) -> dict:
    sys.path.insert(0, str(ROOT))
    import jax

    from d2l_lite import jax as d2l
    from d2l_lite import training
    from d2l_lite.data import load_fashion_mnist

    if jax.default_backend() != "gpu":
        return {"status": "no GPU: nothing measured"}
    data = load_fashion_mnist(verbose=False).subset(15_360, 2_560)
    recipe = training.FAST.with_(num_epochs=2)
    history, _ = d2l.train(d2l.GoogLeNet(), data, recipe,
                           compiler_options=OPTION_SETS[name], plot=False, progress=False)
    first, second = history.epochs
    return {"status": "ok", "compile_seconds": round(history.compile_seconds, 2),
            "first_epoch_seconds": round(first.seconds, 2),
            "steady_images_per_sec": round(second.images_per_sec),
            "test_acc_after_2_epochs": round(second.test_acc, 4),
            "jax": jax.__version__, "device": history.device}


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
    for name, options in OPTION_SETS.items():
        elapsed = time.perf_counter() - start
        if elapsed > args.budget:
            results.append({"options": options, "name": name, "status": "skipped (budget)"})
            continue
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "r.json"
            env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
            t = time.perf_counter()
            proc = subprocess.run([sys.executable, __file__, "--out", str(out), "--child", name],
                                  env=env, capture_output=True, text=True,
                                  timeout=max(30.0, args.budget + 60 - elapsed))
            record = json.loads(out.read_text()) if out.exists() else {
                "status": f"failed (exit {proc.returncode})", "tail": proc.stderr[-1500:]}
        record.update(name=name, options=options, process_seconds=round(time.perf_counter() - t, 1))
        results.append(record)
        print(json.dumps(record), flush=True)
        Path(args.out).write_text(json.dumps({"settings": {
            "recipe": "fast, 2 epochs", "num_train": 15_360, "num_test": 2_560,
            "compile_caches": "cold"}, "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
