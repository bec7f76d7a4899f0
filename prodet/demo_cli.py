"""``prodet demo``: run the whole pipeline on a synthetic product-shelf set (see demo.py)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from prodet.demo import DemoError, DemoPlan, run_demo


def demo_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="prodet demo",
        description="Synthesise a product-shelf VOC set, convert, train, evaluate, export, "
        "serve, POST held-out images and stop: the whole pipeline on this machine.",
    )
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder")
    p.add_argument("--images", type=int, default=300, help="synthetic images to draw")
    p.add_argument("--minutes", type=float, default=7.0, help="training time budget")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        summary = run_demo(
            DemoPlan(out=args.out, images=args.images, train_minutes=args.minutes, seed=args.seed)
        )
    except DemoError as exc:
        print(f"prodet demo: {exc}", file=sys.stderr)
        return 1
    first = summary.pop("first_answer")
    if first:
        print("POST /v1/detect answered (first held-out image):")
        print(json.dumps(first, indent=2))
    print()
    print(f"test VOC mAP@0.5 (area):    {summary['test_voc_map_area@0.5']:.3f}")
    print(f"test VOC07 mAP@0.5 (11-pt): {summary['test_voc07_map_11point@0.5']:.3f}")
    print(f"test COCO mAP@[.5:.95]:     {summary['test_coco_map']:.3f}")
    print(f"model:            {summary['model']}")
    print(f"training curves:  {summary['plots'][0]}")
    print(f"PR curves:        {summary['plots'][1]}")
    print(f"annotated images: {summary['annotated_images']}/")
    print(f"took {summary['minutes']} min; serve the model again with:")
    print(f"  {summary['serve_again']}")
    return 0
