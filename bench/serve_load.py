"""Load test of ``prodet serve``: latency and throughput at rising client concurrency.

Starts ``prodet serve`` on 127.0.0.1 (a free port) for each ``--max-batch`` value given
(or uses a running server with ``--url``), then for each concurrency level runs that many
clients in a loop, each posting the image to ``/v1/detect`` and waiting for the answer,
until ``--requests`` answers have come back. One unmeasured warm-up level runs first.
Batch sizes come from the server's ``/metrics`` (difference before and after a level).

Run from the repository root::

    python bench/serve_load.py --model model.onnx --image photo.jpg
    python bench/serve_load.py --model model.onnx --image photo.jpg --max-batch 1,8 \\
        --concurrency 1,8,32 --write BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import shlex
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench_report import write_section  # noqa: E402

from tests.serve.live_server import live_server  # noqa: E402

SECTION_HEADING = "## Serving latency"


@dataclass(frozen=True)
class LevelResult:
    """One concurrency level: latencies (s), wall time (s), refusals, mean batch size."""

    max_batch: str
    concurrency: int
    latencies: list[float]
    wall_s: float
    errors: int
    mean_batch: float

    def row(self) -> str:
        """A Markdown table row."""
        ms = sorted(v * 1000 for v in self.latencies)
        if not ms:
            return (
                f"| {self.max_batch} | {self.concurrency} | 0 | - | - | - | - | - | {self.errors} |"
            )
        return (
            f"| {self.max_batch} | {self.concurrency} | {len(ms)} | "
            f"{len(ms) / self.wall_s:,.1f} | {statistics.median(ms):.1f} | "
            f"{_percentile(ms, 0.95):.1f} | {_percentile(ms, 0.99):.1f} | "
            f"{self.mean_batch:.2f} | {self.errors} |"
        )


def _percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def _batch_totals(client: httpx.Client) -> tuple[float, float]:
    text = client.get("/metrics").text
    values = []
    for name in ("prodet_batch_size_sum", "prodet_batch_size_count"):
        match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
        values.append(float(match.group(1)) if match else 0.0)
    return values[0], values[1]


async def _level(
    url: str, image: bytes, concurrency: int, requests: int
) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    errors = 0
    remaining = requests
    limits = httpx.Limits(max_connections=concurrency)

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal remaining, errors
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            response = await client.post(
                "/v1/detect", content=image, headers={"Content-Type": "image/jpeg"}
            )
            if response.status_code == 200:
                latencies.append(time.perf_counter() - started)
            else:
                errors += 1

    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        return latencies, errors, time.perf_counter() - started


def run_levels(
    url: str, image: bytes, levels: list[int], requests: int, label: str
) -> list[LevelResult]:
    """Warm up, then measure each concurrency level against the server at ``url``."""
    asyncio.run(_level(url, image, max(levels), min(requests, 4 * max(levels))))
    results = []
    with httpx.Client(base_url=url, timeout=30) as probe:
        for concurrency in levels:
            sum_before, count_before = _batch_totals(probe)
            latencies, errors, wall = asyncio.run(_level(url, image, concurrency, requests))
            sum_after, count_after = _batch_totals(probe)
            batches = count_after - count_before
            mean = (sum_after - sum_before) / batches if batches else float("nan")
            results.append(LevelResult(label, concurrency, latencies, wall, errors, mean))
            print(results[-1].row(), flush=True)
    return results


@contextmanager
def _server(args: argparse.Namespace, max_batch: str, log: Path) -> Iterator[str]:
    extra = ["--max-batch", max_batch, "--max-wait-ms", str(args.max_wait_ms)]
    extra += ["--provider", args.provider, "--max-queue", str(max(1024, 4 * max(args.levels)))]
    with live_server(
        log, "--model", str(args.model), *extra, env={"PRODET_LOG_LEVEL": "warning"}
    ) as server:
        yield server.url


def section_text(results: list[LevelResult], args: argparse.Namespace, model: str) -> str:
    """The BENCHMARKS.md section."""
    header = (
        "| max batch | clients | answers | req/s | p50 ms | p95 ms | p99 ms | mean batch | errors |\n"
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    rows = "\n".join(r.row() for r in results)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{SECTION_HEADING}\n\n"
        f"`prodet serve` with {model}, `POST /v1/detect` of {args.image.name} "
        f"({args.image.stat().st_size:,} bytes) as a raw body; each client waits for its answer "
        f"before the next request; {args.requests} answers per level after a warm-up; "
        f"max wait {args.max_wait_ms} ms; provider {args.provider}.\n\n{header}\n{rows}\n\n"
        f"- Machine: nproc {os.cpu_count()}, {platform.processor() or platform.machine_description()}, "
        f"Python {platform.python_version()}\n"
        f"- Load: 1-minute load average {load:.2f} before the run\n"
        f"- Command: `python bench/serve_load.py {shlex.join(sys.argv[1:])}`\n"
        f"- Date: {datetime.now(timezone.utc):%a %b %d %H:%M:%S UTC %Y}\n"
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Latency and throughput of prodet serve.")
    p.add_argument("--model", type=Path, help="ONNX model to serve (starts a server)")
    p.add_argument("--url", help="use a running server instead of starting one")
    p.add_argument("--image", type=Path, required=True, help="image to send")
    p.add_argument("--concurrency", default="1,8,32", help="client counts (default 1,8,32)")
    p.add_argument("--requests", type=int, default=200, help="answers per level (default 200)")
    p.add_argument("--max-batch", default="8", help="server max batch values (default 8)")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="server max wait (default 5)")
    p.add_argument("--provider", default="auto", help="execution provider (default auto)")
    p.add_argument("--write", type=Path, help="record the table in this Markdown file")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if (args.model is None) == (args.url is None):
        print("serve_load: give exactly one of --model and --url", file=sys.stderr)
        return 2
    args.levels = [int(v) for v in args.concurrency.split(",")]
    image = args.image.read_bytes()
    print(
        "| max batch | clients | answers | req/s | p50 ms | p95 ms | p99 ms | mean batch | errors |"
    )
    results: list[LevelResult] = []
    for max_batch in args.max_batch.split(",") if args.model else ["server's"]:
        log = Path(os.environ.get("TMPDIR", "/tmp")) / f"serve_load_{os.getpid()}.log"
        context = _server(args, max_batch, log) if args.model else nullcontext(args.url)
        with context as url:
            results += run_levels(url, image, args.levels, args.requests, max_batch)
    if args.write:
        write_section(
            args.write, SECTION_HEADING, section_text(results, args, str(args.model or args.url))
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
