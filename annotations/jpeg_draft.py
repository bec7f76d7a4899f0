"""Reduced-size JPEG decoding in the DCT domain, for ``annotations.image_decode``.

libjpeg decodes a JPEG at 1/2, 1/4 or 1/8 of its size directly from the DCT
coefficients (Pillow's ``Image.draft``; at 1/8 each 8 x 8 block becomes its average,
the DC coefficient). That skips most of the inverse DCT, the colour conversion and the
memory of a full decode, and leaves a much smaller image to resize: for a 4032 x 3024
photo (quality 90) about 16 ms instead of 48 ms to decode, plus a resize from 504 x 378
instead of 4032 x 3024. The entropy decoding of the whole file stays, so the gain is
largest on big, moderately compressed photos.

The rule (``reduction_for``): given ``min_sides = (shorter, longer)``, the pixels a
caller needs at least on the image's shorter and longer side (what a model input needs
is ``datasets.geometry.decode_floor``), the factor is the largest ``s`` of 8, 4, 2 with
``min(W, H) / s >= shorter`` and ``max(W, H) / s >= longer``, else 1 (full decode).
Shorter/longer rather than width/height makes the rule the same for a photo and its
EXIF-rotated view.

Geometry of a reduced decode: the pixels are ``ceil(W / s) x ceil(H / s)`` and original
pixel coordinate ``x`` (continuous, 0-based) is at ``x / s``. When ``W`` is not a
multiple of ``s``, the last column shows only part of a block (libjpeg pads a partial
block by repeating its edge), so the original lies in the region
``(0, 0, W / s, H / s)`` of the pixels, not in all of them; ``draft_region`` returns that
region and ``DecodedImage.region`` carries it (turned with the EXIF orientation), so
the service resizes exactly the original's extent and maps boxes through the original
size.
"""

from __future__ import annotations

from PIL import Image

DCT_FACTORS: tuple[int, ...] = (8, 4, 2)  # the scales libjpeg decodes to directly


def reduction_for(width: int, height: int, min_sides: tuple[int, int]) -> int:
    """The largest DCT factor (8, 4, 2, else 1) that keeps ``min_sides`` of a ``width x height``.

    Args:
        width, height: the full image's size in pixels.
        min_sides: ``(shorter, longer)``: pixels the reduced image needs at least on its
            shorter and on its longer side.
    """
    if min(min_sides) < 0:
        raise ValueError(f"min_sides must be >= 0, got {min_sides}")
    shorter, longer = min(width, height), max(width, height)
    for factor in DCT_FACTORS:
        if shorter / factor >= min_sides[0] and longer / factor >= min_sides[1]:
            return factor
    return 1


def reduced_size(width: int, height: int, factor: int) -> tuple[int, int]:
    """``(width, height)`` of a ``width x height`` JPEG decoded at ``1 / factor``."""
    return -(-width // factor), -(-height // factor)


def draft_region(
    image: Image.Image, min_sides: tuple[int, int]
) -> tuple[float, float, float, float] | None:
    """Configure an opened, not yet loaded JPEG for a reduced decode.

    Args:
        image: a JPEG opened by Pillow, before ``load()``.
        min_sides: ``(shorter, longer)`` as in ``reduction_for``.

    Returns:
        ``x0, y0, x1, y1``, where the original lies in the pixels ``load()`` will give
        (stored layout, before any EXIF orientation); None when it decodes in full.
    """
    width, height = image.size
    factor = reduction_for(width, height, min_sides)
    if factor == 1:
        return None
    # Pillow picks the largest of 8, 4, 2 not above min(W // w, H // h), which is exactly
    # ``factor`` for this request, and answers the region of the original it decodes.
    answer = image.draft(None, (width // factor, height // factor))
    if answer is None or image.size == (width, height):
        return None
    x0, y0, x1, y1 = answer[1]
    return (float(x0), float(y0), float(x1), float(y1))
