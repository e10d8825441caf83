"""Training benchmark: our four trainers and d2l's own GoogLeNet, in one run.

    python bench/train_bench.py --epochs 10                      # a GPU, full size
    python bench/train_bench.py --num-train 1024 --num-test 512 --epochs 2   # a CPU

Every run is a subprocess with its own interpreter: ``bench/run_one.py`` for
each (framework, recipe) of ours (``.venv``: PyTorch, TensorFlow, JAX;
``.venv-mxnet``: MXNet), ``bench/d2l_reference.py`` for the d2l reference
(``.venv-bench``, see ``bench/setup_bench_env.sh``). Each writes one JSON
record; this script adds the derived numbers, prints a table, and saves
everything to ``bench/results/<date>-<device>.json`` (and the table beside it
as ``.md``). It needs only the standard library.

Every run starts with empty compile caches (its own, new folders for inductor,
Triton, JAX's compilation cache and the CUDA driver's JIT cache), as a reader's
first run on a fresh machine does; ``--warm-caches`` measures the second run
instead. The settings record which (``"compile_caches"``).

Numbers per run: seconds per epoch and images/s (training steps only, device
synchronised; the mean over epochs 2.. when there are several, since epoch 1
includes compilation), compile seconds, seconds of training until the test
accuracy first reached 0.80 and 0.90 (null if it never did), the final test
accuracy, and speed-ups against the d2l reference measured in the same
invocation: ``speedup_images_per_sec`` (steady images/s ratio) and
``speedup_total_time`` (training seconds for the same epochs, compilation
included), against the d2l reference of the same framework where there is one
and against d2l's PyTorch reference in any case.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT))
from d2l_lite import runtime  # noqa: E402  (standard library only)
FRAMEWORKS = ("torch", "tensorflow", "jax", "mxnet")
LABELS = {"torch": "PyTorch", "tensorflow": "TensorFlow", "jax": "JAX/Flax", "mxnet": "MXNet"}
RECIPES = ("classic", "fast")
TARGETS = (0.80, 0.90)

#: d2l 1.0.3's own GoogLeNet code per framework: the script that runs it and the folder
#: (``bench/setup_bench_env.sh`` fills it) put on its PYTHONPATH, with d2l and what
#: d2l's module imports that the framework's environment lacks.
D2L_REFERENCES = {
    "torch": ("d2l_reference.py", None),  # in .venv-bench: torch + torchvision + d2l
    "tensorflow": ("d2l_reference_tensorflow.py", ".venv-bench/tf-extra"),  # + tf_keras
    "jax": ("d2l_reference_jax.py", ".venv-bench/jax-extra"),  # + tensorflow_datasets
    "mxnet": ("d2l_reference_mxnet.py", ".venv-bench/mxnet-extra"),  # + pandas
}


# ---- machine ----------------------------------------------------------------------------

def device_name() -> str:
    """The GPU's name (nvidia-smi), else the CPU model and core count."""
    return runtime.hardware()

def slug(text: str) -> str:
    text = re.sub(r"\(.*?\)", "", text.replace("CPU:", "cpu"))
    text = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return text[:60].strip("-")


def loadavg() -> Optional[List[float]]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


# ---- one subprocess ---------------------------------------------------------------------

#: Where the frameworks keep what they compiled between processes: inductor's
#: and Triton's kernels, JAX's persistent compilation cache, the CUDA driver's
#: JIT cache. Each run of the benchmark gets its own, empty set (cold caches).
CACHE_VARIABLES = ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR",
                   "JAX_COMPILATION_CACHE_DIR", "CUDA_CACHE_PATH")


def cache_environment(root: Path) -> Dict[str, str]:
    """The variables of :data:`CACHE_VARIABLES`, each a folder under ``root``.
    JAX caches only when its folder is set, and then every compilation."""
    env = {name: str(root / name.lower()) for name in CACHE_VARIABLES}
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    return env


