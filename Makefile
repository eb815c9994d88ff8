# resviz: `make serve` sets up and starts the app; `make test` sets up and runs the whole suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
export OPENBLAS_NUM_THREADS ?= 1

.PHONY: serve test test-fast lint bench bench-load bench-scale bench-first-run export weights shattered landscapes clean browser-deps

$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[export]'
	touch $@

$(VENV)/.dev: $(VENV)/.base
	$(PY) -m pip install -q -e '.[export,dev,cluster]'
	touch $@

# Debian's chromium for the browser tests (Playwright cannot download browsers here).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null; fi; }

# The server answers at once; its export worker exports the missing default models in the background
# (progress on the page and at /api/exports).
serve: $(VENV)/.base
	@echo "resviz: serving on http://$(HOST):$(PORT)"
	$(VENV)/bin/resviz serve --host $(HOST) --port $(PORT)

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check app tests bench
	$(VENV)/bin/ruff format --check app tests bench

test: $(VENV)/.dev browser-deps lint
	$(PY) -m pytest -q

test-fast: $(VENV)/.dev
	$(PY) -m pytest -q -m "not slow and not browser"

bench: $(VENV)/.dev
	$(PY) bench/run.py

# A lecture hall against `resviz serve` on 127.0.0.1: bench/load.py (table on stdout, bench/results/load.json).
bench-load: $(VENV)/.dev
	$(VENV)/bin/resviz export --defaults --missing-only --quiet
	$(PY) bench/load.py

# L2 (300 distinct ResNet-20 uploads in 10 s) against uvicorn with 1 and 2 workers and Ray Serve with 2 replicas:
# bench/scale.py (table on stdout, bench/results/scale.json).
bench-scale: $(VENV)/.dev
	$(VENV)/bin/resviz export resnet20 --missing-only --quiet
	$(PY) bench/scale.py

# A clean clone's first run: install, first answer, the start page's first analysis, all default exports.
bench-first-run:
	$(PYTHON) bench/first_run.py

# Re-create the shipped CIFAR weights (trained on the generated data set; ~1.5 h on 2 cores), export them
# and precompute the depth sweep for the probe image (models/weights/depth-sweep.json) and the shattered gradients.
weights: $(VENV)/.base
	bash scripts/make_weights.sh
	$(VENV)/bin/resviz export resnet20 resnet32 resnet44 resnet56 resnet110 --weights trained
	$(VENV)/bin/resviz export resnet20 resnet32 resnet44 resnet56 resnet110 --weights plain
	$(PY) scripts/depth_sweep.py
	$(PY) scripts/shattered.py

# The lab's shattered-gradients study (models/weights/shattered.json; exports the explain graphs it needs), then
# its tests, the explain graph's against torch autograd among them (docs/shattered.md).
shattered: $(VENV)/.base
	$(PY) scripts/shattered.py
	$(PY) -m pytest -q tests/runtime/test_shattered.py tests/api/test_shattered_api.py tests/api/test_embed.py \
		tests/browser/test_shattered_browser.py tests/browser/test_figures.py

# Re-compute the shipped loss landscapes (models/landscapes/, ~30 min on 2 busy cores) and docs/landscapes.md's tables.
landscapes: $(VENV)/.base
	NICE=10 bash scripts/landscapes.sh
	$(PY) scripts/landscape_table.py --write

export: $(VENV)/.base
	$(VENV)/bin/resviz export --all

clean:
	rm -rf $(VENV) models/*.onnx models/*.json
