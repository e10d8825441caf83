#!/usr/bin/env bash
# The book's GPU run: check the GPU-only code, re-execute the pages whose
# committed outputs should come from a GPU, and benchmark against d2l, on a
# machine that has only Python 3.12 with CUDA builds of torch, torchvision,
# jax, flax and optax (plus pandas, matplotlib, tqdm and pytest) and no
# network. Everything else comes from wheels kept in .whl/ (git-ignored) and
# the data from .data/fashion-mnist (git-ignored).
#
#   tools/gpu_run.sh prepare            # here, with the internet: fill .whl/ and .data/
#   tools/gpu_run.sh run OUT_DIR        # there: full scale, writes OUT_DIR/gpu-run.tar.gz
#   tools/gpu_run.sh run OUT_DIR --small   # the dry run: the same steps at small scale
#
# `run` installs nbclient, ipykernel, torchinfo and d2l 1.0.3 from .whl/ into a
# temporary folder (never into the machine's environment), registers that
# Python as the notebooks' kernel, then runs the steps named in D2L_GPU_STEPS
# (default "check,bench,training,probe"), in that order:
#   check     the tests that need CUDA (the CUDA-graph step against the eager
#             one: tests/test_torch_training.py -k graph);
#   bench     runs bench/train_bench.py for PyTorch and JAX (recipes from
#             D2L_GPU_BENCH_RECIPES, default "classic,fast") beside d2l's own
#             PyTorch code (bench/d2l_reference.py), 10 epochs, cold caches;
#   training  executes chapters/training/{pytorch,jax}.ipynb in place (full
#             scale on a GPU); a failing cell does not stop the page;
#   probe     bench/first_steps_probe.py: what the first steps cost, and the
#             steady rate, with cuDNN's benchmark mode on and off (PyTorch)
#             and under a few XLA compiler options (JAX), within
#             D2L_GPU_PROBE_BUDGET seconds (default 150);
#   variants  executes chapters/variants/{pytorch,jax}.ipynb in place.
# After every step (and every page) it rewrites OUT_DIR/gpu-run.tar.gz (the
# notebooks run so far, bench.json and bench.md, probe.json, the log; unpack it
# in the repository root), so a run cut short by a time limit keeps what it
# finished.
#
# Environment: PYTHON (default python3), BENCH_PYTHON for d2l's PyTorch code
# (default PYTHON; it needs torchvision), D2L_FASHION_MNIST_DIR (default
# .data/fashion-mnist). Wheels are resolved for the running interpreter from
# .whl/, so `prepare` fetches them for Python 3.12 (the GPU machine) and for
# the local interpreter (the dry run).
#
# Budget, measured on one H200 on 2026-12-04 (cold caches; about 30 s to start
# the machine and 7 s to install the wheels): check 66 s; bench 480 s (d2l's
# PyTorch code 152 s, ours PyTorch 81 s + 57 s, JAX 79 s + 111 s, process
# wall times); the PyTorch training page 143 s; the JAX page about 200 s
# (its runs' wall times). One device session (15 minutes, the start
# included) cannot hold them all: split them with D2L_GPU_STEPS over calls on
# one warm machine (it is given back after 30 s idle), most needed first.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
BENCH_PYTHON=${BENCH_PYTHON:-$PYTHON}  # d2l's PyTorch code needs torchvision too
WHEELS=.whl
DATA=.data/fashion-mnist

