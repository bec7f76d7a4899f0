"""Named augmentation presets for detection, built on albumentations.

``build_transform(preset, size=..., mean=..., std=...)`` returns a ``DetectionTransform``
that turns an RGB ``uint8`` ``[H, W, 3]`` image and its boxes into the model input:

* ``"eval"``: resize to ``size x size`` (``resize_mode="stretch"`` or ``"letterbox"``),
  normalise. Deterministic, so the sample's mapping back to original pixels is known.
* ``"light"``: horizontal flip, mild colour jitter, resize, normalise.
* ``"scale"``: ``"light"`` plus scale jitter that keeps every box: with probability 0.6
  either a random crop that contains all boxes (``A.BBoxSafeRandomCrop``, a zoom-in) or
  a zoom-out on a mean-filled canvas up to ``SCALE_ZOOM_OUT`` times the side, one of the
  two at random. Meant for small sets of large objects trained for a short budget, where
  ``"ssd"``'s crops and 4x zoom-out are too strong.
* ``"ssd"``: the SSD paper's recipe: photometric distortion (brightness, contrast,
  saturation and hue, each applied with probability 0.5, in random order), zoom-out on a
  mean-filled canvas up to ``zoom_out_max`` times the image side (``ZoomOut``), SSD's
  min-IoU patch sampling (``MinIoURandomCrop``), horizontal flip, resize, normalise.

``pca_color=True`` adds AlexNet's PCA colour augmentation (``A.FancyPCA``) to the random
presets. ``mosaic=p`` starts the random presets with YOLOv4's mosaic (``A.Mosaic``) with
probability ``p``: a 2x2 grid of the sample and ``MOSAIC_PARTNERS`` other training images,
each fitted inside a cell of twice the output side (aspect kept), cropped around a random
centre to that side, so objects keep about the scale of a plain sample while four scenes
share one input. The partners come from the caller (``DetectionDataset`` draws them with
``DetectionTransform.pick_partners``); boxes cut to slivers by the crop (a side under
``MOSAIC_MIN_SIDE`` of the output) are dropped. ``normalize=True`` maps pixels to ``(x / 255 - mean) / std`` with the backbone's
``mean``/``std`` (given in ``0..1`` units, torchvision's convention); ``normalize=False``
only scales to ``0..1`` for models that normalise internally. Canvas and letterbox
padding use the mean colour, so they normalise to zero.

Boxes are ``x1, y1, x2, y2`` in 0-based continuous pixels before and after (see
``annotations.schema``). Labels and difficult flags are albumentations label fields, so
a box that leaves the output image, or ends up narrower or lower than ``min_box_side``
output pixels, is dropped together with its label and flag; boxes are clipped to the
image. An image may end up with no boxes. Boxes are filtered once, on the output, not
after every step (albumentations' per-step check cost a quarter of the ``ssd`` time, and
no step here can produce an invalid intermediate box).

Randomness: albumentations 2.x ignores the global ``random``/``numpy`` seeds, and
``A.Compose(seed=s)`` gives every child transform its own generator seeded with the same
``s``, so transforms drawing in step make identical decisions (two p=0.5 flips always
agree). ``DetectionTransform.reseed`` instead shares one generator pair across the whole
pipeline; the data loader reseeds each worker through it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import albumentations as A
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2

from prodet.datasets.geometry import (
    ResizeGeometry,
    ResizeMode,
    check_resize_mode,
    resize_geometry,
)
from prodet.datasets.letterbox import ResizeToInput
from prodet.datasets.min_iou_crop import MinIoURandomCrop
from prodet.datasets.zoom_out import ZoomOut

PRESETS: tuple[str, ...] = ("eval", "light", "scale", "ssd")
# Other images a mosaic sample combines with its own (a 2x2 grid).
MOSAIC_PARTNERS = 3
# Shortest side, as a share of the output side, of a box kept after a mosaic crop.
MOSAIC_MIN_SIDE = 0.03
# Largest canvas side ratio of the "scale" preset's zoom-out.
SCALE_ZOOM_OUT = 1.6
LABEL_FIELDS: tuple[str, str] = ("labels", "difficult")

# The SSD paper's photometric ranges: brightness delta 32 of 255, contrast and
# saturation factors in [0.5, 1.5], hue shift 18 degrees (0.05 of the colour circle).
SSD_BRIGHTNESS = 32 / 255
SSD_CONTRAST = 0.5
SSD_SATURATION = 0.5
SSD_HUE = 18 / 360


@dataclass(frozen=True)
class TransformedSample:
    """One transformed sample.

    Attributes:
        image: float32 ``[3, size, size]``.
        boxes: float32 ``[N, 4]`` ``x1, y1, x2, y2`` pixels of ``image``.
        labels: int64 ``[N]``.
        difficult: bool ``[N]``.
    """

    image: torch.Tensor
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray


class DetectionTransform:
    """An albumentations pipeline with the box, label and seeding conventions applied.

    Attributes:
        preset: the preset's name.
        size: side of the square output.
        resize_mode: ``"stretch"`` or ``"letterbox"``.
        is_random: False only for ``"eval"``: then ``geometry`` maps samples back exactly.
        zooms_in: whether the pipeline can enlarge part of the image (the ``"scale"`` and
            ``"ssd"`` crops, mosaic): only then do reduced decodes keep more pixels than
            the input size (``decode_oversample``).
        mosaic_partners: other samples ``__call__`` wants in ``partners`` (0: no mosaic).
        pipeline: the underlying ``A.Compose``.
    """

    def __init__(
        self,
        preset: str,
        pipeline: A.Compose,
        *,
        size: int,
        resize_mode: ResizeMode,
        is_random: bool,
        zooms_in: bool = False,
        mosaic_partners: int = 0,
        seed: int | None = None,
    ) -> None:
        self.preset = preset
        self.pipeline = pipeline
        self.size = size
        self.resize_mode = resize_mode
        self.is_random = is_random
        self.zooms_in = zooms_in
        self.mosaic_partners = mosaic_partners
        self.reseed(seed)

    def reseed(self, seed: int | None) -> None:
        """Give the whole pipeline one fresh generator pair (``None``: OS entropy)."""
        self.pipeline.set_random_state(np.random.default_rng(seed), random.Random(seed))
        self._partner_rng = random.Random(None if seed is None else seed + 1)

    def pick_partners(self, count: int, index: int) -> list[int]:
        """Indices of ``mosaic_partners`` other samples (of ``count``) to mix with ``index``.

        Drawn from the transform's own seeded generator, so a reseeded run repeats them.
        With fewer other samples than needed, the returned list is shorter (albumentations
        then repeats the sample itself).
        """
        # Sample among the count - 1 others without listing them: skip over ``index``.
        picked = self._partner_rng.sample(range(count - 1), min(self.mosaic_partners, count - 1))
        return [i + (i >= index) for i in picked]

    def geometry(self, width: int, height: int) -> ResizeGeometry | None:
        """How a ``width x height`` image maps into the output; None for random presets."""
        if self.is_random:
            return None
        return resize_geometry(width, height, self.size, self.resize_mode)

    def __call__(
        self,
        image: np.ndarray,
        boxes: np.ndarray,
        labels: np.ndarray,
        difficult: np.ndarray,
        partners: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = (),
    ) -> TransformedSample:
        """Transform one sample.

        Args:
            image: uint8 ``[H, W, 3]`` RGB.
            boxes: ``[N, 4]`` ``x1, y1, x2, y2`` pixels of ``image``.
            labels: int ``[N]``.
            difficult: bool ``[N]``.
            partners: for mosaic, other samples as ``(image, boxes, labels, difficult)``
                tuples of the same kinds (ignored without mosaic).
        """
        # albumentations' keyword arguments: arrays, plus a list of dicts for mosaic.
        data: dict[str, Any] = _sample_dict(image, boxes, labels, difficult)
        if self.mosaic_partners:
            data["mosaic_metadata"] = [_sample_dict(*partner) for partner in partners]
        out = self.pipeline(**data)
        kept = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)
        return TransformedSample(
            image=out["image"],
            boxes=kept,
            labels=np.asarray(out["labels"], dtype=np.int64).reshape(len(kept)),
            difficult=np.asarray(out["difficult"], dtype=bool).reshape(len(kept)),
        )


def _sample_dict(
    image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, difficult: np.ndarray
) -> dict[str, np.ndarray]:
    """Validate one sample and put it in albumentations' keyword form."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"image must be uint8 [H, W, 3] RGB (use annotations.image_decode.decode_image_file), "
            f"got {image.dtype} {list(image.shape)}"
        )
    n = len(labels)
    if boxes.shape != (n, 4) or len(difficult) != n:
        raise ValueError(
            f"boxes [N, 4], labels [N] and difficult [N] must agree, got "
            f"{list(boxes.shape)}, {n} and {len(difficult)}"
        )
    return {
        "image": image,
        "bboxes": np.asarray(boxes, dtype=np.float32).reshape(n, 4),
        "labels": np.asarray(labels, dtype=np.int64),
        "difficult": np.asarray(difficult, dtype=np.int64),
    }


