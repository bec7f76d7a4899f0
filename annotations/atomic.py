"""Atomic file writes: a run killed mid-write leaves the previous file intact."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


def _umask() -> int:
    """The process's umask, read without changing it where the system allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: the only portable way is to set it and put it back
    os.umask(mask)
    return mask


def _mode_for(target: Path) -> int:
    """The permissions ``open(target, "wb")`` would leave: an existing file keeps its own."""
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def atomic_write_bytes(
    path: str | os.PathLike[str], data: bytes, *, temp_dir: str | os.PathLike[str] | None = None
) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename.

    The temporary file is fsynced before ``os.replace``, so readers see either the old
    file or the complete new one, never a partial write. It gets the permissions a plain
    write would give (the temporary file alone would leave the result readable by its
    owner only): those of the file it replaces, else the default ones under the umask.
    On any error the temporary file is removed before the error goes on.

    Args:
        temp_dir: where the temporary file is made (default: ``path``'s folder); it must
            be on the same file system. One folder for all of a run's temporary files lets
            the next run remove those a killed process left.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    mode = _mode_for(target)
    where = target.parent if temp_dir is None else Path(temp_dir)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=where)
    try:
        os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
