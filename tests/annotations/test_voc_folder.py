"""Split files: one id per line; per-class files (id and flag) are not splits."""

from __future__ import annotations

from pathlib import Path

import pytest

from prodet.annotations.voc_folder import read_splits


def _read(tmp_path: Path, text: str) -> tuple[str, ...] | None:
    path = tmp_path / "s.txt"
    path.write_bytes(text.encode("utf-8"))
    return read_splits((path,)).get("s")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a\nb\nc\n", ("a", "b", "c")),
        ("\ufeffa\r\nb\r\n\r\n  c  \n", ("a", "b", "c")),  # BOM, CRLF, blank line, padding
        ("b\na\nb\n", ("b", "a")),  # duplicates: first kept, file order
        ("a 1\nb -1\n", None),  # per-class file
        ("a\tb\n", None),
        ("a\u2028b\n", ("a", "b")),  # a Unicode line separator breaks the line
        ("", ()),
    ],
)
def test_read_splits_cases(tmp_path: Path, text: str, expected: tuple[str, ...] | None) -> None:
    assert _read(tmp_path, text) == expected


def test_per_class_files_are_skipped_beside_splits(tmp_path: Path) -> None:
    (tmp_path / "trainval.txt").write_text("a\nb\n", encoding="utf-8")
    (tmp_path / "cat_trainval.txt").write_text("a  1\nb -1\n", encoding="utf-8")
    files = tuple(sorted(tmp_path.glob("*.txt")))
    assert read_splits(files) == {"trainval": ("a", "b")}
