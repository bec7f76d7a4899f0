"""A decoded image and where the original image lies in its pixels.

``annotations.image_decode.decode_image`` returns a ``DecodedImage``. Its pixels are
the original image's, or, for a JPEG decoded at reduced size (``annotations.jpeg_draft``),
a smaller version of them; ``size`` is always the original's (after the EXIF orientation
when it was applied: the frame boxes are answered in) and ``region`` where that original
lies in the pixels, so a consumer resizes exactly the original's extent
(``datasets.geometry.resize_to_input(..., region=...)``) and maps boxes between the two
frames (``boxes_to_pixels``). Boxes are ``x1, y1, x2, y2`` in 0-based continuous pixels.
numpy only, so the service imports it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DecodedImage:
    """A decoded image, possibly at reduced size (see the module docstring).

    Attributes:
        pixels: RGB ``uint8`` ``[h, w, 3]``; the original's size unless reduced.
        format: what the bytes were sniffed as (``"JPEG"``, ``"PNG"``, ...).
        size: ``(width, height)`` of the original image (after EXIF orientation when it
            was applied), the frame boxes are answered in.
        region: ``x0, y0, x1, y1`` in continuous ``pixels`` coordinates where the
            original image lies: ``(0, 0, w, h)`` for a full decode.
        orientation: the EXIF orientation applied to the stored pixels (``1``: none, or
            not asked for); ``annotations.orientation.INVERSE`` maps boxes back to the
            stored layout, the one annotations are made on.
    """

    pixels: np.ndarray
    format: str
    size: tuple[int, int]
    region: tuple[float, float, float, float]
    orientation: int = 1

    @classmethod
    def full(cls, pixels: np.ndarray, image_format: str, orientation: int = 1) -> DecodedImage:
        """An image decoded at its own size."""
        height, width = pixels.shape[:2]
        return cls(
            pixels,
            image_format,
            (width, height),
            (0.0, 0.0, float(width), float(height)),
            orientation,
        )

    @property
    def width(self) -> int:
        """Width of the original image (after EXIF orientation when it was applied)."""
        return self.size[0]

    @property
    def height(self) -> int:
        """Height of the original image (after EXIF orientation when it was applied)."""
        return self.size[1]

    @property
    def reduced(self) -> bool:
        """True when ``pixels`` is smaller than the original."""
        return (self.pixels.shape[1], self.pixels.shape[0]) != self.size

    @property
    def scale(self) -> tuple[float, float]:
        """``(sx, sy)``: pixels per original pixel along x and y (``(1, 1)`` in full)."""
        x0, y0, x1, y1 = self.region
        return (x1 - x0) / self.size[0], (y1 - y0) / self.size[1]

    def boxes_to_pixels(self, boxes: np.ndarray) -> np.ndarray:
        """Map ``[N, 4]`` ``x1, y1, x2, y2`` boxes from the original image onto ``pixels``.

        Returns float32 boxes unless ``boxes`` is float64; unchanged values when not reduced.
        """
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"boxes must have shape [N, 4], got {list(boxes.shape)}")
        dtype = np.float64 if boxes.dtype == np.float64 else np.float32
        x0, y0 = self.region[:2]
        scale: np.ndarray = np.asarray(self.scale * 2, dtype)
        offset: np.ndarray = np.asarray([x0, y0, x0, y0], dtype)
        return (boxes.astype(dtype) * scale + offset).astype(dtype, copy=False)
