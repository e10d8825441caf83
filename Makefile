# The README's two commands: `make book` and `make test`.
# Each first runs tools/setup_env.sh, which creates .venv and .venv-mxnet on a
# fresh machine and does nothing when they are up to date.
SHELL := /bin/bash
VENV := .venv/bin
SHARED_DATA ?= $(abspath ../shared/data/fashion-mnist)
export D2L_FASHION_MNIST_DIR ?= $(if $(wildcard $(SHARED_DATA)),$(SHARED_DATA),)

.PHONY: book test test-fast env clean colab-test

env:
	tools/setup_env.sh

book: env
	$(VENV)/jupyter-book build --all -W --keep-going .
	@echo "The book is in _build/html/index.html"

test: env
	D2L_SMALL_SCALE=1 tools/run_tests.sh

# A developer's loop: everything but the tests marked slow (notebooks, and
# tests that start processes or devices of their own).
test-fast: env
	D2L_SMALL_SCALE=1 tools/run_tests.sh -m "not slow"

# Every non-MXNet page in the versions Colab ships (requirements-colab.txt).
colab-test:
	tools/colab_test.sh

clean:
	rm -rf _build .pytest_cache
