"""The lazy walk behind ``prodet predict``: order, globs, keys, and bounded memory."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from prodet.serve import directory_listing
from prodet.serve.directory_listing import Entry, sorted_entries
from prodet.serve.image_source import ImageSource


def _touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def test_a_big_folder_is_sorted_in_spilled_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = [
        f"{random.Random(i).randrange(10**6):06d}{ext}"
        for i, ext in enumerate([".jpg", ".png"] * 100)
    ]
    _touch(tmp_path, *names)
    (tmp_path / "sub").mkdir()
    (tmp_path / ".hidden.jpg").write_bytes(b"x")
    os.symlink(tmp_path / "sub", tmp_path / "link-to-sub")
    os.symlink(tmp_path / "missing", tmp_path / "dangling.jpg")
    spills = []
    spill = directory_listing._spill
    monkeypatch.setattr(
        directory_listing, "_spill", lambda run: spills.append(len(run)) or spill(run)
    )

    listed = list(sorted_entries(str(tmp_path), run_size=7))

    expected = sorted(
        [Entry(n.rsplit(".", 1)[0], n, False) for n in set(names)] + [Entry("sub", "sub", True)]
    )
    assert listed == expected  # no hidden file, no link to a folder, no dangling link
    assert max(spills) == 7 and len(spills) == -(-len(expected) // 7)
    assert list(sorted_entries(str(tmp_path))) == expected  # in memory: the same order


def test_a_folder_is_walked_depth_first_in_stem_order(tmp_path: Path) -> None:
    _touch(tmp_path / "in", "b.jpg", "a.png", "a.jpg", "a-1.jpg", "z/c.jpg", "m/x.JPG", "notes.txt")
    _touch(tmp_path / "in", "out/old.jpg")
    source = ImageSource([str(tmp_path / "in")], exclude=str(tmp_path / "in" / "out"))
    items = list(source)
    assert not source.file_mode
    assert [i.name for i in items] == ["a.jpg", "a.png", "a-1.jpg", "b.jpg", "m/x.JPG", "z/c.jpg"]
    assert [i.key for i in items] == ["a", "a", "a-1", "b", "m/x", "z/c"]
    assert items[1].problem is not None and "a.jpg" in items[1].problem
    assert [i.problem for i in items if i.name != "a.png"] == [None] * 5
    assert items[4].path == os.path.join(str(tmp_path / "in"), "m", "x.JPG")
    assert [i.name for i in source] == [i.name for i in items]  # a second walk: the same


def test_globs_match_one_component_and_double_star_any_depth(tmp_path: Path) -> None:
    _touch(tmp_path, "s/a1/x.jpg", "s/a1/y.png", "s/a2/deep/x.jpg", "s/b1/x.jpg", "s/top.jpg")
    names = lambda pattern: [i.name for i in ImageSource([str(tmp_path / pattern)])]  # noqa: E731
    assert names("s/a*/*.jpg") == ["a1/x.jpg"]
    assert names("s/**/x.jpg") == ["a1/x.jpg", "a2/deep/x.jpg", "b1/x.jpg"]
    assert names("s/**/*.jpg") == ["a1/x.jpg", "a2/deep/x.jpg", "b1/x.jpg", "top.jpg"]
    assert names("s/**") == ["a1/x.jpg", "a1/y.png", "a2/deep/x.jpg", "b1/x.jpg", "top.jpg"]
    assert names("s/[ab]1/?.*") == ["a1/x.jpg", "a1/y.png", "b1/x.jpg"]
    assert names("nowhere/*.jpg") == []


def test_several_arguments_share_their_common_root(tmp_path: Path) -> None:
    _touch(tmp_path, "shop1/x.jpg", "shop2/x.jpg", "shop2/sub/y.jpg", "loose.png")
    source = ImageSource(
        [
            str(tmp_path / "shop1"),
            str(tmp_path / "shop2" / "*" / "*.jpg"),
            str(tmp_path / "loose.png"),
        ]
    )
    assert [(i.name, i.key) for i in source] == [
        ("shop1/x.jpg", "shop1/x"),
        ("shop2/sub/y.jpg", "shop2/sub/y"),
        ("loose.png", "loose"),
    ]


def test_file_mode_names_outputs_by_stem_as_before(tmp_path: Path) -> None:
    _touch(tmp_path, "a/shelf.jpg", "b/shelf.jpg", "dark.png")
    args = [str(tmp_path / p) for p in ("a/shelf.jpg", "dark.png", "b/shelf.jpg", "missing.jpg")]
    source = ImageSource(args)
    assert source.file_mode
    assert [(i.path, i.key) for i in source] == list(
        zip(args, ["shelf", "dark", "shelf-2", "missing"], strict=True)
    )
