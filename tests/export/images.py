"""Hand-made test images on the model input: the training background alone, and a crowd."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from prodet.datasets.detection_dataset import DetectionDataset
from prodet.detection.checkpoint_eval import eval_transform

BACKGROUND = (200, 200, 190)  # make_tiny_dataset's canvas


def normalise(image: Image.Image, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """RGB image -> float32 ``[3, H, W]``, ``(pixel / 255 - mean) / std``."""
    array = np.asarray(image, dtype=np.float32) / 255.0
    array = (array - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def blank(size: int) -> Image.Image:
    """The training background and nothing on it."""
    return Image.new("RGB", (size, size), BACKGROUND)


def crowd(size: int) -> Image.Image:
    """A 3 x 3 grid of red squares and blue discs (the training classes)."""
    image = blank(size)
    draw = ImageDraw.Draw(image)
    side = size // 4
    for row in range(3):
        for col in range(3):
            x, y = 2 + col * (size // 3), 2 + row * (size // 3)
            if (row + col) % 2 == 0:
                draw.rectangle([x, y, x + side, y + side], fill=(220, 30, 30))
            else:
                draw.ellipse([x, y, x + side, y + side], fill=(30, 30, 220))
    return image


def split_images(
    data: Any, split: str, spec: Mapping[str, Any], count: int
) -> tuple[torch.Tensor, list[str]]:
    """The first ``count`` images of ``split`` through the eval transform of ``spec``."""
    transform = eval_transform(spec)
    dataset = DetectionDataset(data, split, transform=transform)
    samples = [dataset[i] for i in range(min(count, len(dataset)))]
    return torch.stack([image for image, _ in samples]), [t["image_id"] for _, t in samples]
