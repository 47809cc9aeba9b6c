# The two set-up commands of the README: `make demo` and `make test`. Both install what they need.
PY := .venv/bin/python

.PHONY: setup demo test bench
setup:
	bash scripts/setup_env.sh

demo: setup
	$(PY) tools/demo.py

test: setup
	$(PY) -m pytest -q tests

# Benchmarks (bench/results/): installs the comparison baselines (fpsample, faiss-cpu) first.
bench: setup
	$(PY) -m pip install -q -r bench/requirements.txt
	$(PY) bench/point_ops.py
	$(PY) bench/train_step.py
