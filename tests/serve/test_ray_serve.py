"""``prodet serve --ray`` on a local Ray cluster: two replicas, their answers, a killed one.

One server (2 replicas of the tiny model, 1 CPU each: the whole 2-core machine) serves
the tests of this module, in order; the last one kills a replica. Leaving, the server must
exit 0 with every process of its local cluster gone.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from prodet.live_server import LiveServer, live_server
from prodet.serve.app import create_app
from tests.serve.conftest import API_KEY, encode, make_settings, solid

pytest.importorskip("ray", reason="prodet serve --ray needs the cluster extra")
pytestmark = pytest.mark.ray

REPLICA = "X-Prodet-Replica"
REPLICA_PID = "X-Prodet-Replica-Pid"
KEY = {"X-API-Key": API_KEY}
CLIENTS = 8
LOAD_S = 20.0


def _noise(seed: int, size: tuple[int, int]) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


IMAGES = {
    "white.png": solid(128, 64),
    "black.png": solid(64, 64, 0),
    "gray.jpg": solid(40, 40, 128, "JPEG"),
    "noise.png": encode(_noise(1, (90, 70))),
    "noise.jpg": encode(_noise(2, (200, 120)).convert("L"), "JPEG", quality=80),
}


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


@pytest.fixture(scope="module")
def ray_server(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """``prodet serve --ray --replicas 2`` on a local cluster, stopped (and checked) at the end."""
    log = tmp_path_factory.mktemp("ray") / "serve.log"
    args = ("--model", str(model_path), "--provider", "cpu", "--ray", "--replicas", "2")
    env = {"PRODET_API_KEY": API_KEY, "PRODET_MAX_WAIT_MS": "2"}
    with live_server(log, *args, env=env, ready_timeout_s=120) as server:
        _wait_until_both_replicas_answer(server.url)
        yield server
        cluster = _descendants(server.process.pid)
        assert len(cluster) >= 4, f"no local Ray cluster below the server: {cluster}"
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)  # an impatient second SIGTERM must not cut the cleanup short
        assert server.stop() == 0, log.read_text()[-3000:]
        assert "Traceback" not in log.read_text().split("prodet serve: stopping")[-1]
        deadline = time.monotonic() + 10
        while _alive(cluster) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(cluster), f"Ray processes left running: {_alive(cluster)}"


def _wait_until_both_replicas_answer(url: str, timeout_s: float = 30) -> None:
    """``/readyz`` says every replica runs; Ray's proxy may learn of the last a moment later."""
    deadline = time.monotonic() + timeout_s
    replicas: set[str] = set()
    with httpx.Client(base_url=url, timeout=10) as http:
        while len(replicas) < 2:
            assert time.monotonic() < deadline, f"only {replicas} answered"
            replicas.add(http.get("/healthz").headers[REPLICA])


def _without_timings(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "timings"}


def _post(client: httpx.Client | TestClient, path: str, **kwargs: Any) -> httpx.Response:
    return client.post(path, headers=KEY, **kwargs)


def test_two_replicas_answer_as_the_single_process_service(
    ray_server: LiveServer, model_path: Path
) -> None:
    settings = make_settings(model_path, api_key=API_KEY)
    queries = [{}, {"score_threshold": 0.5, "classes": "bottle"}]
    seen: dict[str, set[str]] = {}  # replica -> images it answered
    with (
        TestClient(create_app(settings)) as local,
        httpx.Client(base_url=ray_server.url, timeout=30) as ray,
    ):
        for name, data in IMAGES.items():
            files = {"image": (name, data, "application/octet-stream")}
            for query in queries:
                expected = _post(local, "/v1/detect", files=files, params=query)
                assert expected.status_code == 200, expected.text
                replicas: set[str] = set()
                for _ in range(100):  # until both replicas answered this image
                    got = _post(ray, "/v1/detect", files=files, params=query)
                    assert got.status_code == 200, got.text
                    assert _without_timings(got.json()) == _without_timings(expected.json())
                    replicas.add(got.headers[REPLICA])
                    if len(replicas) == 2:
                        break
                assert len(replicas) == 2, f"{name} {query}: only {replicas} answered"
                for replica in replicas:
                    seen.setdefault(replica, set()).add(name)
        batch = [("images", (n, d, "application/octet-stream")) for n, d in IMAGES.items()]
        expected_batch = _post(local, "/v1/detect/batch", files=batch).json()["results"]
        got_batch = _post(ray, "/v1/detect/batch", files=batch).json()["results"]
        assert [_without_timings(r) for r in got_batch] == [
            _without_timings(r) for r in expected_batch
        ]
        # The same errors, limits, key check, model description and pages.
        for path, kwargs in [
            ("/v1/detect", {"content": b"not an image", "headers": {"Content-Type": "image/png"}}),
            ("/v1/detect", {"files": {"image": ("x.png", IMAGES["white.png"], "image/png")}}),
        ]:
            assert ray.post(path, **kwargs).json() == local.post(path, **kwargs).json()
        unauthorized = ray.post("/v1/detect", files={"image": ("x.png", IMAGES["white.png"])})
        assert unauthorized.status_code == 401 and REPLICA in unauthorized.headers
        local_model, ray_model = local.get("/v1/model").json(), ray.get("/v1/model").json()
        assert {**ray_model, "warmup_ms": 0} == {**local_model, "warmup_ms": 0}
        assert ray.get("/").text == local.get("/").text
        assert ray.get("/readyz").json() == {
            "status": "ready",
            "model_version": ray_model["model_version"],
        }
        assert "prodet_http_requests_total" in ray.get("/metrics").text
    assert len(seen) == 2 and all(names == set(IMAGES) for names in seen.values())


