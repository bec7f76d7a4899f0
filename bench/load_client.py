"""A lean HTTP/1.1 load generator for ``bench/serve_load.py``.

The load generator shares the machine's two cores with the server under test, so its own
cost per request must be small: every client keeps one keep-alive connection, writes one
pre-built request (headers and body as a single ``bytes``) and reads the answer by its
``Content-Length``. That costs tens of microseconds per request where a full-featured
client (httpx) costs about a millisecond, time the server would otherwise get.

Each level runs for a fixed wall time: ``concurrency`` clients post in a loop, each
waiting for its answer before the next request; latencies of 200 answers and the count of
every other status are kept. With several pre-built requests (a workload of many photos),
client ``k`` starts at request ``k`` and goes through them in turn.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class LevelStats:
    """What one concurrency level measured.

    Attributes:
        latencies: seconds per answered (200) request, in completion order.
        statuses: count of every non-200 status (``0`` for a broken connection).
        wall_s: the level's wall time.
    """

    latencies: list[float]
    statuses: dict[int, int]
    wall_s: float

    @classmethod
    def combined(cls, parts: Sequence[LevelStats]) -> LevelStats:
        """Several runs of one level as one: latencies and statuses pooled, walls added."""
        statuses: dict[int, int] = {}
        for part in parts:
            for status, n in part.statuses.items():
                statuses[status] = statuses.get(status, 0) + n
        latencies = [v for part in parts for v in part.latencies]
        return cls(latencies, statuses, sum(part.wall_s for part in parts))

    @property
    def images_per_s(self) -> float:
        """Answered requests per second of the level's wall time."""
        return len(self.latencies) / self.wall_s

    def latency_ms(self, q: float) -> float:
        """The ``q`` quantile of the answered requests' latency in ms (0.5: the median);
        NaN when none was answered."""
        ms = sorted(v * 1000 for v in self.latencies)
        if not ms:
            return float("nan")
        if q == 0.5:
            return statistics.median(ms)
        return ms[min(len(ms) - 1, int(q * len(ms)))]

    @property
    def errors(self) -> int:
        """Answers other than 200 or 503 (503 is the service's deliberate backpressure)."""
        return sum(n for status, n in self.statuses.items() if status != 503)

    @property
    def refused(self) -> int:
        """Deliberate 503 answers."""
        return self.statuses.get(503, 0)


def build_request(url: str, path: str, body: bytes, content_type: str) -> bytes:
    """The raw bytes of one ``POST path`` with ``body`` (keep-alive)."""
    host = urlsplit(url).netloc
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    )
    return head.encode("ascii") + body


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one response; returns ``(status, keep_alive)``."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    keep_alive = True
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection" and value.strip().lower() == "close":
            keep_alive = False
        elif name == "transfer-encoding" and "chunked" in value.lower():
            raise ValueError("chunked answers are not supported by the bench client")
    await reader.readexactly(length)
    return status, keep_alive


async def _client(
    url: str,
    requests: Sequence[bytes],
    first: int,
    deadline: float,
    stats: LevelStats,
    timeout: float,
) -> None:
    parts = urlsplit(url)
    reader = writer = None
    turn = first
    try:
        while time.perf_counter() < deadline:
            if writer is None:
                reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
            started = time.perf_counter()
            writer.write(requests[turn % len(requests)])
            turn += 1
            try:
                status, keep_alive = await asyncio.wait_for(_read_answer(reader), timeout)
            except (OSError, asyncio.IncompleteReadError, TimeoutError):
                status, keep_alive = 0, False
            if status == 200:
                stats.latencies.append(time.perf_counter() - started)
            else:
                stats.statuses[status] = stats.statuses.get(status, 0) + 1
            if not keep_alive:
                writer.close()
                reader = writer = None
    finally:
        if writer is not None:
            writer.close()


async def _level(
    url: str, requests: Sequence[bytes], concurrency: int, seconds: float
) -> LevelStats:
    stats = LevelStats([], {}, 0.0)
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(
        *(_client(url, requests, k, deadline, stats, timeout=120) for k in range(concurrency))
    )
    return LevelStats(stats.latencies, stats.statuses, time.perf_counter() - started)


def run_level(
    url: str, request: bytes | Sequence[bytes], concurrency: int, seconds: float
) -> LevelStats:
    """``concurrency`` clients posting ``request`` (or each of several in turn) to ``url``
    for ``seconds`` of wall time."""
    if concurrency < 1 or seconds <= 0:
        raise ValueError(f"need concurrency >= 1 and seconds > 0, got {concurrency}, {seconds}")
    requests = [request] if isinstance(request, bytes) else list(request)
    if not requests:
        raise ValueError("need at least one request to post")
    return asyncio.run(_level(url, requests, concurrency, seconds))
