"""Benchmark the training data loader: images per second with the ``ssd`` preset.

The shared groceries25 VOC folder (500 RGB PNGs, 224 x 224) is converted to a temporary
pickle with ``convert_folder`` + ``dump_dataset``; all its images (both splits) form a
``DetectionDataset`` with ``build_transform("ssd", size=320, ...)`` and ImageNet
statistics. Three configurations are timed, each over full passes after one unmeasured
warm-up pass (page cache warm, workers started):

* decode only: ``decode_image_file`` for every image, in this process;
* loader with ``num_workers=0``: decode + ``ssd`` augmentation + collate in this process;
* loader with ``--workers`` worker processes (default 2, persistent), the headline.

Run from the repository root::

    python bench/data_loading.py                          # print the table
    python bench/data_loading.py --write BENCHMARKS.md    # also record it in BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench_report import load_note, machine_description, run_lines, write_section

from prodet.annotations.convert import convert_folder
from prodet.annotations.image_decode import decode_image_file
from prodet.annotations.pickle_store import dump_dataset
from prodet.datasets.augment import build_transform
from prodet.datasets.detection_dataset import DetectionDataset
from prodet.datasets.loader import build_loader

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO_ROOT.parent / "shared" / "data" / "groceries25_voc"
SECTION_HEADING = "## Data loading"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def build_dataset(source: Path, pkl: Path, size: int) -> DetectionDataset:
    """Convert ``source`` to ``pkl`` and wrap every image with the ``ssd`` preset."""
    result = convert_folder(source)
    if result.dataset is None:
        raise ValueError(f"{source}: conversion failed ({len(result.problems)} problems)")
    dump_dataset(result.dataset, pkl)
    transform = build_transform("ssd", size=size, mean=IMAGENET_MEAN, std=IMAGENET_STD, seed=0)
    ids = [r.image_id for r in result.dataset.records]
    return DetectionDataset(pkl, ids=ids, transform=transform)


def time_passes(run_pass: Callable[[], int], repeats: int) -> list[float]:
    """Images/s of ``repeats`` timed passes after one warm-up; ``run_pass`` returns images."""
    run_pass()
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        images = run_pass()
        rates.append(images / (time.perf_counter() - started))
    return rates


def decode_pass(dataset: DetectionDataset) -> Callable[[], int]:
    def run() -> int:
        for index in range(len(dataset)):
            decode_image_file(dataset.image_path(index))
        return len(dataset)

    return run


def loader_pass(dataset: DetectionDataset, workers: int, batch_size: int) -> Callable[[], int]:
    loader = build_loader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        seed=0,
        persistent_workers=workers > 0,
    )

    def run() -> int:
        return sum(len(targets) for _, targets in loader)

    return run


def format_table(rows: list[tuple[str, list[float]]]) -> str:
    lines = [
        "| configuration | passes | min images/s | median images/s | max images/s | ms/image |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, rates in rows:
        median = statistics.median(rates)
        lines.append(
            f"| {label} | {len(rates)} | {min(rates):,.0f} | {median:,.0f} | "
            f"{max(rates):,.0f} | {1000 / median:.2f} |"
        )
    return "\n".join(lines)


def describe_images(dataset: DetectionDataset) -> str:
    """Image count, formats and sizes, e.g. ``500 images, PNG, 224 x 224``."""
    formats = sorted({r.image_format for r in dataset.records})
    sizes = {(r.width, r.height) for r in dataset.records}
    size = "{} x {}".format(*sizes.pop()) if len(sizes) == 1 else f"{len(sizes)} sizes"
    return f"{len(dataset)} images, {'/'.join(formats)}, {size}"


def section_text(table: str, images: str, args: argparse.Namespace, load: str) -> str:
    """The ``## Data loading`` section for BENCHMARKS.md."""
    return (
        f"{SECTION_HEADING}\n\n"
        f"`DetectionDataset` + `build_loader` with the `ssd` preset (photometric distortion, "
        f"zoom-out up to 4x, min-IoU crop, flip, resize to {args.size} x {args.size}, ImageNet "
        f"normalisation) on {args.source.name} ({images}, converted to a "
        f"temporary pickle), batch size {args.batch_size}, shuffled. One "
        f"unmeasured warm-up pass per configuration, then {args.repeats} timed passes; the "
        f"worker loader keeps its workers between passes.\n\n"
        f"{table}\n\n"
        f"{run_lines(load)}"
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Data-loader images/s with the ssd preset.")
    p.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="VOC folder")
    p.add_argument("--size", type=int, default=320, help="model input side (default 320)")
    p.add_argument("--workers", type=int, default=2, help="loader workers (default 2)")
    p.add_argument("--batch-size", type=int, default=32, help="batch size (default 32)")
    p.add_argument("--repeats", type=int, default=5, help="timed passes (default 5)")
    p.add_argument(
        "--write",
        type=Path,
        metavar="PATH",
        help=f"write or replace the '{SECTION_HEADING}' section of PATH (e.g. BENCHMARKS.md)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Convert, time the three configurations, print (and optionally record) the table."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if min(args.size, args.workers, args.batch_size, args.repeats) < 1:
        parser.error("--size, --workers, --batch-size and --repeats must be at least 1")
    load = load_note()
    with tempfile.TemporaryDirectory(prefix="prodet-bench-loading-") as workdir:
        dataset = build_dataset(args.source, Path(workdir) / "dataset.pkl", args.size)
        rows = [
            ("decode only, 1 process", time_passes(decode_pass(dataset), args.repeats)),
            (
                f"loader ssd@{args.size}, num_workers=0",
                time_passes(loader_pass(dataset, 0, args.batch_size), args.repeats),
            ),
            (
                f"loader ssd@{args.size}, num_workers={args.workers}",
                time_passes(loader_pass(dataset, args.workers, args.batch_size), args.repeats),
            ),
        ]
    table = format_table(rows)
    images = describe_images(dataset)
    print(f"{images}, machine: {machine_description()}, {load}\n")
    print(table)
    if args.write:
        write_section(args.write, SECTION_HEADING, section_text(table, images, args, load))
        print(f"\nwrote the '{SECTION_HEADING}' section of {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
