"""EXIF orientation: reading the tag safely, turning pixels upright, and moving boxes with them.

A camera stores its sensor's pixels as they came (a phone held upright still writes a
landscape ``4032 x 3024`` image) and says in the EXIF orientation tag (``0x0112``) how
viewers must turn them: ``1`` as stored, ``6`` turn 90 degrees clockwise, ``8`` turn 90
degrees counter-clockwise, ``3`` turn 180 degrees, and ``2, 4, 5, 7`` the mirrored
variants. ``orientation_of`` reads the tag; anything but an integer ``1..8`` (a missing
tag, a damaged EXIF block, a value such as ``9`` or text) counts as ``1`` (as stored),
so an image with a lying tag is used as stored rather than refused.

``upright`` transposes pixels as the tag says (Pillow's ``ImageOps.exif_transpose``
does the same), and ``orient_box`` maps a box on the stored pixels to the same place on
the upright ones; ``INVERSE[o]`` maps back. Boxes are ``x1, y1, x2, y2`` in 0-based
continuous pixels (see ``annotations.schema``), sizes ``(width, height)`` of the image
the box is on. Pillow and numpy only, so the service imports it.
"""

from __future__ import annotations

import logging

from PIL import Image

logger = logging.getLogger(__name__)

ORIENTATION_TAG = 0x0112
# Orientation -> the transpose that shows the stored pixels upright.
TRANSPOSES: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# Orientation -> the orientation whose transpose undoes it (6 and 8 swap; the rest are
# their own inverse).
INVERSE: dict[int, int] = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 8, 7: 7, 8: 6}

Box = tuple[float, float, float, float]


def orientation_of(image: Image.Image) -> int:
    """The image's EXIF orientation, ``1`` (as stored) when missing, unreadable or invalid."""
    try:
        value = image.getexif().get(ORIENTATION_TAG, 1)
    except Exception as exc:
        # Pillow raises many types on a damaged EXIF block; the pixels are still fine.
        logger.info("ignoring unreadable EXIF block: %s: %s", type(exc).__name__, exc)
        return 1
    if isinstance(value, int) and not isinstance(value, bool) and value in INVERSE:
        return value
    logger.info("ignoring invalid EXIF orientation %r", value)
    return 1


def swaps_sides(orientation: int) -> bool:
    """True when the upright image is ``height x width`` (orientations 5 to 8)."""
    return orientation in (5, 6, 7, 8)


def upright(image: Image.Image, orientation: int) -> Image.Image:
    """``image`` transposed as ``orientation`` says (the same image for ``1``)."""
    method = TRANSPOSES.get(orientation)
    return image if method is None else image.transpose(method)


def orient_size(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    """``(width, height)`` of a stored ``size`` once turned upright."""
    return (size[1], size[0]) if swaps_sides(orientation) else size


def orient_box(box: Box, size: tuple[int, int], orientation: int) -> Box:
    """Map a box on a stored ``size`` image to the upright image.

    Args:
        box: ``x1, y1, x2, y2`` on the stored pixels (floats allowed).
        size: ``(width, height)`` of the stored image.
        orientation: the EXIF orientation ``1..8``.

    Returns:
        The same region's ``x1, y1, x2, y2`` on the upright image
        (``orient_size(size, orientation)``).
    """
    if orientation not in INVERSE:
        raise ValueError(f"EXIF orientation must be 1..8, got {orientation!r}")
    width, height = size
    x1, y1, x2, y2 = box
    corners = [_point(x, y, width, height, orientation) for x, y in ((x1, y1), (x2, y2))]
    (ax, ay), (bx, by) = corners
    return (min(ax, bx), min(ay, by), max(ax, bx), max(ay, by))


def _point(x: float, y: float, width: int, height: int, orientation: int) -> tuple[float, float]:
    """Where the continuous point ``(x, y)`` of the stored image lands upright."""
    if orientation == 2:
        return width - x, y
    if orientation == 3:
        return width - x, height - y
    if orientation == 4:
        return x, height - y
    if orientation == 5:
        return y, x
    if orientation == 6:
        return height - y, x
    if orientation == 7:
        return height - y, width - x
    if orientation == 8:
        return y, width - x
    return x, y
