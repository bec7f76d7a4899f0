"""What every benchmark script shares: the machine line and the BENCHMARKS.md section writer."""

from __future__ import annotations

import os
import platform
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path


def machine_description() -> str:
    """nproc, CPU model and Python version of this machine."""
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (
        f"nproc {len(os.sched_getaffinity(0))}, {model}, "
        f"Python {platform.python_version()} ({platform.system()} {platform.machine()})"
    )


def load_note() -> str:
    """The 1-minute load average now, for a section's Load line (taken before the run)."""
    return f"1-minute load average {os.getloadavg()[0]:.2f} before the run"


def run_lines(load: str, machine: str | None = None) -> str:
    """The Machine, Load, Command and Date lines that end a section (date as ``date -u``).

    ``machine`` defaults to ``machine_description()``; the command is this process's.
    """
    date = datetime.now(timezone.utc).strftime("%a %b %d %H:%M:%S UTC %Y")
    command = shlex.join(["python", *sys.argv])
    return (
        f"- Machine: {machine or machine_description()}\n"
        f"- Load: {load}\n"
        f"- Command: `{command}`\n"
        f"- Date: {date}\n"
    )


def write_section(path: Path, heading: str, section: str) -> None:
    """Replace the ``heading`` section of ``path`` (up to the next ``## ``), or append it."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == heading), None)
    if start is None:
        before, after = text.rstrip("\n") + "\n\n", ""
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), None)
        before = "".join(lines[:start])
        after = "" if end is None else "".join(lines[end:])
    path.write_text(
        before + section.rstrip("\n") + "\n" + ("\n" + after if after else ""), encoding="utf-8"
    )
