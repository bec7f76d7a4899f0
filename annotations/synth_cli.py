"""``prodet synth``: write the synthetic product-shelf dataset as a Pascal VOC folder."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from prodet.annotations.synthetic import JPEG_QUALITY, generate_shelf_dataset


def parse_size(text: str) -> tuple[int, int]:
    """``"320x240"`` (or a single side, ``"320"``) to ``(width, height)``."""
    parts = text.lower().split("x")
    try:
        sides = [int(p) for p in parts]
    except ValueError:
        sides = []
    if len(sides) == 1:
        sides *= 2
    if len(sides) != 2:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 320x320, got {text!r}")
    return sides[0], sides[1]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="prodet synth",
        description="Draw a synthetic product-shelf dataset (six product classes) into a "
        "Pascal VOC folder: JPEGImages/, Annotations/ and ImageSets/Main/{trainval,test}.txt.",
    )
    p.add_argument("out_dir", metavar="OUT_DIR", type=Path, help="the VOC folder to write")
    p.add_argument("--images", type=int, default=300, help="number of images (default: 300)")
    p.add_argument("--seed", type=int, default=0, help="same seed, same bytes (default: 0)")
    p.add_argument(
        "--size", type=parse_size, default=(320, 320), help="WIDTHxHEIGHT (default: 320x320)"
    )
    p.add_argument(
        "--quality", type=int, default=JPEG_QUALITY, help=f"JPEG quality (default: {JPEG_QUALITY})"
    )
    p.add_argument(
        "--exif-rotated",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share of images stored rotated with EXIF orientation 6 or 8, as phones store "
        "upright photos (annotations in the stored layout; default: 0)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a dataset already in OUT_DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    try:
        summary = generate_shelf_dataset(
            args.out_dir,
            images=args.images,
            size=args.size,
            seed=args.seed,
            progress=not args.quiet,
            overwrite=args.overwrite,
            quality=args.quality,
            exif_rotated=args.exif_rotated,
        )
    except ValueError as exc:
        sys.stderr.write(f"prodet synth: {exc}\n")
        return 2
    per_class = ", ".join(f"{k} {v}" for k, v in summary.objects_per_class.items())
    splits = ", ".join(f"{k} {v}" for k, v in summary.splits.items())
    sys.stdout.write(
        f"wrote {summary.images} images, {summary.objects} objects to {summary.root} "
        f"in {time.perf_counter() - started:.1f} s\n"
        f"  per class: {per_class}\n"
        f"  difficult {summary.difficult}, truncated {summary.truncated}, "
        f"dropped (hidden) {summary.dropped}; splits: {splits}\n"
    )
    return 0