def run_child(name: str, command: List[str], out: Path, timeout: float,
              verbose: bool, pythonpath: Optional[str] = None,
              caches: Optional[Dict[str, str]] = None) -> Dict:
    """Run ``command`` (which writes its JSON record to ``out``) with the cache
    folders of ``caches``; add timings. The child runs in its own process
    group, which is killed at ``timeout`` (silent or not) and whenever this
    script stops early (an error, Ctrl-C, SIGTERM, SIGHUP); only a SIGKILL of
    this script leaves it running."""
    print(f"--- {name}: starting", flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load_before, start = loadavg(), time.perf_counter()
    tail: List[str] = []
    env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2", **(caches or {}))
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [pythonpath,
                                                          env.get("PYTHONPATH")]))
    try:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, encoding="utf-8",
                                errors="replace", start_new_session=True)
    except OSError as err:
        return {"status": f"not available: {err}"}

    def read() -> None:  # the trainers print little with progress=False
        for line in proc.stdout:
            tail[:] = (tail + [line.rstrip()])[-40:]
            if verbose:
                print(f"    [{name}] {line.rstrip()}", flush=True)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:  # also on KeyboardInterrupt and SIGTERM (see main)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    reader.join(timeout=10)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    record: Dict = {}
    if out.exists():
        try:
            record = json.loads(out.read_text())
        except json.JSONDecodeError:
            record = {}
    last = tail[-1] if tail else "no output"
    if timed_out:
        record["status"] = f"failed: timed out after {timeout:.0f} s ({last})"
    elif not record:
        record["status"] = f"failed: exit code {proc.returncode}, no record written ({last})"
    elif record.get("error"):  # a traceback: its last line says what
        record["status"] = f"failed: {record['error'].strip().splitlines()[-1]}"
    elif proc.returncode != 0:
        record["status"] = (f"failed: exit code {proc.returncode} after writing its "
                            f"record ({last})")
    if not str(record.get("status", "")).startswith("ok"):
        record["output_tail"] = "\n".join(tail[-25:])
    record["process"] = {
        "command": [shorten(c) for c in command],
        "wall_seconds": round(wall, 2),
        "cpu_seconds": round((after.ru_utime - before.ru_utime)
                             + (after.ru_stime - before.ru_stime), 2),
        "loadavg_before": load_before, "loadavg_after": loadavg(),
        "returncode": proc.returncode,
    }
    print(f"--- {name}: {record.get('status')} ({wall:.0f} s)", flush=True)
    return record


def shorten(path: str) -> str:
    """``path`` relative to the checkout when it lies inside it, else as it is."""
    try:
        return str(Path(path).relative_to(ROOT))
    except ValueError:
        return path


# ---- numbers ----------------------------------------------------------------------------

def metrics(history: Dict) -> Dict:
    """Derived numbers of one History.to_dict()."""
    epochs = history["epochs"]
    if not epochs:
        return {}
    steady = epochs[1:] or epochs
    seconds = sum(e["seconds"] for e in steady)
    images = sum(e["images_per_sec"] * e["seconds"] for e in steady)

    def time_to(target: float) -> Optional[float]:
        elapsed = 0.0
        for e in epochs:
            elapsed += e["seconds"]
            if e["test_acc"] >= target:
                return round(elapsed, 3)
        return None

    return {
        "epochs": len(epochs),
        "seconds_per_epoch": round(seconds / len(steady), 3),
        "first_epoch_seconds": round(epochs[0]["seconds"], 3),
        "steady_epochs": "2.." if len(epochs) > 1 else "1 (includes compilation)",
        "images_per_sec": round(images / seconds, 2),
        "train_seconds": round(sum(e["seconds"] for e in epochs), 3),
        "compile_seconds": round(history.get("compile_seconds", 0.0), 3),
        **{f"time_to_{t:.2f}": time_to(t) for t in TARGETS},
        "final_test_acc": round(epochs[-1]["test_acc"], 4),
    }


def ratios(ours: Dict, ref: Dict) -> Optional[Dict]:
    if not ours or not ref:
        return None
    out = {"speedup_images_per_sec": round(ours["images_per_sec"] / ref["images_per_sec"], 3),
           "speedup_total_time": round(ref["train_seconds"] / ours["train_seconds"], 3)}
    for t in TARGETS:
        key = f"time_to_{t:.2f}"
        if ours.get(key) and ref.get(key):
            out[f"speedup_{key}"] = round(ref[key] / ours[key], 3)
    return out


