"""A procedural product-shelf dataset in Pascal VOC layout, drawn by prodet itself.

Each image is a shop shelf seen from the front: a back wall, one to three shelf boards
with price tags, rows of products standing on them in facings (runs of the same
product), sometimes a second row further back in the shelf's shadow, unannotated jars
as distractors, and clutter in front (hanging sale signs, a pole, a shopping basket).
Products come from ``annotations.synthetic_products.PRODUCTS``.

Occlusion follows VOC's rules (``annotations.occlusion``): boxes mark the visible extent
of a product; what later products and clutter cover, or what falls outside the image, is
hidden; a product more than 90% hidden is not annotated, more than 60% hidden is
``<difficult>``, and one cut by the border or by an occluder is ``<truncated>``.

Output is byte-identical for a given seed, size and image count (on one Pillow build):
image ``i`` draws from its own generator seeded with ``(seed, i)``.
"""

from __future__ import annotations

import math
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from tqdm import tqdm  # no types-tqdm stubs installed

from prodet.annotations.camera_photo import encode_photo, photo_orientation
from prodet.annotations.occlusion import VisibilityMap, voc_flags
from prodet.annotations.orientation import orient_size
from prodet.annotations.synthetic_products import (
    DISTRACTORS,
    PRODUCTS,
    ProductKind,
    draw_fitted_text,
    draw_product,
)
from prodet.annotations.voc_writer import VocObject, annotation_xml, write_image_sets

SHELF_CLASSES: tuple[str, ...] = tuple(kind.name for kind in PRODUCTS)
TEST_EVERY = 5
JPEG_QUALITY = 90
MIN_SIZE, MAX_SIZE = 64, 4096
DATABASE = "prodet synthetic shelves"

_WALLS = ((224, 216, 202), (204, 209, 214), (234, 233, 228), (172, 132, 96), (188, 204, 216))
_BOARDS = ((242, 242, 242), (150, 152, 158), (162, 112, 72), (64, 64, 70))


@dataclass(frozen=True)
class ShelfObject:
    """One annotated product.

    Attributes:
        name: the class name.
        box: the visible extent, ``x1, y1, x2, y2`` in 0-based pixels.
        truncated, difficult: VOC's flags (see ``annotations.occlusion``).
        hidden: fraction of the product's silhouette that is not visible.
    """

    name: str
    box: tuple[float, float, float, float]
    truncated: bool
    difficult: bool
    hidden: float


@dataclass(frozen=True)
class ShelfScene:
    """One rendered image, its annotated objects, and how many products were dropped."""

    image: Image.Image
    objects: tuple[ShelfObject, ...]
    dropped: int


@dataclass(frozen=True)
class SyntheticSummary:
    """What ``generate_shelf_dataset`` wrote.

    Attributes:
        root: the VOC folder.
        images: number of images (and annotation files).
        classes: the class names, in ``SHELF_CLASSES`` order.
        objects_per_class: annotated objects per class, difficult ones included.
        difficult: objects marked ``<difficult>1``.
        truncated: objects marked ``<truncated>1``.
        dropped: drawn products left unannotated because too little of them was visible.
        splits: split name to number of image ids.
    """

    root: Path
    images: int
    classes: tuple[str, ...]
    objects_per_class: dict[str, int]
    difficult: int
    truncated: int
    dropped: int
    splits: dict[str, int]

    @property
    def objects(self) -> int:
        return sum(self.objects_per_class.values())


@dataclass(frozen=True)
class _Placement:
    kind: ProductKind
    x: int
    y: int
    width: int
    height: int
    brightness: float


def _wall(rng: np.random.Generator, width: int, height: int, bay_tops: list[float]) -> np.ndarray:
    """The back wall, darker under each shelf board, as float32 ``[H, W, 3]``."""
    base = np.array(_WALLS[int(rng.integers(len(_WALLS)))], np.float32)
    base *= rng.uniform(0.85, 1.08)
    y = np.arange(height, dtype=np.float32)
    gain = 0.95 + 0.08 * (y / height)
    for top in bay_tops:
        below = y - top
        gain -= np.where(below >= 0, 0.3 * np.exp(-below / (0.12 * height + 1)), 0)
    panel = 1.0 + 0.03 * np.sign(np.sin(np.arange(width) * (2 * np.pi / rng.uniform(60, 140))))
    return base[None, None, :] * gain[:, None, None] * panel[None, :, None].astype(np.float32)


