"""How fast can any converter of the bench corpus go on this machine? A floor for #2's target.

``bench/convert.py`` times ``prodet convert`` against the course-style peer. This script
times, in the same run, a third converter: the *floor*. It does only the work every
record of the issue's dataset needs, each step in the cheapest form measured on this
machine, and none of the work that makes prodet safe on real-world input:

- per file: ``open``/``fstat``/``read``/``close`` and the sha256 of the XML; the image
  opened by stem, ``fstat``'ed, its first bytes read, its size taken from the PNG ``IHDR``
  or the first JPEG ``SOF`` (no checks of any other chunk or marker, no Pillow);
- per 128 files: one lxml parse of the files' bytes joined into one document, and one
  XSLT transform that writes every field needed as one line of text;
- per chunk of 512 files (in 2 worker processes): the boxes converted, clipped and
  filtered with numpy;
- once: the records assembled into prodet's ``RecordTable``, prodet's content hash, a
  digest of the files' names, sizes and mtimes, and prodet's ``dump_dataset``.

It has no encoding detection, no fallback for a file it cannot read, no problem report,
no duplicate or split checks, no class list option: it accepts exactly the clean,
UTF-8 files of this corpus and raises on anything else. It is not a product path. Before
timing, its dataset is checked to have the same content hash as prodet's, so both did
the same job on this corpus.

Whatever prodet does beyond the floor costs time on top of it, so the floor's ratio to
the peer is an upper bound on what a converter built this way (CPython, lxml, processes)
can reach here.

Run from the repository root::

    python bench/convert_floor.py                          # print the table
    python bench/convert_floor.py --write BENCHMARKS.md    # also record it
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from struct import unpack_from

import numpy as np
from bench_report import load_note, run_lines, write_section
from convert import (
    DEFAULT_SOURCES,
    MIN_RECORDED_FILES,
    Converter,
    Corpus,
    Row,
    build_corpus,
    course_convert,
    format_table,
    measure,
    prodet_converter,
)
from lxml import etree
from prodet.annotations.convert import convert_folder
from prodet.annotations.fast_header import JPEG_MAGIC, JPEG_SOF, PNG_MAGIC
from prodet.annotations.pickle_store import dump_dataset, load_dataset
from prodet.annotations.record_table import RecordTable
from prodet.annotations.schema import BACKGROUND, FORMAT_VERSION, VocDataset, compute_content_hash
from prodet.annotations.voc_folder import read_splits

SECTION_HEADING = "## Convert: the floor on this machine"
PARSE_BATCH = 128  # files per lxml document
CHUNK = 512  # files per task sent to a worker
WORKERS = 2

# Per annotation: filename, width, height, object count, then per object its name, the
# four coordinates and difficult, one per line (the corpus has no newline in a field).
_FIELDS = etree.XSLT(
    etree.XML(
        b"""<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
