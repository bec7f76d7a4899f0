"""``prodet convert``: a VOC folder to the pickled dataset, with a report and COCO JSON."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from prodet.annotations.boxes import ON_ERROR_MODES
from prodet.annotations.coco import write_coco
from prodet.annotations.convert import ConvertOptions, convert_folder
from prodet.annotations.pickle_store import dump_dataset
from prodet.annotations.report import write_report
from prodet.annotations.voc_folder import VocFolderError

MAX_PROBLEM_LINES = 20


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="prodet convert",
        description="Convert a Pascal VOC folder (Annotations/, JPEGImages/, ImageSets/Main/) "
        "or a flat LabelImg folder into a pickled prodet dataset.",
    )
    p.add_argument("voc_root", metavar="VOC_ROOT", help="the VOC folder")
    p.add_argument("-o", "--output", required=True, type=Path, help="dataset file to write (.pkl)")
    p.add_argument(
        "--classes",
        type=Path,
        help="text file with one class name per line, in label order; objects of other "
        "classes are errors (fail) or skipped. Default: every name found, sorted.",
    )
    p.add_argument(
        "--on-error",
        choices=ON_ERROR_MODES,
        default="repair",
        help="fail: exit non-zero and write nothing on any error; skip: drop bad objects and "
        "files; repair: also swap inverted box coordinates (default: repair)",
    )
    p.add_argument("--report", type=Path, help="write the summary and every problem as JSON")
    p.add_argument("--coco", type=Path, help="also write the dataset as COCO JSON")
    p.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)"
    )
    p.add_argument("--force", action="store_true", help="re-parse even if the folder is unchanged")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def read_class_file(path: Path) -> tuple[str, ...]:
    """One class name per line; blank lines and ``#`` comments ignored."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except OSError as exc:
        raise ValueError(f"--classes {path}: cannot read ({exc.strerror})") from None
    names = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    if not names:
        raise ValueError(f"--classes {path}: no class names (expected one per line)")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"--classes {path}: duplicate class names {duplicates}")
    return tuple(names)


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.workers < 1:
        print("prodet convert: --workers must be at least 1", file=sys.stderr)
        return 2
    try:
        classes = read_class_file(args.classes) if args.classes else None
        started = time.perf_counter()
        result = convert_folder(
            args.voc_root,
            options=ConvertOptions(on_error=args.on_error, classes=classes),
            workers=args.workers,
            previous_output=None if args.force else args.output,
            progress=not args.quiet and sys.stderr.isatty(),
        )
    except (VocFolderError, ValueError) as exc:
        print(f"prodet convert: {exc}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - started
    for problem in result.problems[:MAX_PROBLEM_LINES]:
        print(("error: " if problem.is_error else "warning: ") + problem.line(), file=sys.stderr)
    if len(result.problems) > MAX_PROBLEM_LINES:
        more = len(result.problems) - MAX_PROBLEM_LINES
        hint = f" (all in {args.report})" if args.report else " (use --report FILE to see all)"
        print(f"... and {more} more problems{hint}", file=sys.stderr)
    if args.report:
        write_report(args.report, result.summary, result.problems)
    print(result.summary.format())
    if result.dataset is None:
        reason = (
            "errors found with --on-error fail"
            if result.summary.images
            else "no annotation could be read"
        )
        print(f"prodet convert: nothing written: {reason}", file=sys.stderr)
        return 1
    if result.summary.reused:
        print(f"unchanged since the last run: reused {args.output} (use --force to re-parse)")
    else:
        dump_dataset(result.dataset, args.output)
        rate = result.summary.annotation_files / max(elapsed, 1e-9)
        print(f"wrote {args.output} in {elapsed:.2f} s ({rate:,.0f} files/s)")
    if args.coco:
        write_coco(result.dataset, args.coco)
        print(f"wrote {args.coco} (COCO)")
    print(f"content hash: {result.dataset.content_hash}")
    return 0
