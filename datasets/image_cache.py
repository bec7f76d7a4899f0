"""Training images decoded at the size training needs, and their caches in RAM and on disk.

``decode_source`` decodes one dataset image in its stored layout
(``annotations.image_decode.decode_file``); given ``min_sides`` (from
``datasets.geometry.decode_floor``) a JPEG is decoded at the smallest DCT scale ``1/f``
that keeps them, so a 12-megapixel photo trained at 320 px is decoded at 1/4 or 1/8 of
its size. The result is a ``SourceImage``: the pixels and ``scale``, pixels per original
pixel (``(1, 1)`` in full). Boxes of the dataset records, which are in original pixels,
are multiplied by ``scale`` to land on the pixels (the origin stays the original's:
training never applies the EXIF orientation). When a side is not a multiple of ``f``,
the decode's last column or row only partly shows the image (``annotations.jpeg_draft``);
the original's exact region is then resampled to the rounded size (``source_size``), so
that the image holds the original's content and nothing else, at
``scale = (round(W / f) / W, round(H / f) / H)``.

Caches (``CACHE_MODES``), chosen by ``prodet train --cache``:

* ``ram``: ``DetectionDataset.preload`` decodes the whole split once, before the loader's
  workers fork, if its reduced images fit the memory budget (``cache_mb``);
* ``disk``: one file per image under ``<cache_dir>/<key>/``, written the first time an
  image is decoded (by whichever loader worker needs it: the first epoch fills the cache)
  and read by every later epoch and run. The key is the dataset's content hash, the
  decode floor (the size) and the alpha mode, e.g.
  ``3fa2...c1-640x640-composite/0000042.img``;
* ``none``: every item is decoded again.

A disk entry (``DiskCache``) is a magic line, a JSON header and the raw ``uint8`` pixels.
The header repeats the whole key, the image's id, the source file's size and modification
time, the pixel shape and scale and a CRC-32 of the pixels; an entry is used only if all
of them match what the dataset expects now, else it is decoded again and rewritten
(logged). A corrupt, truncated or foreign file, a cache of another dataset or another
size, or an image edited since, is therefore rebuilt, never trusted. Entries are written
atomically (``annotations.atomic``), so concurrent workers and killed runs leave either
a whole entry or none.
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from prodet.annotations.atomic import atomic_write_bytes
from prodet.annotations.image_decode import AlphaMode, decode_file
from prodet.annotations.jpeg_draft import reduction_for
from prodet.annotations.schema import ImageRecord

CacheMode = Literal["ram", "disk", "none"]
CACHE_MODES: tuple[str, ...] = ("ram", "disk", "none")
ENTRY_MAGIC = b"prodet-image-cache 1\n"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceImage:
    """One training image as decoded.

    Attributes:
        pixels: RGB ``uint8`` ``[h, w, 3]`` in the stored layout, possibly reduced.
        scale: ``(sx, sy)``, pixels per original pixel: original ``x`` is at ``x * sx``.
    """

    pixels: np.ndarray
    scale: tuple[float, float]


def check_cache_mode(mode: str) -> CacheMode:
    """``mode`` as a ``CacheMode``; ``ValueError`` naming the valid modes if it is none."""
    for known in ("ram", "disk", "none"):
        if mode == known:
            return known
    raise ValueError(f"cache must be one of {', '.join(CACHE_MODES)}, got {mode!r}")


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/prodet/images``, or ``~/.cache/prodet/images``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "prodet" / "images"


def decode_source(
    path: Path, record: ImageRecord, *, alpha: AlphaMode, min_sides: tuple[int, int] | None
) -> SourceImage:
    """Decode a record's image (a JPEG reduced to ``min_sides`` when given).

    Raises:
        ValueError: the image's size disagrees with the record (re-run ``prodet convert``);
            ``ImageDecodeError`` s and ``OSError`` s of reading pass through.
    """
    decoded = decode_file(path, alpha=alpha, min_sides=min_sides)
    if decoded.size != (record.width, record.height):
        raise ValueError(
            f"{record.image_id}: image is {decoded.width}x{decoded.height} but the dataset "
            f"says {record.width}x{record.height}; re-run `prodet convert`"
        )
    pixels = decoded.pixels
    whole = (0.0, 0.0, float(pixels.shape[1]), float(pixels.shape[0]))
    if decoded.region != whole:
        x0, y0, x1, y1 = decoded.region
        size = (max(1, round(x1 - x0)), max(1, round(y1 - y0)))
        image = Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR, box=decoded.region)
        pixels = np.asarray(image)
    pixels.setflags(write=False)  # a transform writing in place would corrupt a cached copy
    scale = (pixels.shape[1] / record.width, pixels.shape[0] / record.height)
    return SourceImage(pixels, scale)


def source_size(record: ImageRecord, min_sides: tuple[int, int] | None) -> tuple[int, int]:
    """``(w, h)`` of ``decode_source``'s pixels for ``record``, known without decoding."""
    factor = _factor(record, min_sides)
    return max(1, round(record.width / factor)), max(1, round(record.height / factor))


