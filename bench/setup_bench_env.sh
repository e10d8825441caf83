#!/usr/bin/env bash
# Create or update .venv-bench, the environment of the d2l reference run in
# bench/train_bench.py; safe to run again (it only reinstalls when this file,
# pyproject.toml or .venv's TensorFlow changed). Needs .venv and .venv-mxnet.
#
#   .venv-bench  torch 2.14.1 + torchvision 0.29.1, d2l 1.0.3 (--no-deps: its
#                pinned dependencies are too old for today's Pythons), what
#                d2l/torch.py imports, and d2l_lite (editable, --no-deps)
#   .venv-bench/{tf,jax,mxnet}-extra
#                folders for PYTHONPATH that let d2l's other modules run in the
#                book's environments: d2l 1.0.3 plus what each imports that
#                the environment lacks (tf_keras, tensorflow_datasets, pandas)
#
# Our own trainers run in the book's environments (.venv, .venv-mxnet; see
# tools/setup_env.sh). d2l's torch module imports torchvision, which needs a
# torch of the same release: PyPI's torchvision does not import beside the
# CPU-only torch 2.13.0 of .venv, hence this separate environment.
#
# Environment variables:
#   PYTHON   interpreter (default: python3.11, else python3)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
VENV=.venv-bench

pip_quiet() {
  "$@" -q --disable-pip-version-check 2>&1 \
    | { grep -v -E "is ignored: it is neither a file nor a directory" || true; }
  return "${PIPESTATUS[0]}"  # pip's status (grep's braces always succeed)
}

# extra FOLDER PYTHON PACKAGE...: PACKAGEs, without their dependencies, into FOLDER
extra() {
  local folder=$1 python=$2
  shift 2
  rm -rf "$folder"
  pip_quiet "$python" -m pip install --no-deps --target "$folder" "$@"
}

for venv in .venv .venv-mxnet; do  # the extras below go into their pythons
  [ -x "$venv/bin/python" ] || { echo "No $venv: run tools/setup_env.sh first" >&2; exit 1; }
done
# tf-extra's tf_keras must match .venv's TensorFlow: a new one reinstalls
tf_version=$(.venv/bin/python -c "from importlib.metadata import version; print(version('tensorflow'))")
want=$( (cat bench/setup_bench_env.sh pyproject.toml; echo "tensorflow $tf_version") \
  | sha256sum | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ]; then
  echo "Creating $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi
if [ "$(cat "$VENV/.d2l-stamp" 2>/dev/null)" != "$want" ]; then
  echo "Installing the benchmark environment (torch + torchvision, d2l 1.0.3); several GB the first time"
  # torch and torchvision of one release (torchvision's C++ ops are built
  # against it); a CUDA build on Linux x86_64, which also runs on the CPU.
  pip_quiet "$VENV/bin/python" -m pip install "torch==2.14.1" "torchvision==0.29.1"
  # What d2l/torch.py imports at module level, at today's versions.
  pip_quiet "$VENV/bin/python" -m pip install numpy scipy pandas requests matplotlib \
    matplotlib-inline ipython pillow
  # d2l itself, without its pins (numpy==1.23.5, matplotlib==3.7.2, ...): pip
  # then warns that d2l "requires numpy==1.23.5" etc.; that is expected.
  pip_quiet "$VENV/bin/python" -m pip install --no-deps "d2l==1.0.3"
  pip_quiet "$VENV/bin/python" -m pip install --no-deps -e .
  # d2l's TensorFlow module in .venv: Keras 2 (tf_keras of TensorFlow's release,
  # with TF_USE_LEGACY_KERAS=1) and pandas, which d2l imports.
  extra "$VENV/tf-extra" .venv/bin/python d2l==1.0.3 "tf_keras==$tf_version" pandas
  # d2l's JAX module in .venv: tensorflow_datasets and what importing it needs.
  extra "$VENV/jax-extra" .venv/bin/python d2l==1.0.3 tensorflow_datasets toml promise \
    tensorflow-metadata immutabledict dm-tree pandas
  # d2l's MXNet module in .venv-mxnet: a pandas built for its numpy 1.23.
  extra "$VENV/mxnet-extra" .venv-mxnet/bin/python d2l==1.0.3 pandas==2.0.3 pytz
  "$VENV/bin/python" -c "import torch, torchvision; from d2l import torch as d2l; print('d2l', d2l.__name__, 'torch', torch.__version__, 'torchvision', torchvision.__version__)"
  echo "$want" > "$VENV/.d2l-stamp"
fi
