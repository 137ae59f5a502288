# Two entry points for a fresh clone: `make demo` (main job) and `make test` (whole suite).
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STUDY ?= studies/partial_vs_dense.yaml
# The floor venv of `make test-floor`, apart from $(VENV).
FLOOR_VENV ?= .venv-floor

.PHONY: venv data demo test test-quick test-floor test-gpu bench clean

venv: $(VENV)/.installed

# torch/torchvision first, pinned to the releases that install from this machine's disk.
# The dashboard and tracking extras are optional (their tests skip without them): best effort
# where no index answers.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.14.1 torchvision==0.29.1
	$(PIP) install -q -e '.[dev]'
	-$(PIP) install -q -e '.[dashboard]'
	-$(PIP) install -q -e '.[tracking]'
	touch $@

data:
	PYTHON=$(PY) bash scripts/get_data.sh

demo: venv data
	$(VENV)/bin/connectome run $(STUDY) --resume --on-change beside

# Two pytest workers sharing one Ray head once a test needs one; the readers of the smoke
# study share a worker (xdist group, tests/conftest.py). Tests and trials use one thread each.
PYTEST := $(PY) -m pytest -q -n 2 --dist loadgroup

# Real-data tests skip when Fashion-MNIST is absent; fetching it is best effort.
test: venv
	-@PYTHON=$(PY) bash scripts/get_data.sh
	$(PYTEST)

test-quick: venv
	$(PYTEST) -m "not slow"

# The fast tests on the declared floors: every core dependency at exactly its `>=` version
# (scripts/floor_constraints.py), the rest resolved by pip, in $(FLOOR_VENV); $(VENV) is untouched.
# Here that downloads about 3 GB (torch's PyPI wheel brings CUDA 12 libraries).
test-floor: $(FLOOR_VENV)/.installed
	$(FLOOR_VENV)/bin/python -m pytest -q -m "not slow"

$(FLOOR_VENV)/.installed: pyproject.toml scripts/floor_constraints.py
	python3 -m venv $(FLOOR_VENV)
	$(FLOOR_VENV)/bin/python -m pip install -q --upgrade pip
	$(FLOOR_VENV)/bin/python scripts/floor_constraints.py > $(FLOOR_VENV)/constraints.txt
	$(FLOOR_VENV)/bin/python -m pip install -q -c $(FLOOR_VENV)/constraints.txt -e '.[dev]'
	touch $@

# The GPU suite alone (docs/gpu.md); `make test` runs it too, and it skips itself without CUDA.
test-gpu: venv
	$(PY) -m pytest -q -rs tests/gpu

bench: venv
	$(PY) benchmarks/executor.py

clean:
	rm -rf $(VENV) $(FLOOR_VENV) .pytest_cache