def fmt(value, spec: str = ".1f", none: str = "-") -> str:
    if value is None:
        return none
    return format(value, spec)


def table(runs: List[Dict]) -> str:
    head = ["run", "recipe", "epochs", "s/epoch", "images/s", "compile s", "training s",
            "process s", "t(0.80) s", "t(0.90) s", "final acc", "x d2l-torch (img/s)",
            "x d2l-torch (time)", "x d2l same fw"]
    rows, notes = [], []
    for r in runs:
        m = r.get("metrics") or {}
        if not m:
            status = str(r.get("status", "failed"))
            notes.append(f"({len(notes) + 1}) {r['name']}, {r.get('recipe', '')}: {status}")
            word = status.split(":")[0]
            rows.append([r["name"], r.get("recipe", ""), "", f"{word} ({len(notes)})"]
                        + [""] * (len(head) - 4))
            continue
        vs_torch = r.get("vs_d2l_torch") or {}
        vs_same = r.get("vs_d2l_same_framework")
        rows.append([
            r["name"], r.get("recipe", ""), str(m["epochs"]), fmt(m["seconds_per_epoch"], ".2f"),
            fmt(m["images_per_sec"], ",.1f"), fmt(m["compile_seconds"], ".1f"),
            fmt(m["train_seconds"], ".1f"), fmt((r.get("process") or {}).get("wall_seconds"), ".0f"),
            fmt(m["time_to_0.80"], ".1f", "null"), fmt(m["time_to_0.90"], ".1f", "null"),
            fmt(m["final_test_acc"], ".3f"),
            fmt(vs_torch.get("speedup_images_per_sec"), ".2f"),
            fmt(vs_torch.get("speedup_total_time"), ".2f"),
            fmt(vs_same.get("speedup_images_per_sec") if isinstance(vs_same, dict) else None,
                ".2f", "n/a"),
        ])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    text = "\n".join([line(head), "| " + " | ".join("-" * w for w in widths) + " |"]
                     + [line(r) for r in rows])
    return text + ("\n\n" + "\n".join(notes) if notes else "")


