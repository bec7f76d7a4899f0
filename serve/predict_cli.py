"""``prodet predict``: the service's pre- and post-processing on image files, no HTTP."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from prodet.serve.model_runner import ModelLoadError, ModelRunner
from prodet.serve.settings import PROVIDERS

_PREDICT_DESCRIPTION = (
    "Detect objects in image files with the service's pre- and post-processing; "
    "writes NAME.png (boxes drawn) and NAME.json (detections) per image into --out."
)


def _predict_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prodet predict", description=_PREDICT_DESCRIPTION)
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    parser.add_argument("--model", required=True, type=Path, help="the ONNX model file")
    parser.add_argument("--out", required=True, type=Path, help="output folder (created)")
    parser.add_argument("--provider", default="auto", choices=PROVIDERS)
    parser.add_argument("--score-threshold", type=float, help="default: the model's score_thresh")
    parser.add_argument("--max-detections", type=int, help="keep at most this many per image")
    parser.add_argument("--classes", nargs="+", help="keep only these class names")
    parser.add_argument("--batch-size", type=int, default=8, help="images per inference batch")
    parser.add_argument("--max-pixels", type=int, default=40_000_000, help="largest image (w*h)")
    parser.add_argument(
        "--fast-jpeg",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="decode JPEGs at the smallest DCT scale the model input allows, as `prodet "
        "serve` does (default); annotated PNGs of JPEGs are then drawn at that size",
    )
    return parser


def _output_stem(path: Path, taken: set[str]) -> str:
    stem, n = path.stem or "image", 1
    candidate = stem
    while candidate in taken:
        n += 1
        candidate = f"{stem}-{n}"
    taken.add(candidate)
    return candidate


def predict_main(argv: list[str]) -> int:
    """``prodet predict``: exit 0 when every image was processed, 1 if any failed."""
    from prodet.serve.predict import predict_files

    args = _predict_parser().parse_args(argv)
    if args.batch_size < 1:
        print("prodet predict: --batch-size must be at least 1", file=sys.stderr)
        return 2
    try:
        runner = ModelRunner.load(args.model, provider=args.provider, warmup_batch=1)
    except ModelLoadError as exc:
        print(f"prodet predict: {exc}", file=sys.stderr)
        return 1
    keep: dict[str, Any] = {
        "score_threshold": args.score_threshold,
        "max_detections": args.max_detections,
        "classes": args.classes,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    failures = 0
    try:
        for path, outcome in predict_files(
            runner,
            args.images,
            keep,
            batch_size=args.batch_size,
            max_pixels=args.max_pixels,
            fast_jpeg=args.fast_jpeg,
        ):
            if isinstance(outcome, Exception):
                failures += 1
                print(f"prodet predict: {path}: {outcome}", file=sys.stderr)
                continue
            record, annotated = outcome
            stem = _output_stem(path, taken)
            annotated.save(args.out / f"{stem}.png")
            (args.out / f"{stem}.json").write_text(json.dumps(record, indent=2) + "\n", "utf-8")
            print(f"{path}: {len(record['detections'])} detections -> {args.out / stem}.png")
    except ValueError as exc:
        print(f"prodet predict: {exc}", file=sys.stderr)
        return 2
    return 1 if failures else 0
