# prodet: `make demo` runs the whole pipeline, `make test` the test suite.
# Both create the virtual environment and install what they need.
VENV ?= .venv
PY := $(VENV)/bin/python
SHARED ?= ../shared/data

.PHONY: install test lint bench demo convert-example clean

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

install: $(PY)
	$(PY) -m pip install --quiet -e ".[all]"

demo: install
	$(VENV)/bin/prodet demo --out out/demo

test: install
	$(VENV)/bin/python -m pytest -q

# ruff, then the layers (import-linter) and types (mypy) over the installed namespace's
# layout, which .ci/namespace_view.sh lays out as links under build/nsview.
lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
	bash .ci/namespace_view.sh >/dev/null
	cd build/nsview && PYTHONPATH=$$PWD $(abspath $(VENV))/bin/lint-imports --config ../../pyproject.toml
	cd build/nsview && $(abspath $(VENV))/bin/mypy -p prodet --config-file ../../pyproject.toml --cache-dir ../mypy_cache

# Every benchmark, each rewriting its own section of BENCHMARKS.md (about 2.5 hours).
bench: install
	$(PY) bench/convert.py --write BENCHMARKS.md
	$(PY) bench/data_loading.py --write BENCHMARKS.md
	$(PY) bench/train_budget.py --datasets groceries25_voc commodity_voc --heads ssd fast_rcnn --minutes 15 --extra-run groceries25_voc:ssd:8 --flags "groceries25_voc=--size 224 --ema --set ema_decay=0.995" --flags "commodity_voc=--ema --set ema_decay=0.99" --write BENCHMARKS.md
	# the commodity SSD rows with a feature pyramid (four seeds; added to the table by hand)
	for seed in 0 1 2 3; do $(PY) bench/train_budget.py --datasets commodity_voc --heads ssd --minutes 15 --flags "commodity_voc=--ema --set ema_decay=0.99 --val-split none --set ssd.fpn_channels=96 --size 320 --seed $$seed" --workdir out/bench-train-fpn-$$seed --results out/bench-train-fpn.jsonl; done
	$(PY) bench/export_speed.py out/bench-train/commodity_voc-ssd-15min/best.pt out/bench-train/commodity_voc-fast_rcnn-15min/best.pt --proposals default,100 --write BENCHMARKS.md
	$(VENV)/bin/prodet export out/bench-train/commodity_voc-ssd-15min/best.pt -o out/commodity-ssd.onnx
	$(PY) bench/serve_load.py --model out/commodity-ssd.onnx --naive-checkpoint out/bench-train/commodity_voc-ssd-15min/best.pt --image $(SHARED)/commodity_voc/JPEGImages/000005.jpg --write BENCHMARKS.md

convert-example: install
	$(VENV)/bin/prodet convert $(SHARED)/commodity_voc -o out/commodity.pkl --report out/commodity-report.json --coco out/commodity-coco.json

clean:
	rm -rf out .pytest_cache .ruff_cache
