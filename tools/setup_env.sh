#!/usr/bin/env bash
# Create or update the book's two environments; safe to run again (it only
# reinstalls when a requirements file changed).
#
#   .venv        PyTorch, TensorFlow/Keras, JAX/Flax, Jupyter Book, nbval
#   .venv-mxnet  MXNet 1.9.1 with numpy<1.24, registered in .venv as the
#                Jupyter kernel "d2l-mxnet"
#
# Environment variables:
#   PYTHON            interpreter for both venvs (default: python3.11, else python3)
#   D2L_GPU=1|0       force CUDA builds on or off (default: on when nvidia-smi works)
#   D2L_SKIP_MXNET=1  do not create the MXNet environment
#   D2L_SKIP_BROWSER=1  do not try to install Debian's chromium and MathJax (browser tests)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
if [ -z "${D2L_GPU:-}" ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then D2L_GPU=1; else D2L_GPU=0; fi
fi

pip_quiet() {
  # pip's own progress is noise in CI logs; keep errors.
  "$@" -q --disable-pip-version-check 2>&1 \
    | { grep -v -E "is ignored: it is neither a file nor a directory" || true; }
  return "${PIPESTATUS[0]}"  # pip's status (grep's braces always succeed)
}

stamp_of() { cat "$@" pyproject.toml | sha256sum | cut -d' ' -f1; echo "gpu=$D2L_GPU"; }

# ---- main environment -----------------------------------------------------
if [ ! -x .venv/bin/python ]; then
  echo "Creating .venv with $PYTHON"
  "$PYTHON" -m venv .venv
fi
if [ "$D2L_GPU" = 1 ]; then
  main_files=(requirements.txt requirements-gpu.txt)
  main_args=(-r requirements.txt -r requirements-gpu.txt)
else
  main_files=(requirements.txt constraints-cpu.txt)
  main_args=(-r requirements.txt -c constraints-cpu.txt)
fi
want=$(stamp_of "${main_files[@]}")
if [ "$(cat .venv/.d2l-stamp 2>/dev/null)" != "$want" ]; then
  echo "Installing the main environment (GPU builds: $D2L_GPU); this takes a few minutes the first time"
  pip_quiet .venv/bin/python -m pip install "${main_args[@]}"
  pip_quiet .venv/bin/python -m pip install --no-deps -e .
  echo "$want" > .venv/.d2l-stamp
fi

# ---- MXNet environment ----------------------------------------------------
if [ "${D2L_SKIP_MXNET:-0}" != 1 ]; then
  if ! "$PYTHON" -c 'import sys; sys.exit(not ((3, 8) <= sys.version_info[:2] <= (3, 11)))'; then
    echo "MXNet 1.9.1 needs Python 3.8-3.11 (numpy<1.24 has no wheels for newer ones);" >&2
    echo "set PYTHON=/path/to/python3.11, or D2L_SKIP_MXNET=1 to do without MXNet." >&2
    exit 1
  fi
  if [ ! -x .venv-mxnet/bin/python ]; then
    echo "Creating .venv-mxnet with $PYTHON"
    "$PYTHON" -m venv .venv-mxnet
  fi
  want=$(stamp_of requirements-mxnet.txt)
  if [ "$(cat .venv-mxnet/.d2l-stamp 2>/dev/null)" != "$want" ]; then
    echo "Installing the MXNet environment"
    pip_quiet .venv-mxnet/bin/python -m pip install -r requirements-mxnet.txt
    pip_quiet .venv-mxnet/bin/python -m pip install --no-deps -e .
    echo "$want" > .venv-mxnet/.d2l-stamp
  fi
  kernel=.venv/share/jupyter/kernels/d2l-mxnet/kernel.json
  if ! grep -q "$root/.venv-mxnet/bin/python" "$kernel" 2>/dev/null; then
    .venv-mxnet/bin/python -m ipykernel install --prefix "$root/.venv" --name d2l-mxnet \
      --display-name "Python (d2l-mxnet: MXNet 1.9)" >/dev/null 2>&1
    echo "Registered the Jupyter kernel d2l-mxnet"
  fi
fi

# ---- a headless browser for tests/test_book.py -----------------------------
# Best effort: Debian's chromium when we are root with apt-get; without it the
# browser tests are skipped with that reason.
if [ "${D2L_SKIP_BROWSER:-0}" != 1 ] && ! command -v chromium >/dev/null 2>&1 \
   && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Debian's chromium for the browser tests"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
    >/tmp/d2l-chromium-install.log 2>&1 \
    || echo "Could not install chromium (see /tmp/d2l-chromium-install.log); browser tests will be skipped"
fi

# MathJax 3 for the browser tests: the book loads it from a CDN, which the
# tests cannot reach, so they serve this copy in its place (npm registry).
mathjax=.venv/mathjax/es5/tex-mml-chtml.js
if [ "${D2L_SKIP_BROWSER:-0}" != 1 ] && [ ! -f "$mathjax" ] && command -v npm >/dev/null 2>&1; then
  echo "Fetching MathJax 3.2.2 for the browser tests"
  tmp=$(mktemp -d)
  if (cd "$tmp" && npm pack -q mathjax@3.2.2 >/dev/null 2>&1 && tar xzf mathjax-3.2.2.tgz); then
    rm -rf .venv/mathjax && mkdir -p .venv/mathjax && mv "$tmp/package/es5" .venv/mathjax/es5
  else
    echo "Could not fetch MathJax with npm; the browser tests will skip their math check"
  fi
  rm -rf "$tmp"
fi