@dataclass(frozen=True)
class Outcome:
    """One request of the load: when it started and ended, its status, who answered."""

    start: float
    end: float
    status: int  # 0: the connection broke
    pid: int | None  # the answering replica's pid; None when Ray's proxy answered itself


async def _load(url: str, seconds: float, outcomes: list[Outcome]) -> None:
    """``CLIENTS`` clients posting images in a loop, each waiting for its answer."""
    deadline = time.monotonic() + seconds
    images = list(IMAGES.values())

    async def client(index: int) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30, headers=KEY) as http:
            turn = index
            while time.monotonic() < deadline:
                files = {"image": ("x", images[turn % len(images)], "application/octet-stream")}
                turn += 1
                start = time.monotonic()
                try:
                    response = await http.post("/v1/detect", files=files)
                    status, pid = response.status_code, response.headers.get(REPLICA_PID)
                except httpx.TransportError:
                    status, pid = 0, None
                outcomes.append(Outcome(start, time.monotonic(), status, int(pid) if pid else None))

    await asyncio.gather(*(client(i) for i in range(CLIENTS)))


async def _kill_one_replica(
    outcomes: list[Outcome], after_s: float
) -> tuple[int, int, float, float]:
    """Once both replicas answered and ``after_s`` passed, SIGKILL one of them.

    Returns ``(victim pid, survivor pid, time before the kill, time after it)``.
    """
    started = time.monotonic()
    while True:
        pids = sorted({o.pid for o in outcomes if o.pid is not None and o.status == 200})
        if len(pids) == 2 and time.monotonic() - started >= after_s:
            break
        assert time.monotonic() - started < LOAD_S / 2, f"replicas answering: {pids}"
        await asyncio.sleep(0.05)
    victim, survivor = pids
    before = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    return victim, survivor, before, time.monotonic()


async def _probe_readiness(url: str, seconds: float) -> list[tuple[float, int, str]]:
    """``GET /readyz`` every 0.2 s: ``(time, status, detail)``."""
    deadline = time.monotonic() + seconds
    probes = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        while time.monotonic() < deadline:
            response = await http.get("/readyz")
            probes.append((time.monotonic(), response.status_code, response.text))
            await asyncio.sleep(0.2)
    return probes


async def _load_with_kill(
    url: str,
) -> tuple[list[Outcome], tuple[int, int, float, float], list[tuple[float, int, str]]]:
    outcomes: list[Outcome] = []
    kill = asyncio.create_task(_kill_one_replica(outcomes, after_s=4.0))
    probes = asyncio.create_task(_probe_readiness(url, LOAD_S))
    await _load(url, LOAD_S, outcomes)
    return outcomes, await kill, await probes


def test_killed_replica_fails_only_its_requests_in_flight(
    ray_server: LiveServer, record_property: Any
) -> None:
    outcomes, (victim, survivor, killed_at, killed_by), probes = asyncio.run(
        _load_with_kill(ray_server.url)
    )
    end = max(o.end for o in outcomes)
    served = [o for o in outcomes if o.status == 200]
    failed = [o for o in outcomes if o.status != 200]
    record_property("requests", len(outcomes))
    record_property("failed_in_flight", len(failed))
    record_property("failed_statuses", sorted(o.status for o in failed))
    # Not vacuous: the victim was serving when it died, and both replicas had answered.
    assert any(o.pid == victim and o.end <= killed_at for o in served)
    assert any(o.pid == survivor and o.end <= killed_at for o in served)
    # The only failures are requests that were in flight at the kill, at most one per
    # client, and Ray's proxy answered them (no replica named itself).
    assert all(o.start <= killed_by and o.end >= killed_at for o in failed), failed
    assert len(failed) <= CLIENTS and all(o.pid is None for o in failed), failed
    assert not [o for o in served if o.pid == victim and o.start > killed_by]
    # The service answers again within 10 s (the survivor at once), and keeps answering.
    after = sorted(o.end for o in served if o.start > killed_by)
    assert after and after[0] - killed_by < 10, "no answer within 10 s of the kill"
    assert any(o.start > end - 5 for o in served), "no answers in the load's last 5 s"
    # /readyz: ready before the kill, 503 naming the replicas' states while one is replaced.
    assert all(status == 200 for at, status, _ in probes if at < killed_at), probes
    replacing = [text for at, status, text in probes if at > killed_by and status == 503]
    assert replacing and "deployment ProdetReplica is" in replacing[0], probes
    # Ray Serve replaced the victim: a third pid answers, and /readyz is 200 again.
    deadline = time.monotonic() + 30
    replacements = {o.pid for o in served} - {victim, survivor}
    with httpx.Client(base_url=ray_server.url, timeout=10) as http:
        while True:
            ready = http.get("/readyz")
            replacements |= {int(ready.headers[REPLICA_PID])} - {victim, survivor}
            if ready.status_code == 200 and replacements:
                break
            assert time.monotonic() < deadline, f"not ready again: {ready.text}"
            time.sleep(0.2)
    first_new = min((o.end for o in served if o.pid in replacements), default=time.monotonic())
    record_property("replacement_answered_after_s", round(first_new - killed_by, 1))