def _row(
    rng: np.random.Generator,
    width: int,
    floor: float,
    clearance: float,
    depth: float,
    *,
    scale: float,
    brightness: float,
    lead: ProductKind | None = None,
) -> list[_Placement]:
    """Products standing on one shelf, left to right, in facings of one product each."""
    placements: list[_Placement] = []
    x = -rng.uniform(0.0, 0.35) * clearance
    while x < width:
        if lead is not None:
            kind, lead = lead, None
        elif rng.random() < 0.08:
            kind = DISTRACTORS[int(rng.integers(len(DISTRACTORS)))]
        else:
            kind = PRODUCTS[int(rng.integers(len(PRODUCTS)))]
        height = clearance * scale * rng.uniform(*kind.height)
        aspect = rng.uniform(*kind.aspect)
        for _ in range(int(rng.integers(1, 5))):
            h = max(8, int(height * rng.uniform(0.97, 1.03)))
            w = max(6, int(h * aspect))
            bottom = floor - rng.uniform(0.0, depth)
            placements.append(
                _Placement(kind, int(x), int(bottom) - h, w, h, brightness * rng.uniform(0.9, 1.05))
            )
            x += w * (1.0 + rng.uniform(-0.1, 0.12))
            if x >= width:
                break
        x += clearance * rng.uniform(0.0, 0.3)
    return placements


def _price_tags(
    draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int, floor: float, board: float
) -> None:
    tag_h = board * rng.uniform(0.9, 1.25)
    tag_w = tag_h * rng.uniform(1.8, 2.4)
    x = rng.uniform(-tag_w, tag_w)
    while x < width:
        top = floor + board * 0.1 - rng.uniform(0.0, 0.4) * tag_h
        fill = (252, 226, 60) if rng.random() < 0.25 else (248, 248, 244)
        draw.rectangle([x, top, x + tag_w, top + tag_h], fill=fill, outline=(90, 90, 90))
        bars = max(3, int(tag_w / 6))
        for i in range(bars):
            bx = x + tag_w * (0.55 + 0.4 * i / bars)
            draw.line([(bx, top + tag_h * 0.25), (bx, top + tag_h * 0.75)], fill=(30, 30, 30))
        price = f"{int(rng.integers(1, 10))}.{int(rng.integers(0, 100)):02d}"
        draw_fitted_text(
            draw,
            price,
            (x + tag_w * 0.04, top + tag_h * 0.1, x + tag_w * 0.54, top + tag_h * 0.9),
            (200, 20, 20) if fill[2] < 100 else (30, 30, 30),
            bold=False,
        )
        x += tag_w * rng.uniform(2.0, 5.0)


def _wobbler(
    draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int, top: float, clearance: float
) -> None:
    """A round sale sign hanging from the board above into the bay below."""
    r = clearance * rng.uniform(0.13, 0.2)
    cx = rng.uniform(r, width - r)
    cy = top + clearance * rng.uniform(0.1, 0.22) + r
    draw.line([(cx, top), (cx, cy - r)], fill=(230, 230, 230), width=max(1, int(r / 10)))
    colour = ((220, 30, 40), (250, 210, 30), (240, 110, 20))[int(rng.integers(3))]
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour, outline=(255, 255, 255), width=2)
    draw.rectangle(
        [cx - r * 0.75, cy - r * 0.25, cx + r * 0.75, cy + r * 0.25], fill=(255, 255, 255)
    )
    word = ("SALE", "-20%", "NEW", "2 FOR 1")[int(rng.integers(4))]
    draw_fitted_text(draw, word, (cx - r * 0.7, cy - r * 0.22, cx + r * 0.7, cy + r * 0.22), colour)


def _pole(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int, height: int) -> None:
    pole_w = width * rng.uniform(0.05, 0.09)
    x = (
        rng.uniform(-0.4, 0.2) * pole_w
        if rng.random() < 0.5
        else width - pole_w * rng.uniform(0.6, 1.2)
    )
    for i in range(int(pole_w) + 1):
        shade = int(150 + 90 * math.sin(math.pi * i / max(1.0, pole_w)))
        draw.line([(x + i, 0), (x + i, height)], fill=(shade, shade, shade + 6))


