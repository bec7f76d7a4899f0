"""Folders of small synthetic images for the batch ``prodet predict`` tests.

The tiny model (``tests/serve/tiny_model.py``) answers its constant boxes with scores
that grow with the image's brightness, so images of many gray levels get 0 to 3
detections each.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image


def gray_level(index: int) -> int:
    """The gray level of image ``index``: spread over 0..255, neighbours far apart."""
    return (index * 37) % 256


def write_images(folder: Path, count: int, *, subfolders: int = 1, fmt: str = "PNG") -> list[Path]:
    """``count`` gray images of 64 to 127 x 48 to 111 pixels, spread over ``subfolders``
    sub-folders (``part0``, ...; none when 1), named ``img000.png``, ...; returns them."""
    paths = []
    suffix = ".png" if fmt == "PNG" else ".jpg"
    for i in range(count):
        where = folder if subfolders == 1 else folder / f"part{i % subfolders}"
        where.mkdir(parents=True, exist_ok=True)
        path = where / f"img{i:03d}{suffix}"
        size = (64 + (i * 7) % 64, 48 + (i * 11) % 64)
        Image.new("RGB", size, (gray_level(i),) * 3).save(path, fmt)
        paths.append(path)
    return paths


def read_records(out: Path) -> dict[str, dict[str, Any]]:
    """Every ``*.json`` record under ``out`` by its path relative to ``out``."""
    return {
        p.relative_to(out).as_posix(): json.loads(p.read_text())
        for p in sorted(out.rglob("*.json"))
        if not p.name.startswith(".")
    }
