# The two set-up commands of the README: `make demo` and `make test`. Both install what they need.
PY := .venv/bin/python

.PHONY: setup demo test bench
setup:
	bash scripts/setup_env.sh

demo: setup
	$(PY) tools/demo.py

test: setup
	$(PY) -m pytest -q tests

bench: setup
	$(PY) bench/point_ops.py
