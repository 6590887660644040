# emo_mm developer commands. Everything runs inside .venv, which `make setup` creates.
PY := .venv/bin/python
STAMP := .venv/.emo_mm-setup-done
SETUP_INPUTS := tools/setup_env.sh setup.py $(wildcard requirements/*.txt)

.PHONY: setup test test-fast demo benchmark flops clean-data

setup: $(STAMP)

# Re-runs only when the script or a requirements file changes; the script itself is
# idempotent and reuses the cached mmcv wheel.
$(STAMP): $(SETUP_INPUTS)
	bash tools/setup_env.sh
	touch $@

test: setup
	$(PY) -m pytest tests

demo: setup
	$(PY) tools/demo.py

benchmark: setup
	$(PY) tools/benchmark.py

flops: setup
	$(PY) tools/get_flops.py 1M 2M 5M 20M 50M v1-1M v1-2M v1-5M v1-6M

clean-data:
	rm -rf data/demo_*
