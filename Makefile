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

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: install
	$(PY) bench/convert.py --write BENCHMARKS.md

convert-example: install
	$(VENV)/bin/prodet convert $(SHARED)/commodity_voc -o out/commodity.pkl --report out/commodity-report.json --coco out/commodity-coco.json

clean:
	rm -rf out .pytest_cache .ruff_cache