def decoded_shape(record: ImageRecord, min_sides: tuple[int, int] | None) -> tuple[int, int, int]:
    """``[h, w, 3]`` of ``decode_source``'s pixels for ``record``."""
    width, height = source_size(record, min_sides)
    return height, width, 3


def _scale(record: ImageRecord, min_sides: tuple[int, int] | None) -> list[float]:
    width, height = source_size(record, min_sides)
    return [width / record.width, height / record.height]


def _factor(record: ImageRecord, min_sides: tuple[int, int] | None) -> int:
    if min_sides is None or record.image_format != "JPEG":
        return 1
    return reduction_for(record.width, record.height, min_sides)


class DiskCache:
    """Reduced images of one dataset, decode floor and alpha mode, one file each.

    Args:
        root: the cache folder (``default_cache_dir()`` or ``--set cache_dir=...``).
        dataset_hash: the dataset's ``content_hash``.
        min_sides: the decode floor (``None``: full size).
        alpha: the alpha mode images are flattened with.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        dataset_hash: str,
        min_sides: tuple[int, int] | None,
        alpha: AlphaMode,
    ) -> None:
        size = "full" if min_sides is None else f"{min_sides[0]}x{min_sides[1]}"
        self.folder = Path(root) / f"{dataset_hash[:32]}-{size}-{alpha}"
        self.key: dict[str, Any] = {
            "dataset_hash": dataset_hash,
            "min_sides": None if min_sides is None else list(min_sides),
            "alpha": alpha,
        }
        self.min_sides = min_sides

    def entry(self, index: int) -> Path:
        """The file of record ``index`` (its position in the dataset's records)."""
        return self.folder / f"{index:07d}.img"

    def load(self, index: int, record: ImageRecord, source: Path) -> SourceImage | None:
        """The cached image of ``record``; None when missing or not trustworthy (logged)."""
        path = self.entry(index)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("image cache %s unreadable (%s); decoding again", path, exc)
            return None
        try:
            return self._parse(data, record, source)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("image cache %s not used (%s); decoding again", path, exc)
            return None

    def store(self, index: int, record: ImageRecord, source: Path, image: SourceImage) -> None:
        """Write ``image`` as record ``index``'s entry, atomically."""
        pixels = np.ascontiguousarray(image.pixels)
        header = {
            **self._expected(record, source),
            "shape": list(pixels.shape),
            "scale": list(image.scale),
            "crc32": zlib.crc32(pixels.data),
        }
        head = json.dumps(header, sort_keys=True).encode("utf-8") + b"\n"
        atomic_write_bytes(self.entry(index), ENTRY_MAGIC + head + pixels.tobytes())

    def _expected(self, record: ImageRecord, source: Path) -> dict[str, Any]:
        stat = source.stat()
        return {
            **self.key,
            "image_id": record.image_id,
            "source_bytes": stat.st_size,
            "source_mtime_ns": stat.st_mtime_ns,
            "shape": list(decoded_shape(record, self.min_sides)),
            "scale": _scale(record, self.min_sides),
        }

    def _parse(self, data: bytes, record: ImageRecord, source: Path) -> SourceImage:
        if not data.startswith(ENTRY_MAGIC):
            raise ValueError("not a prodet image-cache entry")
        end = data.index(b"\n", len(ENTRY_MAGIC))
        header = json.loads(data[len(ENTRY_MAGIC) : end])
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
        for name, value in self._expected(record, source).items():
            if header.get(name) != value:
                raise ValueError(f"{name} is {header.get(name)!r}, expected {value!r}")
        height, width, channels = header["shape"]
        body = memoryview(data)[end + 1 :]
        if len(body) != height * width * channels:
            raise ValueError(f"{len(body)} pixel bytes for a {width}x{height} image")
        if zlib.crc32(body) != header["crc32"]:
            raise ValueError("pixel checksum mismatch")
        sx, sy = header["scale"]
        pixels = np.frombuffer(body, dtype=np.uint8).reshape(height, width, channels)
        return SourceImage(pixels, (float(sx), float(sy)))