def _basket(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int, height: int) -> None:
    bw, bh = width * rng.uniform(0.35, 0.5), height * rng.uniform(0.16, 0.26)
    x = rng.uniform(-0.3, 0.0) * bw if rng.random() < 0.5 else width - bw * rng.uniform(0.7, 1.0)
    y = height - bh * rng.uniform(0.8, 1.0)
    colour = ((200, 30, 40), (30, 80, 190), (40, 150, 70))[int(rng.integers(3))]
    draw.rounded_rectangle([x, y, x + bw, y + bh * 1.5], radius=bh * 0.15, fill=colour)
    dark = tuple(int(c * 0.55) for c in colour)
    step = max(4.0, bh / 5)
    for i in range(1, int(bw / step)):
        draw.line([(x + i * step, y + step), (x + i * step, y + bh * 1.5)], fill=dark, width=2)
    for j in range(1, int(bh / step) + 1):
        draw.line([(x + 2, y + j * step), (x + bw - 2, y + j * step)], fill=dark, width=2)


class _Scene:
    """The canvas being drawn and which annotated product is in front at each pixel."""

    def __init__(self, wall: np.ndarray) -> None:
        self.height, self.width = wall.shape[:2]
        self.canvas = Image.fromarray(np.clip(wall, 0, 255).astype(np.uint8), "RGB")
        self.visibility = VisibilityMap(self.width, self.height)
        self.names: list[str] = []

    def paste(self, rng: np.random.Generator, p: _Placement) -> None:
        sprite = draw_product(p.kind, rng, p.width, p.height, p.brightness)
        self.canvas.paste(sprite, (p.x, p.y), sprite)
        mask = np.asarray(sprite)[..., 3] >= 128
        if p.kind.annotated:
            self.visibility.add(mask, p.x, p.y)
            self.names.append(p.kind.name)
        else:
            self.visibility.occlude(mask, p.x, p.y)

    def cover(self, layer: Image.Image) -> None:
        """Composite a full-size RGBA clutter layer; what it covers hides products."""
        self.canvas = Image.alpha_composite(self.canvas.convert("RGBA"), layer).convert("RGB")
        self.visibility.occlude(np.asarray(layer)[..., 3] >= 128)

    def objects(self) -> tuple[list[ShelfObject], int]:
        """The annotated objects after all drawing, and how many products were dropped."""
        objects: list[ShelfObject] = []
        for product_id, name in enumerate(self.names):
            seen = self.visibility.visibility(product_id)
            flags = voc_flags(seen)
            if flags is not None and seen.box is not None:
                objects.append(
                    ShelfObject(name, seen.box, flags.truncated, flags.difficult, seen.hidden)
                )
        return objects, len(self.names) - len(objects)


