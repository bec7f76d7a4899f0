"""Write tiny synthetic VOC folders for tests."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from PIL import Image

from prodet.annotations.boxes import clean_object_lists

OBJECT = """  <object>
    <name>{name}</name>
    <difficult>{difficult}</difficult>
    <bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox>
  </object>
"""


def voc_xml(filename: str, width: int, height: int, objects: list[tuple]) -> str:
    """A LabelImg-style annotation; objects are ``(name, xmin, ymin, xmax, ymax[, difficult])``."""
    body = "".join(
        OBJECT.format(
            name=o[0],
            xmin=o[1],
            ymin=o[2],
            xmax=o[3],
            ymax=o[4],
            difficult=o[5] if len(o) > 5 else 0,
        )
        for o in objects
    )
    return (
        f"<annotation>\n  <folder>JPEGImages</folder>\n  <filename>{filename}</filename>\n"
        f"  <size><width>{width}</width><height>{height}</height><depth>3</depth></size>\n"
        f"{body}</annotation>\n"
    )


def make_voc(
    root: Path,
    items: dict[str, tuple[int, int, list[tuple]]],
    *,
    image_format: str = "PNG",
    extension: str = ".jpg",
    splits: dict[str, list[str]] | None = None,
) -> Path:
    """Create ``root/{Annotations,JPEGImages,ImageSets/Main}`` with one image per item."""
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    for stem, (width, height, objects) in items.items():
        Image.new("RGB", (width, height), (120, 30, 200)).save(
            root / "JPEGImages" / f"{stem}{extension}", format=image_format
        )
        (root / "Annotations" / f"{stem}.xml").write_text(
            voc_xml(f"{stem}{extension}", width, height, objects), encoding="utf-8"
        )
    if splits:
        (root / "ImageSets" / "Main").mkdir(parents=True)
        for name, ids in splits.items():
            (root / "ImageSets" / "Main" / f"{name}.txt").write_text("\n".join(ids) + "\n")
    return root


def clean_arrays(*args: Any, **kwargs: Any) -> tuple[SimpleNamespace, list[Any]]:
    """``clean_object_lists`` with the kept boxes as arrays, for assertions:
    ``boxes`` float32 ``[N, 4]``, ``names`` tuple, ``difficult`` bool ``[N]``."""
    kept, names, difficult, problems = clean_object_lists(*args, **kwargs)
    boxes = np.asarray(kept, dtype=np.float32).reshape(-1, 4)
    clean = SimpleNamespace(
        boxes=boxes, names=tuple(names), difficult=np.asarray(difficult, dtype=bool)
    )
    return clean, problems