def _check_stats(mean: Sequence[float], std: Sequence[float]) -> None:
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"mean and std need 3 values (R, G, B), got {len(mean)} and {len(std)}")
    if any(s <= 0 for s in std):
        raise ValueError(f"std values must be positive, got {tuple(std)}")
    if any(not 0.0 <= m <= 1.0 for m in mean) or any(s > 1.0 for s in std):
        raise ValueError(
            f"mean/std are in 0..1 units (torchvision's convention, e.g. ImageNet "
            f"(0.485, 0.456, 0.406)); got mean {tuple(mean)}, std {tuple(std)}: divide by 255"
        )


def _ssd_photometric() -> A.BaseCompose:
    return A.RandomOrder(
        [
            A.RandomBrightnessContrast(
                brightness_limit=SSD_BRIGHTNESS, contrast_limit=0.0, brightness_by_max=True, p=0.5
            ),
            A.ColorJitter(brightness=0.0, contrast=SSD_CONTRAST, saturation=0.0, hue=0.0, p=0.5),
            A.ColorJitter(brightness=0.0, contrast=0.0, saturation=SSD_SATURATION, hue=0.0, p=0.5),
            A.ColorJitter(brightness=0.0, contrast=0.0, saturation=0.0, hue=SSD_HUE, p=0.5),
        ],
        n=4,
    )