def render_shelf_scene(
    rng: np.random.Generator, width: int, height: int, *, lead_class: str | None = None
) -> ShelfScene:
    """Draw one shelf image and annotate its products.

    Args:
        rng: the only source of randomness; the same generator state gives the same scene.
        width, height: the image size in pixels.
        lead_class: when given, the first product on the first visible shelf is of this
            class (``generate_shelf_dataset`` uses it so that every class appears).

    Returns:
        The RGB image and its objects (boxes ``x1, y1, x2, y2``, 0-based, visible extent).

    Raises:
        ValueError: an unknown ``lead_class`` or a size outside ``MIN_SIZE..MAX_SIZE``.
    """
    _check_size(width, height)
    lead = None
    if lead_class is not None:
        by_name = {k.name: k for k in PRODUCTS}
        if lead_class not in by_name:
            raise ValueError(f"lead_class {lead_class!r} is not one of {', '.join(SHELF_CLASSES)}")
        lead = by_name[lead_class]

    levels = int(rng.choice([1, 2, 3], p=[0.25, 0.5, 0.25]))
    bay = height / levels * rng.uniform(0.92, 1.12)
    board = max(6.0, bay * rng.uniform(0.08, 0.12))
    depth = bay * 0.04
    first_top = -rng.uniform(0.0, 0.15) * bay
    bay_tops = [first_top + k * bay for k in range(levels + 1) if first_top + k * bay < height]
    scene = _Scene(_wall(rng, width, height, bay_tops))

    draw = ImageDraw.Draw(scene.canvas)
    board_colour = np.array(_BOARDS[int(rng.integers(len(_BOARDS)))]) * rng.uniform(0.9, 1.05)
    face = tuple(int(min(255, c)) for c in board_colour)
    surface = tuple(int(c * 0.8) for c in face)
    edge = tuple(int(min(255, c * 1.2 + 20)) for c in face)
    floors = [top + bay - board for top in bay_tops]
    for floor in [first_top - board, *floors]:
        draw.rectangle([0, floor - depth, width, floor], fill=surface)
        draw.rectangle([0, floor, width, floor + board], fill=face)
        draw.line([(0, floor), (width, floor)], fill=edge, width=max(1, int(board / 8)))

    clearance = bay - board
    rows: list[_Placement] = []
    for i, floor in enumerate(floors):
        if rng.random() < 0.35:
            back_floor = floor - depth * 1.5
            rows += _row(rng, width, back_floor, clearance, depth, scale=0.9, brightness=0.7)
        lead_here = lead if i == _first_visible(bay_tops, bay) else None
        front = _row(rng, width, floor, clearance, depth, scale=1.0, brightness=1.0, lead=lead_here)
        rows += sorted(front, key=lambda p: p.y + p.height)  # further back is drawn first

    shadows = Image.new("L", (width, height), 0)
    shadow_draw = ImageDraw.Draw(shadows)
    offset = rng.uniform(-0.08, 0.08)
    for p in rows:
        dx = offset * p.width
        shadow_draw.rectangle(
            [p.x + dx, p.y + p.height * 0.03, p.x + p.width + dx, p.y + p.height], fill=110
        )
    shadows = shadows.filter(ImageFilter.BoxBlur(max(1, int(bay * 0.02))))
    scene.canvas = Image.composite(Image.new("RGB", (width, height)), scene.canvas, shadows)

    for p in rows:
        scene.paste(rng, p)

    layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    clutter = ImageDraw.Draw(layer)
    for floor in floors:
        _price_tags(clutter, rng, width, floor, board)
    if rng.random() < 0.4:
        for top in bay_tops[: int(rng.integers(1, 3))]:
            _wobbler(clutter, rng, width, top, clearance)
    if rng.random() < 0.15:
        _pole(clutter, rng, width, height)
    if rng.random() < 0.15:
        _basket(clutter, rng, width, height)
    scene.cover(layer)

    objects, dropped = scene.objects()
    return ShelfScene(_finish(rng, scene.canvas), tuple(objects), dropped)


def _first_visible(bay_tops: list[float], bay: float) -> int:
    """Index of the first bay whose products are mostly inside the image."""
    return next((i for i, top in enumerate(bay_tops) if top >= -0.1 * bay), 0)


