# Everything the project needs is installed here; `make demo` and `make test`
# are the only set-up a fresh clone needs (see README).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# The pinned torch is a local CPU wheel on these machines; installing it first
# keeps pip from resolving a multi-GB CUDA build for the `torch>=` requirement.
TORCH_PIN ?= torch==2.13.0

.PHONY: venv demo test bench bench-startup gpu-check clean

venv: $(STAMP)

# constraints.txt pins every dependency to the versions the suite last passed
# with, so a fresh clone (and CI) installs exactly that, whatever PyPI has since.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PIN)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) scripts/demo.py

test: $(STAMP)
	$(PY) -m pytest -q tests

bench: $(STAMP)
	$(PY) bench/run.py

# Whole-process time of a cached-style still (one of `make bench`'s scripts).
bench-startup: $(STAMP)
	$(PY) bench/run.py startup

gpu-check: $(STAMP)
	$(PY) bench/gpu_check.py

clean:
	rm -rf $(VENV) out .pytest_cache
