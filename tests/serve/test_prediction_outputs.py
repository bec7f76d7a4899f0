"""``prodet predict --format voc``: a folder ``prodet convert`` reads back, boxes within 1 px."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from prodet.annotations.convert import convert_folder
from prodet.commands import main
from prodet.serve.prediction_outputs import voc_id
from tests.annotations.jpeg_samples import with_orientation
from tests.serve.batch_images import read_records, write_images
from tests.serve.tiny_model import save_model

# Names XML cannot hold as they are: markup, quotes, control characters, edge spaces.
HARD_CLASSES = ["__background__", "<b&\"q'>", "c\x01\x1f\r ", " _x0041_"]


def _predict(model: Path, out: Path, images: Path, *extra: str) -> int:
    argv = ["predict", str(images), "--model", str(model), "--out", str(out)]
    return main([*argv, "--provider", "cpu", *extra])


def _stored_box(box: dict[str, float], upright_width: int) -> list[float]:
    """A box on an image shown turned by EXIF orientation 6 (90 degrees clockwise), on
    the stored pixels: upright (u, v) is stored (v, W - u), W the upright width."""
    return [box["y1"], upright_width - box["x2"], box["y2"], upright_width - box["x1"]]


def test_voc_output_round_trips_through_convert(tmp_path: Path) -> None:
    model = save_model(tmp_path / "hard.onnx", classes=json.dumps(HARD_CLASSES))
    images = tmp_path / "in"
    write_images(images, 6, subfolders=2)
    photo = Image.new("RGB", (120, 80), (230, 230, 230))  # shown 80 x 120
    (images / "part1" / "turned.jpg").write_bytes(with_orientation(photo, 6, quality=95))

    assert _predict(model, tmp_path / "json", images, "--no-draw") == 0
    assert _predict(model, tmp_path / "voc", images, "--format", "voc") == 0
    xml = "".join(p.read_text() for p in (tmp_path / "voc" / "Annotations").iterdir())
    assert "&lt;b&amp;\"q'&gt;" in xml and "c_x0001__x001F__x000D__x0020_" in xml

    result = convert_folder(tmp_path / "voc", workers=1)
    assert result.dataset is not None and result.problems == []
    dataset = result.dataset
    assert set(dataset.classes[1:]) <= set(HARD_CLASSES[1:])
    records = read_records(tmp_path / "json")
    assert len(dataset.records) == len(records) == 7
    compared = 0
    for record in dataset.records:
        key = record.image_id.replace("%2F", "/")
        predicted = records[f"{key}.json"]
        assert record.image_path == f"JPEGImages/{record.image_id}{Path(predicted['image']).suffix}"
        expected = [
            [d["box"]["x1"], d["box"]["y1"], d["box"]["x2"], d["box"]["y2"]]
            for d in predicted["detections"]
        ]
        if key == "part1/turned":
            assert (record.width, record.height) == (120, 80)  # stored, as convert reads it
            assert (predicted["width"], predicted["height"]) == (80, 120)  # as shown
            expected = [_stored_box(d["box"], 80) for d in predicted["detections"]]
        names = [dataset.classes[label] for label in record.labels]
        assert names == [d["label"] for d in predicted["detections"]]
        assert np.abs(record.boxes - np.asarray(expected).reshape(-1, 4)).max(initial=0) <= 1.0
        compared += len(expected)
    assert compared > 10


def test_voc_images_are_links_or_copies(model_path: Path, tmp_path: Path) -> None:
    (paths := write_images(tmp_path / "in", 2))
    assert _predict(model_path, tmp_path / "linked", tmp_path / "in", "--format", "voc") == 0
    assert (
        _predict(
            model_path,
            tmp_path / "copied",
            tmp_path / "in",
            "--format",
            "voc",
            "--voc-images",
            "copy",
        )
        == 0
    )
    for path in paths:
        link = tmp_path / "linked" / "JPEGImages" / path.name
        copy = tmp_path / "copied" / "JPEGImages" / path.name
        assert link.is_symlink() and link.resolve() == path.resolve()
        assert not copy.is_symlink() and copy.read_bytes() == path.read_bytes()


def test_voc_ids_are_flat_and_never_collide() -> None:
    keys = ["a/b", "a%2Fb", "a_b", "a/b/c", "a%b", "a%25b"]
    ids = [voc_id(k) for k in keys]
    assert ids[0] == "a%2Fb" and "/" not in "".join(ids)
    assert len(set(ids)) == len(keys)


@pytest.mark.parametrize("flag", ["--draw"])
def test_drawing_is_for_json_only(model_path: Path, tmp_path: Path, flag: str) -> None:
    write_images(tmp_path / "in", 1)
    assert _predict(model_path, tmp_path / "o", tmp_path / "in", "--format", "voc", flag) == 2
