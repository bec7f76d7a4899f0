"""Save a drawn scene the way a phone saves a photo: JPEG, and an EXIF-rotated layout.

A phone's sensor is landscape. A photo taken with the phone held upright is still stored
as a landscape ``W x H`` JPEG, its pixels turned on their side, with an EXIF orientation
tag telling viewers to turn them upright: ``6`` (turn 90 degrees clockwise) or ``8``
(counter-clockwise). ``prodet synth --exif-rotated F`` reproduces that for a share ``F``
of its images (``photo_orientation``): the scene is drawn upright at ``H x W`` (what
the viewer sees) and ``encode_photo`` stores its pixels turned, with the tag.

Boxes come out in the stored layout, the frame the converter records
(``annotations.image_header`` reads the stored size) and training decodes
(``annotations.image_decode.decode_image_file`` ignores the tag); the service applies the
tag and answers boxes on the upright view, which ``annotations.orientation.orient_box``
maps between. See ``annotations.image_decode``'s docstring on EXIF orientation.
"""

from __future__ import annotations

import io
import math

from PIL import Image

from prodet.annotations.orientation import INVERSE, ORIENTATION_TAG, TRANSPOSES, orient_box

Box = tuple[float, float, float, float]
ROTATED_ORIENTATIONS = (6, 8)


def photo_orientation(index: int, rotated: float) -> int:
    """The EXIF orientation of image ``index`` when a share ``rotated`` is turned.

    Rotated images are spread evenly (image ``i`` is rotated when
    ``floor((i + 1) * rotated) > floor(i * rotated)``, so exactly ``floor(n * rotated)``
    of the first ``n``) and alternate between 6 and 8. No generator is drawn from, so
    the scenes do not change with ``rotated``.

    Returns:
        1 (stored upright), 6 or 8.
    """
    if not 0.0 <= rotated <= 1.0:
        raise ValueError(f"the share of EXIF-rotated images must be in [0, 1], got {rotated}")
    if index < 0:
        raise ValueError(f"index must be non-negative, got {index}")
    before = math.floor(index * rotated)
    if math.floor((index + 1) * rotated) == before:
        return 1
    return ROTATED_ORIENTATIONS[before % len(ROTATED_ORIENTATIONS)]


def encode_photo(
    upright: Image.Image, boxes: list[Box], orientation: int, *, quality: int
) -> tuple[bytes, list[Box]]:
    """JPEG bytes storing ``upright`` for ``orientation``, and its boxes in that layout.

    Args:
        upright: the scene as a viewer sees it (RGB).
        boxes: ``x1, y1, x2, y2`` on ``upright`` (0-based continuous pixels).
        orientation: the EXIF orientation to write, 1 to 8 (1 writes no EXIF block).
        quality: JPEG quality, 1 to 95.

    Returns:
        The file's bytes (pixels stored so that the tag turns them back into ``upright``)
        and ``boxes`` on the stored pixels.
    """
    if not 1 <= quality <= 95:
        raise ValueError(f"JPEG quality must be in 1..95, got {quality}")
    if orientation not in INVERSE:
        raise ValueError(f"EXIF orientation must be 1..8, got {orientation}")
    undo = INVERSE[orientation]
    stored = upright if undo == 1 else upright.transpose(TRANSPOSES[undo])
    stored_boxes = [orient_box(box, upright.size, undo) for box in boxes]
    extra = {}
    if orientation != 1:
        exif = Image.Exif()
        exif[ORIENTATION_TAG] = orientation
        extra["exif"] = exif.tobytes()
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", quality=quality, **extra)
    return buffer.getvalue(), stored_boxes
