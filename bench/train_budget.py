"""Accuracy at a fixed CPU budget: train for N minutes, evaluate on the test split.

For each dataset under ../shared/data and each head: ``prodet convert``, then
``prodet train --max-minutes N`` (the cosine schedule anneals inside the budget), then
``prodet evaluate --split test`` on the best checkpoint. Records VOC area mAP@0.5, VOC07
11-point mAP, COCO mAP@[.5:.95], training images/s and inference ms/image, next to the
torchvision Faster R-CNN FPN reference measured the same way on this machine (from the
issue: 0.167 on groceries25, 0.493 on commodity after 15 minutes).

    python bench/train_budget.py --datasets groceries25_voc commodity_voc --heads ssd \
        --minutes 15 --write BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path

from bench_report import machine_description, write_section

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
SECTION = "## Accuracy at a fixed CPU budget"
REFERENCE = {  # torchvision Faster R-CNN + FPN + RoIAlign, EfficientNet-Lite0, 320 px, 15 min
    "groceries25_voc": (0.167, 72.0),
    "commodity_voc": (0.493, 114.0),
}
# Settings chosen for a 2-core CPU budget (flags of `prodet train`), the same for both sets.
BUDGET_FLAGS = [
    "--size",
    "256",
    "--batch-size",
    "8",
    "--lr",
    "0.01",
    "--freeze",
    "2",
    "--workers",
    "1",
    "--preset",
    "light",
]
HEAD_FLAGS: dict[str, list[str]] = {"ssd": [], "fast_rcnn": []}


def prodet(*args: str) -> str:
    """Run ``prodet`` (this interpreter's) and return its stdout; raise on failure."""
    cmd = [sys.executable, "-m", "prodet", *args]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def run_one(
    dataset: str, head: str, minutes: float, workdir: Path, extra: list[str] | None = None
) -> dict[str, object]:
    """Convert, train within the budget, evaluate; return the table row.

    ``extra`` flags come after the budget flags, so they override them (e.g. ``--preset ssd``).
    """
    data = workdir / f"{dataset}.pkl"
    prodet("convert", str(SHARED / dataset), "-o", str(data), "--quiet")
    run = workdir / f"{dataset}-{head}-{minutes:g}min"
    flags = BUDGET_FLAGS + HEAD_FLAGS[head] + list(extra or [])
    prodet(
        "train", "--data", str(data), "--head", head, "--out", str(run),
        "--max-minutes", str(minutes), "--epochs", "1000", "--quiet", *flags,
    )  # fmt: skip
    printed = prodet(
        "evaluate", "--checkpoint", str(run / "best.pt"), "--data", str(data), "--split", "test"
    )
    # The headline JSON sits between the per-class table and the closing "wrote ..." line.
    headline = json.loads(printed[printed.index("\n{") + 1 : printed.rindex("}") + 1])
    summary = json.loads((run / "eval-test" / "summary.json").read_text())
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    rates = [float(r["images_per_s"]) for r in rows if r.get("images_per_s")]
    # Without validation (--val-split none) best.pt is the last epoch.
    validated = [r for r in rows if r.get("val_map_area")] or rows[-1:]
    best_epoch = max(validated, key=lambda r: float(r.get("val_map_area") or -1))["epoch"]
    return {
        "dataset": dataset,
        "head": head,
        "minutes": minutes,
        "epochs": len(rows),
        "best_epoch": int(best_epoch),
        "voc_map_area": summary["voc"]["map_area"],
        "voc_map_11": summary["voc"]["map_11point"],
        "coco_map": summary["coco"]["AP"],
        "train_img_s": sum(rates) / max(len(rates), 1),
        # validation's timing, or the test evaluation's when the run had no validation
        "infer_ms": float(rows[-1].get("val_ms_per_image") or headline["ms_per_image"]),
        "flags": " ".join(flags),
    }


def table(rows: list[dict[str, object]]) -> str:
    lines = [
        "| dataset | detector | budget | settings beyond the common ones | epochs (best) | VOC area mAP@0.5 | VOC07 11-pt | COCO mAP | train img/s | inference ms/img |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    common = " ".join(BUDGET_FLAGS)
    for r in rows:
        extra = str(r.get("flags", common)).removeprefix(common).strip() or "-"
        lines.append(
            f"| {r['dataset']} | {r['head']} + EfficientNet-Lite0 | {r['minutes']:g} min | "
            f"`{extra}` | {r['epochs']} ({r['best_epoch']}) | {r['voc_map_area']:.3f} | "
            f"{r['voc_map_11']:.3f} | {r['coco_map']:.3f} | {r['train_img_s']:.1f} | "
            f"{r['infer_ms']:.0f} |"
        )
    for dataset in dict.fromkeys(str(r["dataset"]) for r in rows):
        if dataset in REFERENCE:
            ref_map, ref_ms = REFERENCE[dataset]
            lines.append(
                f"| {dataset} | reference: torchvision Faster R-CNN FPN (RoIAlign) | 15 min | "
                f"320 px, batch 4, flip only | - | {ref_map:.3f} | - | - | - | {ref_ms:.0f} |"
            )
    return "\n".join(lines)


def copy_plots(rows: list[dict[str, object]], workdir: Path) -> list[tuple[str, str]]:
    """Copy each run's curves.png and test PR curves into docs/benchmarks/; return links."""
    target = REPO / "docs" / "benchmarks"
    target.mkdir(parents=True, exist_ok=True)
    links = []
    for r in rows:
        run = workdir / f"{r['dataset']}-{r['head']}-{float(r['minutes']):g}min"
        for source, kind in (
            (run / "curves.png", "curves"),
            (run / "eval-test" / "pr_curves.png", "pr"),
        ):
            if source.is_file():
                stem = f"{r['dataset']}-{r['head']}-{float(r['minutes']):g}min"
                name = f"{stem}-{kind}.png"
                shutil.copyfile(source, target / name)
                links.append((f"{stem} {kind}", f"docs/benchmarks/{name}"))
    return links


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=["groceries25_voc", "commodity_voc"])
    p.add_argument("--heads", nargs="+", default=["ssd"], choices=sorted(HEAD_FLAGS))
    p.add_argument("--minutes", type=float, default=15.0)
    p.add_argument("--workdir", type=Path, default=REPO / "out" / "bench-train")
    p.add_argument("--write", type=Path, help="replace this script's section of BENCHMARKS.md")
    p.add_argument("--results", type=Path, help="append rows as JSON lines here")
    p.add_argument(
        "--from-results",
        type=Path,
        help="only build the table from a --results file (runs made in parallel)",
    )
    p.add_argument("--note", default="", help="a sentence on how the runs were made")
    p.add_argument(
        "--extra-run",
        action="append",
        default=[],
        metavar="DATASET:HEAD:MINUTES",
        help="one more run at another budget, e.g. groceries25_voc:ssd:8",
    )
    p.add_argument(
        "--flags",
        action="append",
        default=[],
        metavar="DATASET=FLAGS",
        help="extra `prodet train` flags for one dataset, e.g. 'commodity_voc=--preset ssd'",
    )
    args = p.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    extra = {}
    for item in args.flags:
        name, sep, flags = item.partition("=")
        if not sep:
            p.error(f"--flags {item!r}: expected DATASET=FLAGS")
        extra[name] = flags.split()
    plan = [(d, h, args.minutes) for d in args.datasets for h in args.heads]
    for item in args.extra_run:
        dataset, head, minutes = item.split(":")
        plan.append((dataset, head, float(minutes)))
    rows = []
    if args.from_results:
        rows = [json.loads(line) for line in args.from_results.read_text().splitlines() if line]
        plan = []
    for dataset, head, minutes in plan:
        row = run_one(dataset, head, minutes, args.workdir, extra.get(dataset))
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.results:
            with args.results.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
    plots = copy_plots(rows, args.workdir)
    body = "\n".join(
        [
            SECTION,
            "",
            table(rows),
            "",
            f"Machine: {machine_description()}. Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC.",
            f"Command: `python bench/{Path(sys.argv[0]).name} {' '.join(sys.argv[1:])}`.",
            "Train img/s is the mean over epochs of the training loop's rate (augmentation in "
            "one loader worker); inference ms/img is the model alone on the "
            "validation split in PyTorch eager at batch 8. The reference row is the figure "
            "measured on this machine kind by the issue's author.",
            args.note,
            "",
            "Plots from these runs (training loss and validation mAP per epoch; test PR curves): "
            + " ".join(f"![{name}]({path})" for name, path in plots),
        ]
    )
    print(body)
    if args.write:
        write_section(args.write, SECTION, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
