"""Load test of ``prodet serve --ray --replicas N`` against plain ``prodet serve``.

Servers, one after another on the same model and image: plain ``prodet serve`` (one
process, onnxruntime on every core), then ``prodet serve --ray --replicas N`` for each N
of ``--replicas`` (default 1, 2) on a local Ray cluster, each replica reserving
``cores / N`` CPUs (so onnxruntime gets as many intra-op threads). For each server and
concurrency level (default 8, 32; ``--seconds`` each after an unmeasured warm-up), that
many clients post the image to ``/v1/detect`` in a loop, each waiting for its answer
(``bench/load_client.py``, on the same cores as the servers). Replicas answer through Ray
Serve's HTTP proxy, a further hop and process per request; on a 2-core machine two
replicas share the cores one process already used, so no gain is expected there: the
run measures what the hop costs. Run from the repository root::

    python bench/ray_serve_load.py --model out/commodity-ssd.onnx \\
        --image ../shared/data/commodity_voc/JPEGImages/000005.jpg --write BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench_report import load_note, run_lines, write_section
from load_client import LevelStats, build_request, run_level

from prodet.live_server import live_server

SECTION = "## Ray Serve replicas"
PLAIN = "prodet serve"


@dataclass(frozen=True)
class Row:
    """One server at one concurrency level."""

    server: str
    clients: int
    stats: LevelStats

    @property
    def images_per_s(self) -> float:
        return self.stats.images_per_s

    def markdown(self) -> str:
        st = self.stats
        return (
            f"| {self.server} | {self.clients} | {st.wall_s:.0f} | {len(st.latencies)} | "
            f"{st.images_per_s:.1f} | {st.latency_ms(0.5):.1f} | {st.latency_ms(0.95):.1f} | "
            f"{st.latency_ms(0.99):.1f} | {st.refused} | {st.errors} |"
        )


def servers(args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    """``(name, prodet serve flags)`` of every server to measure, in order."""
    common = ["--model", str(args.model), "--provider", args.provider]
    common += ["--max-batch", str(args.max_batch), "--max-queue", "256", *args.serve_args.split()]
    cores = len(os.sched_getaffinity(0))
    out = [(PLAIN, common)]
    for n in args.replicas:
        cpus = f"{cores / n:g}"
        name = f"prodet serve --ray --replicas {n} --replica-cpus {cpus}"
        out.append((name, [*common, "--ray", "--replicas", str(n), "--replica-cpus", cpus]))
    return out


def measure(args: argparse.Namespace, levels: list[int]) -> list[Row]:
    """Every server at every level."""
    body = args.image.read_bytes()
    content_type = "image/png" if body.startswith(b"\x89PNG") else "image/jpeg"
    request = build_request("http://127.0.0.1", "/v1/detect", body, content_type)
    rows = []
    log_dir = Path(tempfile.gettempdir())
    quiet = {"PRODET_LOG_LEVEL": "warning"}
    for index, (name, flags) in enumerate(servers(args)):
        log = log_dir / f"ray_serve_load_{index}.log"
        with live_server(log, *flags, env=quiet, ready_timeout_s=300) as server:
            run_level(server.url, request, max(levels), min(5.0, args.seconds))
            for clients in levels:
                rows.append(
                    Row(name, clients, run_level(server.url, request, clients, args.seconds))
                )
                print(rows[-1].markdown(), flush=True)
    return rows


def section(rows: list[Row], args: argparse.Namespace, load: str) -> str:
    """The BENCHMARKS.md section: the table, the ratios to one process, the run's lines."""
    header = (
        "| server | clients | s | answers | images/s | p50 ms | p95 ms | p99 ms | 503s | errors |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    flags = [
        "--max-batch",
        str(args.max_batch),
        "--provider",
        args.provider,
        *args.serve_args.split(),
    ]
    plain = {row.clients: row for row in rows if row.server == PLAIN}
    ratios = [
        f"{row.server} at {row.clients} clients: {row.images_per_s / plain[row.clients].images_per_s:.2f}x"
        for row in rows
        if row.server != PLAIN and row.clients in plain and plain[row.clients].images_per_s
    ]
    return "\n".join(
        [
            SECTION,
            "",
            f"Each client posts `{args.image}` ({args.image.stat().st_size:,} bytes, raw body), "
            "waits for the answer and posts again; the servers run one after another on "
            f"`{args.model}` (`{' '.join(flags)}`), {args.seconds:g} s per level after a "
            "warm-up. Ray Serve "
            "answers through its HTTP proxy; each replica has its own onnxruntime session and "
            "micro-batcher.",
            "",
            header,
            *(row.markdown() for row in rows),
            "",
            "Images/s against one process: " + "; ".join(ratios) + ".",
            "",
            run_lines(load).rstrip("\n"),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True, help="ONNX model to serve")
    p.add_argument("--image", type=Path, required=True, help="the image every client posts")
    p.add_argument(
        "--replicas",
        type=lambda s: [int(v) for v in s.split(",")],
        default=[1, 2],
        help="replica counts to measure (default 1,2)",
    )
    p.add_argument("--concurrency", default="8,32", help="client counts (default 8,32)")
    p.add_argument("--seconds", type=float, default=30.0, help="seconds per level (default 30)")
    p.add_argument("--max-batch", type=int, default=8, help="server max batch (default 8)")
    p.add_argument("--provider", default="cpu", help="execution provider (default cpu)")
    p.add_argument("--serve-args", default="", help="more `prodet serve` flags for every server")
    p.add_argument("--write", type=Path, help="replace the section of this Markdown file")
    args = p.parse_args(argv)
    levels = [int(v) for v in args.concurrency.split(",")]
    load = load_note()
    text = section(measure(args, levels), args, load)
    print(text)
    if args.write:
        write_section(args.write, SECTION, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
