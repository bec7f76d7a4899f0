"""Benchmark the training data loader: images per second, small images against camera photos.

Two datasets, each converted to a temporary pickle (``convert_folder`` + ``dump_dataset``)
and loaded whole (both splits) as a ``DetectionDataset`` with the same preset (default
``ssd``), input size (default 320) and ImageNet statistics:

* ``--source``: the shared groceries25 VOC folder (500 RGB PNGs, 224 x 224);
* ``--camera``: camera photos, a ``prodet synth`` folder (regenerate it with
  ``prodet synth DIR --images 200 --size 4032x3024 --quality 90 --exif-rotated 0.5``:
  12-megapixel JPEGs, half of them EXIF-rotated). JPEGs are decoded at reduced size
  (``datasets.image_cache``) unless ``--no-fast-jpeg``.

Per dataset, with the chosen ``--cache`` (``ram``: the split decoded into memory before
the workers start; ``disk``: a fresh cache folder filled by the first epoch; ``none``):

* decode only: ``decode_source`` of every image in this process, as the loader decodes;
* first epoch, cold cache: building the cache (``preload``) plus one pass of the worker
  loader, the cost of a run's start;
* warm epochs: ``--repeats`` more passes of the same loader (persistent workers).

The headline is the camera photos' warm images/s as a share of groceries25's. Run from the
repository root::

    python bench/data_loading.py --camera ../camera200                 # print the table
    python bench/data_loading.py --camera ../camera200 --write BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench_report import load_note, machine_description, run_lines, write_section

from prodet.annotations.convert import convert_folder
from prodet.annotations.pickle_store import dump_dataset
from prodet.datasets.augment import build_transform
from prodet.datasets.detection_dataset import DetectionDataset
from prodet.datasets.image_cache import decode_source
from prodet.datasets.loader import build_loader

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO_ROOT.parent / "shared" / "data" / "groceries25_voc"
SECTION_HEADING = "## Data loading"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Row:
    """One timed configuration: images/s of each pass."""

    label: str
    rates: list[float]


def build_dataset(source: Path, work: Path, args: argparse.Namespace) -> DetectionDataset:
    """Convert ``source`` into ``work`` and wrap every image with the preset."""
    result = convert_folder(source)
    if result.dataset is None:
        raise ValueError(f"{source}: conversion failed ({len(result.problems)} problems)")
    pkl = work / f"{source.name}.pkl"
    dump_dataset(result.dataset, pkl)
    transform = build_transform(
        args.preset, size=args.size, mean=IMAGENET_MEAN, std=IMAGENET_STD, seed=0
    )
    return DetectionDataset(
        pkl,
        ids=[r.image_id for r in result.dataset.records],
        transform=transform,
        cache=args.cache,
        cache_mb=args.cache_mb,
        cache_dir=work / "image-cache",
        fast_jpeg=args.fast_jpeg,
        oversample=args.oversample,
    )


def timed(run_pass: Callable[[], int]) -> float:
    """Images/s of one call of ``run_pass`` (which returns how many images it did)."""
    started = time.perf_counter()
    images = run_pass()
    return images / (time.perf_counter() - started)


def decode_pass(dataset: DetectionDataset) -> Callable[[], int]:
    def run() -> int:
        for index, record in enumerate(dataset.records):
            decode_source(
                dataset.image_path(index), record, alpha=dataset.alpha, min_sides=dataset.min_sides
            )
        return len(dataset)

    return run


def measure(dataset: DetectionDataset, name: str, args: argparse.Namespace) -> list[Row]:
    """Decode only, the cold first epoch, and the warm epochs of one dataset."""
    rows = [Row(f"{name}: decode only, 1 process", [timed(decode_pass(dataset))])]
    loader = build_loader(
        dataset,
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=args.workers,
        seed=0,
        persistent_workers=args.workers > 0,
    )

    def first_epoch() -> int:
        dataset.preload()
        return sum(len(targets) for _, targets in loader)

    def epoch() -> int:
        return sum(len(targets) for _, targets in loader)

    loaders = f"loader {args.preset}@{args.size}, num_workers={args.workers}"
    rows.append(
        Row(f"{name}: {loaders}, first epoch, cold {args.cache} cache", [timed(first_epoch)])
    )
    warm = [timed(epoch) for _ in range(args.repeats)]
    rows.append(Row(f"{name}: {loaders}, warm epochs", warm))
    return rows


def format_table(rows: list[Row]) -> str:
    lines = [
        "| configuration | passes | min images/s | median images/s | max images/s | ms/image |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        median = statistics.median(row.rates)
        lines.append(
            f"| {row.label} | {len(row.rates)} | {min(row.rates):,.0f} | {median:,.0f} | "
            f"{max(row.rates):,.0f} | {1000 / median:.2f} |"
        )
    return "\n".join(lines)


def describe_images(dataset: DetectionDataset) -> str:
    """Image count, formats and sizes, e.g. ``500 images, PNG, 224 x 224``."""
    formats = sorted({r.image_format for r in dataset.records})
    sizes = {(r.width, r.height) for r in dataset.records}
    size = "{} x {}".format(*sizes.pop()) if len(sizes) == 1 else f"{len(sizes)} sizes"
    return f"{len(dataset)} images, {'/'.join(formats)}, {size}"


def headline(rows: list[Row], names: list[str]) -> str:
    """The camera photos' warm images/s as a share of the small images'."""
    warm = {
        name: statistics.median(r.rates)
        for name in names
        for r in rows
        if r.label.startswith(f"{name}:") and r.label.endswith("warm epochs")
    }
    if len(warm) < 2:
        return ""
    small, camera = (warm[n] for n in names)
    return f"Camera photos load at {camera / small:.2f}x the images/s of {names[0]} (warm epochs)."


def section_text(
    table: str, summary: str, described: dict[str, str], args: argparse.Namespace, load: str
) -> str:
    """The ``## Data loading`` section for BENCHMARKS.md."""
    sets = "; ".join(f"{name} ({text})" for name, text in described.items())
    decoding = (
        "JPEGs decoded at the smallest DCT scale keeping the input size "
        f"({args.oversample:g}x it for presets that zoom in: scale, ssd, mosaic)"
        if args.fast_jpeg
        else "JPEGs decoded in full"
    )
    headline_block = f"{summary}\n\n" if summary else ""
    return (
        f"{SECTION_HEADING}\n\n"
        f"`DetectionDataset` + `build_loader` with the `{args.preset}` preset at "
        f"{args.size} x {args.size} (ImageNet normalisation) on {sets}, each converted to a "
        f"temporary pickle; batch size {args.batch_size}, shuffled, {args.workers} persistent "
        f"workers, `--cache {args.cache}`, {decoding}. The first epoch counts building the "
        f"cache (a fresh one); then {args.repeats} warm epochs.\n\n"
        f"{table}\n\n"
        f"{headline_block}"
        f"{run_lines(load)}"
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Data-loader images/s: small images and camera photos.")
    p.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="small-image VOC folder")
    p.add_argument("--camera", type=Path, help="camera-photo VOC folder (from `prodet synth`)")
    p.add_argument("--size", type=int, default=320, help="model input side (default 320)")
    p.add_argument(
        "--preset", default="light", help="augmentation preset (default light, the recipe's)"
    )
    p.add_argument("--workers", type=int, default=2, help="loader workers (default 2)")
    p.add_argument("--batch-size", type=int, default=32, help="batch size (default 32)")
    p.add_argument("--repeats", type=int, default=5, help="warm epochs timed (default 5)")
    p.add_argument("--cache", choices=("ram", "disk", "none"), default="ram", help="default ram")
    p.add_argument("--cache-mb", type=float, default=1024.0, help="RAM cache budget (default 1024)")
    p.add_argument(
        "--oversample",
        type=float,
        default=2.0,
        help="decode size of presets that zoom in, times the input (default 2)",
    )
    p.add_argument(
        "--fast-jpeg",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="decode JPEGs at reduced size (default)",
    )
    p.add_argument(
        "--write",
        type=Path,
        metavar="PATH",
        help=f"write or replace the '{SECTION_HEADING}' section of PATH (e.g. BENCHMARKS.md)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Convert, time each dataset, print (and optionally record) the table."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if min(args.size, args.batch_size, args.repeats) < 1 or args.workers < 0:
        parser.error("--size, --batch-size and --repeats must be at least 1, --workers >= 0")
    load = load_note()
    sources = {args.source.name: args.source}
    if args.camera:
        sources[args.camera.name] = args.camera
    rows: list[Row] = []
    described: dict[str, str] = {}
    for name, source in sources.items():
        with tempfile.TemporaryDirectory(prefix="prodet-bench-loading-") as workdir:
            dataset = build_dataset(source, Path(workdir), args)
            described[name] = describe_images(dataset)
            rows += measure(dataset, name, args)
            print(format_table(rows[-3:]), flush=True)
    table = format_table(rows)
    summary = headline(rows, list(sources))
    print(f"\n{'; '.join(f'{k}: {v}' for k, v in described.items())}")
    print(f"machine: {machine_description()}, {load}\n")
    print(table)
    if summary:
        print(f"\n{summary}")
    if args.write:
        text = section_text(table, summary, described, args, load)
        write_section(args.write, SECTION_HEADING, text)
        print(f"\nwrote the '{SECTION_HEADING}' section of {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
