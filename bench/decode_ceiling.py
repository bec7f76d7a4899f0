"""What N cores can reach on camera photos: the CPU cost of each serving stage.

``bench/serve_load.py`` measures whole servers under load; this script explains their
ratios. One stage at a time, in one worker thread as the service runs them (on the main
thread glibc's allocator makes a full decode half again as slow), for each image of a
camera workload it times:

- the service's pre-processing with a full decode (``prepare_image(fast_jpeg=False)``,
  what ``--no-fast-jpeg`` does) and with the reduced-size decode (``fast_jpeg=True``);
- the reduced decode alone in Pillow (``Image.draft`` then ``load``), and in simplejpeg
  (libjpeg-turbo's ``min_height``/``min_width`` scaling, the maintained binding issue 18
  names) when it is installed: whether another decoder would lower the floor;
- the model alone in onnxruntime with one intra-op thread, at batch 1 and 8.

Then, for ``--cores`` cores fully used and nothing else (no HTTP, no load generator), the
ceiling of each path is ``cores * 1000 / (pre-processing ms + model ms)`` images/s and
the model alone's is ``cores * 1000 / model ms``; their ratios bound what any server can
reach on this machine: fast against full decoding, and the fast path's share of raw
onnxruntime::

    python bench/decode_ceiling.py --model out/commodity-ssd.onnx --camera out/camera200 \\
        --write BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from bench_report import load_note, run_lines, write_section
from PIL import Image

from prodet.annotations.jpeg_draft import draft_region, reduced_size, reduction_for
from prodet.datasets.geometry import decode_floor
from prodet.serve.model_runner import ModelRunner
from prodet.serve.preprocess import prepare_image
from prodet.serve.settings import DEFAULT_MAX_PIXELS

SECTION = "## Camera photos: the CPU ceiling of fast and full decoding"


def per_image_ms(fn: Callable[[bytes], object], images: Sequence[bytes], repeats: int) -> float:
    """Median over ``repeats`` passes of the mean milliseconds ``fn`` takes per image."""
    passes = []
    for _ in range(repeats):
        start = time.perf_counter()
        for data in images:
            fn(data)
        passes.append((time.perf_counter() - start) * 1000 / len(images))
    return statistics.median(passes)


def pillow_reduced(min_sides: tuple[int, int]) -> Callable[[bytes], object]:
    """The service's reduced decode alone (``annotations.jpeg_draft``), no resize."""

    def decode(data: bytes) -> object:
        image = Image.open(io.BytesIO(data))
        draft_region(image, min_sides)
        image.load()
        return image

    return decode


def simplejpeg_reduced(min_sides: tuple[int, int]) -> Callable[[bytes], object] | None:
    """simplejpeg's decode at the same DCT scale as the service's, or None when not
    installed."""
    try:
        import simplejpeg  # type: ignore[import-not-found]
    except ImportError:
        return None

    def decode(data: bytes) -> object:
        height, width, _, _ = simplejpeg.decode_jpeg_header(data)
        factor = reduction_for(width, height, min_sides)
        w, h = reduced_size(width, height, factor)
        return simplejpeg.decode_jpeg(data, min_height=h, min_width=w)

    return decode


def model_ms(runner: ModelRunner, batch: int, repeats: int) -> float:
    """Milliseconds per image of the model alone at ``batch`` (median of ``repeats`` runs)."""
    size = runner.metadata.input_size
    rng = np.random.default_rng(0)
    tensor = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
    runner.run(tensor)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        runner.run(tensor)
        times.append((time.perf_counter() - start) * 1000 / batch)
    return statistics.median(times)


def stage_rows(
    runner: ModelRunner, images: Sequence[bytes], repeats: int
) -> list[tuple[str, float]]:
    """``(stage, ms per image)``: full and reduced pre-processing first, the model alone
    at batch 1 and 8 last."""
    meta = runner.metadata
    floor = decode_floor(meta.input_size, meta.resize_mode)  # what the service asks for

    def prepare(fast: bool) -> Callable[[bytes], object]:
        return lambda data: prepare_image(data, meta, max_pixels=DEFAULT_MAX_PIXELS, fast_jpeg=fast)

    rows = [
        ("pre-processing, full decode (`--no-fast-jpeg`)", per_image_ms(prepare(False), images, repeats)),
        ("pre-processing, reduced decode (default)", per_image_ms(prepare(True), images, repeats)),
        ("reduced decode alone, Pillow", per_image_ms(pillow_reduced(floor), images, repeats)),
    ]  # fmt: skip
    sj = simplejpeg_reduced(floor)
    if sj is not None:
        rows.append(("reduced decode alone, simplejpeg", per_image_ms(sj, images, repeats)))
    rows.append(("model alone, batch 1", model_ms(runner, 1, 20)))
    rows.append(("model alone, batch 8", model_ms(runner, 8, 5)))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True, help="ONNX model")
    p.add_argument("--camera", type=Path, required=True, help="a `prodet synth` JPEG folder")
    p.add_argument("--images", type=int, default=40, help="photos timed (first N)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--write", type=Path, help="rewrite this section of BENCHMARKS.md")
    args = p.parse_args(argv)
    load = load_note()
    paths = sorted((args.camera / "JPEGImages").glob("*.jpg")) or sorted(args.camera.glob("*.jpg"))
    images = [path.read_bytes() for path in paths[: args.images]]
    if not images:
        p.error(f"--camera {args.camera}: no .jpg files (make them with `prodet synth`)")
    runner = ModelRunner.load(args.model, provider="cpu", intra_op_threads=1)
    meta = runner.metadata
    # The service decodes and runs the model in worker threads; so are the stages timed
    # here. It matters: glibc serves a worker thread's large buffers from that thread's own
    # arena, and on the main thread a full 12-MP decode measured 149 ms against 96 ms.
    with ThreadPoolExecutor(max_workers=1) as worker:
        rows = worker.submit(stage_rows, runner, images, args.repeats).result()
    full, fast = rows[0][1], rows[1][1]
    m1, m8 = rows[-2][1], rows[-1][1]
    model = min(m1, m8)
    ceiling_full = args.cores * 1000 / (full + model)
    ceiling_fast = args.cores * 1000 / (fast + model)
    ceiling_model = args.cores * 1000 / model
    table = "\n".join(
        ["| stage, one worker thread | ms per image |", "|---|---:|"]
        + [f"| {name} | {ms:.1f} |" for name, ms in rows]
    )
    reading = (
        f"Ceilings on {args.cores} cores, every core busy and nothing else running (no HTTP, "
        f"no load generator; model at its better batch, {model:.1f} ms): full decode "
        f"{ceiling_full:.1f} images/s, fast decode {ceiling_fast:.1f} images/s, model alone "
        f"{ceiling_model:.1f} images/s. So no server on this machine can make fast decoding "
        f"more than {ceiling_fast / ceiling_full:.2f}x full decoding, or reach more than "
        f"{ceiling_fast / ceiling_model:.0%} of the model alone's ceiling (one single-thread "
        "session per core), on this model and workload."
    )
    print(table, reading, sep="\n\n", flush=True)
    if args.write:
        text = (
            f"{SECTION}\n\nModel `{args.model}` (input {meta.input_size} px, onnxruntime on the "
            f"CPU, one intra-op thread), the first {len(images)} JPEGs of `{args.camera}`.\n\n"
            f"{table}\n\n{reading}\n\n{run_lines(load)}"
        )
        write_section(args.write, SECTION, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