def _finite(value):
    """NaN and infinities as null: strict JSON."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


# ---- main -------------------------------------------------------------------------------

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--num-train", type=int, default=None, help="default: all 60,000")
    p.add_argument("--num-test", type=int, default=None, help="default: all 10,000")
    p.add_argument("--batch-size", type=int, default=None,
                   help="override every recipe's batch size (default: classic 128, fast 256)")
    p.add_argument("--frameworks", default=",".join(FRAMEWORKS),
                   help="comma-separated subset of " + ",".join(FRAMEWORKS))
    p.add_argument("--recipes", default=",".join(RECIPES))
    p.add_argument("--no-reference", action="store_true", help="skip the d2l reference")
    p.add_argument("--references", default=None,
                   help="the frameworks whose d2l reference runs (default: torch and "
                        "--frameworks; d2l's PyTorch reference always runs unless "
                        "--no-reference)")
    p.add_argument("--d2l-workers", type=int, default=4,
                   help="DataLoader workers of the d2l reference (d2l's default: 4)")
    p.add_argument("--python", default=str(ROOT / ".venv/bin/python"),
                   help="interpreter for torch, tensorflow and jax")
    p.add_argument("--mxnet-python", default=str(ROOT / ".venv-mxnet/bin/python"))
    p.add_argument("--bench-python", default=str(ROOT / ".venv-bench/bin/python"),
                   help="interpreter with d2l 1.0.3 (bench/setup_bench_env.sh)")
    p.add_argument("--data-dir", default=None,
                   help="Fashion-MNIST IDX files (default: $D2L_FASHION_MNIST_DIR, else "
                        "../shared/data/fashion-mnist beside the repository when it exists)")
    p.add_argument("--warm-caches", action="store_true",
                   help="measure the second run: before each run of ours, an untimed "
                        "1-epoch run of the same configuration fills that run's compile "
                        "caches (default: every run starts with empty caches, as a reader's "
                        "first run does)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per run")
    p.add_argument("--out", default=None,
                   help="results file (default: bench/results/<date>-<device>.json)")
    p.add_argument("-v", "--verbose", action="store_true", help="show every run's output")
    args = p.parse_args(argv)

    frameworks = [f for f in args.frameworks.split(",") if f]
    recipes = [r for r in args.recipes.split(",") if r]
    for f in frameworks:
        if f not in FRAMEWORKS:
            p.error(f"unknown framework {f!r}; choose from {', '.join(FRAMEWORKS)}")
    for f in (args.references or "").split(","):
        if f and f not in FRAMEWORKS:
            p.error(f"unknown reference {f!r}; choose from {', '.join(FRAMEWORKS)}")
    for r in recipes:
        if r not in RECIPES:
            p.error(f"unknown recipe {r!r}; choose from {', '.join(RECIPES)}")
    chosen = [] if args.no_reference else ["torch"] + [
        f for f in (args.references.split(",") if args.references else frameworks)
        if f and f != "torch"]
    # SIGTERM and SIGHUP end the run as Ctrl-C does: the running child is
    # killed, the temporary folders go and the finished runs stay saved.
    for stop in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop, lambda signum, frame: sys.exit(128 + signum))

    data_dir = args.data_dir or os.environ.get("D2L_FASHION_MNIST_DIR")
    shared = ROOT.parent / "shared" / "data" / "fashion-mnist"
    if not data_dir and shared.is_dir():
        data_dir = str(shared)
    if data_dir:
        os.environ["D2L_FASHION_MNIST_DIR"] = str(Path(data_dir).resolve())

    load_at_start = loadavg()  # before any run: was the machine idle?
    device = device_name()
    stamp = dt.datetime.now().astimezone()
    out = Path(args.out) if args.out else (
        BENCH / "results" / f"{stamp:%Y-%m-%d}-{slug(device)}.json")
    size = ["--epochs", str(args.epochs)]
    for flag, value in (("--num-train", args.num_train), ("--num-test", args.num_test)):
        if value:
            size += [flag, str(value)]
    print(f"Benchmark on {device}: {args.epochs} epoch(s), "
          f"{args.num_train or 60000:,} train / {args.num_test or 10000:,} test images; "
          f"data from {os.environ.get('D2L_FASHION_MNIST_DIR') or 'the official download'}",
          flush=True)

    runs: List[Dict] = []

    def save() -> str:
        """Derive the numbers and write both files (after every run: a killed
        benchmark leaves the runs it finished)."""
        for r in runs:
            if str(r.get("status", "")).startswith("ok") and r.get("history"):
                r["metrics"] = metrics(r["history"])
        refs = {r["framework"]: r.get("metrics") for r in runs
                if r.get("implementation") == "d2l 1.0.3" and r.get("metrics")}
        for r in runs:
            if r.get("implementation") != "d2l_lite" or not r.get("metrics"):
                continue
            r["vs_d2l_torch"] = ratios(r["metrics"], refs.get("torch"))
            if r["framework"] in refs:
                r["vs_d2l_same_framework"] = ratios(r["metrics"], refs[r["framework"]])
            elif args.no_reference:
                r["vs_d2l_same_framework"] = "no reference run (--no-reference)"
            elif r["framework"] not in chosen:
                r["vs_d2l_same_framework"] = ("no d2l reference for this framework in "
                                              f"this run (--references {args.references})")
            else:
                r["vs_d2l_same_framework"] = "the reference run failed"

        text = table(runs)
        versions: Dict[str, Dict] = {}
        for r in runs:
            if r.get("versions"):
                versions.setdefault(r["name"] if r.get("implementation") == "d2l 1.0.3"
                                    else LABELS[r["framework"]], r["versions"])
        result = {
            "timestamp": stamp.isoformat(timespec="seconds"),
            "device": device,
            "host": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                     "loadavg_at_start": load_at_start, "loadavg_at_end": loadavg()},
            "settings": {"epochs": args.epochs, "num_train": args.num_train or 60000,
                         "num_test": args.num_test or 10000, "image_size": 96,
                         "batch_size_override": args.batch_size,
                         "frameworks": frameworks, "recipes": recipes,
                         "d2l_reference": not args.no_reference,
                         "d2l_num_workers": args.d2l_workers,
                         "compile_caches": "warm" if args.warm_caches else "cold"},
            "versions": versions,
            "notes": [
                "seconds and images/s count training steps only (device synchronised), not "
                "the evaluation after each epoch; time-to-accuracy adds up those seconds",
                "s/epoch and images/s are means over epochs 2.. (epoch 1 includes compilation) "
                "when there are several epochs, else epoch 1",
                "speedup_images_per_sec = ours / d2l (steady images/s); speedup_total_time = "
                "d2l training seconds / ours for the same epochs (compilation included)",
                "process s: the whole process's wall time (imports, data, training, "
                "evaluation)",
                ("compile caches warm: each run of ours followed an untimed 1-epoch run of "
                 "the same configuration with the same cache folders (a second run)"
                 if args.warm_caches else
                 "compile caches cold: every run started with empty cache folders "
                 f"({', '.join(CACHE_VARIABLES)}), as a reader's first run does"),
            ],
            "table": text,
            "runs": runs,
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(_finite(result), indent=1, allow_nan=False) + "\n")
        out.with_suffix(".md").write_text(
            f"# Training benchmark, {stamp:%Y-%m-%d}\n\n{device}; {args.epochs} epoch(s), "
            f"{args.num_train or 60000:,} train / {args.num_test or 10000:,} test images, "
            f"compile caches {'warm (second run)' if args.warm_caches else 'cold (first run)'}. "
            f"Full record: `{out.name}`.\n\n{text}\n")
        return text

    with tempfile.TemporaryDirectory(prefix="d2l-bench-") as tmp:
        def child(name, python, script, extra, meta, pythonpath=None):
            target = Path(tmp) / f"{len(runs)}.json"
            caches = cache_environment(Path(tmp) / f"caches-{len(runs)}")
            missing = [p for p in (python, pythonpath) if p and not (
                (ROOT / p).exists() if os.sep in p else shutil.which(p))]
            if missing:
                bench_env = missing[0] in (args.bench_python, pythonpath)
                setup = "bench/setup_bench_env.sh" if bench_env else "tools/setup_env.sh"
                record = {"status": f"not available: {missing[0]} is missing (run {setup})"}
            else:
                command = [python, str(BENCH / script)] + extra
                path = pythonpath and str(ROOT / pythonpath)
                if args.warm_caches and meta["implementation"] == "d2l_lite":
                    prime = command[:command.index("--epochs") + 1] + ["1"] + \
                        command[command.index("--epochs") + 2:]
                    run_child(f"{name} (filling the caches)", prime
                              + ["--out", str(target)], target, args.timeout,
                              args.verbose, path, caches)
                    target.unlink(missing_ok=True)
                record = run_child(name, command + ["--out", str(target)], target,
                                   args.timeout, args.verbose, path, caches)
            record.update(meta, name=name)
            runs.append(record)
            save()

        if not args.no_reference:
            interpreters = {"torch": args.bench_python, "tensorflow": args.python,
                            "jax": args.python, "mxnet": args.mxnet_python}
            for f in chosen:
                script, folder = D2L_REFERENCES[f]
                child(f"d2l ({LABELS[f]})", interpreters[f], script,
                      size + ["--num-workers", str(args.d2l_workers)]
                      + (["--batch-size", str(args.batch_size)] if args.batch_size else []),
                      {"framework": f, "implementation": "d2l 1.0.3", "recipe": "d2l"},
                      folder)
        for f in frameworks:
            python = args.mxnet_python if f == "mxnet" else args.python
            for r in recipes:
                child(LABELS[f], python, "run_one.py",
                      ["--framework", f, "--recipe", r] + size
                      + (["--batch-size", str(args.batch_size)] if args.batch_size else []),
                      {"framework": f, "implementation": "d2l_lite", "recipe": r})

    text = save()
    print()
    print(text)
    print(f"\nSaved {out} and {out.with_suffix('.md').name}")
    failed = [f"{r['name']}, {r.get('recipe', '')}: {r.get('status', 'failed')}"
              for r in runs if not str(r.get("status", "")).startswith("ok")]
    if failed:  # a framework or reference that cannot run is a failure, not a skip
        print("Did not run:\n  " + "\n  ".join(failed)
              + "\n(the output_tail of each is in the JSON)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
