# Two commands do all the set-up on a fresh machine:
#   make demo   # the main job (end-to-end NLHF on the synthetic TL;DR world)
#   make test   # the test suite on 8 fake CPU devices
# Both create and reuse a local virtual environment in $(VENV).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
XLA_TEST_FLAGS := --xla_force_host_platform_device_count=8
PYTEST_ARGS ?=
# Parallel pytest workers (pytest-xdist); 2 matches the 2-core reference
# machine. TEST_WORKERS=0 runs in one process. Each test module runs whole
# on one worker (--dist loadscope), so its module fixtures are built once.
TEST_WORKERS ?= 2

.PHONY: test demo worlds install clean-venv

install: $(STAMP)

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	XLA_FLAGS=$(XLA_TEST_FLAGS) JAX_PLATFORMS=cpu TF_CPP_MIN_LOG_LEVEL=3 \
	  $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadscope tests $(PYTEST_ARGS)

DEMO_OUT ?= demo_out
DEMO_ARGS ?=

# One CPU device (the demo's models are tiny; a fake 8-device mesh would only
# add collectives). Every training stage includes gin_configs/backends/cpu.gin
# (the XLA:CPU speedups, docs/cpu_speedups.md). Re-running continues where an
# interrupted run stopped.
demo: $(STAMP)
	JAX_PLATFORMS=cpu TF_CPP_MIN_LOG_LEVEL=3 \
	  $(PY) -m nlhf_jax.demo --out $(DEMO_OUT) $(DEMO_ARGS)

WORLDS_OUT ?= worlds_out
WORLDS_ARGS ?=

# Every method on the finite-answer worlds against its exact target (README,
# "Finite-answer worlds"): 3 worlds x 2 seeds x 11 methods.
worlds: $(STAMP)
	JAX_PLATFORMS=cpu TF_CPP_MIN_LOG_LEVEL=3 \
	  $(PY) -m nlhf_jax.finite_worlds --out $(WORLDS_OUT) --seeds 1,2 $(WORLDS_ARGS)

clean-venv:
	rm -rf $(VENV)
