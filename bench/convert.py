"""Benchmark ``prodet convert`` throughput (XML files per second) against a course-style peer.

The corpus is built in a temporary folder by replicating the shared real VOC datasets
under new unique ids: every replicated ``Annotations/<id>.xml`` is a byte copy of a real
annotation and gets its own ``JPEGImages/<id>.<ext>`` symlink to the real image, so
prodet header-checks one image file per XML. The split files are replicated as well.

Three converters are timed in the same run, alternating, after one unmeasured warm-up
pass of each (which also warms the page cache): the course-style peer (single process,
``xml.etree.ElementTree``, no image checks), and prodet's ``convert_folder`` plus
``dump_dataset`` with one worker and with all cores. Each timing includes writing the
pickle.

Run from the repository root::

    python bench/convert.py                          # print the table
    python bench/convert.py --write BENCHMARKS.md    # also record it in BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import pickle
import shutil
import statistics
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench_report import load_note, machine_description, run_lines, write_section

from prodet.annotations.convert import convert_folder
from prodet.annotations.pickle_store import dump_dataset

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCES = tuple(
    REPO_ROOT.parent / "shared" / "data" / name
    for name in ("commodity_voc", "groceries25_voc", "raccoon_voc")
)
SECTION_HEADING = "## Convert throughput"
MIN_RECORDED_FILES = 20_000


@dataclass(frozen=True)
class Corpus:
    """A replicated VOC folder: its root and how many annotation files and objects it holds."""

    root: Path
    files: int
    objects: int
    replicas: int


@dataclass(frozen=True)
class Converter:
    """One timed configuration: ``run(voc_root, output)`` converts and writes the pickle.

    ``run`` returns the number of records and objects it wrote, for a sanity check.
    """

    label: str
    image_checks: bool
    run: Callable[[Path, Path], tuple[int, int]]


@dataclass(frozen=True)
class Row:
    """Timings of one converter over the repetitions."""

    converter: Converter
    seconds: list[float]

    def rates(self, files: int) -> list[float]:
        """Files per second of each repetition."""
        return [files / s for s in self.seconds]


def _images_by_stem(image_dir: Path) -> dict[str, Path]:
    images: dict[str, Path] = {}
    for path in image_dir.iterdir():
        if path.stem in images:
            raise ValueError(f"{image_dir}: two images share the stem {path.stem!r}")
        images[path.stem] = path
    return images


def build_corpus(sources: tuple[Path, ...], min_files: int, workdir: Path) -> Corpus:
    """Replicate the annotations of ``sources`` into ``workdir/voc`` until ``min_files``.

    Replica ``r`` of a source file ``<stem>.xml`` becomes ``r<r>_<stem>.xml`` (a byte
    copy) and its image ``r<r>_<stem>.<ext>`` (a symlink to the real image); each
    source's ``ImageSets/Main/<split>.txt`` ids are renamed the same way.

    Raises:
        ValueError: a source has an annotation without an image, or ids collide.
    """
    originals: list[tuple[Path, Path]] = []
    split_ids: dict[str, list[str]] = {}
    for source in sources:
        images = _images_by_stem(source / "JPEGImages")
        for xml_path in sorted((source / "Annotations").glob("*.xml")):
            if xml_path.stem not in images:
                raise ValueError(f"{xml_path}: no image with the stem {xml_path.stem!r}")
            originals.append((xml_path, images[xml_path.stem].resolve()))
        for split_file in sorted((source / "ImageSets" / "Main").glob("*.txt")):
            ids = split_file.read_text(encoding="utf-8").split()
            split_ids.setdefault(split_file.stem, []).extend(ids)
    if not originals:
        raise ValueError(f"no annotations found in {', '.join(map(str, sources))}")
    replicas = math.ceil(min_files / len(originals))
    root = workdir / "voc"
    annotation_dir, image_dir = root / "Annotations", root / "JPEGImages"
    split_dir = root / "ImageSets" / "Main"
    for directory in (annotation_dir, image_dir, split_dir):
        directory.mkdir(parents=True)
    objects = 0
    for xml_path, image_path in originals:
        data = xml_path.read_bytes()
        objects += data.count(b"<object>") * replicas
        for r in range(replicas):
            new_id = f"r{r:04d}_{xml_path.stem}"
            with open(annotation_dir / f"{new_id}.xml", "xb") as fh:  # "x": ids must be unique
                fh.write(data)
            (image_dir / f"{new_id}{image_path.suffix}").symlink_to(image_path)
    for split, ids in split_ids.items():
        renamed = [f"r{r:04d}_{i}" for r in range(replicas) for i in ids]
        (split_dir / f"{split}.txt").write_text("\n".join(renamed) + "\n", encoding="utf-8")
    return Corpus(root, len(originals) * replicas, objects, replicas)


def course_convert(voc_root: Path, output: Path) -> tuple[int, int]:
    """The course's converter: ElementTree per file into a dict, pickle the list.

    Single process and no image checks: the size is taken from ``<size>`` as written.
    """
    records = []
    annotation_dir = voc_root / "Annotations"
    for name in sorted(os.listdir(annotation_dir)):
        if not name.endswith(".xml"):
            continue
        root = ET.parse(annotation_dir / name).getroot()
        size = root.find("size")
        objects = []
        for obj in root.findall("object"):
            bndbox = obj.find("bndbox")
            objects.append(
                {
                    "name": obj.find("name").text,
                    "bbox": [
                        int(float(bndbox.find(tag).text))
                        for tag in ("xmin", "ymin", "xmax", "ymax")
                    ],
                    "difficult": int(obj.find("difficult").text),
                }
            )
        records.append(
            {
                "filename": root.find("filename").text,
                "size": {
                    "width": int(size.find("width").text),
                    "height": int(size.find("height").text),
                },
                "objects": objects,
            }
        )
    with open(output, "wb") as fh:
        pickle.dump(records, fh)
    return len(records), sum(len(r["objects"]) for r in records)


def prodet_converter(workers: int) -> Callable[[Path, Path], tuple[int, int]]:
    """``convert_folder`` (default options: image-header checks on) + ``dump_dataset``."""

    def run(voc_root: Path, output: Path) -> tuple[int, int]:
        result = convert_folder(voc_root, workers=workers)
        if result.dataset is None:
            raise RuntimeError(f"prodet convert failed: {result.summary.format()}")
        dump_dataset(result.dataset, output)
        table = result.dataset.records  # counted from its columns, without building records
        return len(table), len(table.labels)

    return run


def time_one(converter: Converter, corpus: Corpus, output: Path) -> float:
    """Run ``converter`` once over the corpus; return the wall time in seconds.

    Raises:
        RuntimeError: it did not write one record per file and every object.
    """
    gc.collect()
    started = time.perf_counter()
    records, objects = converter.run(corpus.root, output)
    elapsed = time.perf_counter() - started
    output.unlink()
    if (records, objects) != (corpus.files, corpus.objects):
        raise RuntimeError(
            f"{converter.label}: wrote {records} records / {objects} objects, expected "
            f"{corpus.files} / {corpus.objects}"
        )
    return elapsed


def measure(converters: list[Converter], corpus: Corpus, repeats: int, out_dir: Path) -> list[Row]:
    """One warm-up pass of each converter, then ``repeats`` alternating rounds.

    The order rotates every round so no converter always runs right after the same one.
    """
    output = out_dir / "out.pkl"
    for converter in converters:
        print(f"warm-up: {converter.label}", file=sys.stderr)
        time_one(converter, corpus, output)
    seconds: dict[str, list[float]] = {c.label: [] for c in converters}
    for round_index in range(repeats):
        shift = round_index % len(converters)
        for converter in converters[shift:] + converters[:shift]:
            elapsed = time_one(converter, corpus, output)
            seconds[converter.label].append(elapsed)
            print(
                f"round {round_index + 1}/{repeats}: {converter.label}: {elapsed:.2f} s "
                f"({corpus.files / elapsed:,.0f} files/s)",
                file=sys.stderr,
            )
    return [Row(c, seconds[c.label]) for c in converters]


def format_table(rows: list[Row], files: int) -> str:
    """Markdown table of min/median files/s per converter and the ratio to the peer."""
    peer_median = statistics.median(rows[0].rates(files))
    lines = [
        "| converter | image-header checks | runs | min files/s | median files/s "
        "| median vs peer |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        rates = row.rates(files)
        median = statistics.median(rates)
        lines.append(
            f"| {row.converter.label} | {'yes' if row.converter.image_checks else 'no'} "
            f"| {len(rates)} | {min(rates):,.0f} | {median:,.0f} | {median / peer_median:.2f}x |"
        )
    return "\n".join(lines)


def ratio_line(rows: list[Row], files: int) -> str:
    """Each prodet configuration's median files/s as a ratio to the peer's."""
    peer = statistics.median(rows[0].rates(files))
    ratios = ", ".join(
        f"{r.converter.label}: {statistics.median(r.rates(files)) / peer:.2f}x" for r in rows[1:]
    )
    return f"Ratio prodet/peer (median files/s): {ratios}."


def section_text(table: str, corpus: Corpus, repeats: int, summary: str, load: str) -> str:
    """The ``## Convert throughput`` section for BENCHMARKS.md; ``load`` is the load note."""
    sources = ", ".join(p.name for p in DEFAULT_SOURCES)
    return (
        f"{SECTION_HEADING}\n\n"
        f"`prodet convert` (`convert_folder` + `dump_dataset`, image-header checks on) "
        f"against a course-style converter (single process, `xml.etree.ElementTree` per "
        f"file into a dict, `pickle.dump` of the list, no image checks), on {corpus.files:,} "
        f"real VOC XML files ({corpus.objects:,} objects): the shared {sources} annotations "
        f"replicated {corpus.replicas} times under new ids, one image symlink per XML. "
        f"Each time includes writing the pickle. One unmeasured warm-up pass of each "
        f"converter first (page cache warm), then {repeats} alternating rounds.\n\n"
        f"{table}\n\n"
        f"{summary}\n\n"
        f"{run_lines(load)}"
    )


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(
        description="Benchmark prodet convert (files/s) against a course-style ElementTree "
        "converter on replicated real VOC annotations."
    )
    p.add_argument(
        "--source",
        dest="sources",
        action="append",
        type=Path,
        help="VOC folder to replicate (repeatable; default: the shared commodity_voc, "
        "groceries25_voc and raccoon_voc)",
    )
    p.add_argument(
        "--min-files",
        type=int,
        default=MIN_RECORDED_FILES,
        help=f"replicate until at least this many XML files (default {MIN_RECORDED_FILES:,})",
    )
    p.add_argument("--repeats", type=int, default=5, help="timed rounds (default 5)")
    p.add_argument(
        "--workers",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="prodet workers for the all-cores run (default: all cores)",
    )
    p.add_argument(
        "--workdir", type=Path, help="parent folder of the temporary corpus (default: system temp)"
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary corpus")
    p.add_argument(
        "--write",
        type=Path,
        metavar="PATH",
        help="write or replace the '## Convert throughput' section of PATH (e.g. BENCHMARKS.md)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Build the corpus, time the converters, print (and optionally record) the table."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.workers < 1 or args.min_files < 1:
        parser.error("--repeats, --workers and --min-files must be at least 1")
    if args.write and (args.sources or args.min_files < MIN_RECORDED_FILES):
        parser.error(
            f"--write records only the default sources with --min-files >= {MIN_RECORDED_FILES:,}"
        )
    load = load_note()
    workdir = Path(tempfile.mkdtemp(prefix="prodet-bench-convert-", dir=args.workdir))
    try:
        started = time.perf_counter()
        corpus = build_corpus(tuple(args.sources or DEFAULT_SOURCES), args.min_files, workdir)
        print(
            f"corpus: {corpus.files:,} XML files, {corpus.objects:,} objects in {corpus.root} "
            f"(built in {time.perf_counter() - started:.1f} s)",
            file=sys.stderr,
        )
        converters = [
            Converter("course-style peer (ElementTree, 1 process)", False, course_convert),
            Converter("prodet workers=1", True, prodet_converter(1)),
            Converter(f"prodet workers={args.workers}", True, prodet_converter(args.workers)),
        ]
        rows = measure(converters, corpus, args.repeats, workdir)
    finally:
        if args.keep:
            print(f"kept the corpus in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir)
    table = format_table(rows, corpus.files)
    summary = ratio_line(rows, corpus.files)
    print(f"{corpus.files:,} XML files, machine: {machine_description()}, {load}\n")
    print(table)
    print()
    print(summary)
    if args.write:
        write_section(
            args.write, SECTION_HEADING, section_text(table, corpus, args.repeats, summary, load)
        )
        print(f"wrote the '{SECTION_HEADING}' section of {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
