#!/usr/bin/env bash
# Run every non-MXNet page, in its small-scale mode, with nbval, in a virtual
# environment of the versions Colab ships (requirements-colab.txt):
#
#   make colab-test        # or: tools/colab_test.sh [pytest options]
#
# The environment (.venv-colab, Python 3.13 as on Colab) is created the first
# time and reinstalled only when requirements-colab.txt changes.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then  # Colab's Python: python3.13, or pyenv's 3.13
  for candidate in python3.13 "$(pyenv root 2>/dev/null)"/versions/3.13*/bin/python3.13; do
    if "$candidate" -c 'pass' 2>/dev/null; then PYTHON=$candidate; break; fi
  done
fi
if ! "${PYTHON:-python3.13}" -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null; then
  echo "Colab runs Python 3.13: set PYTHON=/path/to/python3.13" >&2
  exit 1
fi
venv=.venv-colab
if [ ! -x "$venv/bin/python" ]; then
  echo "Creating $venv with $PYTHON"
  "$PYTHON" -m venv "$venv"
fi
want=$(cat requirements-colab.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$venv/.d2l-stamp" 2>/dev/null)" != "$want" ]; then
  echo "Installing Colab's versions into $venv (a few minutes the first time)"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r requirements-colab.txt
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e .
  echo "$want" > "$venv/.d2l-stamp"
fi
mapfile -t pages < <(ls chapters/*/*.ipynb | grep -v '/mxnet\.ipynb$')
# One thread per kernel, as in `make test`; the notebooks run in this
# environment's own kernel (--nbval-current-env), not .venv's.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1
D2L_SMALL_SCALE=1 "$venv/bin/python" -m pytest "${pages[@]}" --nbval --nbval-current-env \
  --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider -q "$@"
