# emo_mm developer commands. Everything runs inside .venv, which `make setup` creates.
PY := .venv/bin/python
STAMP := .venv/.emo_mm-setup-done
MOBILE_STAMP := .venv/.emo_mm-mobile-done
SETUP_INPUTS := tools/dev/setup_env.sh setup.py \
    $(filter-out requirements/mobile.txt,$(wildcard requirements/*.txt))

.PHONY: setup setup-mobile lint test test-all test-fast test-mobile test-clone demo benchmark \
    flops clean-data

# The mobile runtime (ExecuTorch, requirements/mobile.txt: 25 packages) is an extra:
# `make setup-mobile` or `EMO_MM_MOBILE=1 make setup` adds it; make test leaves its tests out.
setup: $(STAMP) $(if $(filter 1,$(EMO_MM_MOBILE)),$(MOBILE_STAMP))

setup-mobile: $(MOBILE_STAMP)

# Re-runs only when the script or a requirements file changes; the script itself is
# idempotent and reuses the cached mmcv wheel.
$(STAMP): $(SETUP_INPUTS)
	EMO_MM_MOBILE=0 bash tools/dev/setup_env.sh
	touch $@

$(MOBILE_STAMP): $(STAMP) requirements/mobile.txt requirements/constraints.txt
	bash tools/dev/setup_env.sh --mobile-only
	touch $@

# Extra pytest arguments, e.g. make test PYTEST_ARGS='-k parity -x'
PYTEST_ARGS ?=
# pytest-xdist workers (one per core; a worker computes on cores/workers threads, see
# tests/conftest.py); the users of one demo training share a worker (--dist loadgroup), and
# the longest tests start first (the order of tests/conftest.py, kept: --no-loadscope-reorder).
# PYTEST_WORKERS=0 runs the suite in this process, in collection order.
PYTEST_WORKERS ?= 2
XDIST := -n $(PYTEST_WORKERS) --dist loadgroup --no-loadscope-reorder

# flake8 and isort (settings in setup.cfg, versions in requirements/lint.txt, the same set as
# .pre-commit-config.yaml) over everything Python; the test targets run it first.
LINT_PATHS := emo_mm tools tests configs setup.py

lint: setup
	$(PY) -m flake8 $(LINT_PATHS)
	$(PY) -m isort --check-only --diff $(LINT_PATHS)

test: setup lint
	$(PY) -m pytest tests $(XDIST) -m "not extended and not mobile" $(PYTEST_ARGS)

# Everything, the extended checks included (inductor compile, dynamic-shape recompiles,
# the DiT generation comparison, the further fault injections and tool paths, every
# fine-tuning example, EMOv1's learning runs: about as long again as make test) and the
# mobile runtime's tests (installs the extra first).
test-all: setup-mobile lint
	$(PY) -m pytest tests $(XDIST) $(PYTEST_ARGS)

# The tests marked mobile (installs the extra first): ExecuTorch programs against PyTorch,
# the demo segmentor's mIoU through them, deploy --mobile, benchmark's executorch rows.
test-mobile: setup-mobile lint
	$(PY) -m pytest tests $(XDIST) -m mobile $(PYTEST_ARGS)

# Parity, shapes, config builds and errors in a few minutes: the tests marked slow
# (learning runs, wheel build) and mobile are left out.
test-fast: setup lint
	$(PY) -m pytest tests $(XDIST) -m "not slow and not mobile" $(PYTEST_ARGS)

# The suite in a fresh clone of the committed HEAD, in a temporary folder with nothing
# beside it (no ../shared) and EMO_MM_REFERENCE unset, run with this checkout's .venv:
# shows the tests need nothing outside the repository (the mobile extra included). Quick form:
#   make test-clone PYTEST_ARGS='-m "not slow"'
test-clone: setup-mobile
	@clone="$$(mktemp -d)/emo_mm" && trap 'rm -rf "$$(dirname "$$clone")"' EXIT && \
	git clone -q "$(CURDIR)" "$$clone" && cd "$$clone" && \
	echo "[test-clone] $$clone at $$(git rev-parse --short HEAD)" && \
	env -u EMO_MM_REFERENCE PYTHONPATH="$$clone" "$(abspath $(PY))" -m pytest tests \
	    -p no:cacheprovider $(PYTEST_ARGS)

demo: setup
	$(PY) tools/demo.py

benchmark: setup
	$(PY) tools/analysis_tools/benchmark.py

flops: setup
	$(PY) tools/analysis_tools/get_flops.py 1M 2M 5M 20M 50M v1-1M v1-2M v1-5M v1-6M

clean-data:
	rm -rf data/demo_*
