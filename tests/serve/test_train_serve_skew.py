"""Train/serve skew: a real image gives the same model input and boxes on both sides.

Training side: the dataset item of the ``eval`` preset, as evaluation builds it
(``DetectionDataset`` over the converted folder with ``build_transform("eval", ...)``).
Service side: ``serve.preprocess.prepare_image`` on the file's bytes, and
``serve.postprocess.select_detections`` for the boxes.

Both decode with ``annotations.image_decode`` and resize with ``datasets.geometry``
(Pillow), so the resized ``uint8`` pixels are identical and the geometries equal. The
only difference left is the normalisation's float32 arithmetic (albumentations' lookup
table versus the service's ``(x / 255 - mean) / std``): at most 7.2e-7 measured over the
17 test images in both modes and sizes, about 3 float32 ULPs of values up to 2.7, so
``TENSOR_ATOL = 2e-6`` in normalised units, far below one gray level
(``1 / (255 * std)``, about 0.017). Before both sides shared the resize, OpenCV's
``INTER_AREA`` in training and Pillow's ``BOX`` in the service differed by up to 56 gray
levels on these images.

Boxes: the training target's boxes (model-input pixels) are taken as the model's output
and mapped back by both sides; the service rounds to 0.01 pixel, hence ``BOX_ATOL``
(0.005 plus the float32 mapping error, at most 6.1e-5 measured).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("albumentations", reason="training stack (prodet[train]) not installed")

from prodet.annotations.convert import convert_folder
from prodet.annotations.schema import VocDataset
from prodet.datasets.augment import build_transform
from prodet.datasets.detection_dataset import DetectionDataset
from prodet.datasets.geometry import boxes_to_original
from prodet.export.onnx_contract import Detections, ModelMetadata, parse_metadata
from prodet.serve.postprocess import DetectionFilter, select_detections
from prodet.serve.preprocess import prepare_image
from tests.serve.tiny_model import metadata

SHARED_DATA = Path(__file__).parents[2].parent / "shared" / "data"
COMMODITY = SHARED_DATA / "commodity_voc"
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
TENSOR_ATOL = 2e-6
MAPPING_ATOL = 1e-4  # float32 mapping error of boxes to the input and back
BOX_ATOL = 0.005 + MAPPING_ATOL
IMAGES = 4  # the first test images: 478x480, 469x480, 640x337, 420x480


@pytest.fixture(scope="module")
def commodity() -> VocDataset:
    if not (COMMODITY / "JPEGImages").is_dir():
        pytest.skip(
            f"shared data not found at {COMMODITY} (expected ../shared/data beside the repo)"
        )
    result = convert_folder(COMMODITY, workers=1)
    assert result.dataset is not None, result.problems
    return result.dataset


def _service_metadata(voc: VocDataset, size: int, mode: str) -> ModelMetadata:
    return parse_metadata(
        metadata(
            classes=json.dumps(list(voc.classes)),
            input_size=str(size),
            resize_mode=mode,
            mean=json.dumps(MEAN),
            std=json.dumps(STD),
        )
    )


@pytest.mark.parametrize("mode", ["stretch", "letterbox"])
# 300 shrinks all four (area average); 512 enlarges three and, letterboxed, shrinks the
# 640-wide one, stretched shrinks its width and enlarges its height (bilinear).
@pytest.mark.parametrize("size", [300, 512])
def test_eval_preset_and_service_give_the_same_input_and_boxes(
    commodity: VocDataset, mode: str, size: int
) -> None:
    transform = build_transform("eval", size=size, mean=MEAN, std=STD, resize_mode=mode)
    dataset = DetectionDataset(commodity, "test", transform=transform)
    meta = _service_metadata(commodity, size, mode)
    keep_all = DetectionFilter.build(meta, score_threshold=0.0)
    for index in range(IMAGES):
        record = dataset.records[index]
        image, target = dataset[index]
        prepared = prepare_image(dataset.image_path(index).read_bytes(), meta, max_pixels=10**8)

        assert (prepared.width, prepared.height) == (record.width, record.height)
        assert prepared.geometry == target["geometry"]
        assert prepared.tensor.shape == tuple(image.shape) == (3, size, size)
        np.testing.assert_allclose(prepared.tensor, image.numpy(), rtol=0, atol=TENSOR_ATOL)

        on_input = target["boxes"].numpy()
        count = len(on_input)
        assert count > 0
        raw = Detections(
            boxes=on_input,
            scores=np.linspace(1.0, 0.5, count, dtype=np.float32),
            labels=target["labels"].numpy(),
        )
        served = select_detections(raw, prepared, meta, keep_all)
        trained = boxes_to_original(on_input, target["geometry"])
        np.testing.assert_allclose([d.box for d in served], trained, rtol=0, atol=BOX_ATOL)
        np.testing.assert_allclose(trained, record.boxes, rtol=0, atol=MAPPING_ATOL)
