"""Run ``prodet serve`` as a real uvicorn process on 127.0.0.1.

One launcher for everything that needs a live service: ``prodet demo``, the serving
benchmarks and the end-to-end tests.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_command(*args: str) -> list[str]:
    """The ``prodet serve ARGS`` command line for this interpreter."""
    return [sys.executable, "-m", "prodet", "serve", *args]


class ServerStartError(RuntimeError):
    """The service exited or did not become ready; the message holds its log."""


def clean_environment(**extra: str) -> dict[str, str]:
    """The environment without PRODET_* variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRODET_")}
    env.update(extra)
    return env


@dataclass
class LiveServer:
    """A running server: its base URL and process."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> int:
        """SIGTERM, then wait; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=20)


@contextmanager
def live_server(
    log: Path, *args: str, env: dict[str, str] | None = None, ready_timeout_s: float = 60.0
) -> Iterator[LiveServer]:
    """Start ``prodet serve ARGS`` on a free port and wait until ``/readyz`` answers 200.

    The port is passed as ``PRODET_PORT`` (so the environment path is exercised too);
    ``PRODET_*`` variables of the caller's environment are not passed on, ``env`` is.
    The server's output goes to ``log``. Raises ``ServerStartError`` if the service exits
    or is not ready within ``ready_timeout_s``; the server is stopped on leaving.
    """
    port = free_port()
    environment = clean_environment(PRODET_PORT=str(port), **(env or {}))
    with log.open("wb") as out:
        process = subprocess.Popen(
            serve_command(*args), env=environment, stdout=out, stderr=subprocess.STDOUT
        )
    server = LiveServer(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + ready_timeout_s
        while True:
            if process.poll() is not None:
                raise ServerStartError(
                    f"server exited with {process.returncode}:\n{log.read_text()}"
                )
            try:
                if httpx.get(f"{server.url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"server not ready after {ready_timeout_s:.0f} s:\n{log.read_text()}"
                )
            time.sleep(0.1)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
