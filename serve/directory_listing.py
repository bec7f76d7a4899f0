"""A folder's entries in a reproducible order, with bounded memory however many it holds.

``sorted_entries`` lists one folder with ``os.scandir`` (whose order is the file system's,
which changes when files are added) and returns its files and sub-folders sorted by
``(stem, name)``, so that images sharing a stem (``a.jpg``, ``a.png``) come one after the
other. At most ``run_size`` entries are held at once: a bigger folder is sorted in runs,
each spilled to an anonymous temporary file, and the runs are merged (an external merge
sort), so a folder of millions of files costs a few megabytes.

Hidden entries (names starting with ``.``) are left out, as a shell glob leaves them. A
symbolic link to a folder is not a folder here (walks do not follow them, so they cannot
loop); a link to a file is a file; anything else (a dangling link, a FIFO, a socket) is
left out.
"""

from __future__ import annotations

import heapq
import os
import tempfile
from collections.abc import Iterator
from typing import IO, NamedTuple

DEFAULT_RUN_SIZE = 100_000
_READ_SIZE = 1 << 16


class Entry(NamedTuple):
    """A folder entry; tuples compare by ``stem``, then ``name``.

    Attributes:
        stem: the name up to its last dot (the whole name of a folder or of a name
            without a dot).
        name: the entry's name.
        is_dir: a folder (not a link to one).
    """

    stem: str
    name: str
    is_dir: bool


def _entry(entry: os.DirEntry[str]) -> Entry | None:
    name = entry.name
    if name.startswith("."):
        return None
    if entry.is_dir(follow_symlinks=False):
        return Entry(name, name, True)
    if not entry.is_file():
        return None
    dot = name.rfind(".")
    return Entry(name[:dot] if dot > 0 else name, name, False)


def _spill(run: list[Entry]) -> IO[bytes]:
    """Write a sorted run to an anonymous file: per entry a type byte and the name,
    NUL-terminated (no file name holds a NUL)."""
    spill = tempfile.TemporaryFile()  # noqa: SIM115 (closed by _read_spill or on error)
    spill.write(b"".join((b"d" if e.is_dir else b"f") + os.fsencode(e.name) + b"\0" for e in run))
    spill.seek(0)
    return spill


def _read_spill(spill: IO[bytes]) -> Iterator[Entry]:
    try:
        rest = b""
        while chunk := spill.read(_READ_SIZE):
            records = (rest + chunk).split(b"\0")
            rest = records.pop()
            for record in records:
                name = os.fsdecode(record[1:])
                if record[:1] == b"d":
                    yield Entry(name, name, True)
                else:
                    dot = name.rfind(".")
                    yield Entry(name[:dot] if dot > 0 else name, name, False)
    finally:
        spill.close()


def sorted_entries(directory: str, *, run_size: int = DEFAULT_RUN_SIZE) -> Iterator[Entry]:
    """The entries of ``directory`` sorted by ``(stem, name)``, lazily.

    Args:
        directory: the folder to list.
        run_size: the most entries held in memory; more are sorted in spilled runs.

    Raises:
        OSError: the folder cannot be listed (raised when iteration starts).
    """
    if run_size < 1:
        raise ValueError(f"run_size must be at least 1, got {run_size}")
    run: list[Entry] = []
    spills: list[IO[bytes]] = []
    try:
        with os.scandir(directory) as it:
            for dir_entry in it:
                entry = _entry(dir_entry)
                if entry is None:
                    continue
                run.append(entry)
                if len(run) >= run_size:
                    run.sort()
                    spills.append(_spill(run))
                    run = []
        run.sort()
        if not spills:
            yield from run
            return
        spills.append(_spill(run))
        run = []
    except BaseException:
        for spill in spills:
            spill.close()
        raise
    yield from heapq.merge(*(_read_spill(s) for s in spills))
