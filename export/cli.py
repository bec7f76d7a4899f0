"""``prodet export``: a checkpoint to a checked, parity-gated ONNX model (Contract 3)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path


def _batch(value: str) -> int | None:
    if value == "dynamic":
        return None
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'dynamic', got {value!r}") from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="prodet export",
        description="Export a checkpoint to ONNX with box decoding and NMS inside the graph, "
        "check it with onnx.checker, and gate it: onnxruntime must match PyTorch on real "
        "validation images (exit 1 naming the image otherwise).",
    )
    p.add_argument("checkpoint", type=Path, help="a checkpoint from `prodet train` (best.pt)")
    p.add_argument("-o", "--out", type=Path, required=True, help="the .onnx file to write")
    p.add_argument(
        "--batch",
        type=_batch,
        default=None,
        metavar="N|dynamic",
        help="batch size (default: dynamic)",
    )
    precision = p.add_mutually_exclusive_group()
    precision.add_argument("--fp16", action="store_true", help="float16 network (for GPUs)")
    precision.add_argument(
        "--int8", action="store_true", help="int8 network for CPUs (needs --calibration)"
    )
    p.add_argument("--calibration", type=Path, help="dataset .pkl of images to calibrate int8 on")
    p.add_argument("--calibration-images", type=int, default=64, help="default: 64")
    p.add_argument(
        "--data", type=Path, help="dataset .pkl of the gate images (default: the checkpoint's)"
    )
    p.add_argument("--parity-images", type=int, default=16, help="gate images (at least 16)")
    p.add_argument("--score-thresh", type=float, help="override the model's score threshold")
    ema = p.add_mutually_exclusive_group()
    ema.add_argument(
        "--ema", action="store_true", default=None, help="the EMA weights (default when kept)"
    )
    ema.add_argument("--no-ema", dest="ema", action="store_false", help="the raw weights")
    p.add_argument(
        "--proposals",
        type=int,
        help="Fast R-CNN: RoIs per image in the graph (default: the run's rpn_post_nms_test)",
    )
    p.add_argument("--threads", type=int, default=0, help="onnxruntime threads for the checks")
    return p


def export_main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    from prodet.export.parity import ParityError
    from prodet.export.pipeline import ExportOptions, export_checkpoint

    options = ExportOptions(
        batch=args.batch,
        precision="fp16" if args.fp16 else "int8" if args.int8 else "fp32",
        data=args.data,
        calibration=args.calibration,
        calibration_images=args.calibration_images,
        parity_images=args.parity_images,
        use_ema=args.ema,
        proposals=args.proposals,
        score_thresh=args.score_thresh,
        threads=args.threads,
    )
    started = time.perf_counter()
    try:
        result = export_checkpoint(args.checkpoint, args.out, options)
    except ParityError as exc:
        print(f"prodet export: {exc}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError) as exc:
        print(f"prodet export: {exc}", file=sys.stderr)
        return 2
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    gated = "" if options.precision == "fp32" else " (the fp32 graph it was made from)"
    print(f"parity gate passed{gated}: {result.parity.summary()}")
    if result.maps:
        fp32, converted = result.maps["fp32"], result.maps[options.precision]
        print(
            f"validation VOC mAP@0.5 in onnxruntime: fp32 {fp32:.4f}, {options.precision} "
            f"{converted:.4f} (change {converted - fp32:+.4f}); not held to the strict gate"
        )
    shown = {k: v for k, v in result.metadata.items() if k != "classes"}
    print(json.dumps(shown, indent=2))
    size_mb = result.path.stat().st_size / 1e6
    print(f"wrote {result.path} ({size_mb:.1f} MB) in {time.perf_counter() - started:.0f} s")
    return 0