prepare() {
  mkdir -p "$WHEELS" "$DATA"
  local pkgs=(nbclient ipykernel nbformat torchinfo)
  local plat=(--only-binary=:all: --implementation cp --platform manylinux_2_28_x86_64
              --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
  # Python 3.12 for the GPU machine (its dependencies too: `pip --target` does
  # not see what the machine has), and the local interpreter's for the dry run.
  python3 -m pip download -q -d "$WHEELS" --python-version 3.12 "${plat[@]}" "${pkgs[@]}"
  "$PYTHON" -m pip download -q -d "$WHEELS" --only-binary=:all: "${pkgs[@]}"
  python3 -m pip download -q -d "$WHEELS" --no-deps "d2l==1.0.3"
  local src=${D2L_FASHION_MNIST_DIR:-../shared/data/fashion-mnist}
  cp "$src"/*.gz "$DATA"/
  du -sh "$WHEELS" "$DATA"
}

run() {
  local out=${1:?usage: tools/gpu_run.sh run OUT_DIR [--small]} small=${2:-}
  local steps=${D2L_GPU_STEPS:-check,bench,training,probe}
  local recipes=${D2L_GPU_BENCH_RECIPES:-classic,fast}
  mkdir -p "$out"
  out=$(cd "$out" && pwd)
  local log=$out/gpu-run.log site kernels failed=0 done=()
  exec > >(tee "$log") 2>&1
  site=$(mktemp -d) kernels=$(mktemp -d)
  trap "rm -rf '$site' '$kernels'" EXIT  # expanded now: the names are local
  echo "== $(date -u +%FT%TZ) on $($PYTHON -c 'from d2l_lite import runtime; print(runtime.hardware())')"
  "$PYTHON" -m pip install -q --no-index --find-links "$WHEELS" --no-compile --target "$site" \
    nbclient ipykernel nbformat torchinfo
  "$PYTHON" -m pip install -q --no-index --find-links "$WHEELS" --no-deps --target "$site" "d2l==1.0.3"
  export PYTHONPATH="$site:$PWD" JUPYTER_PATH="$kernels/share/jupyter" PYTHONUNBUFFERED=1
  export D2L_FASHION_MNIST_DIR=${D2L_FASHION_MNIST_DIR:-$PWD/$DATA}
  "$PYTHON" -m ipykernel install --prefix "$kernels" --name python3 > /dev/null
  # The archive is rewritten after every page and after the benchmark, so a run
  # stopped by a time limit still returns what it finished.
  archive() { tar czf "$out/gpu-run.tar.gz" "${done[@]}" -C "$out" gpu-run.log \
                $(cd "$out" && ls bench.json bench.md probe.json 2>/dev/null); }
  local step page
  for step in ${steps//,/ }; do
    case $step in
      training|variants)
        for page in chapters/$step/pytorch.ipynb chapters/$step/jax.ipynb; do
          echo "== $(date -u +%T) executing $page ${small:+(small scale)}"
          SECONDS=0
          "$PYTHON" tools/notebooks.py execute --allow-errors ${small:+--small} "$page" || failed=1
          echo "== $page done in ${SECONDS} s"
          done+=("$page")
          archive
        done ;;
      check)
        echo "== $(date -u +%T) the tests that need CUDA"
        SECONDS=0
        "$PYTHON" -m pytest -q -p no:cacheprovider tests/test_torch_training.py -k graph \
          -rs || failed=1
        echo "== check done in ${SECONDS} s"
        archive ;;
      probe)
        echo "== $(date -u +%T) first-steps probe"
        SECONDS=0
        "$PYTHON" bench/first_steps_probe.py --out "$out/probe.json" \
          --budget "${D2L_GPU_PROBE_BUDGET:-150}" || failed=1
        echo "== probe done in ${SECONDS} s"
        archive ;;
      bench)
        local size=(--epochs 10)
        [[ -n $small ]] && size=(--epochs 1 --num-train 256 --num-test 128)
        echo "== $(date -u +%T) benchmark: torch and jax ($recipes), d2l's PyTorch code"
        SECONDS=0
        "$PYTHON" bench/train_bench.py --frameworks torch,jax --recipes "$recipes" "${size[@]}" \
          --references torch --python "$PYTHON" --bench-python "$BENCH_PYTHON" \
          --out "$out/bench.json" || failed=1
        echo "== benchmark done in ${SECONDS} s"
        archive ;;
      *) echo "unknown step $step (D2L_GPU_STEPS: check, bench, training, probe, variants)"
         exit 2 ;;
    esac
  done
  archive
  if ((failed)); then echo "== wrote $out/gpu-run.tar.gz; some steps failed (see above)"
  else echo "== wrote $out/gpu-run.tar.gz"; fi
  return $failed
}

case ${1:-} in
  prepare) prepare ;;
  run) shift; run "$@" ;;
  *) sed -n 2,12p "$0"; exit 2 ;;
esac
