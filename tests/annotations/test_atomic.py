"""Atomic writes leave the permissions a plain write would (not the temporary file's 0600)."""

from __future__ import annotations

import os
import stat

import pytest

from prodet.annotations.atomic import atomic_write_bytes


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_new_file_gets_the_default_permissions_under_the_umask(tmp_path, umask_022):
    path = tmp_path / "sub" / "model.onnx"
    atomic_write_bytes(path, b"abc")
    assert path.read_bytes() == b"abc"
    assert mode(path) == 0o644
    os.umask(0o077)
    atomic_write_bytes(tmp_path / "private.pkl", b"x")
    assert mode(tmp_path / "private.pkl") == 0o600


def test_a_replaced_file_keeps_its_permissions(tmp_path, umask_022):
    path = tmp_path / "dataset.pkl"
    path.write_bytes(b"old")
    os.chmod(path, 0o640)
    atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new" and mode(path) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset.pkl"]