def _random_steps(preset: str, fill: tuple[float, ...], zoom_out_max: float) -> list[Any]:
    light = [
        A.HorizontalFlip(p=0.5),
        A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=0.5),
    ]
    if preset == "light":
        return light
    if preset == "scale":
        zoom = [
            A.BBoxSafeRandomCrop(erosion_rate=0.0),
            ZoomOut(max_ratio=SCALE_ZOOM_OUT, fill=fill, p=1.0),
        ]
        return [*light, A.OneOf(zoom, p=0.6)]
    return [
        _ssd_photometric(),
        ZoomOut(max_ratio=zoom_out_max, fill=fill, p=0.5),
        MinIoURandomCrop(),
        A.HorizontalFlip(p=0.5),
    ]


def build_transform(
    preset: str,
    *,
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    pca_color: bool = False,
    mosaic: float = 0.0,
    normalize: bool = True,
    resize_mode: ResizeMode = "stretch",
    zoom_out_max: float = 4.0,
    min_box_side: float = 0.01,
    seed: int | None = None,
) -> DetectionTransform:
    """Build a named preset (see the module docstring).

    Args:
        preset: ``"eval"``, ``"light"``, ``"scale"`` or ``"ssd"``.
        size: side of the square model input in pixels.
        mean, std: the backbone's per-channel RGB statistics in ``0..1`` units.
        pca_color: add ``A.FancyPCA(alpha=0.1, p=0.5)`` (random presets only).
        mosaic: probability of a 2x2 mosaic with other samples (random presets only; the
            caller passes ``partners``); boxes then need a side of ``MOSAIC_MIN_SIDE`` of
            the output to be kept.
        normalize: ``(x / 255 - mean) / std`` if True, else ``x / 255``.
        resize_mode: ``"stretch"`` or ``"letterbox"`` for the final resize.
        zoom_out_max: largest zoom-out canvas side ratio (``"ssd"`` only; 1 disables it).
        min_box_side: output boxes narrower or lower than this many pixels are dropped
            (the default only removes degenerate boxes).
        seed: seed of the pipeline's generators (None: OS entropy).

    Returns:
        A transform producing float32 ``[3, size, size]`` images and pixel boxes.
    """
    if preset not in PRESETS:
        raise ValueError(
            f"unknown augmentation preset {preset!r}; choose one of {', '.join(PRESETS)}"
        )
    if size < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size}")
    if zoom_out_max < 1.0:
        raise ValueError(f"zoom_out_max must be >= 1 (1 disables zoom-out), got {zoom_out_max}")
    if not 0.0 <= mosaic <= 1.0:
        raise ValueError(f"mosaic is a probability in [0, 1], got {mosaic}")
    check_resize_mode(resize_mode)
    _check_stats(mean, std)
    fill = tuple(255.0 * m for m in mean)
    steps: list[Any] = []
    use_mosaic = preset != "eval" and mosaic > 0.0
    if preset != "eval":
        steps += _random_steps(preset, fill, zoom_out_max)
        if pca_color:
            steps.insert(1, A.FancyPCA(alpha=0.1, p=0.5))
    if use_mosaic:
        side = 2 * size
        steps.insert(
            0,
            A.Mosaic(
                grid_yx=(2, 2),
                target_size=(side, side),
                cell_shape=(side, side),
                fit_mode="contain",
                fill=fill,
                p=mosaic,
            ),
        )
        min_box_side = max(min_box_side, MOSAIC_MIN_SIDE * size)
    steps.append(ResizeToInput(size, resize_mode, fill))
    if normalize:
        steps.append(A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=255.0))
    else:
        steps.append(A.Normalize(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), max_pixel_value=255.0))
    steps.append(ToTensorV2())
    pipeline = A.Compose(
        steps,
        bbox_params=A.BboxParams(
            format="pascal_voc",
            label_fields=list(LABEL_FIELDS),
            clip=True,
            min_width=min_box_side,
            min_height=min_box_side,
            check_each_transform=False,
        ),
    )
    return DetectionTransform(
        preset,
        pipeline,
        size=size,
        resize_mode=resize_mode,
        is_random=preset != "eval",
        zooms_in=preset in ("scale", "ssd") or use_mosaic,
        mosaic_partners=MOSAIC_PARTNERS if use_mosaic else 0,
        seed=seed,
    )
