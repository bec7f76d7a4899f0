"""``prodet serve`` (the HTTP service) and ``prodet predict`` (the same pipeline on files)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import ValidationError

from prodet.serve.model_runner import ModelLoadError, ModelRunner
from prodet.serve.settings import PROVIDERS, Settings

_SERVE_DESCRIPTION = (
    "Serve an ONNX detector over HTTP (API docs at /docs, upload page at /). Every option can "
    "also be set by the environment variable shown; options override the environment."
)


def _serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prodet serve", description=_SERVE_DESCRIPTION)
    for name, field in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        env = f"PRODET_{name.upper()}"
        if field.is_required():
            default = "required"
        elif name == "api_key":
            default = "default: none"
        else:
            default = f"default {field.get_default(call_default_factory=True)!r}"
        help_text = f"{field.description or name} (env {env}; {default})"
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "help": help_text}
        if field.annotation is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif get_origin(field.annotation) is Literal:
            kwargs["choices"] = get_args(field.annotation)
        else:
            kwargs["metavar"] = name.upper()
        parser.add_argument(flag, **kwargs)
    return parser


def _settings_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        name = ".".join(str(p) for p in err["loc"]) or "settings"
        hint = " (use --model or PRODET_MODEL)" if name == "model" else ""
        lines.append(f"  {name}: {err['msg']}{hint}")
    return "invalid settings:\n" + "\n".join(lines)


def serve_main(argv: list[str]) -> int:
    """``prodet serve``: load, check and warm up the model, then serve until interrupted."""
    args = _serve_parser().parse_args(argv)
    try:
        settings = Settings(**vars(args))
    except ValidationError as exc:
        print(f"prodet serve: {_settings_error(exc)}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings.warn_if_exposed()
    import uvicorn

    from prodet.serve.app import create_app
    from prodet.serve.service import load_runner

    try:
        runner = load_runner(settings)
    except ModelLoadError as exc:
        print(f"prodet serve: {exc}", file=sys.stderr)
        return 1
    print(
        f"prodet serve: {runner.model_id} version {runner.version} on {runner.provider}, "
        f"warm-up {runner.warmup_ms:.0f} ms",
        file=sys.stderr,
    )
    uvicorn.run(
        create_app(settings, runner),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=int(settings.request_timeout_s) + 1,
    )
    return 0


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
