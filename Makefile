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
	# the camera-photo workload: 200 phone-size JPEGs (4032x3024, quality 90, half EXIF-rotated)
	test -d out/camera200 || $(VENV)/bin/prodet synth out/camera200 --images 200 --size 4032x3024 --quality 90 --exif-rotated 0.5 --quiet
	$(PY) bench/data_loading.py --camera out/camera200 --write BENCHMARKS.md
	# each dataset and head trains its recipe, configs/DATASET-HEAD.yaml
	$(PY) bench/train_budget.py --datasets groceries25_voc commodity_voc --heads ssd fast_rcnn --minutes 15 --extra-run groceries25_voc:ssd:8 --config groceries25_voc:ssd=configs/groceries25-ssd.yaml --config groceries25_voc:fast_rcnn=configs/groceries25-fast-rcnn.yaml --config commodity_voc:ssd=configs/commodity-ssd.yaml --config commodity_voc:fast_rcnn=configs/commodity-fast-rcnn.yaml --write BENCHMARKS.md
	# the commodity SSD rows with a feature pyramid (four seeds; added to the table by hand)
	for seed in 0 1 2 3; do $(PY) bench/train_budget.py --datasets commodity_voc --heads ssd --minutes 15 --config commodity_voc=configs/commodity-ssd-fpn.yaml --set seed=$$seed --workdir out/bench-train-fpn-$$seed --results out/bench-train-fpn.jsonl; done
	$(PY) bench/export_speed.py out/bench-train/commodity_voc-ssd-15min/best.pt out/bench-train/commodity_voc-fast_rcnn-15min/best.pt --proposals default,100 --write BENCHMARKS.md
	$(VENV)/bin/prodet export out/bench-train/commodity_voc-ssd-15min/best.pt -o out/commodity-ssd.onnx
	$(PY) bench/serve_load.py --model out/commodity-ssd.onnx --naive-checkpoint out/bench-train/commodity_voc-ssd-15min/best.pt --image $(SHARED)/commodity_voc/JPEGImages/000005.jpg --camera out/camera200 --write BENCHMARKS.md
	# Ray Serve replicas against one process; fast against full JPEG decoding (demo model, noise floor)
	$(PY) bench/ray_serve_load.py --model out/commodity-ssd.onnx --image $(SHARED)/commodity_voc/JPEGImages/000005.jpg --write BENCHMARKS.md
	test -f out/demo/model.onnx || $(VENV)/bin/prodet demo --out out/demo
	$(PY) bench/box_agreement.py --model out/demo/model.onnx --camera out/camera200 --write BENCHMARKS.md
	$(PY) bench/decode_ceiling.py --model out/commodity-ssd.onnx --camera out/camera200 --write BENCHMARKS.md
	# prodet predict on a folder: in process against Ray Data actors (500 commodity variants)
	$(PY) bench/batch_predict.py --model out/commodity-ssd.onnx --images $(SHARED)/commodity_voc/JPEGImages --count 500 --repeats 3 --write BENCHMARKS.md

convert-example: install
	$(VENV)/bin/prodet convert $(SHARED)/commodity_voc -o out/commodity.pkl --report out/commodity-report.json --coco out/commodity-coco.json

clean:
	rm -rf out .pytest_cache .ruff_cache
