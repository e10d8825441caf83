#!/usr/bin/env bash
# The whole test suite (called by `make test` after tools/setup_env.sh):
#   1. unit tests and every notebook under chapters/ through nbval, in the main
#      environment; nbval runs each notebook in the kernel its metadata names,
#      so the MXNet notebooks execute in the d2l-mxnet kernel (.venv-mxnet);
#   2. the MXNet unit tests and the conformance suite (tests/test_backends.py),
#      in the MXNet environment;
#   3. a check that the two runs together held every registered backend to the
#      conformance suite (a framework missing from an environment fails here).
# D2L_SMALL_SCALE=1 (set by `make test`) puts training notebooks in their
# small-scale mode. Arguments go to both pytest runs (`make test-fast` passes
# -m "not slow": no notebooks, no tests that start processes).
set -uo pipefail
cd "$(dirname "$0")/.."
workers=${D2L_TEST_WORKERS:-2}
# Each worker (and each notebook kernel it starts) gets one compute thread:
# with 2 workers on a 2-core CI machine, the frameworks' default thread pools
# oversubscribe the cores and PyTorch's CPU training slows down several-fold.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
export TF_NUM_INTRAOP_THREADS=${TF_NUM_INTRAOP_THREADS:-1} TF_NUM_INTEROP_THREADS=${TF_NUM_INTEROP_THREADS:-1}

status=0
seen=$(mktemp)
# JAX's compilation cache, shared by the workers, kernels and child processes
# of this run only (it starts empty, as a reader's first run does): a program
# compiled once is not compiled again, e.g. the variants page's baseline for
# its second seed and for the step-decay and label-smoothing runs (the rate
# and the smoothing are arguments of JAX's step).
jax_cache=$(mktemp -d)
trap 'rm -rf "$seen" "$jax_cache"' EXIT
export D2L_BACKENDS_SEEN=$seen JAX_COMPILATION_CACHE_DIR=$jax_cache
.venv/bin/python -m pytest tests chapters --ignore=tests/mxnet \
  --nbval --nbval-sanitize-with tests/nbval_sanitize.cfg \
  -n "$workers" --dist loadscope -p no:cacheprovider -rs --durations=25 "$@" \
  || status=$?  # the log ends with the 25 slowest items: where the time goes

if [ -x .venv-mxnet/bin/python ]; then
  .venv-mxnet/bin/python -m pytest tests/mxnet tests/test_backends.py -p no:cacheprovider \
    -rs "$@" || status=$?
else
  echo "No .venv-mxnet, so the MXNet tests did not run: tools/setup_env.sh makes it" \
    "(unless D2L_SKIP_MXNET=1 is set)" >&2
  status=1
fi
# Every registered backend (d2l_lite.backend.BACKENDS), so a fifth is held too;
# not when -k chose the tests (it may leave the conformance suite out).
for arg in "$@"; do
  if [[ $arg == -k* || $arg == -[!-]*k* ]]; then  # -k EXPR, -kEXPR, -xk EXPR
    echo "(-k: the backends seen are not checked)"
    exit $status
  fi
done
names=$(.venv/bin/python -c "from d2l_lite import backend; print(*backend.BACKENDS)") \
  || { echo "Cannot read the backend registry (d2l_lite.backend)" >&2; exit 1; }
missing=$(for name in $names; do
  grep -qx "$name" "$seen" || echo -n "$name "; done)
if [ -n "$missing" ]; then
  echo "The conformance suite (tests/test_backends.py) did not run for: $missing" >&2
  echo "(a framework missing from its environment: run tools/setup_env.sh)" >&2
  status=1
fi
exit $status