def _finish(rng: np.random.Generator, canvas: Image.Image) -> Image.Image:
    """Scene-wide light falloff in a random direction, and a little sensor noise."""
    pixels = np.asarray(canvas, dtype=np.float32)
    height, width = pixels.shape[:2]
    angle = rng.uniform(0, 2 * math.pi)
    ramp = (np.arange(width, dtype=np.float32)[None, :] / width - 0.5) * math.cos(angle) + (
        np.arange(height, dtype=np.float32)[:, None] / height - 0.5
    ) * math.sin(angle)
    light = rng.uniform(0.95, 1.05) + rng.uniform(0.1, 0.3) * ramp
    pixels *= light[..., None]
    pixels += rng.normal(0.0, rng.uniform(1.5, 4.0), pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def dataset_scene(index: int, *, seed: int, size: tuple[int, int]) -> ShelfScene:
    """Image ``index`` (0-based) of the dataset ``generate_shelf_dataset`` writes for ``seed``.

    Each image has its own generator seeded with ``(seed, index)``, so any image can be
    redrawn alone, and leads with class ``SHELF_CLASSES[index % len(SHELF_CLASSES)]``.
    """
    if index < 0 or seed < 0:
        raise ValueError(f"index and seed must be non-negative, got {index} and {seed}")
    rng = np.random.default_rng([seed, index])
    lead = SHELF_CLASSES[index % len(SHELF_CLASSES)]
    return render_shelf_scene(rng, size[0], size[1], lead_class=lead)


def _check_size(width: int, height: int) -> None:
    if not (MIN_SIZE <= width <= MAX_SIZE and MIN_SIZE <= height <= MAX_SIZE):
        raise ValueError(
            f"image size must be between {MIN_SIZE} and {MAX_SIZE} pixels per side, "
            f"got {width}x{height}"
        )


def _prepare(root: Path, overwrite: bool) -> None:
    parts = [root / "Annotations", root / "JPEGImages", root / "ImageSets"]
    used = [p for p in parts if p.exists() and any(p.iterdir())]
    if used and not overwrite:
        raise ValueError(
            f"{root} already holds a VOC dataset ({', '.join(p.name for p in used)} not "
            "empty); choose an empty folder or pass overwrite=True (--overwrite) to replace it"
        )
    for p in parts:
        if p.is_dir():
            shutil.rmtree(p)
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()


def generate_shelf_dataset(
    root: str | Path,
    *,
    images: int = 300,
    size: tuple[int, int] = (320, 320),
    seed: int = 0,
    progress: bool = False,
    overwrite: bool = False,
    quality: int = JPEG_QUALITY,
    exif_rotated: float = 0.0,
) -> SyntheticSummary:
    """Write a synthetic product-shelf dataset as a Pascal VOC folder.

    Layout: ``root/JPEGImages/000001.jpg`` (JPEG, quality ``quality``),
    ``root/Annotations/000001.xml`` (LabelImg style), ``root/ImageSets/Main/test.txt``
    (every ``TEST_EVERY``-th id) and ``trainval.txt`` (the others). File ``k`` (1-based)
    holds ``dataset_scene(k - 1, seed=seed, size=size)``; image ``i`` leads with class
    ``SHELF_CLASSES[i % len(SHELF_CLASSES)]``, so ``images >= 6`` shows every class.
    With ``exif_rotated``, that share of the images are phone photos taken upright
    (``annotations.camera_photo``): drawn at ``height x width``, stored turned to
    ``width x height`` with EXIF orientation 6 or 8; their annotations, like every
    image's, are in the stored layout the converter and training read.

    Args:
        root: the folder to write (created if missing).
        images: how many images (at least 1).
        size: ``(width, height)`` of every stored image in pixels.
        seed: the same seed, size, count and options give byte-identical files.
        progress: show a progress bar.
        overwrite: replace an existing dataset's ``Annotations/``, ``JPEGImages/`` and
            ``ImageSets/`` (nothing else in ``root`` is touched).
        quality: JPEG quality, 1 to 95.
        exif_rotated: share of images stored rotated with an EXIF orientation, 0 to 1.

    Raises:
        ValueError: a bad count, size, seed, quality or share, or ``root`` already holds a
            dataset and ``overwrite`` is False.
    """
    if images < 1:
        raise ValueError(f"images must be at least 1, got {images}")
    width, height = size
    _check_size(width, height)
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    if not 1 <= quality <= 95:
        raise ValueError(f"JPEG quality must be in 1..95, got {quality}")
    if not 0.0 <= exif_rotated <= 1.0:
        raise ValueError(f"the share of EXIF-rotated images must be in [0, 1], got {exif_rotated}")
    root = Path(root)
    _prepare(root, overwrite)

    counts: Counter[str] = Counter()
    difficult = truncated = dropped = 0
    ids = [f"{i:06d}" for i in range(1, images + 1)]
    for index, image_id in enumerate(tqdm(ids, desc="synth", disable=not progress)):
        orientation = photo_orientation(index, exif_rotated)
        scene = dataset_scene(index, seed=seed, size=orient_size(size, orientation))
        data, boxes = encode_photo(
            scene.image, [o.box for o in scene.objects], orientation, quality=quality
        )
        filename = f"{image_id}.jpg"
        (root / "JPEGImages" / filename).write_bytes(data)
        objects = [
            VocObject(o.name, box, o.truncated, o.difficult)
            for o, box in zip(scene.objects, boxes, strict=True)
        ]
        (root / "Annotations" / f"{image_id}.xml").write_bytes(
            annotation_xml(
                filename=filename, width=width, height=height, objects=objects, database=DATABASE
            )
        )
        counts.update(o.name for o in scene.objects)
        difficult += sum(o.difficult for o in scene.objects)
        truncated += sum(o.truncated for o in scene.objects)
        dropped += scene.dropped

    test = ids[TEST_EVERY - 1 :: TEST_EVERY]
    test_set = set(test)
    splits = {"trainval": [i for i in ids if i not in test_set], "test": test}
    write_image_sets(root, splits)
    return SyntheticSummary(
        root=root,
        images=images,
        classes=SHELF_CLASSES,
        objects_per_class={name: counts[name] for name in SHELF_CLASSES},
        difficult=difficult,
        truncated=truncated,
        dropped=dropped,
        splits={name: len(v) for name, v in splits.items()},
    )
