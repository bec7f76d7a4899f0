from __future__ import annotations

import albumentations as A
import numpy as np
import pytest
import torch

from prodet.datasets.augment import LABEL_FIELDS, PRESETS, build_transform

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
SIZE = 64


def _sample(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A noise image with 1-4 boxes; label k marks box k-1 and difficult is label % 2."""
    rng = np.random.default_rng(seed)
    height, width = int(rng.integers(20, 90)), int(rng.integers(20, 90))
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    n = int(rng.integers(1, 5))
    x = np.sort(rng.uniform(0, width - 2, (n, 2)), axis=1)
    y = np.sort(rng.uniform(0, height - 2, (n, 2)), axis=1)
    boxes = np.stack([x[:, 0], y[:, 0], x[:, 1] + 2, y[:, 1] + 2], axis=1).astype(np.float32)
    labels = np.arange(1, n + 1, dtype=np.int64)
    return image, boxes, labels, labels % 2 == 1


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("resize_mode", ["stretch", "letterbox"])
def test_every_preset_keeps_boxes_inside_and_aligned(preset: str, resize_mode: str) -> None:
    transform = build_transform(
        preset, size=SIZE, mean=MEAN, std=STD, pca_color=True, resize_mode=resize_mode, seed=1
    )
    seen_boxes = 0
    for seed in range(40):
        image, boxes, labels, difficult = _sample(seed)
        out = transform(image, boxes, labels, difficult)

        assert out.image.shape == (3, SIZE, SIZE) and out.image.dtype == torch.float32
        n = len(out.labels)
        assert out.boxes.shape == (n, 4) and out.boxes.dtype == np.float32
        assert out.labels.dtype == np.int64 and out.difficult.dtype == np.bool_
        assert (out.boxes >= 0).all() and (out.boxes <= SIZE).all()
        assert (out.boxes[:, 2] > out.boxes[:, 0]).all() and (
            out.boxes[:, 3] > out.boxes[:, 1]
        ).all()
        assert set(out.labels.tolist()) <= set(labels.tolist())
        assert len(set(out.labels.tolist())) == n  # no box duplicated
        np.testing.assert_array_equal(out.difficult, out.labels % 2 == 1)
        if preset == "eval":
            assert n == len(labels)
        seen_boxes += n
    assert seen_boxes > 0


def test_random_presets_keep_box_content_under_a_flip_or_not() -> None:
    """``light`` with stretch: each box is the resized original, or its mirror image."""
    transform = build_transform("light", size=SIZE, mean=MEAN, std=STD, seed=0)
    flips = 0
    for seed in range(30):
        image, boxes, labels, difficult = _sample(seed)
        height, width = image.shape[:2]
        scaled = boxes * np.array([SIZE / width, SIZE / height] * 2, dtype=np.float32)
        mirrored = scaled[:, [2, 1, 0, 3]] * [-1, 1, -1, 1] + [SIZE, 0, SIZE, 0]
        out = transform(image, boxes, labels, difficult)
        expected = scaled[out.labels - 1]
        if not np.allclose(out.boxes, expected, atol=1e-3):
            np.testing.assert_allclose(out.boxes, mirrored[out.labels - 1], atol=1e-3)
            flips += 1
    assert 0 < flips < 30


def test_scale_preset_keeps_every_box_and_zooms_both_ways() -> None:
    """``scale``: no box is ever lost, and boxes come out both larger and smaller."""
    transform = build_transform("scale", size=SIZE, mean=MEAN, std=STD, seed=3)
    ratios = []
    for seed in range(60):
        image, boxes, labels, difficult = _sample(seed)
        height, width = image.shape[:2]
        out = transform(image, boxes, labels, difficult)
        assert sorted(out.labels.tolist()) == labels.tolist()
        # Fraction of the output covered by the boxes' union hull, against the input's.
        hull_in = (boxes[:, 2].max() - boxes[:, 0].min()) * (boxes[:, 3].max() - boxes[:, 1].min())
        b = out.boxes
        hull_out = (b[:, 2].max() - b[:, 0].min()) * (b[:, 3].max() - b[:, 1].min())
        ratios.append((hull_out / SIZE**2) / (hull_in / (width * height)))
    ratios = np.array(ratios)
    assert (ratios > 1.05).any() and (ratios < 0.95).any()
    assert (np.abs(ratios - 1) < 0.02).any()  # 40% of samples keep the whole image


def test_mosaic_combines_the_partners_boxes_with_the_sample() -> None:
    """A mosaic sample carries boxes of its partners; every kept box stays aligned."""
    transform = build_transform("light", size=SIZE, mean=MEAN, std=STD, mosaic=1.0, seed=0)
    assert transform.mosaic_partners == 3
    mixed = 0
    for seed in range(20):
        image, boxes, labels, difficult = _sample(seed)
        # Partners: uniform colours, one box each filling the image, labels 10, 11, 12.
        partners = []
        for k in range(3):
            pimg = np.full((40, 50, 3), 60 * k, dtype=np.uint8)
            partners.append((pimg, np.array([[0, 0, 50, 40]], np.float32), np.array([10 + k]),
                             np.array([False])))  # fmt: skip
        out = transform(image, boxes, labels, difficult, partners)
        assert out.image.shape == (3, SIZE, SIZE)
        b = out.boxes
        assert ((b >= 0) & (b <= SIZE)).all()
        sides = np.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
        assert (sides >= 0.03 * SIZE - 1e-4).all()  # slivers cut by the crop are dropped
        assert len(out.labels) == len(out.difficult) == len(b)
        mixed += bool(set(out.labels.tolist()) & {10, 11, 12})
    assert mixed >= 15  # the partners' boxes show up in (almost) every sample


def test_mosaic_partners_are_seeded_and_never_the_sample_itself() -> None:
    first = build_transform("scale", size=SIZE, mean=MEAN, std=STD, mosaic=0.5, seed=4)
    again = build_transform("scale", size=SIZE, mean=MEAN, std=STD, mosaic=0.5, seed=4)
    picks = [first.pick_partners(10, i % 10) for i in range(30)]
    assert picks == [again.pick_partners(10, i % 10) for i in range(30)]
    assert all(len(p) == 3 and i % 10 not in p for i, p in enumerate(picks))
    assert first.pick_partners(2, 0) == [1]  # fewer others than partners
    eval_tf = build_transform("eval", size=SIZE, mean=MEAN, std=STD, mosaic=1.0)
    assert eval_tf.mosaic_partners == 0  # evaluation is never mixed


def test_horizontal_flip_maps_x1_to_width_minus_x2() -> None:
    pipeline = A.Compose(
        [A.HorizontalFlip(p=1.0)],
        bbox_params=A.BboxParams(format="pascal_voc", label_fields=list(LABEL_FIELDS)),
    )
    image = np.zeros((10, 50, 3), dtype=np.uint8)
    image[2:6, 3:20] = 255
    out = pipeline(image=image, bboxes=[[3, 2, 20, 6]], labels=[1], difficult=[0])
    np.testing.assert_allclose(out["bboxes"], [[50 - 20, 2, 50 - 3, 6]])
    assert (out["image"][2:6, 30:47] == 255).all() and out["image"].sum() == image.sum()


def test_normalisation_uses_the_backbone_statistics() -> None:
    mean_pixel = np.round(np.array(MEAN) * 255).astype(np.uint8)
    image = np.broadcast_to(mean_pixel, (20, 30, 3)).copy()
    none = np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, bool)
    normalised = build_transform("eval", size=16, mean=MEAN, std=STD)(image, *none).image
    expected = (mean_pixel / 255 - np.array(MEAN)) / np.array(STD)
    np.testing.assert_allclose(normalised[:, 5, 5].numpy(), expected, atol=1e-5)
    plain = build_transform("eval", size=16, mean=MEAN, std=STD, normalize=False)(image, *none)
    np.testing.assert_allclose(plain.image[:, 5, 5].numpy(), mean_pixel / 255, atol=1e-6)


def test_letterbox_padding_normalises_to_zero() -> None:
    image = np.full((10, 40, 3), 200, dtype=np.uint8)
    none = np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, bool)
    out = build_transform("eval", size=40, mean=MEAN, std=STD, resize_mode="letterbox")(
        image, *none
    )
    assert out.image[:, 0, 0].abs().max() < 0.02  # top padding row: mean colour
    assert out.image[:, 20, 20].min() > 1.0  # the bright image itself


def test_image_without_boxes_is_a_valid_sample() -> None:
    image = np.zeros((30, 30, 3), dtype=np.uint8)
    for preset in PRESETS:
        transform = build_transform(preset, size=SIZE, mean=MEAN, std=STD, seed=0)
        out = transform(
            image, np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, bool)
        )
        assert (
            out.boxes.shape == (0, 4) and out.labels.shape == (0,) and out.difficult.shape == (0,)
        )


def test_same_seed_same_augmentations_and_shared_generator() -> None:
    image, boxes, labels, difficult = _sample(5)
    a = build_transform("ssd", size=SIZE, mean=MEAN, std=STD, seed=7)
    b = build_transform("ssd", size=SIZE, mean=MEAN, std=STD, seed=7)
    for _ in range(5):
        out_a, out_b = a(image, boxes, labels, difficult), b(image, boxes, labels, difficult)
        assert torch.equal(out_a.image, out_b.image)
        np.testing.assert_array_equal(out_a.boxes, out_b.boxes)
    first = [t.random_generator for t in a.pipeline.transforms]
    assert all(g is a.pipeline.random_generator for g in first)


def test_invalid_arguments_explain_themselves() -> None:
    with pytest.raises(ValueError, match="choose one of eval, light, scale, ssd"):
        build_transform("yolo", size=32, mean=MEAN, std=STD)
    with pytest.raises(ValueError, match="divide by 255"):
        build_transform("eval", size=32, mean=(123.7, 116.3, 103.5), std=(58.4, 57.1, 57.4))
    with pytest.raises(ValueError, match="resize_mode must be one of"):
        build_transform("eval", size=32, mean=MEAN, std=STD, resize_mode="fit")  # type: ignore[arg-type]
    transform = build_transform("eval", size=32, mean=MEAN, std=STD)
    with pytest.raises(ValueError, match="uint8 \\[H, W, 3\\]"):
        transform(
            np.zeros((4, 4), np.uint8), np.zeros((0, 4), np.float32), np.zeros(0), np.zeros(0)
        )