<xsl:output method="text"/>
<xsl:template match="/">
<xsl:for-each select="b/annotation">
<xsl:value-of select="filename"/><xsl:text>&#10;</xsl:text>
<xsl:value-of select="size/width"/><xsl:text>&#10;</xsl:text>
<xsl:value-of select="size/height"/><xsl:text>&#10;</xsl:text>
<xsl:value-of select="count(object)"/><xsl:text>&#10;</xsl:text>
<xsl:for-each select="object">
<xsl:value-of select="name"/><xsl:text>&#10;</xsl:text>
<xsl:value-of select="bndbox/xmin"/><xsl:text>&#10;</xsl:text>
<xsl:value-of select="bndbox/ymin"/><xsl:text>&#10;</xsl:text>
<xsl:value-of select="bndbox/xmax"/><xsl:text>&#10;</xsl:text>
<xsl:value-of select="bndbox/ymax"/><xsl:text>&#10;</xsl:text>
<xsl:value-of select="difficult"/><xsl:text>&#10;</xsl:text>
</xsl:for-each>
</xsl:for-each>
</xsl:template>
</xsl:stylesheet>"""
    )
)
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=True)
_OBJECT_LINES = 6


class FloorError(RuntimeError):
    """The floor met input it does not handle (it is not a product path)."""


def _image_size(head: bytes, name: str) -> tuple[str, int, int] | None:
    """``(format, width, height)`` from a PNG's IHDR or a JPEG's first SOF; None: read more."""
    if head.startswith(PNG_MAGIC):
        width, height = unpack_from(">II", head, 16)
        return "PNG", width, height
    if not head.startswith(JPEG_MAGIC):
        raise FloorError(f"{name}: neither PNG nor JPEG")
    pos = 2
    while pos + 9 <= len(head):
        if head[pos + 1] in JPEG_SOF:
            height, width = unpack_from(">HH", head, pos + 5)
            return "JPEG", width, height
        pos += 2 + unpack_from(">H", head, pos + 2)[0]
    return None


def _read_image(path: str) -> tuple[tuple[str, int, int], int, int]:
    """The image's ``(format, width, height)``, size and mtime_ns."""
    fd = os.open(path, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        found = _image_size(os.pread(fd, 4096, 0), path)
        if found is None:  # a JPEG with its SOF behind a large EXIF block
            found = _image_size(os.pread(fd, 1 << 20, 0), path)
        if found is None:
            raise FloorError(f"{path}: no JPEG SOF in the first MiB")
        return found, st.st_size, st.st_mtime_ns
    finally:
        os.close(fd)


# Set in the parent before the workers fork: (sorted XML names, Annotations/ path with a
# trailing slash, JPEGImages/ path with a trailing slash, image name by stem).
_STATE: tuple[list[str], str, str, dict[str, str]] | None = None


def _convert_range(bounds: tuple[int, int]) -> tuple[list, ...]:
    """Columns of the files ``names[bounds[0]:bounds[1]]`` (run in a worker)."""
    if _STATE is None:
        raise FloorError("worker used before the parent set _STATE")
    names, ann_dir, image_dir, images = _STATE
    ids: list[str] = []
    paths: list[str] = []
    sizes: list[int] = []  # width, height per record
    formats: list[str] = []
    shas: list[str] = []
    counts: list[int] = []
    object_names: list[str] = []
    coords: list[float] = []
    difficult: list[bool] = []
    stats: list[str] = []
    for start in range(bounds[0], bounds[1], PARSE_BATCH):
        batch = names[start : min(start + PARSE_BATCH, bounds[1])]
        parts = [b"<b>"]
        for name in batch:
            fd = os.open(ann_dir + name, os.O_RDONLY)
            try:
                st = os.fstat(fd)
                data = os.read(fd, 1 << 16)
            finally:
                os.close(fd)
            if len(data) != st.st_size:
                raise FloorError(f"{name}: larger than 64 KiB")
            shas.append(hashlib.sha256(data).hexdigest())
            stats.append(f"Annotations/{name}\0{st.st_size}\0{st.st_mtime_ns}\n")
            if data.startswith(b"<?xml"):
                data = data[data.index(b"?>") + 2 :]
            parts.append(data)
        parts.append(b"</b>")
        lines = str(_FIELDS(etree.fromstring(b"".join(parts), _PARSER))).split("\n")
        at = 0
        for name in batch:
            stem = name[:-4]
            n = int(lines[at + 3])
            objects = lines[at + 4 : at + 4 + _OBJECT_LINES * n]
            at += 4 + _OBJECT_LINES * n
            object_names += objects[0::_OBJECT_LINES]
            for k in range(0, len(objects), _OBJECT_LINES):
                coords += map(float, objects[k + 1 : k + 5])
            difficult += [d.strip() not in ("", "0") for d in objects[5::_OBJECT_LINES]]
            image = images[stem]
            (fmt, width, height), size, mtime = _read_image(image_dir + image)
            stats.append(f"JPEGImages/{image}\0{size}\0{mtime}\n")
            ids.append(stem)
            paths.append("JPEGImages/" + image)
            sizes += (width, height)
            formats.append(fmt)
            counts.append(n)
    return ids, paths, sizes, formats, shas, counts, object_names, coords, difficult, stats


def _clean_boxes(
    coords: np.ndarray, sizes: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """VOC ``[M, 4]`` -> 0-based ``x1, y1, x2, y2``, swapped, clipped; and the kept mask."""
    x1 = np.minimum(coords[:, 0], coords[:, 2]) - 1
    x2 = np.maximum(coords[:, 0], coords[:, 2])
    y1 = np.minimum(coords[:, 1], coords[:, 3]) - 1
    y2 = np.maximum(coords[:, 1], coords[:, 3])
    width = np.repeat(sizes[:, 0], counts).astype(np.float64)
    height = np.repeat(sizes[:, 1], counts).astype(np.float64)
    boxes = np.stack(
        [
            np.clip(x1, 0, width),
            np.clip(y1, 0, height),
            np.clip(x2, 0, width),
            np.clip(y2, 0, height),
        ],
        axis=1,
    )
    keep = (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
    return boxes.astype(np.float32), keep


def floor_convert(voc_root: Path, output: Path) -> tuple[int, int]:
    """Convert ``voc_root`` (the bench corpus) into a prodet dataset file at ``output``.

    Returns:
        The number of records and objects written.

    Raises:
        FloorError: input the floor does not handle.
    """
    global _STATE
    root = voc_root.resolve()
    ann_dir, image_dir = f"{root}/Annotations/", f"{root}/JPEGImages/"
    with os.scandir(ann_dir) as it:
        names = sorted(e.name for e in it if e.name.endswith(".xml"))
    with os.scandir(image_dir) as it:
        images = {e.name[: e.name.rfind(".")]: e.name for e in it}
    _STATE = (names, ann_dir, image_dir, images)
    bounds = [(i, min(i + CHUNK, len(names))) for i in range(0, len(names), CHUNK)]
    columns: list[list] = [[] for _ in range(10)]
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(WORKERS) as pool:
        for part in pool.imap(_convert_range, bounds):
            for column, values in zip(columns, part, strict=True):
                column += values
    ids, paths, sizes, formats, shas, counts, object_names, coords, difficult, stats = columns
    counts_a = np.array(counts, dtype=np.int64)
    sizes_a = np.array(sizes, dtype=np.int64).reshape(-1, 2)
    boxes, keep = _clean_boxes(np.array(coords).reshape(-1, 4), sizes_a, counts_a)
    record_of = np.repeat(np.arange(len(ids)), counts_a)
    counts_a = np.bincount(record_of[keep], minlength=len(ids)).astype(np.int64)
    classes = (BACKGROUND, *sorted(set(object_names)))
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[n] for n in object_names], dtype=np.int64)[keep]
    table = RecordTable(
        ids,
        paths,
        sizes_a[:, 0].copy(),
        sizes_a[:, 1].copy(),
        formats,
        shas,
        counts_a,
        boxes[keep],
        labels,
        np.array(difficult, dtype=bool)[keep],
    )
    split_dir = root / "ImageSets" / "Main"
    splits = read_splits(tuple(sorted(split_dir.glob("*.txt"))))
    dataset = VocDataset(
        format_version=FORMAT_VERSION,
        root=str(root),
        classes=classes,
        records=table,
        splits=splits,
        source_fingerprint=hashlib.sha256("".join(stats).encode()).hexdigest(),
        content_hash=compute_content_hash(classes, table, splits),
    )
    dump_dataset(dataset, output)
    return len(table), len(labels)


def check_same_as_prodet(corpus: Corpus) -> str:
    """The content hash both converters give the corpus.

    Raises:
        FloorError: the floor's dataset differs from prodet's.
    """
    result = convert_folder(corpus.root, workers=WORKERS)
    if result.dataset is None:
        raise FloorError(f"prodet failed on the corpus: {result.summary.format()}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "floor.pkl"
        floor_convert(corpus.root, out)
        floor = load_dataset(out)
    if floor.content_hash != result.dataset.content_hash:
        raise FloorError("the floor's dataset differs from prodet's (content hashes differ)")
    return floor.content_hash


def section_text(
    table: str, corpus: Corpus, repeats: int, verdict: str, digest: str, load: str
) -> str:
    """The BENCHMARKS.md section."""
    return (
        f"{SECTION_HEADING}\n\n"
        f"The floor (`bench/convert_floor.py`): a converter that does only what each record "
        f"needs, in the cheapest form measured here (batched lxml parse plus one XSLT "
        f"transform per 128 files, the image size from the PNG IHDR or JPEG SOF alone, "
        f"boxes cleaned with numpy, {WORKERS} worker processes), and none of prodet's "
        f"handling of real-world input. On this corpus it writes the same dataset as "
        f"prodet (content hash `{digest[:16]}...`). Same corpus as the throughput section "
        f"({corpus.files:,} files, {corpus.objects:,} objects), one warm-up pass each, "
        f"{repeats} alternating rounds, each time including writing the pickle.\n\n"
        f"{table}\n\n{verdict}\n\n"
        f"{run_lines(load)}"
    )


def main(argv: list[str] | None = None) -> int:
    """Build the corpus, check the floor against prodet, time the three converters."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5, help="timed rounds (default 5)")
    p.add_argument("--write", type=Path, metavar="PATH", help="record the section in PATH")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    load = load_note()
    workdir = Path(tempfile.mkdtemp(prefix="prodet-bench-floor-"))
    try:
        corpus = build_corpus(DEFAULT_SOURCES, MIN_RECORDED_FILES, workdir)
        digest = check_same_as_prodet(corpus)
        converters = [
            Converter("course-style peer (ElementTree, 1 process)", False, course_convert),
            Converter(f"prodet workers={WORKERS}", True, prodet_converter(WORKERS)),
            Converter(f"floor, {WORKERS} processes (not a product path)", True, floor_convert),
        ]
        rows: list[Row] = measure(converters, corpus, args.repeats, workdir)
    finally:
        shutil.rmtree(workdir)
    table = format_table(rows, corpus.files)
    peer = statistics.median(rows[0].rates(corpus.files))
    floor = statistics.median(rows[2].rates(corpus.files))
    verdict = (
        f"The floor reaches {floor / peer:.2f}x the peer (median files/s). A converter that "
        f"does what the floor does and also handles real-world input does more work per "
        f"file, so it cannot reach 2x on this machine."
        if floor / peer < 2
        else f"The floor reaches {floor / peer:.2f}x the peer: 2x is not ruled out here."
    )
    print(table, verdict, sep="\n\n")
    if args.write:
        write_section(
            args.write,
            SECTION_HEADING,
            section_text(table, corpus, args.repeats, verdict, digest, load),
        )
        print(f"wrote the '{SECTION_HEADING}' section of {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
