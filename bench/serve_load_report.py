"""What ``bench/serve_load.py`` measured, as BENCHMARKS.md text and plots.

One ``Level`` per server and concurrency level of a workload; ``workload_text`` turns a
workload's levels, raw onnxruntime rows and box agreement into its part of the
``## Serving latency`` section, ``section`` joins the parts with the run's settings.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from bench_report import machine_description
from load_client import LevelStats
from serve_peers import RawResult

SECTION = "## Serving latency"
RAW_LABELS = (
    "raw onnxruntime, model only",
    "raw onnxruntime, in-process pipeline",
    "raw onnxruntime, in-process pipelined",
)
PLOTS = {
    "png": Path("docs/benchmarks/serve-latency.png"),
    "camera": Path("docs/benchmarks/serve-latency-camera.png"),
}
PRODET = "prodet serve"
FULL_DECODE = "prodet serve --no-fast-jpeg"
NAIVE = "naive PyTorch FastAPI"


@dataclass(frozen=True)
class Workload:
    """What the clients post: ``key`` names it (``png``, ``camera``), ``bodies`` in turn."""

    key: str
    title: str
    bodies: list[bytes]
    content_type: str
    source: str


@dataclass(frozen=True)
class Level:
    """One server at one concurrency level."""

    server: str
    clients: int
    stats: LevelStats
    mean_batch: float
    peak_rss_mib: float
    server_cpu_s: float = float("nan")
    client_cpu_s: float = float("nan")

    @property
    def images_per_s(self) -> float:
        return self.stats.images_per_s

    def percentile(self, q: float) -> float:
        return self.stats.latency_ms(q)

    def cpu_ms_per_image(self, seconds: float) -> float:
        """``seconds`` of CPU per answered request, in ms (NaN when none was answered)."""
        answers = len(self.stats.latencies)
        return seconds * 1000 / answers if answers else float("nan")

    def row(self) -> str:
        st = self.stats
        batch = "-" if self.mean_batch != self.mean_batch else f"{self.mean_batch:.2f}"
        return (
            f"| {self.server} | {self.clients} | {st.wall_s:.0f} | {len(st.latencies)} | "
            f"{st.images_per_s:.1f} | {st.latency_ms(0.5):.1f} | {st.latency_ms(0.95):.1f} | "
            f"{st.latency_ms(0.99):.1f} | {batch} | {st.refused} | {st.errors} | "
            f"{self.peak_rss_mib:.0f} | {_ms(self.cpu_ms_per_image(self.server_cpu_s))} | "
            f"{_ms(self.cpu_ms_per_image(self.client_cpu_s))} |"
        )


def _ms(value: float) -> str:
    return "-" if value != value else f"{value:.1f}"


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


def _comparisons(levels: list[Level], raw: list[RawResult]) -> list[str]:
    at8 = {level.server: level for level in levels if level.clients == 8}
    ours = at8.get(PRODET)
    if ours is None:
        return []
    out = []
    for peer in (FULL_DECODE, NAIVE):
        if peer in at8:
            out.append(f"{ours.images_per_s / at8[peer].images_per_s:.2f}x {peer}'s images/s")
    for label in RAW_LABELS:
        best = max((r.images_per_s for r in raw if r.label == label), default=None)
        if best:
            out.append(f"{ours.images_per_s / best:.0%} of {label} at its best batch")
    errors = sum(level.stats.errors for level in levels if level.server == PRODET)
    out.append(f"{errors} errors other than deliberate 503s")
    return out


def _cpu_line(levels: list[Level]) -> str | None:
    """What each server spent in CPU per answer at 8 clients, and the load generator."""
    at8 = [level for level in levels if level.clients == 8]
    spent = [(level.server, level.cpu_ms_per_image(level.server_cpu_s)) for level in at8]
    spent = [(server, ms) for server, ms in spent if ms == ms]
    if not spent:
        return None
    client = max(level.cpu_ms_per_image(level.client_cpu_s) for level in at8)
    text = "; ".join(f"{server} {ms:.1f} ms" for server, ms in spent)
    return (
        f"CPU per answered image at 8 clients (the server process, all its threads): {text}; "
        f"the load generator at most {client:.1f} ms."
    )


def workload_text(
    workload: Workload, levels: list[Level], raw: list[RawResult], agreement: str | None
) -> list[str]:
    """One workload's table, its ratios and, for JPEGs, the box agreement."""
    header = (
        "| server | clients | s | answers | images/s | p50 ms | p95 ms | p99 ms | mean batch "
        "| 503s | errors | peak RSS MiB | server CPU ms/image | load generator CPU ms/image |"
        "\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    raw_rows = "".join(
        f"\n| {r.label}, batch {r.batch} | - | {r.wall_s:.0f} | {r.images} | {r.images_per_s:.1f} "
        "| - | - | - | - | - | - | - | - | - |"
        for r in raw
    )
    table = header + "\n" + "\n".join(level.row() for level in levels) + raw_rows
    lines = [f"### {workload.title}", "", f"Posted: {workload.source}.", "", table, ""]
    comparisons = _comparisons(levels, raw)
    if comparisons:
        lines += ["At 8 clients prodet serve reaches " + "; ".join(comparisons) + ".", ""]
    cpu = _cpu_line(levels)
    if cpu:
        lines += [cpu, ""]
    if agreement:
        lines += [agreement, ""]
    lines.append(
        f"![{workload.title}: throughput and latency against concurrency]({PLOTS[workload.key]})"
    )
    return lines


def section(parts: list[list[str]], args: argparse.Namespace) -> str:
    """The BENCHMARKS.md section: each workload's part and the run's settings."""
    intro = (
        "`prodet serve` (fast JPEG decoding, the default; for the camera photos also "
        "`--no-fast-jpeg`), the naive server a user first writes (`bench/naive_server.py`: the "
        "same checkpoint in PyTorch eager inside the async handler, one request at a time) "
        "and raw onnxruntime without HTTP (`model only`: `session.run` on a tensor prepared "
        "once; `in-process pipeline`: decode, resize, run and map boxes back per image, "
        "sequentially; `in-process pipelined`: the same work with the next batch decoded by "
        "one thread per core while the current batch runs), in one run on the same model. "
        "The servers run side by side and take turns in interleaved rounds, so the shared "
        "machine's drift during the run reaches every row alike. Each client posts a photo, "
        "waits for the answer, and posts the next."
    )
    options = f"--max-batch {args.max_batch} --max-wait-ms {args.max_wait_ms} "
    options += f"--provider {args.provider} {args.serve_args}".rstrip()
    lines = [SECTION, "", intro, ""]
    for part in parts:
        lines += [*part, ""]
    lines += [
        f"- Model: `{args.model}`; naive peer: `{args.naive_checkpoint}`.",
        f"- Server options: `{options}`; {args.seconds:g} s per server and level after a "
        f"warm-up, in {args.rounds} interleaved rounds of {args.seconds / args.rounds:g} s; "
        "the load generator (bench/load_client.py) runs on the same two cores.",
        f"- Machine: {machine_description()}; 1-minute load average "
        f"{os.getloadavg()[0]:.2f} at the end.",
        f"- Command: `python bench/serve_load.py {shlex.join(sys.argv[1:])}`",
        f"- Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
    ]
    return "\n".join(lines)
