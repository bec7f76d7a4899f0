"""Load test of ``prodet serve`` against its peers, all in one run.

For each concurrency level (default 1, 8, 32; 30 s each after an unmeasured warm-up),
that many clients post a real product photo to ``/v1/detect`` in a loop, each waiting for
its answer before the next request (``bench/load_client.py``). Measured, in this order:

1. ``prodet serve --model MODEL`` (micro-batching; batch sizes read from ``/metrics``);
2. with ``--naive-checkpoint``, the naive server a user first writes
   (``bench/naive_server.py``: the same model's PyTorch checkpoint run eagerly, one
   request at a time);
3. raw onnxruntime with no HTTP (``bench/serve_peers.py``): the model alone on prepared
   tensors, and the same decode + pre-process + run pipeline in one process, sequential
   and pipelined (decoding threads overlapping the runs).

Peak RSS is each server process's ``VmHWM``. Run from the repository root::

    python bench/serve_load.py --model out/model.onnx --naive-checkpoint runs/x/best.pt \\
        --image ../shared/data/commodity_voc/JPEGImages/000005.jpg --write BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shlex
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
from bench_report import machine_description, write_section
from load_client import LevelStats, build_request, run_level
from serve_peers import naive_server, peak_rss_mib, raw_onnxruntime

from prodet.live_server import live_server

REPO = Path(__file__).resolve().parents[1]


SECTION = "## Serving latency"
RAW_LABELS = (
    "raw onnxruntime, model only",
    "raw onnxruntime, in-process pipeline",
    "raw onnxruntime, in-process pipelined",
)
PLOT = Path("docs/benchmarks/serve-latency.png")


@dataclass(frozen=True)
class Level:
    """One server at one concurrency level."""

    server: str
    clients: int
    stats: LevelStats
    mean_batch: float
    peak_rss_mib: float

    @property
    def images_per_s(self) -> float:
        return len(self.stats.latencies) / self.stats.wall_s

    def percentile(self, q: float) -> float:
        ms = sorted(v * 1000 for v in self.stats.latencies)
        return ms[min(len(ms) - 1, int(q * len(ms)))] if ms else float("nan")

    def row(self) -> str:
        ms = [v * 1000 for v in self.stats.latencies]
        p50 = statistics.median(ms) if ms else float("nan")
        batch = "-" if self.mean_batch != self.mean_batch else f"{self.mean_batch:.2f}"
        return (
            f"| {self.server} | {self.clients} | {self.stats.wall_s:.0f} | {len(ms)} | "
            f"{self.images_per_s:.1f} | {p50:.1f} | {self.percentile(0.95):.1f} | "
            f"{self.percentile(0.99):.1f} | {batch} | {self.stats.refused} | "
            f"{self.stats.errors} | {self.peak_rss_mib:.0f} |"
        )


def _batch_totals(url: str) -> tuple[float, float] | None:
    try:
        text = httpx.get(f"{url}/metrics", timeout=10).text
    except httpx.HTTPError:
        return None
    values = []
    for name in ("prodet_batch_size_sum", "prodet_batch_size_count"):
        match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
        if match is None:
            return None
        values.append(float(match.group(1)))
    return values[0], values[1]


def measure(
    name: str, url: str, pid: int, request: bytes, levels: list[int], seconds: float
) -> list[Level]:
    """Warm up for a few seconds, then run each level against the server at ``url``."""
    run_level(url, request, max(levels), min(5.0, seconds))
    results = []
    for clients in levels:
        before = _batch_totals(url)
        stats = run_level(url, request, clients, seconds)
        after = _batch_totals(url)
        mean = float("nan")
        if before and after and after[1] > before[1]:
            mean = (after[0] - before[0]) / (after[1] - before[1])
        results.append(Level(name, clients, stats, mean, peak_rss_mib(pid)))
        print(results[-1].row(), flush=True)
    return results


def plot(levels: list[Level], path: Path) -> None:
    """Throughput and p95 latency against concurrency, one line per server."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for server in dict.fromkeys(level.server for level in levels):
        mine = [level for level in levels if level.server == server]
        clients = [level.clients for level in mine]
        left.plot(clients, [level.images_per_s for level in mine], marker="o", label=server)
        right.plot(clients, [level.percentile(0.95) for level in mine], marker="o", label=server)
    left.set(xlabel="concurrent clients", ylabel="images/s", title="throughput", xscale="log")
    right.set(xlabel="concurrent clients", ylabel="p95 latency (ms)", title="latency")
    right.set(xscale="log", yscale="log")
    left.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def section(levels: list[Level], raw, args: argparse.Namespace) -> str:
    """The BENCHMARKS.md section: the table and prodet's throughput against each peer's."""
    header = (
        "| server | clients | s | answers | images/s | p50 ms | p95 ms | p99 ms | mean batch "
        "| 503s | errors | peak RSS MiB |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    raw_rows = "\n".join(
        f"| {r.label}, batch {r.batch} | - | {r.wall_s:.0f} | {r.images} | {r.images_per_s:.1f} "
        "| - | - | - | - | - | - | - |"
        for r in raw
    )
    intro = (
        "`prodet serve`, the naive server a user first writes (`bench/naive_server.py`: the "
        "same checkpoint in PyTorch eager inside the async handler, one request at a time) "
        "and raw onnxruntime without HTTP (`model only`: `session.run` on a tensor prepared "
        "once; `in-process pipeline`: decode, resize, run and map boxes back per image, "
        "sequentially; `in-process pipelined`: the same work with the next batch decoded by "
        "one thread per core while the current batch runs), in one run on the same model and the same real photo. Each client "
        "posts the photo, waits for the answer, and posts again."
    )
    lines = [SECTION, "", intro, "", f"{header}\n" + "\n".join(level.row() for level in levels)]
    lines[-1] += "\n" + raw_rows if raw_rows else ""
    ours = {level.clients: level for level in levels if level.server == "prodet serve"}
    naive = {level.clients: level for level in levels if level.server != "prodet serve"}
    comparisons = []
    if 8 in ours and 8 in naive:
        ratio = ours[8].images_per_s / naive[8].images_per_s
        comparisons.append(f"{ratio:.2f}x the naive server's images/s")
    for label in RAW_LABELS:
        best = max((r.images_per_s for r in raw if r.label == label), default=None)
        if 8 in ours and best:
            comparisons.append(f"{ours[8].images_per_s / best:.0%} of {label} at its best batch")
    errors = sum(level.stats.errors for level in levels if level.server == "prodet serve")
    comparisons.append(f"{errors} errors other than deliberate 503s")
    lines += [
        "",
        "At 8 clients prodet serve reaches " + "; ".join(comparisons) + ".",
        "",
        f"- Model: `{args.model}`; naive peer: `{args.naive_checkpoint}`; image: "
        f"`{args.image}` ({args.image.stat().st_size:,} bytes, raw body).",
        f"- Server options: `--max-batch {args.max_batch} --max-wait-ms {args.max_wait_ms} "
        f"--provider {args.provider} {args.serve_args}`; {args.seconds:g} s per level after a "
        "warm-up; the load "
        "generator (bench/load_client.py) runs on the same two cores.",
        f"- Machine: {machine_description()}; 1-minute load average "
        f"{os.getloadavg()[0]:.2f} at the end.",
        f"- Command: `python bench/serve_load.py {shlex.join(sys.argv[1:])}`",
        f"- Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"![throughput and latency against concurrency]({PLOT})",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="prodet serve against the naive server and raw ORT")
    p.add_argument("--model", type=Path, required=True, help="ONNX model to serve")
    p.add_argument("--naive-checkpoint", type=Path, help="its PyTorch checkpoint (naive peer)")
    p.add_argument("--image", type=Path, required=True, help="image to post")
    p.add_argument("--concurrency", default="1,8,32", help="client counts (default 1,8,32)")
    p.add_argument("--seconds", type=float, default=30.0, help="seconds per level (default 30)")
    p.add_argument("--max-batch", type=int, default=8, help="server max batch (default 8)")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="server max wait (default 5)")
    p.add_argument("--provider", default="auto", help="execution provider (default auto)")
    p.add_argument(
        "--serve-args",
        default="",
        help="more `prodet serve` flags, e.g. '--inference-streams 2 --intra-op-threads 1'",
    )
    p.add_argument("--no-raw", action="store_true", help="skip the raw onnxruntime rows")
    p.add_argument("--write", type=Path, help="replace the section of this Markdown file")
    args = p.parse_args(argv)
    levels = [int(v) for v in args.concurrency.split(",")]
    body = args.image.read_bytes()
    request = build_request("http://127.0.0.1", "/v1/detect", body, "image/png")
    log_dir = Path(os.environ.get("TMPDIR", "/tmp"))
    results: list[Level] = []
    serve_args = ["--model", str(args.model), "--max-batch", str(args.max_batch)]
    serve_args += ["--max-wait-ms", str(args.max_wait_ms), "--provider", args.provider]
    serve_args += ["--max-queue", str(max(256, 4 * max(levels))), *args.serve_args.split()]
    quiet = {"PRODET_LOG_LEVEL": "warning"}  # no access log line per request, as the peer
    with live_server(log_dir / "serve_load_prodet.log", *serve_args, env=quiet) as server:
        results += measure(
            "prodet serve", server.url, server.process.pid, request, levels, args.seconds
        )
    if args.naive_checkpoint:
        with naive_server(args.naive_checkpoint, log_dir / "serve_load_naive.log") as peer:
            results += measure("naive PyTorch FastAPI", peer.url, peer.pid, request, levels, args.seconds)  # fmt: skip
    raw = []
    if not args.no_raw:
        raw = raw_onnxruntime(args.model, body, sorted({1, args.max_batch}), args.seconds, provider=args.provider)  # fmt: skip
        for r in raw:
            print(f"{r.label}, batch {r.batch}: {r.images_per_s:.1f} images/s", flush=True)
    plot(results, REPO / PLOT)
    text = section(results, raw, args)
    print(text)
    if args.write:
        write_section(args.write, SECTION, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
